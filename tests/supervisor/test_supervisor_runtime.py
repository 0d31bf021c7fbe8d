"""supervisor.runtime: the rules of the issue, beyond the Monogon ports.

API misuse, group semantics, smallest-subtree restarts, no name running twice, shutdown,
foreign cancellation and fatal exceptions, propagation, observation. All on autojump_clock.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

import supervisor
from supervisor import (
    Backoff,
    Handle,
    NodeState,
    Runnable,
    Signal,
    StateChange,
    StateChanges,
    dn,
    logger,
    run,
    run_group,
    signal,
    sub_logger,
    supervise,
)

NEW, HEALTHY, DEAD, DONE, CANCELED = (
    NodeState.NEW,
    NodeState.HEALTHY,
    NodeState.DEAD,
    NodeState.DONE,
    NodeState.CANCELED,
)
EXACT = Backoff(jitter=0.0)

Running = Callable[..., AbstractAsyncContextManager[tuple[Handle, StateChanges]]]
History = dict[str, list[tuple[str | None, str, float]]]
Histories = Callable[[StateChanges], History]


def healthy(starts: list[float] | None = None) -> Runnable:
    async def fn() -> None:
        if starts is not None:
            starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def dies_once(after: float, starts: list[float]) -> Runnable:
    """Dies `after` seconds into its first incarnation; healthy forever in the next ones."""

    async def fn() -> None:
        starts.append(trio.current_time())
        if len(starts) == 1:
            await trio.sleep(after)
            raise RuntimeError("dies once")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def root_of(body: Callable[[], None]) -> Runnable:
    """A root that calls `body()` (declarations), then is HEALTHY and DONE."""

    async def root() -> None:
        body()
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    return root


# -- the API outside and inside runnables --------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: run("a", healthy()),
        lambda: run_group({"a": healthy()}),
        lambda: signal(Signal.HEALTHY),
        logger,
        lambda: sub_logger("a"),
        dn,
    ],
)
def test_module_functions_outside_a_runnable(call: Callable[[], object]) -> None:
    with pytest.raises(RuntimeError, match="not called from a supervised runnable"):
        call()


async def test_names_and_declaration_rules(autojump_clock: MockClock, running: Running) -> None:
    async def root() -> None:
        assert dn() == "root"
        for bad in ("", "A", "a.b", "a\n", "x" * 65):
            with pytest.raises(ValueError, match="invalid runnable name"):
                run(bad, healthy())
        run("a", healthy())
        with pytest.raises(ValueError, match="already has a runnable named 'a'"):
            run("a", healthy())
        # A group is checked whole before anything starts.
        with pytest.raises(ValueError):
            run_group({"b": healthy(), "a": healthy()})
        with pytest.raises(ValueError):
            run_group({"c": healthy(), "C": healthy()})
        sub_logger("log")
        with pytest.raises(ValueError, match="sub-logger"):
            run("log", healthy())
        run_group({})
        signal(Signal.HEALTHY)
        with pytest.raises(RuntimeError, match="children are declared while NEW"):
            run("late", healthy())
        signal(Signal.DONE)
        with pytest.raises(RuntimeError, match="DONE twice"):
            signal(Signal.DONE)

    async with running(root, propagate_exceptions=True) as (handle, _):
        await handle.wait_settled()
        assert handle.states() == {"root": DONE, "root.a": HEALTHY}


@pytest.mark.parametrize(
    ("misuse", "message"),
    [
        (lambda: signal(Signal.DONE), "DONE while NEW"),
        (lambda: (signal(Signal.HEALTHY), signal(Signal.HEALTHY)), "HEALTHY while HEALTHY"),
    ],
)
async def test_signal_misuse_is_a_death(
    autojump_clock: MockClock,
    running: Running,
    histories: Histories,
    caplog: pytest.LogCaptureFixture,
    misuse: Callable[[], object],
    message: str,
) -> None:
    starts: list[float] = []

    async def bad() -> None:
        starts.append(trio.current_time())
        if len(starts) == 1:
            misuse()
        await trio.sleep_forever()

    async with running(root_of(lambda: run("bad", bad))) as (handle, changes):
        await handle.wait_settled()
        assert starts == [0.0, 0.5]
        history = [(new, time) for _, new, time in histories(changes)["root.bad"]]
        assert history[-2:] == [("DEAD", 0.0), ("NEW", 0.5)]
    [record] = [r for r in caplog.records if r.name == "root.bad"]
    assert record.exc_info is not None and message in str(record.exc_info[1])


async def test_clean_return_without_done_is_a_death(
    autojump_clock: MockClock, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    starts: list[float] = []

    async def quits() -> None:
        starts.append(trio.current_time())
        if len(starts) < 3:
            signal(Signal.HEALTHY)
            return
        await trio.sleep_forever()

    async with running(root_of(lambda: run("quits", quits))) as (handle, _):
        await handle.wait_settled()
        # HEALTHY resets the backoff, so both restarts wait the initial 0.5 s.
        assert starts == [0.0, 0.5, 1.0]
    assert [r.getMessage() for r in caplog.records if r.name == "root.quits"] == [
        "runnable returned while HEALTHY, without signalling DONE"
    ] * 2


async def test_stale_context_cannot_act(autojump_clock: MockClock, running: Running) -> None:
    """A task that outlives its node's incarnation (a copied context) cannot signal or run."""
    saved: list[contextvars.Context] = []

    async def short() -> None:
        saved.append(contextvars.copy_context())
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root_of(lambda: run("short", short))) as (handle, _):
        await handle.wait_settled()
        assert handle.states()["root.short"] is DONE
        with pytest.raises(RuntimeError, match=r"root\.short is not running"):
            saved[0].run(signal, Signal.HEALTHY)
        with pytest.raises(RuntimeError, match=r"root\.short is not running"):
            saved[0].run(run, "late", healthy())
        assert saved[0].run(dn) == "root.short"


