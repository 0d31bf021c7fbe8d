"""Awaitable node states (`Handle.watch`, `wait_state`), snapshots, their text and JSON forms,
and the tree dumped to a log on a signal."""

from __future__ import annotations

import json
import logging
import os
import signal as signals
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

import pytest
import trio
from trio.testing import MockClock

import supervisor
from supervisor import (
    Backoff,
    Handle,
    NodeState,
    Restart,
    Signal,
    StateChanges,
    dump_on_signal,
    format_tree,
    log_tree,
    run,
    signal,
    start_child,
    stop_child,
)
from supervisor.testing import RemoteControlled, harness

NEW, HEALTHY, DEAD, DONE, CANCELED = (
    NodeState.NEW,
    NodeState.HEALTHY,
    NodeState.DEAD,
    NodeState.DONE,
    NodeState.CANCELED,
)
EXACT = Backoff(jitter=0.0)
Running = Callable[..., AbstractAsyncContextManager[tuple[Handle, StateChanges]]]


async def test_watch_follows_a_name_across_restarts(
    autojump_clock: MockClock, running: Running
) -> None:
    rc = RemoteControlled()

    async def net() -> None:
        run("dhcp", rc)
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def root() -> None:
        run("net", net)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root) as (handle, _):
        value = handle.watch("root.net.dhcp")  # the node may not exist yet: None, then NEW
        assert value is handle.watch("root.net.dhcp")
        await handle.wait_settled()
        assert value.value is NEW
        seen: list[tuple[NodeState | None, float]] = []

        async def record() -> None:
            async for state, _old in value.transitions():
                seen.append((state, trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(record)
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(1.0)
            rc.become_healthy()
            assert await handle.wait_state("root.net.dhcp", HEALTHY) is HEALTHY
            assert trio.current_time() == 1.0
            rc.die()
            await handle.wait_state("root.net.dhcp", DEAD)
            await handle.wait_state("root.net.dhcp", NEW)
            assert trio.current_time() == 1.5
            rc.become_healthy()
            await handle.wait_settled()
            nursery.cancel_scope.cancel()
        assert seen == [(HEALTHY, 1.0), (DEAD, 1.0), (NEW, 1.5), (HEALTHY, 1.5)]
        with pytest.raises(ValueError):
            await handle.wait_state("root")


async def test_watch_a_dynamic_child_goes_to_none(
    autojump_clock: MockClock, running: Running
) -> None:
    go = trio.Event()

    async def child() -> None:
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def root() -> None:
        signal(Signal.HEALTHY)
        start_child("eth0", child)
        await go.wait()
        await stop_child("eth0")
        await trio.sleep_forever()

    async with running(root) as (handle, _):
        await handle.wait_state("root.eth0", HEALTHY)
        value = handle.watch("root.eth0")
        go.set()
        await value.wait_value(None)
        assert "root.eth0" not in handle.states()


async def test_snapshot_counters_times_backoff_and_errors(
    autojump_clock: MockClock, running: Running
) -> None:
    rc = RemoteControlled()

    async def root() -> None:
        run("rc", rc)
        run("temp", rc_temp, restart=Restart.TEMPORARY)
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def rc_temp() -> None:
        raise OSError("no carrier")

    async with running(root) as (handle, _):
        await handle.wait_settled()
        rc.die()
        await handle.wait_settled()
        rc.die()
        await trio.sleep(0.25)  # died at 0 and at 0.5: 0.5 s left of a 0.75 s backoff
        snap = handle.snapshot()
        assert snap.dn == "root" and snap.state is HEALTHY and snap.in_state == 0.75
        node = snap.find("root.rc")
        assert node is not None
        assert (node.state, node.starts, node.deaths, node.restarts) == (DEAD, 2, 2, 2)
        assert (node.last_exit, node.last_error) == (DEAD, "RuntimeError('died on request')")
        assert (node.backoff, node.in_state, node.finished) == (0.5, 0.25, False)
        temp = snap.find("root.temp")
        assert temp is not None and temp.finished and temp.restart is Restart.TEMPORARY
        assert (temp.state, temp.deaths, temp.last_error) == (DEAD, 1, "OSError('no carrier')")
        assert [n.name for n in snap.walk()] == ["root", "rc", "temp"]

        assert format_tree(snap).splitlines() == [
            "root HEALTHY 0.8s starts=1 deaths=0 restarts=0",
            "  rc DEAD 0.2s starts=2 deaths=2 restarts=2 backoff=0.5s"
            " last=DEAD RuntimeError('died on request')",
            "  temp DEAD 0.8s temporary starts=1 deaths=1 restarts=0 finished"
            " last=DEAD OSError('no carrier')",
        ]
        data = json.loads(snap.to_json())
        assert data["dn"] == "root" and data["state"] == "HEALTHY"
        assert [child["dn"] for child in data["children"]] == ["root.rc", "root.temp"]
        assert data["children"][0] | {"children": []} == {
            "dn": "root.rc",
            "state": "DEAD",
            "restart": "PERMANENT",
            "starts": 2,
            "deaths": 2,
            "restarts": 2,
            "last_exit": "DEAD",
            "last_error": "RuntimeError('died on request')",
            "in_state": 0.25,
            "backoff": 0.5,
            "finished": False,
            "children": [],
        }
        await handle.wait_settled()
        node = handle.snapshot().find("root.rc")
        assert node is not None and (node.state, node.starts, node.backoff) == (NEW, 3, None)


async def test_snapshot_of_a_deep_tree_is_iterative(autojump_clock: MockClock) -> None:
    depth = 1500  # deeper than the recursion limit

    def level(n: int) -> supervisor.Runnable:
        async def fn() -> None:
            if n:
                run("n", level(n - 1))
            signal(Signal.HEALTHY)
            await trio.sleep_forever()

        return fn

    async with harness(level(depth)) as handle:
        await handle.wait_settled()
        snap = handle.snapshot()
        assert len(snap.walk()) == depth + 1
        lines = format_tree(snap).splitlines()
        assert len(lines) == depth + 1
        assert lines[-1] == "  " * depth + "n HEALTHY 0.0s starts=1 deaths=0 restarts=0"


async def test_log_tree_and_dump_on_signal(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("agent.debug")

    async def root() -> None:
        run("debug", partial(dump_on_signal, log, signals.SIGUSR1))
        signal(Signal.HEALTHY)
        log_tree(log)  # the calling runnable's tree
        await trio.sleep_forever()

    with caplog.at_level(logging.INFO, logger="agent.debug"):
        async with harness(root) as handle:
            await handle.wait_state("root.debug", HEALTHY)
            os.kill(os.getpid(), signals.SIGUSR1)
            with trio.fail_after(1):
                while len([r for r in caplog.records if r.name == "agent.debug"]) < 2:
                    await trio.sleep(0.01)
    messages = [r.getMessage() for r in caplog.records if r.name == "agent.debug"]
    assert messages[0].startswith("supervision tree:\nroot HEALTHY 0.0s")
    assert messages[1].splitlines()[1:] == [
        "root HEALTHY 0.0s starts=1 deaths=0 restarts=0",
        "  debug HEALTHY 0.0s starts=1 deaths=0 restarts=0",
    ]
    with pytest.raises(RuntimeError, match="not called from a supervised runnable"):
        log_tree(log)


async def test_wait_settled_without_idle_waits_for_the_tree_alone(
    autojump_clock: MockClock, running: Running
) -> None:
    """An agent can wait for restarts to be over while its own tasks keep working."""
    rc = RemoteControlled()

    async def busy() -> None:
        signal(Signal.HEALTHY)
        while True:  # never blocked for long: `idle` would not matter, the tree does
            await trio.sleep(0.01)

    async def root() -> None:
        run("rc", rc)
        run("busy", busy)
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(root) as (handle, _):
        await handle.wait_settled(idle=False)
        rc.die()
        await trio.sleep(0.1)  # rc died at 0 and waits out its 0.5 s backoff
        assert handle.states()["root.rc"] is DEAD
        await handle.wait_settled(idle=False)
        assert trio.current_time() == 0.5
        assert handle.states()["root.rc"] is NEW
