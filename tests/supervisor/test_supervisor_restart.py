"""Restart types and restart limits, in the runtime, on autojump_clock.

Restart types: what a clean return and a death do to a PERMANENT, TRANSIENT and TEMPORARY
child, alone and in a group. Limits: how they count, how a failure climbs the tree (a running
parent, a DONE parent, the root), their interaction with groups, DONE nodes and backoffs.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

from supervisor import (
    Backoff,
    Child,
    Handle,
    NodeState,
    Restart,
    RestartLimit,
    RestartLimitExceeded,
    Runnable,
    Signal,
    StateChanges,
    run,
    run_group,
    signal,
    supervise,
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
History = dict[str, list[tuple[str | None, str, float]]]
Histories = Callable[[StateChanges], History]


def root_of(body: Callable[[], None]) -> Runnable:
    async def root() -> None:
        body()
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    return root


def healthy(starts: list[float]) -> Runnable:
    async def fn() -> None:
        starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def dies_every(after: float, starts: list[float], times: int = 1_000_000) -> Runnable:
    """Dies `after` seconds into each of its first `times` incarnations, then stays healthy."""

    async def fn() -> None:
        starts.append(trio.current_time())
        if len(starts) <= times:
            await trio.sleep(after)
            raise RuntimeError(f"death {len(starts)}")
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    return fn


def returns(starts: list[float], *, done: bool) -> Runnable:
    async def fn() -> None:
        starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        if done:
            signal(Signal.DONE)

    return fn


# -- restart types -------------------------------------------------------------------------------


@pytest.mark.parametrize("done", [False, True])
async def test_transient_clean_return_ends_it(
    autojump_clock: MockClock, running: Running, done: bool
) -> None:
    starts: list[float] = []
    async with running(
        root_of(lambda: run("t", returns(starts, done=done), restart=Restart.TRANSIENT))
    ) as (handle, _):
        await handle.wait_settled()
        assert starts == [0.0]
        assert handle.states()["root.t"] is DONE


async def test_transient_death_restarts_it(autojump_clock: MockClock, running: Running) -> None:
    starts: list[float] = []
    body = lambda: run("t", dies_every(1.0, starts, times=2), restart=Restart.TRANSIENT)  # noqa: E731
    async with running(root_of(body)) as (handle, _):
        await trio.sleep(2.5)
        await handle.wait_settled()
        assert starts == [0.0, 1.5, 3.25]  # deaths at 1.0 and 2.5; backoffs 0.5, 0.75
        assert handle.states()["root.t"] is HEALTHY


async def test_permanent_clean_return_is_still_a_death(
    autojump_clock: MockClock, running: Running
) -> None:
    starts: list[float] = []
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1
        starts.append(trio.current_time())
        if calls == 1:
            return
        await trio.sleep_forever()

    async with running(root_of(lambda: run("p", once))) as (handle, _):
        await handle.wait_settled()
        assert starts == [0.0, 0.5]


@pytest.mark.parametrize("exit_", ["dies", "returns"])
async def test_temporary_never_restarts_and_leaves_its_group_alone(
    autojump_clock: MockClock, running: Running, histories: Histories, exit_: str
) -> None:
    temp: list[float] = []
    sibling: list[float] = []

    async def temporary() -> None:
        temp.append(trio.current_time())
        await trio.sleep(1.0)
        if exit_ == "dies":
            raise RuntimeError("temporary dies")

    def body() -> None:
        run_group({"temp": Child(temporary, restart=Restart.TEMPORARY), "sib": healthy(sibling)})

    async with running(root_of(body)) as (handle, changes):
        await trio.sleep(2.0)
        await handle.wait_settled()
        assert (temp, sibling) == ([0.0], [0.0])
        assert handle.states()["root.temp"] is (DEAD if exit_ == "dies" else DONE)
        assert handle.snapshot().find("root.temp").finished  # type: ignore[union-attr]
        assert histories(changes)["root.sib"] == [(None, "NEW", 0.0), ("NEW", "HEALTHY", 0.0)]


async def test_group_restart_reruns_permanent_and_transient_never_temporary(
    autojump_clock: MockClock, running: Running
) -> None:
    perm: list[float] = []
    trans: list[float] = []
    temp: list[float] = []
    dying: list[float] = []

    def body() -> None:
        run_group(
            {
                "perm": healthy(perm),
                "trans": Child(returns(trans, done=False), restart=Restart.TRANSIENT),
                "temp": Child(healthy(temp), restart=Restart.TEMPORARY),
                "dying": dies_every(1.0, dying, times=1),
            }
        )

    async with running(root_of(body)) as (handle, _):
        await trio.sleep(1.0)
        await handle.wait_settled()
        # trans had returned (DONE) at 0; the group restart re-ran it like a DONE node.
        assert (perm, trans, temp, dying) == ([0.0, 1.0], [0.0, 1.0], [0.0], [0.0, 1.5])
        states = handle.states()
        assert (states["root.trans"], states["root.temp"]) == (DONE, CANCELED)


# -- restart limits ------------------------------------------------------------------------------


async def test_default_is_no_limit(autojump_clock: MockClock, running: Running) -> None:
    starts: list[float] = []
    async with running(root_of(lambda: run("x", dies_every(0.0, starts, times=50)))) as (h, _):
        await h.wait_settled()
        assert len(starts) == 51 and h.states()["root.x"] is HEALTHY


async def test_limit_exceeded_kills_a_running_parent_which_restarts(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    child: list[float] = []
    parent_starts: list[float] = []

    async def parent() -> None:
        parent_starts.append(trio.current_time())
        if len(parent_starts) == 1:
            run("flaky", dies_every(0.0, child), limit=RestartLimit(2, 10.0))
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(root_of(lambda: run("parent", parent))) as (handle, changes):
        await handle.wait_settled()
        # Deaths at 0, 0.5, 1.25: the third exceeds 2 in 10 s; flaky is not restarted, its
        # parent dies at 1.25 and restarts after its own backoff.
        assert child == [0.0, 0.5, 1.25]
        assert parent_starts == [0.0, 1.75]
        assert histories(changes)["root.parent"][-3:] == [
            ("HEALTHY", "DEAD", 1.25),
            ("DEAD", "NEW", 1.75),
            ("NEW", "HEALTHY", 1.75),
        ]
        snap = handle.snapshot().find("root.parent")
        assert snap is not None and snap.deaths == 1 and snap.restarts == 1
        assert snap.last_error is not None and "root.parent.flaky: more than 2" in snap.last_error


async def test_limit_window_slides(autojump_clock: MockClock, running: Running) -> None:
    """Deaths spread wider than the period never exceed it."""
    starts: list[float] = []
    body = lambda: run("x", dies_every(5.0, starts, times=6), limit=RestartLimit(1, 5.0))  # noqa: E731
    async with running(root_of(body)) as (handle, _):
        await trio.sleep(40.0)
        await handle.wait_settled()
        assert len(starts) == 7 and handle.states()["root.x"] is HEALTHY


async def test_failure_climbs_to_the_root_and_ends_the_tree(autojump_clock: MockClock) -> None:
    starts: list[float] = []

    async def net() -> None:
        run("flaky", dies_every(0.0, starts), limit=RestartLimit(1, 10.0))
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def root() -> None:
        run("net", net, limit=RestartLimit(0, 10.0))
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    with pytest.raises(RestartLimitExceeded) as caught:
        await supervise(root, backoff=EXACT, limit=RestartLimit(0, 10.0))
    # flaky: deaths at 0 and 0.5 -> net dies (its first death exceeds 0) -> root dies.
    assert trio.current_time() == 0.5 and starts == [0.0, 0.5]
    error = caught.value
    assert error.dn == "root"
    assert isinstance(error.last, RestartLimitExceeded) and error.last.dn == "root.net"
    assert isinstance(error.last.last, RestartLimitExceeded) and error.last.last.dn == (
        "root.net.flaky"
    )
    assert str(error.last.last.last) == "death 2"


async def test_failure_kills_a_done_parent_at_once(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """The parent has no task (DONE): it dies at the child's exceeding death, then restarts."""
    calls: list[float] = []
    other: list[float] = []

    async def done_parent() -> None:
        calls.append(trio.current_time())
        if len(calls) == 1:
            run("flaky", dies_every(0.0, []), limit=RestartLimit(0, 1.0))
        run("other", healthy(other))
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(root_of(lambda: run("p", done_parent))) as (handle, changes):
        await handle.wait_settled()
        assert calls == [0.0, 0.5] and other == [0.0, 0.5]
        assert histories(changes)["root.p"][2:5] == [
            ("HEALTHY", "DONE", 0.0),
            ("DONE", "DEAD", 0.0),
            ("DEAD", "NEW", 0.5),
        ]


