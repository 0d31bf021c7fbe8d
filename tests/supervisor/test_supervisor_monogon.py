"""Ports of Monogon's `osbase/supervisor/supervisor_test.go`, on autojump_clock.

Each Go test becomes one test here with the same scenario. Where Go waited (`waitSettle`,
polling, `time.Sleep`), these tests use `Handle.wait_settled()` (every task blocked, no restart
pending) and assert exact virtual times; the backoff has no jitter (`EXACT`: 0.5, 0.75, ...)
unless the test is about jitter.
"""

from __future__ import annotations

import contextvars
import logging
import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

from supervisor import (
    Backoff,
    Handle,
    NodeState,
    Runnable,
    Signal,
    StateChanges,
    dn,
    logger,
    run,
    run_group,
    signal,
    sub_logger,
    supervise,
)
from supervisor.testing import RemoteControlled

NEW, HEALTHY, DEAD, DONE, CANCELED = (
    NodeState.NEW,
    NodeState.HEALTHY,
    NodeState.DEAD,
    NodeState.DONE,
    NodeState.CANCELED,
)

Running = Callable[..., AbstractAsyncContextManager[tuple[Handle, StateChanges]]]
History = dict[str, list[tuple[str | None, str, float]]]
Histories = Callable[[StateChanges], History]


def becomes_healthy(starts: list[float] | None = None) -> Runnable:
    """Monogon's `runnableBecomesHealthy`: signal HEALTHY, then run until cancelled."""

    async def fn() -> None:
        if starts is not None:
            starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def spawns_more(levels: int, starts: Counter[str] | None = None) -> Runnable:
    """Monogon's `runnableSpawnsMore`: a binary tree `levels` deep, every node HEALTHY."""

    async def fn() -> None:
        if starts is not None:
            starts[dn()] += 1
        if levels > 0:
            run_group({"a": spawns_more(levels - 1, starts), "b": spawns_more(levels - 1, starts)})
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def group_root(**runnables: Runnable) -> Runnable:
    """A root that runs `runnables` as one group, then is HEALTHY and DONE."""

    async def root() -> None:
        run_group(runnables)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    return root


async def test_simple(autojump_clock: MockClock, running: Running) -> None:
    async with running(group_root(one=becomes_healthy(), two=becomes_healthy())) as (handle, _):
        await handle.wait_settled()
        assert handle.states() == {"root": DONE, "root.one": HEALTHY, "root.two": HEALTHY}
        assert trio.current_time() == 0.0


