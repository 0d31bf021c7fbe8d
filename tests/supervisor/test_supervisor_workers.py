"""Workers (`run(..., worker=True)`): children without a cancel scope of their own.

They must behave exactly like other one-for-one children: restarted after a death (also under a
DONE parent), cancelled with their parent's subtree (also while waiting out a backoff),
never restarted at shutdown; and they cannot declare children.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

from supervisor import (
    Backoff,
    Handle,
    NodeState,
    Restart,
    Runnable,
    Signal,
    StateChanges,
    run,
    signal,
    start_child,
    supervise,
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


def dies_every(after: float, starts: list[float], times: int) -> Runnable:
    async def fn() -> None:
        starts.append(trio.current_time())
        if len(starts) <= times:
            await trio.sleep(after)
            raise RuntimeError(f"death {len(starts)}")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


@pytest.mark.parametrize("worker", [False, True])
async def test_workers_restart_like_any_child_under_a_done_parent(
    autojump_clock: MockClock, running: Running, histories: Histories, worker: bool
) -> None:
    starts: list[float] = []

    async def root() -> None:
        run("w", dies_every(1.0, starts, times=2), worker=worker)
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root) as (handle, changes):
        await trio.sleep(2.5)
        await handle.wait_settled()
        assert starts == [0.0, 1.5, 3.25]
        assert [(old, new) for old, new, _ in histories(changes)["root.w"]][-2:] == [
            ("DEAD", "NEW"),
            ("NEW", "HEALTHY"),
        ]


@pytest.mark.parametrize("pending", [False, True])
async def test_workers_go_with_their_parents_subtree(
    autojump_clock: MockClock, running: Running, histories: Histories, pending: bool
) -> None:
    parent_starts: list[float] = []
    worker_starts: list[float] = []

    async def worker() -> None:
        worker_starts.append(trio.current_time())
        if pending and len(worker_starts) == 1:
            raise RuntimeError("waits out a backoff when its parent dies")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def parent() -> None:
        parent_starts.append(trio.current_time())
        for i in range(3):
            run(f"w{i}", worker if i == 0 else dies_every(0.0, [], times=0), worker=True)
        signal(Signal.HEALTHY)
        if len(parent_starts) == 1:
            await trio.sleep(0.25)
            raise RuntimeError("parent dies")
        await trio.sleep_forever()

    backoff = Backoff(initial=1.0, max_interval=1.0, jitter=0.0)
    async with running(lambda: _root(parent), backoff=backoff) as (handle, changes):
        await trio.sleep(0.25)
        await handle.wait_settled()
        assert parent_starts == [0.0, 1.25]
        assert worker_starts == [0.0, 1.25]  # the pending restart (due at 1.0) was cancelled
        expected = ("DEAD", "CANCELED", 0.25) if pending else ("HEALTHY", "CANCELED", 0.25)
        assert expected in histories(changes)["root.parent.w0"]
        assert {dn: s for dn, s in handle.states().items() if dn.startswith("root.parent.")} == {
            "root.parent.w0": HEALTHY,
            "root.parent.w1": HEALTHY,
            "root.parent.w2": HEALTHY,
        }


async def _root(parent: Runnable) -> None:
    run("parent", parent)
    signal(Signal.HEALTHY)
    signal(Signal.DONE)


async def test_a_worker_cannot_have_children(autojump_clock: MockClock, running: Running) -> None:
    errors: list[str] = []

    async def child() -> None:
        await trio.sleep_forever()

    async def worker() -> None:
        for declare in (
            lambda: run("x", child),
            lambda: start_child("y", child),
        ):
            with pytest.raises(RuntimeError, match="is a worker") as caught:
                declare()
            errors.append(str(caught.value))
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async def root() -> None:
        run("w", worker, worker=True, restart=Restart.TRANSIENT)
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(root, propagate_exceptions=True) as (handle, _):
        await handle.wait_settled()
        assert handle.states() == {"root": HEALTHY, "root.w": DONE}
    assert errors == ["root.w is a worker: it cannot have children"] * 2


async def test_shutdown_cancels_workers_without_restarts(autojump_clock: MockClock) -> None:
    changes = StateChanges()

    async def slow() -> None:
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)

    async def root() -> None:
        run("a", slow, worker=True)
        run("b", dies_every(0.0, [], times=10), worker=True)
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    with trio.move_on_after(2.0):
        await supervise(root, observers=[changes])
    assert trio.current_time() == 3.0
    last = {change.dn: change.new for change in changes.drain()}
    assert last == {"root": CANCELED, "root.a": CANCELED, "root.b": CANCELED}
