"""supervisor.tree: declaration, signals, and the pure choice of what to cancel and restart.

The tree is driven by hand here, as the runtime drives it: `task_started` when a task starts,
`on_exit` when it exits. Each step asserts the whole plan (what to cancel, what to restart).
"""

from __future__ import annotations

import pytest

from supervisor.limits import RestartLimit, RestartLimitExceeded
from supervisor.states import NodeState, Restart, Signal
from supervisor.tree import (
    Child,
    Node,
    apply_signal,
    declare,
    declare_one,
    new_root,
    on_exit,
    replacement,
    reserve,
    select_restart,
    stop,
    task_started,
    wants_restart,
)

NEW, HEALTHY, DEAD, DONE, CANCELED = (
    NodeState.NEW,
    NodeState.HEALTHY,
    NodeState.DEAD,
    NodeState.DONE,
    NodeState.CANCELED,
)


async def _fn() -> None:
    raise AssertionError("never run by these tests")


def start(node: Node) -> Node:
    task_started(node, pending=False)
    return node


def children(parent: Node, *names: str, group: bool = False) -> list[Node]:
    """Declare and start children, as one group or each on its own."""
    if group:
        return [start(child) for child in declare(parent, dict.fromkeys(names, _fn))]
    return [start(declare(parent, {name: _fn})[0]) for name in names]


def dns(nodes: list[Node]) -> list[str]:
    return [node.dn() for node in nodes]


def test_declare_names_groups_and_dns() -> None:
    root = start(new_root(_fn))
    a, b = children(root, "a", "b", group=True)
    (c,) = children(root, "c")
    assert dns([a, b, c]) == ["root.a", "root.b", "root.c"]
    assert a.group is b.group and a.group is not None and a.group.names == ("a", "b")
    assert c.group is None
    assert [node.dn() for node in root.walk()] == ["root", "root.a", "root.b", "root.c"]
    assert root.live == 4


def test_declare_only_while_new_and_running() -> None:
    root = new_root(_fn)
    with pytest.raises(RuntimeError, match="not running"):
        declare(root, {"a": _fn})
    start(root)
    apply_signal(root, Signal.HEALTHY)
    with pytest.raises(RuntimeError, match="HEALTHY"):
        declare(root, {"a": _fn})
    assert root.children is None


def test_declare_rejects_bad_or_taken_names_atomically() -> None:
    root = start(new_root(_fn))
    children(root, "a")
    reserve(root, "log")
    for runnables in ({"b": _fn, "A": _fn}, {"b": _fn, "a": _fn}, {"b": _fn, "log": _fn}):
        with pytest.raises(ValueError):
            declare(root, runnables)
        assert root.children is not None and list(root.children) == ["a"]
    assert declare(root, {}) == []


def test_reserve_collides_with_children_and_is_idempotent() -> None:
    root = start(new_root(_fn))
    children(root, "a")
    with pytest.raises(ValueError, match="has a runnable named"):
        reserve(root, "a")
    with pytest.raises(ValueError, match="invalid"):
        reserve(root, "B")
    reserve(root, "log")
    reserve(root, "log")
    assert root.reserved == {"log"}


@pytest.mark.parametrize(
    ("state", "done", "signal", "expected"),
    [
        (NEW, False, Signal.HEALTHY, (NEW, HEALTHY)),
        (NEW, False, Signal.DONE, RuntimeError),
        (HEALTHY, False, Signal.HEALTHY, RuntimeError),
        (HEALTHY, False, Signal.DONE, None),
        (HEALTHY, True, Signal.DONE, RuntimeError),
        (HEALTHY, True, Signal.HEALTHY, RuntimeError),
    ],
)
def test_signal_table(state: NodeState, done: bool, signal: Signal, expected: object) -> None:
    node = start(new_root(_fn))
    node.state, node.done_signalled, node.interval = state, done, 3.0
    if expected is RuntimeError:
        with pytest.raises(RuntimeError):
            apply_signal(node, signal)
        assert (node.state, node.done_signalled, node.interval) == (state, done, 3.0)
        return
    assert apply_signal(node, signal) == expected
    # Both signals reset the backoff.
    assert node.interval == 0.0
    assert node.done_signalled == (signal is Signal.DONE)