async def test_simple_failure(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    one_starts: list[float] = []
    two = RemoteControlled()
    root = group_root(one=becomes_healthy(one_starts), two=two)
    async with running(root) as (handle, changes):
        await handle.wait_settled()
        assert handle.states()["root.two"] is NEW
        two.become_healthy()
        await handle.wait_settled()
        assert handle.states() == {"root": DONE, "root.one": HEALTHY, "root.two": HEALTHY}

        # Kill off two: one is cancelled and restarts at once, two after its backoff.
        two.die()
        await handle.wait_settled()
        assert trio.current_time() == 0.5
        assert one_starts == [0.0, 0.0]
        assert two.starts == 2
        assert handle.states() == {"root": DONE, "root.one": HEALTHY, "root.two": NEW}
        history = histories(changes)
        assert history["root.one"] == [
            (None, "NEW", 0.0),
            ("NEW", "HEALTHY", 0.0),
            ("HEALTHY", "CANCELED", 0.0),
            ("CANCELED", "NEW", 0.0),
            ("NEW", "HEALTHY", 0.0),
        ]
        assert history["root.two"] == [
            (None, "NEW", 0.0),
            ("NEW", "HEALTHY", 0.0),
            ("HEALTHY", "DEAD", 0.0),
            ("DEAD", "NEW", 0.5),
        ]


async def test_deep_failure(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    starts: Counter[str] = Counter()
    two = RemoteControlled()
    async with running(group_root(one=spawns_more(5, starts), two=two)) as (handle, changes):
        two.become_healthy()
        await handle.wait_settled()
        assert len(starts) == 63
        assert set(starts.values()) == {1}
        assert {state for name, state in handle.states().items() if name != "root"} == {HEALTHY}

        two.die()
        await handle.wait_settled()
        # The whole of 'one' (63 runnables, 6 levels) was cancelled and ran again.
        assert set(starts.values()) == {2}
        assert trio.current_time() == 0.5
        states = handle.states()
        assert {state for name, state in states.items() if name.startswith("root.one")} == {HEALTHY}
        history = histories(changes)
        assert history["root.one.a.a.a.a.a"][2] == ("HEALTHY", "CANCELED", 0.0)


@pytest.mark.parametrize("propagate", [False, True])
async def test_exception(autojump_clock: MockClock, running: Running, propagate: bool) -> None:
    """Go's panic is Python's exception: a death by default, propagated on request."""
    one_starts: list[float] = []

    async def two() -> None:
        signal(Signal.HEALTHY)
        await trio.sleep(1.0)
        raise ValueError("at the disco")

    root = group_root(one=becomes_healthy(one_starts), two=two)
    if propagate:
        with pytest.raises(ValueError, match="at the disco"):
            await supervise(root, propagate_exceptions=True)
        assert trio.current_time() == 1.0
        assert one_starts == [0.0]
        return
    async with running(root) as (handle, _):
        await trio.sleep(1.0)
        await handle.wait_settled()
        assert one_starts == [0.0, 1.0]
        assert trio.current_time() == 1.5
        assert handle.states() == {"root": DONE, "root.one": HEALTHY, "root.two": HEALTHY}


async def test_multiple_level_failure(autojump_clock: MockClock, running: Running) -> None:
    root = group_root(one=spawns_more(4), two=spawns_more(4))
    async with running(root, propagate_exceptions=True) as (handle, _):
        await handle.wait_settled()
        states = handle.states()
        assert len(states) == 1 + 2 * 31
        assert states.pop("root") is DONE
        assert set(states.values()) == {HEALTHY}


async def test_backoff(autojump_clock: MockClock, running: Running) -> None:
    one = RemoteControlled()

    async def root() -> None:
        run("one", one)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root) as (handle, _):
        one.become_healthy()
        await handle.wait_settled()
        # Die a bunch of times in a row: the backoff grows 1.5x each time.
        for delay in (0.5, 0.75, 1.125, 1.6875, 2.53125):
            before = trio.current_time()
            one.die()
            await handle.wait_settled()
            assert trio.current_time() == before + delay
            assert one.state is NEW
        # Becoming healthy resets the backoff.
        one.become_healthy()
        await handle.wait_settled()
        before = trio.current_time()
        one.die()
        await handle.wait_settled()
        assert trio.current_time() == before + 0.5
        assert one.starts == 7


async def test_backoff_jitter(autojump_clock: MockClock, running: Running) -> None:
    """With the default jitter, the 5th restart in a row still waits over a second."""
    one = RemoteControlled()

    async def root() -> None:
        run("one", one)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root, backoff=Backoff(), rng=random.Random(7)) as (handle, _):
        await handle.wait_settled()
        waits = []
        for _ in range(5):
            before = trio.current_time()
            one.die()
            await handle.wait_settled()
            waits.append(trio.current_time() - before)
        for wait, interval in zip(waits, (0.5, 0.75, 1.125, 1.6875, 2.53125), strict=True):
            assert interval * 0.5 <= wait <= interval * 1.5
        assert waits[-1] > 1.0


