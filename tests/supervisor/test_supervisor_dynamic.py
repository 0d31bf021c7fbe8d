"""Dynamic children: `start_child` and `stop_child` from a running node, on autojump_clock."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

from supervisor import (
    Handle,
    NodeState,
    Restart,
    RestartLimit,
    Runnable,
    Signal,
    StateChanges,
    run,
    signal,
    start_child,
    stop_child,
)

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


def healthy(starts: list[float], cleanup: float = 0.0) -> Runnable:
    async def fn() -> None:
        starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            if cleanup:
                with trio.CancelScope(shield=True):
                    await trio.sleep(cleanup)

    return fn


class Manager:
    """A HEALTHY runnable that starts and stops children on the test's command."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[str, str, Runnable | None]](10)
        self.stopped: list[tuple[str, float]] = []
        self.errors: list[BaseException] = []

    async def __call__(self) -> None:
        signal(Signal.HEALTHY)
        async with trio.open_nursery() as nursery:
            async for verb, name, fn, *options in self.receive:
                try:
                    if verb == "start":
                        assert fn is not None
                        start_child(name, fn, **(options[0] if options else {}))
                    else:
                        nursery.start_soon(self._stop, name)
                except (ValueError, KeyError, RuntimeError) as error:
                    self.errors.append(error)

    async def _stop(self, name: str) -> None:
        try:
            await stop_child(name)
        except KeyError as error:
            self.errors.append(error)
            return
        self.stopped.append((name, trio.current_time()))

    def start(self, name: str, fn: Runnable, **options: object) -> None:
        self.send.send_nowait(("start", name, fn, options))  # type: ignore[arg-type]

    def stop(self, name: str) -> None:
        self.send.send_nowait(("stop", name, None))


def root_with(manager: Manager) -> Runnable:
    async def root() -> None:
        run("net", manager)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    return root


async def test_start_and_stop_children_while_healthy(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    manager = Manager()
    eth0: list[float] = []
    eth1: list[float] = []
    async with running(root_with(manager)) as (handle, changes):
        await handle.wait_settled()
        manager.start("eth0", healthy(eth0))
        await trio.sleep(1.0)
        manager.start("eth1", healthy(eth1, cleanup=2.0))
        await handle.wait_settled()
        assert handle.states() == {
            "root": DONE,
            "root.net": HEALTHY,
            "root.net.eth0": HEALTHY,
            "root.net.eth1": HEALTHY,
        }
        manager.stop("eth1")
        await handle.wait_settled()
        # stop_child returned once eth1's cleanup was over; the node has left the tree.
        assert manager.stopped == [("eth1", 3.0)]
        assert "root.net.eth1" not in handle.states()
        assert histories(changes)["root.net.eth1"][-1] == ("HEALTHY", "CANCELED", 3.0)
        # The name is free again: the link came back.
        manager.start("eth1", healthy(eth1))
        await handle.wait_settled()
        assert (eth0, eth1) == ([0.0], [1.0, 3.0])
        assert handle.states()["root.net.eth1"] is HEALTHY
        assert manager.errors == []


async def test_dynamic_children_follow_the_restart_rules(
    autojump_clock: MockClock, running: Running
) -> None:
    manager = Manager()
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(trio.current_time())
        raise RuntimeError("flaky")

    async def oneshot() -> None:
        await trio.sleep(1.0)

    async with running(root_with(manager)) as (handle, _):
        await handle.wait_settled()
        manager.start("once", oneshot, restart=Restart.TEMPORARY)
        manager.start("job", oneshot, restart=Restart.TRANSIENT)
        manager.start("flaky", flaky, limit=RestartLimit(2, 60.0))
        await handle.wait_settled()
        # Deaths at 0, 0.5, 1.25 exceeded the limit: net died (taking its dynamic children
        # with it) and restarted at 1.75 without them; the finished ones had left the tree.
        assert starts == [0.0, 0.5, 1.25]
        assert handle.states() == {"root": DONE, "root.net": HEALTHY}
        net = handle.snapshot().find("root.net")
        assert net is not None and (net.deaths, net.restarts, net.starts) == (1, 1, 2)


async def test_finished_dynamic_children_leave_the_tree(
    autojump_clock: MockClock, running: Running
) -> None:
    manager = Manager()

    async def oneshot() -> None:
        await trio.sleep(1.0)

    async def dies() -> None:
        raise RuntimeError("temporary dies")

    async with running(root_with(manager)) as (handle, _):
        await handle.wait_settled()
        manager.start("once", oneshot, restart=Restart.TEMPORARY)
        manager.start("job", oneshot, restart=Restart.TRANSIENT)
        manager.start("gone", dies, restart=Restart.TEMPORARY)
        await handle.wait_settled()
        assert set(handle.states()) == {"root", "root.net", "root.net.once", "root.net.job"}
        await trio.sleep(1.5)
        await handle.wait_settled()
        assert set(handle.states()) == {"root", "root.net"}
        manager.start("once", oneshot)  # the names are free
        await handle.wait_settled()
        assert "root.net.once" in handle.states()


async def test_stop_child_errors_and_taken_names(
    autojump_clock: MockClock, running: Running
) -> None:
    manager = Manager()
    async with running(root_with(manager)) as (handle, _):
        await handle.wait_settled()
        manager.stop("nothing")
        manager.start("eth0", healthy([], cleanup=1.0))
        manager.start("eth0", healthy([]))
        manager.start("Bad.Name", healthy([]))
        await handle.wait_settled()
        manager.stop("eth0")
        await trio.testing.wait_all_tasks_blocked()
        manager.start("eth0", healthy([]))  # still stopping: the name is taken
        await handle.wait_settled()
        kinds = [type(error).__name__ for error in manager.errors]
        assert kinds == ["KeyError", "ValueError", "ValueError", "ValueError"]
        assert manager.stopped == [("eth0", 1.0)]


async def test_stop_child_of_a_pending_restart_cancels_the_backoff(
    autojump_clock: MockClock, running: Running
) -> None:
    manager = Manager()
    starts: list[float] = []

    async def dies() -> None:
        starts.append(trio.current_time())
        raise RuntimeError("dies")

    async with running(root_with(manager)) as (handle, _):
        await handle.wait_settled()
        manager.start("x", dies)
        await trio.sleep(0.1)  # x died at 0 and waits out its 0.5 s backoff
        manager.stop("x")
        await handle.wait_settled()
        assert starts == [0.0]
        assert manager.stopped == [("x", 0.1)]


async def test_start_child_needs_a_running_function(
    autojump_clock: MockClock, running: Running
) -> None:
    saved: list[Callable[[], None]] = []

    async def done() -> None:
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async def root() -> None:
        run("done", done)
        start_child("late", done)  # allowed while NEW, like run
        signal(Signal.HEALTHY)
        start_child("later", done)  # and after
        signal(Signal.DONE)

        def too_late() -> None:
            start_child("never", done)

        saved.append(too_late)

    async with running(root, propagate_exceptions=True) as (handle, _):
        await handle.wait_settled()
        assert handle.states() == {"root": DONE, "root.done": DONE}  # dynamic DONE ones left
    with pytest.raises(RuntimeError, match="not called from a supervised runnable"):
        saved[0]()