async def test_group_limit_counts_every_member(autojump_clock: MockClock, running: Running) -> None:
    a: list[float] = []
    b: list[float] = []
    parent_starts: list[float] = []

    async def parent() -> None:
        parent_starts.append(trio.current_time())
        if len(parent_starts) == 1:
            run_group(
                {"a": dies_every(1.0, a, times=1), "b": dies_every(2.0, b, times=2)},
                limit=RestartLimit(1, 10.0),
            )
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async with running(root_of(lambda: run("parent", parent))) as (handle, _):
        await trio.sleep(3.0)
        await handle.wait_settled()
        # a dies at 1 (group death 1: restart, b cancelled and restarted at once), then b,
        # in its second incarnation started at 1.0, dies at 3.0: group death 2 > 1.
        assert a == [0.0, 1.5] and b == [0.0, 1.0]
        assert parent_starts == [0.0, 3.5]
        assert "root.parent.a" not in handle.states()


async def test_group_limit_exceeded_finishes_every_member(
    autojump_clock: MockClock, running: Running
) -> None:
    """A DONE member and a live member are finished with the group: nothing runs again."""
    starts: dict[str, list[float]] = {"done": [], "live": [], "dying": []}

    async def parent() -> None:
        run_group(
            {
                "done": returns(starts["done"], done=True),
                "live": healthy(starts["live"]),
                "dying": dies_every(1.0, starts["dying"], times=1),
            },
            limit=RestartLimit(0, 10.0),
        )
        signal(Signal.HEALTHY)
        signal(Signal.DONE)

    async with running(parent, limit=RestartLimit(5, 100.0)) as (handle, _):
        await trio.sleep(1.0)
        await handle.wait_settled()
        # The root (the group's parent, DONE) died at 1.0 and restarted at 1.5.
        assert starts == {"done": [0.0, 1.5], "live": [0.0, 1.5], "dying": [0.0, 1.5]}