async def test_cancel_restart(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """A parent dying while its child waits out a backoff cancels that wait: they don't add."""
    outer_starts: list[float] = []
    inner_starts: list[float] = []

    async def inner() -> None:
        inner_starts.append(trio.current_time())
        if len(inner_starts) == 1:
            raise RuntimeError("inner failed")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def outer() -> None:
        outer_starts.append(trio.current_time())
        run("inner", inner)
        if len(outer_starts) == 1:
            await trio.sleep(0.25)  # inner is waiting out its 0.5 s backoff
            raise RuntimeError("outer failed")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(outer) as (handle, changes):
        await trio.sleep(0.1)
        await handle.wait_settled()
        assert outer_starts == [0.0, 0.75]
        assert inner_starts == [0.0, 0.75]
        assert histories(changes)["root.inner"] == [
            (None, "NEW", 0.0),
            ("NEW", "DEAD", 0.0),
            ("DEAD", "CANCELED", 0.25),  # the pending restart, cancelled with its parent
            (None, "NEW", 0.75),
            ("NEW", "HEALTHY", 0.75),
        ]


async def test_done_delay(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """A node is restartable once it has returned, not when it has signalled DONE."""
    attempts: list[float] = []

    async def inner() -> None:
        signal(Signal.HEALTHY)
        signal(Signal.DONE)
        with trio.CancelScope(shield=True):
            await trio.sleep(1.0)

    async def outer() -> None:
        attempts.append(trio.current_time())
        run("inner", inner)
        if len(attempts) == 1:
            await trio.sleep(0.25)
            raise RuntimeError("outer failed")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(outer) as (handle, changes):
        await trio.sleep(0.3)  # past the death of outer, at 0.25
        await handle.wait_settled()
        # inner returned at 1.0; only then could outer restart, after its 0.5 s backoff.
        assert attempts == [0.0, 1.5]
        history = histories(changes)
        assert history["root.inner"][:3] == [
            (None, "NEW", 0.0),
            ("NEW", "HEALTHY", 0.0),
            ("HEALTHY", "DONE", 1.0),
        ]
        assert history["root"][-3:] == [
            ("NEW", "DEAD", 0.25),
            ("DEAD", "NEW", 1.5),
            ("NEW", "HEALTHY", 1.5),
        ]


async def test_cancel_done_sibling(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """A DONE node is restarted, with its children, when a group sibling dies."""
    inner_starts: list[float] = []
    sibling_starts: list[float] = []

    async def inner() -> None:
        inner_starts.append(trio.current_time())
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)  # Go's `<-innerExit`

    async def done() -> None:
        run("inner", inner)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async def sibling() -> None:
        sibling_starts.append(trio.current_time())
        if len(sibling_starts) == 1:
            await trio.sleep(1.0)
            raise RuntimeError("sibling failed")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(group_root(done=done, sibling=sibling)) as (handle, changes):
        await trio.sleep(1.0)
        await handle.wait_settled()
        assert sibling_starts == [0.0, 1.5]
        # inner left at 2.0 (its cleanup took 1 s); then 'done' ran again, and inner with it.
        assert inner_starts == [0.0, 2.0]
        assert handle.states() == {
            "root": DONE,
            "root.done": DONE,
            "root.done.inner": NEW,
            "root.sibling": HEALTHY,
        }
        assert histories(changes)["root.done"] == [
            (None, "NEW", 0.0),
            ("NEW", "HEALTHY", 0.0),
            ("HEALTHY", "DONE", 0.0),
            ("DONE", "NEW", 2.0),
            ("NEW", "HEALTHY", 2.0),
            ("HEALTHY", "DONE", 2.0),
        ]


async def test_resilience(autojump_clock: MockClock, running: Running) -> None:
    """Programming errors and load elsewhere in the tree do not stop a healthy runnable."""
    send, receive = trio.open_memory_channel[trio.Event](0)
    one_starts: list[float] = []

    async def one() -> None:
        one_starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        async for reply in receive:
            reply.set()

    one_sibling = RemoteControlled()

    async def ping() -> None:
        reply = trio.Event()
        with trio.fail_after(1.0):
            await send.send(reply)
            await reply.wait()

    async def two() -> None:
        # Signal from outside any runnable's context: a programming error.
        contextvars.Context().run(signal, Signal.HEALTHY)

    async def three() -> None:
        signal(Signal.DONE)  # DONE before HEALTHY: a programming error

    async def four() -> None:
        for _ in range(1000):  # busy, yet cooperative: Trio cannot preempt a busy loop
            await trio.lowlevel.checkpoint()

    async def five() -> None:
        for i in range(1, 30):
            run(f"r{i}", spawns_more(2))
            await trio.sleep(0.1)
        await trio.sleep_forever()

    async def root() -> None:
        run_group({"one": one, "one_sibling": one_sibling})
        for name, fn in {"two": two, "three": three, "four": four, "five": five}.items():
            run(name, fn)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root) as (handle, _):
        for _ in range(5):
            one_sibling.become_healthy()
            while one_sibling.state is not HEALTHY:
                await trio.sleep(0.01)
            deadline = trio.current_time() + 1.0
            while trio.current_time() < deadline:
                await ping()
                await trio.sleep(0.1)
            one_sibling.die()  # kills 'one' too: they are a group
            await trio.sleep(0.01)
        await ping()
        assert len(one_starts) == 6
        states = handle.states()
        assert states["root.one"] is HEALTHY
        assert sum(1 for name in states if name.startswith("root.five.r")) == 29 * 7


async def test_sub_loggers(
    autojump_clock: MockClock, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    checked: list[str] = []

    async def foo() -> None:
        sub_logger("dut").warning("hello from foo.dut")
        with pytest.raises(ValueError, match="sub-logger"):
            run("dut", becomes_healthy())
        assert logger().name == "root.foo"
        signal(Signal.HEALTHY)
        signal(Signal.DONE)
        checked.append(dn())

    async def root() -> None:
        run_group({"foo": foo})
        with pytest.raises(ValueError, match="runnable named 'foo'"):
            sub_logger("foo")
        assert logger() is logging.getLogger()  # the root node's logger is the root logger
        signal(Signal.HEALTHY)
        signal(Signal.DONE)
        checked.append(dn())

    with caplog.at_level(logging.INFO):
        async with running(root, propagate_exceptions=True) as (handle, _):
            await handle.wait_settled()
    assert sorted(checked) == ["root", "root.foo"]
    assert [
        (record.name, record.getMessage())
        for record in caplog.records
        if record.name.startswith("root")
    ] == [("root.foo.dut", "hello from foo.dut")]


async def test_metrics(autojump_clock: MockClock, running: Running, histories: Histories) -> None:
    """Monogon's TestMetrics: step a three-level tree and watch every transition.

    root: wait, start one, wait, healthy
      one: wait, start two, crash (first time), start two, healthy, wait, done
        two: wait, healthy, run forever
    """
    step_root, step_one, step_two = trio.Semaphore(0), trio.Semaphore(0), trio.Semaphore(0)
    attempts = 0

    async def two() -> None:
        await step_two.acquire()
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def one() -> None:
        nonlocal attempts
        await step_one.acquire()
        run("two", two)
        if attempts == 0:
            attempts += 1
            raise RuntimeError("failed")
        signal(Signal.HEALTHY)
        await step_one.acquire()
        signal(Signal.DONE)

    async def root() -> None:
        await step_root.acquire()
        run("one", one)
        await step_root.acquire()
        signal(Signal.HEALTHY)

    async with running(root) as (handle, changes):
        await handle.wait_settled()
        assert handle.states() == {"root": NEW}
        step_root.release()
        await handle.wait_settled()
        assert handle.states() == {"root": NEW, "root.one": NEW}
        step_one.release()
        await trio.testing.wait_all_tasks_blocked()
        # one died and awaits its backoff; two, cancelled, went with its parent's incarnation.
        assert handle.states() == {"root": NEW, "root.one": DEAD}
        await handle.wait_settled()
        assert handle.states() == {"root": NEW, "root.one": NEW}
        step_one.release()
        await handle.wait_settled()
        assert handle.states() == {"root": NEW, "root.one": HEALTHY, "root.one.two": NEW}
        step_one.release()
        await handle.wait_settled()
        assert handle.states() == {"root": NEW, "root.one": DONE, "root.one.two": NEW}
        step_two.release()
        await handle.wait_settled()
        assert handle.states() == {"root": NEW, "root.one": DONE, "root.one.two": HEALTHY}
        assert histories(changes) == {
            "root": [(None, "NEW", 0.0)],
            "root.one": [
                (None, "NEW", 0.0),
                ("NEW", "DEAD", 0.0),
                ("DEAD", "NEW", 0.5),
                ("NEW", "HEALTHY", 0.5),
                ("HEALTHY", "DONE", 0.5),
            ],
            "root.one.two": [
                (None, "NEW", 0.0),
                ("NEW", "CANCELED", 0.0),
                (None, "NEW", 0.5),
                ("NEW", "HEALTHY", 0.5),
            ],
        }