def test_signal_needs_a_running_function() -> None:
    node = new_root(_fn)
    with pytest.raises(RuntimeError, match="not running"):
        apply_signal(node, Signal.HEALTHY)
    task_started(node, pending=True)
    with pytest.raises(RuntimeError, match="not running"):
        apply_signal(node, Signal.HEALTHY)


def test_dead_leaf_cancels_its_group_and_restarts_alone_first() -> None:
    root = start(new_root(_fn))
    a, b, _ = children(root, "a", "b", "c", group=True)
    (d,) = children(root, "d")
    plan = on_exit(a, DEAD)
    assert dns(plan.cancel) == ["root.b", "root.c"]
    assert dns(plan.restart) == ["root.a"]
    assert not d.cancelled
    plan = on_exit(b, CANCELED)
    assert (dns(plan.cancel), dns(plan.restart)) == ([], ["root.b"])


def test_dead_parent_waits_for_its_children() -> None:
    root = start(new_root(_fn))
    (a,) = children(root, "a")
    x, y = children(a, "x", "y")
    (z,) = children(x, "z")
    plan = on_exit(a, DEAD)
    assert dns(plan.cancel) == ["root.a.x", "root.a.x.z", "root.a.y"]
    assert plan.restart == []
    assert dns(on_exit(z, CANCELED).restart) == []
    assert dns(on_exit(y, CANCELED).restart) == []
    # The last task of the subtree exits: the dead parent restarts, not its children.
    assert dns(on_exit(x, CANCELED).restart) == ["root.a"]


def test_healthy_parent_child_death_restarts_only_the_child() -> None:
    root = start(new_root(_fn))
    (a,) = children(root, "a")
    x, _ = children(a, "x", "y", group=False)
    plan = on_exit(x, DEAD)
    assert (dns(plan.cancel), dns(plan.restart)) == ([], ["root.a.x"])
    assert not a.cancelled


def test_done_sibling_is_restarted_with_its_children() -> None:
    root = start(new_root(_fn))
    done, sibling = children(root, "done", "sibling", group=True)
    (inner,) = children(done, "inner")
    apply_signal(done, Signal.HEALTHY)
    apply_signal(done, Signal.DONE)
    assert on_exit(done, DONE).restart == []
    assert not wants_restart(done)
    plan = on_exit(sibling, DEAD)
    assert (dns(plan.cancel), dns(plan.restart)) == (["root.done.inner"], ["root.sibling"])
    assert wants_restart(done)
    assert dns(on_exit(inner, CANCELED).restart) == ["root.done"]


def test_done_sibling_without_tasks_restarts_at_once() -> None:
    root = start(new_root(_fn))
    done, sibling = children(root, "done", "sibling", group=True)
    on_exit(done, DONE)
    plan = on_exit(sibling, DEAD)
    assert (dns(plan.cancel), dns(plan.restart)) == ([], ["root.sibling", "root.done"])


def test_done_node_without_dead_sibling_stays_done() -> None:
    root = start(new_root(_fn))
    (a,) = children(root, "a")
    assert on_exit(a, DONE).restart == []
    assert select_restart(a) is None


def test_dead_root_restarts() -> None:
    root = start(new_root(_fn))
    assert on_exit(root, DEAD).restart == [root]


def test_no_decisions_while_stopping() -> None:
    root = start(new_root(_fn))
    a, b = children(root, "a", "b", group=True)
    plan = on_exit(a, DEAD, restarts=False)
    assert (plan.cancel, plan.restart) == ([], [])
    assert not b.cancelled
    assert (a.state, root.live) == (DEAD, 2)


def test_replacement_keeps_identity_and_backoff() -> None:
    root = start(new_root(_fn))
    a, _ = children(root, "a", "b", group=True)
    children(a, "x")
    a.interval = 1.5
    on_exit(a.children["x"], CANCELED)  # type: ignore[index]
    on_exit(a, DEAD)
    fresh = replacement(a)
    assert root.children is not None and root.children["a"] is fresh
    assert (fresh.name, fresh.group, fresh.interval, fresh.state) == ("a", a.group, 1.5, DEAD)
    assert fresh.history is not None and fresh.history.restarts == 1
    assert fresh.children is None and not fresh.cancelled and not fresh.running


# -- restart types, limits, dynamic children, workers (pure) -------------------------------------