# -- groups, subtrees, no name twice -------------------------------------------------------------


async def test_group_lives_and_dies_together_and_runs_are_independent(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    a, b, c, alone = [], [], [], []  # type: ignore[var-annotated]

    def body() -> None:
        run_group({"a": healthy(a), "b": dies_once(1.0, b), "c": healthy(c)})
        run("alone", healthy(alone))

    async with running(root_of(body)) as (handle, changes):
        await trio.sleep(1.0)
        await handle.wait_settled()
        assert (a, b, c, alone) == ([0.0, 1.0], [0.0, 1.5], [0.0, 1.0], [0.0])
        history = histories(changes)
        assert history["root.a"][2:] == [
            ("HEALTHY", "CANCELED", 1.0),
            ("CANCELED", "NEW", 1.0),
            ("NEW", "HEALTHY", 1.0),
        ]
        assert history["root.b"][1:] == [
            ("NEW", "DEAD", 1.0),
            ("DEAD", "NEW", 1.5),
            ("NEW", "HEALTHY", 1.5),
        ]
        assert history["root.alone"] == [(None, "NEW", 0.0), ("NEW", "HEALTHY", 0.0)]


async def test_smallest_dead_subtree_restarts(autojump_clock: MockClock, running: Running) -> None:
    starts: dict[str, list[float]] = {}

    def tracked(name: str, fn: Callable[[], None] | None = None, dies: bool = False) -> Runnable:
        async def runnable() -> None:
            mine = starts.setdefault(name, [])
            mine.append(trio.current_time())
            if fn is not None:
                fn()
            if dies and len(mine) == 1:
                await trio.sleep(2.0)
                raise RuntimeError("dies")
            signal(Signal.HEALTHY)
            await trio.sleep_forever()

        return runnable

    def a_body() -> None:
        run("b", tracked("b"))
        run("c", tracked("c", lambda: run("e", tracked("e")), dies=True))

    def body() -> None:
        run("a", tracked("a", a_body))
        run("d", tracked("d"))

    async with running(root_of(body)) as (handle, _):
        await trio.sleep(2.0)
        await handle.wait_settled()
        assert starts == {
            "a": [0.0],
            "b": [0.0],
            "c": [0.0, 2.5],
            "e": [0.0, 2.5],
            "d": [0.0],
        }
        assert set(handle.states().values()) == {HEALTHY, DONE}


async def test_no_name_runs_twice(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """A cancelled runnable slow to leave delays its own restart, and its dead parent's."""
    live: dict[str, int] = {}
    peaks: dict[str, int] = {}
    exits: list[float] = []

    def counted(name: str, fn: Runnable) -> Runnable:
        async def runnable() -> None:
            live[name] = live.get(name, 0) + 1
            peaks[name] = max(peaks.get(name, 0), live[name])
            try:
                await fn()
            finally:
                live[name] -= 1

        return runnable

    async def slow_to_leave() -> None:
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(3.0)
            exits.append(trio.current_time())

    parent_starts: list[float] = []

    async def parent() -> None:
        parent_starts.append(trio.current_time())
        run("child", counted("child", slow_to_leave))
        if len(parent_starts) == 1:
            await trio.sleep(1.0)
            raise RuntimeError("parent dies")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    sibling_starts: list[float] = []

    async def sibling() -> None:
        sibling_starts.append(trio.current_time())
        if len(sibling_starts) == 2:
            await trio.sleep(1.0)
            raise RuntimeError("sibling dies")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    def body() -> None:
        run("parent", counted("parent", parent))
        run_group({"slow": counted("slow", slow_to_leave), "sibling": sibling})

    async with running(root_of(body)) as (handle, changes):
        await trio.sleep(1.0)
        await handle.wait_settled()
        # parent died at 1.0; its child took 3 s to leave; parent ran again 0.5 s later.
        assert parent_starts == [0.0, 4.5]
        assert histories(changes)["root.parent.child"][-2:] == [
            (None, "NEW", 4.5),
            ("NEW", "HEALTHY", 4.5),
        ]
        assert sibling_starts == [0.0]
        assert exits == [4.0]
    assert peaks == {"parent": 1, "child": 1, "slow": 1}


async def test_done_root_keeps_running_until_cancelled(autojump_clock: MockClock) -> None:
    async def root() -> None:
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    with trio.move_on_after(100.0) as scope:
        await supervise(root)
    assert scope.cancelled_caught
    assert trio.current_time() == 100.0


# -- shutdown, foreign cancellation, fatal exceptions, propagation -------------------------------


async def test_shutdown_cancels_everything_without_restarts(autojump_clock: MockClock) -> None:
    changes = StateChanges()
    handles: list[Handle] = []

    async def stubborn() -> None:
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(1.0)
            raise RuntimeError("dies while leaving")  # not restarted: shutting down

    def body() -> None:
        run_group({"a": healthy(), "stubborn": stubborn})
        run("b", dies_once(0.0, []))  # waiting out its 10 s backoff at shutdown

    async with trio.open_nursery() as nursery:
        handles.append(
            await nursery.start(
                lambda task_status: supervise(
                    root_of(body),
                    backoff=Backoff(initial=10.0, max_interval=10.0, jitter=0.0),
                    observers=[changes],
                    task_status=task_status,
                )
            )
        )
        await trio.sleep(2.0)
        await trio.testing.wait_all_tasks_blocked()
        changes.drain()
        nursery.cancel_scope.cancel()
    # Returned once stubborn left (1 s); b's backoff did not delay the return.
    assert trio.current_time() == 3.0
    after = changes.drain()
    assert {change.new for change in after} <= {CANCELED, DEAD}
    assert all(change.new is not NEW for change in after)
    assert handles[0].live() == []
    assert handles[0].states() == {
        "root": DONE,
        "root.a": CANCELED,
        "root.stubborn": DEAD,  # its cleanup raised: logged, not restarted
        "root.b": CANCELED,
    }


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
async def test_fatal_exceptions_unwind_and_propagate(
    autojump_clock: MockClock, fatal: type[BaseException]
) -> None:
    starts: list[float] = []

    async def boom() -> None:
        signal(Signal.HEALTHY)
        await trio.sleep(1.0)
        raise fatal()

    def body() -> None:
        run_group({"boom": boom, "other": healthy(starts)})
        run("third", healthy(starts))

    with pytest.raises(fatal):
        await supervise(root_of(body))
    assert trio.current_time() == 1.0
    assert starts == [0.0, 0.0]


async def test_foreign_cancellation_is_never_restarted(autojump_clock: MockClock) -> None:
    starts: list[float] = []
    changes = StateChanges()

    async def child() -> None:
        starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        async with trio.open_nursery() as nursery:  # cancellation arrives as a group
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()

    with trio.move_on_after(1.0):
        await supervise(root_of(lambda: run("child", child)), observers=[changes])
    assert starts == [0.0]
    assert [(c.dn, c.old, c.new) for c in changes.drain() if c.dn == "root.child"][-1] == (
        "root.child",
        HEALTHY,
        CANCELED,
    )


async def test_propagate_exceptions(autojump_clock: MockClock) -> None:
    starts: list[float] = []
    changes = StateChanges()

    async def bad() -> None:
        signal(Signal.HEALTHY)
        await trio.sleep(2.0)
        raise LookupError("propagated bare, not in a group")

    def body() -> None:
        run_group({"bad": bad, "good": healthy(starts)})

    with pytest.raises(LookupError, match="propagated bare"):
        await supervise(root_of(body), propagate_exceptions=True, observers=[changes])
    assert trio.current_time() == 2.0
    assert starts == [0.0]
    assert all(change.new is not NEW for change in changes.drain() if change.time == 2.0)


# -- handle and observation ----------------------------------------------------------------------


async def test_wait_settled_waits_out_backoffs(autojump_clock: MockClock, running: Running) -> None:
    starts: list[float] = []
    async with running(root_of(lambda: run("x", dies_once(0.0, starts)))) as (handle, _):
        await handle.wait_settled()
        assert trio.current_time() == 0.5
        assert starts == [0.0, 0.5]
        assert handle.live() == ["root.x"]


async def test_observers_failures_are_logged_and_ignored(
    autojump_clock: MockClock, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[StateChange] = []

    def broken(change: StateChange) -> None:
        raise ZeroDivisionError

    async with running(root_of(lambda: run("a", healthy()))) as (handle, _):
        handle.subscribe(broken)
        handle.subscribe(seen.append)
        await handle.wait_settled()
        handle.unsubscribe(broken)
        # Subscribed after the start: it sees what happens from then on.
        assert seen and seen[-1].dn == "root.a" and seen[-1].new is HEALTHY
        with pytest.raises(ValueError):
            handle.unsubscribe(broken)
    assert any(r.name == "supervisor" and r.levelno == logging.ERROR for r in caplog.records)


async def test_state_changes_buffer_drops_oldest(autojump_clock: MockClock) -> None:
    changes = StateChanges(max_buffer=2)
    for i in range(5):
        changes(StateChange(f"root.n{i}", None, NEW, float(i)))
    assert changes.dropped == 3
    assert [change.dn async for change in _take(changes, 2)] == ["root.n3", "root.n4"]
    with pytest.raises(ValueError):
        StateChanges(max_buffer=0)

    async def later() -> None:
        await trio.sleep(1.0)
        changes(StateChange("root", None, NEW, 1.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later)
        assert (await changes.receive()).dn == "root"
    assert trio.current_time() == 1.0


async def _take(changes: StateChanges, count: int):  # type: ignore[no-untyped-def]
    for _ in range(count):
        yield await changes.__anext__()


def test_public_api() -> None:
    assert set(supervisor.__all__) >= {
        "Backoff",
        "Handle",
        "NodeState",
        "Signal",
        "StateChange",
        "StateChanges",
        "dn",
        "logger",
        "run",
        "run_group",
        "signal",
        "sub_logger",
        "supervise",
        # restart types and limits, dynamic children, awaitable states, snapshots
        "Child",
        "Restart",
        "RestartLimit",
        "RestartLimitExceeded",
        "start_child",
        "stop_child",
        "handle",
        "snapshot",
        "NodeSnapshot",
        "format_tree",
        "log_tree",
        "dump_on_signal",
    }
    assert all(hasattr(supervisor, name) for name in supervisor.__all__)