async def test_limit_exceeded_while_a_sibling_restart_waits_its_backoff(
    autojump_clock: MockClock, running: Running, histories: Histories
) -> None:
    """The parent's death cancels a sibling's pending restart: its backoff never elapses."""
    slow: list[float] = []
    parent_starts: list[float] = []

    async def parent() -> None:
        parent_starts.append(trio.current_time())
        if len(parent_starts) == 1:
            run("slow", dies_every(0.0, slow, times=1))
            run("flaky", dies_every(0.25, []), limit=RestartLimit(0, 10.0))
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    backoff = Backoff(initial=10.0, max_interval=10.0, jitter=0.0)
    async with running(root_of(lambda: run("parent", parent)), backoff=backoff) as (
        handle,
        changes,
    ):
        await trio.sleep(0.25)
        await handle.wait_settled()
        # slow died at 0 and waited for 10 s; flaky's first death at 0.25 exceeded its limit:
        # parent died, slow's pending restart was cancelled, parent ran again at 10.25.
        assert slow == [0.0]
        assert parent_starts == [0.0, 10.25]
        assert histories(changes)["root.parent.slow"] == [
            (None, "NEW", 0.0),
            ("NEW", "DEAD", 0.0),
            ("DEAD", "CANCELED", 0.25),
        ]


async def test_deaths_while_cancelled_do_not_count(
    autojump_clock: MockClock, running: Running
) -> None:
    """A member that raises while its group is being restarted is leaving anyway."""
    b_starts: list[float] = []

    async def b() -> None:
        b_starts.append(trio.current_time())
        signal(Signal.HEALTHY)
        try:
            await trio.sleep_forever()
        finally:
            raise RuntimeError("dies while cancelled")

    a_starts: list[float] = []

    def body() -> None:
        run_group(
            {"a": dies_every(1.0, a_starts, times=1), "b": Child(b, limit=RestartLimit(0, 10.0))}
        )

    async with running(root_of(body)) as (handle, _):
        await trio.sleep(1.0)
        await handle.wait_settled()
        # b died while cancelled (no count against its 0 limit), restarting after its backoff.
        assert a_starts == [0.0, 1.5] and b_starts == [0.0, 1.5]


async def test_harness_runs_limits_without_propagation(autojump_clock: MockClock) -> None:
    rc = RemoteControlled()

    async def root() -> None:
        run("rc", rc, limit=RestartLimit(1, 60.0))
        signal(Signal.HEALTHY)
        await trio.sleep_forever()

    with pytest.raises(RestartLimitExceeded, match=r"^root: more than 0 deaths"):
        async with harness(
            root, backoff=EXACT, propagate_exceptions=False, limit=RestartLimit(0, 60.0)
        ) as handle:
            await handle.wait_settled()
            rc.die()
            await handle.wait_settled()
            assert rc.starts == 2
            rc.die()
            await trio.sleep_forever()
    assert trio.current_time() == 0.5