def test_temporary_death_is_finished_and_leaves_its_group_alone() -> None:
    root = start(new_root(_fn))
    temp, other = (
        start(child)
        for child in declare(root, {"temp": Child(_fn, restart=Restart.TEMPORARY), "b": _fn})
    )
    plan = on_exit(temp, DEAD, now=1.0, error=OSError("x"))
    assert (plan.cancel, plan.restart, dns(plan.ended)) == ([], [], ["root.temp"])
    assert temp.finished and not other.cancelled and not wants_restart(temp)
    assert temp.history is not None and temp.history.deaths == 1


def test_limit_exceeded_finishes_the_group_and_kills_the_running_parent() -> None:
    root = start(new_root(_fn))
    (parent,) = children(root, "p")
    a, b = (start(c) for c in declare(parent, {"a": _fn, "b": _fn}, RestartLimit(0, 10.0)))
    plan = on_exit(a, DEAD, now=2.0, error=ValueError("boom"))
    # The sibling, and the parent's own task (a node may be listed twice: cancels are idempotent).
    assert set(dns(plan.cancel)) == {"root.p.b", "root.p"}
    assert plan.restart == [] and a.finished and b.finished
    failure = parent.failure
    assert isinstance(failure, RestartLimitExceeded) and failure.group == ("a", "b")
    assert isinstance(failure.last, ValueError)
    assert on_exit(b, CANCELED).restart == []  # finished: the parent restarts, not b
    plan = on_exit(parent, DEAD, now=2.0, error=failure)
    assert dns(plan.restart) == ["root.p"]


def test_limit_exceeded_kills_a_done_parent_at_once() -> None:
    root = start(new_root(_fn, RestartLimit(0, 1.0)))
    (parent,) = children(root, "p")
    apply_signal(parent, Signal.HEALTHY)
    apply_signal(parent, Signal.DONE)
    flaky = start(declare_one(parent, "flaky", _fn, limit=RestartLimit(0, 1.0), dynamic=True))
    assert on_exit(parent, DONE).restart == []
    plan = on_exit(flaky, DEAD, now=0.0, error=OSError("down"))
    # The parent had no task: it died at once (DONE -> DEAD). It has no limit of its own, so
    # it restarts; the root's limit is not involved (the root did not die).
    assert [(node.dn(), old) for node, old in plan.died] == [("root.p", DONE)]
    assert parent.state is DEAD and plan.fail is None
    assert dns(plan.restart) == ["root.p"] and dns(plan.ended) == ["root.p.flaky"]
    assert parent.history is not None and parent.history.deaths == 1


def test_root_limit_exceeded_fails_the_tree() -> None:
    root = start(new_root(_fn, RestartLimit(1, 10.0)))
    assert dns(on_exit(root, DEAD, now=0.0).restart) == ["root"]
    again = replacement(root)
    task_started(again, pending=False)
    plan = on_exit(again, DEAD, now=5.0, error=KeyError("k"))
    assert isinstance(plan.fail, RestartLimitExceeded) and plan.fail.dn == "root"
    assert plan.restart == []


def test_stop_removes_a_dynamic_child_once_its_subtree_has_exited() -> None:
    root = start(new_root(_fn))
    apply_signal(root, Signal.HEALTHY)
    child = start(declare_one(root, "eth0", _fn, dynamic=True))
    (grandchild,) = children(child, "x")
    plan = stop(child)
    assert dns(plan.cancel) == ["root.eth0", "root.eth0.x"] and plan.ended == []
    assert on_exit(grandchild, CANCELED).ended == []
    plan = on_exit(child, CANCELED)
    assert dns(plan.ended) == ["root.eth0"] and plan.restart == []
    assert root.children == {}


def test_workers_are_cancelled_through_their_parents_host() -> None:
    root = start(new_root(_fn))
    (parent,) = children(root, "p")
    worker = start(declare_one(parent, "w", _fn, worker=True))
    with pytest.raises(RuntimeError, match="is a worker"):
        declare_one(worker, "x", _fn)
    parent.host = _Host()
    plan = on_exit(parent, DEAD)
    assert dns(plan.cancel) == ["root.p"]  # the host: the worker has no scope of its own
    plan = on_exit(worker, CANCELED)
    assert dns(plan.emptied) == ["root.p"] and dns(plan.restart) == ["root.p"]


class _Host:
    def cancel(self) -> None:
        pass
