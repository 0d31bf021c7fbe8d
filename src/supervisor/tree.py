"""The supervision tree: nodes, their transitions, and the choice of what to restart.

Pure: no Trio, no clock, no logging. The runtime (`supervisor.runtime`) calls these functions
when a runnable declares, starts or stops children, signals, or exits, passing the time as
`now`, and carries out what they return: which tasks to cancel, which nodes to start again,
which nodes ended for good, and whether the tree fails. Everything here runs synchronously
between two Trio checkpoints, so the tree never has to be locked.

Rules (after Monogon `osbase/supervisor`, with OTP's restart types and limits):
- A node is one *incarnation* of a runnable. A restart replaces the node by a fresh one with the
  same name, function, group, restart type, limit, counters and backoff interval; the old node
  and its children are dropped (the function re-declares its children when it runs again).
- `live` counts what keeps a node's subtree busy: its own task (running, or waiting out a
  backoff) plus each child whose own `live` is non-zero. A subtree is *ready* to restart when
  its `live` is zero: no name ever runs twice.
- A node *wants* a restart when it is not `finished` and is DEAD or CANCELED, or DONE but
  cancelled by the tree (a group sibling died; Monogon's `TestCancelDoneSibling` fix).
  `finished` nodes never run again: TEMPORARY ones once exited, stopped ones, and those whose
  restart limit was exceeded. Finished dynamic children leave the tree once their subtree
  has exited.
- The node restarted is the smallest one that wants it, is ready, and whose parent has not been
  cancelled; otherwise the parent (or an ancestor) restarts, with its whole subtree.
- Cancelling a node cancels its whole subtree: the tasks of the nodes with a scope of their
  own, and the hosts of worker children (workers have no scope; `ExitPlan.cancel` names their
  parent). A worker never declares children, so it is never cancelled alone.
- A DEAD node cancels its own children; unless TEMPORARY it also cancels its group siblings.
  A death the tree did not ask for counts against the node's and its group's `RestartLimit`;
  beyond it, the group is finished and the parent dies with `RestartLimitExceeded` (a parent
  without a task dies at once; the root's excess fails the tree). CANCELED and DONE exits
  cancel nothing.

Illegal calls (declaring children after NEW, bad or duplicate names, signals out of order)
raise and change nothing; impossible internal combinations are asserts.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from supervisor.limits import RestartLimit, RestartLimitExceeded
from supervisor.states import ROOT_NAME, NodeState, Restart, Signal, validate_name

__all__ = [
    "Canceller",
    "Child",
    "ExitPlan",
    "Group",
    "History",
    "Node",
    "Runnable",
    "apply_signal",
    "declare",
    "declare_one",
    "new_root",
    "on_exit",
    "replacement",
    "reserve",
    "select_restart",
    "stop",
    "task_started",
    "wants_restart",
]

#: A runnable: an async function without arguments that returns None.
Runnable = Callable[[], Awaitable[None]]

_PERMANENT = Restart.PERMANENT
_DEAD = NodeState.DEAD


@dataclass(frozen=True, slots=True)
class Child:
    """A runnable with its restart type and limit, as a value of `run_group`'s mapping.

    Args:
        fn: the runnable.
        restart: when it runs again (default PERMANENT, today's behaviour).
        limit: deaths allowed per period before its parent dies instead (default: none).
    """

    fn: Runnable
    restart: Restart = Restart.PERMANENT
    limit: RestartLimit | None = None


class Canceller(Protocol):
    """What the tree needs of the runtime's per-node cancel scope."""

    def cancel(self) -> None: ...


class Group:
    """Children that live and die together, with the group's own restart limit and history."""

    __slots__ = ("history", "limit", "names")

    def __init__(self, names: tuple[str, ...], limit: RestartLimit | None = None) -> None:
        self.names = names
        self.limit = limit
        self.history: collections.deque[float] | None = None


class History:
    """What a name has been through across its incarnations; created at its first exit."""

    __slots__ = ("deaths", "last_error", "last_exit", "restarts", "resume_at", "window")

    def __init__(self) -> None:
        self.deaths = 0
        self.restarts = 0
        self.last_exit: NodeState | None = None
        self.last_error: BaseException | None = None
        #: Death times within the node's limit period (only with a limit).
        self.window: collections.deque[float] | None = None
        #: When a pending restart runs its function (None when not waiting out a backoff).
        self.resume_at: float | None = None


class Node:
    """One incarnation of a runnable in the tree.

    Children, reserved names, the group and the history are created lazily (most leaves have
    none), and the class uses `__slots__`: benchmarks hold 100,000 of these.
    """

    __slots__ = (
        "cancelled",
        "children",
        "done_signalled",
        "dynamic",
        "failure",
        "finished",
        "fn",
        "group",
        "history",
        "host",
        "interval",
        "limit",
        "live",
        "name",
        "parent",
        "pending",
        "reserved",
        "restart",
        "running",
        "scope",
        "since",
        "starts",
        "state",
        "worker",
    )

    def __init__(
        self,
        name: str,
        fn: Runnable,
        parent: Node | None,
        group: Group | None = None,
        restart: Restart = _PERMANENT,
        limit: RestartLimit | None = None,
        worker: bool = False,
    ) -> None:
        self.name = name
        self.fn = fn
        self.parent = parent
        #: The group (this node included); None for a `run` or dynamic child (a group of one).
        self.group = group
        self.restart = restart
        self.limit = limit
        self.children: dict[str, Node] | None = None
        #: Sub-logger names, which block children of the same name.
        self.reserved: set[str] | None = None
        self.state = NodeState.NEW
        self.done_signalled = False
        #: The tree asked this incarnation to leave (its death, a sibling's, an ancestor's).
        self.cancelled = False
        #: Never to run again (TEMPORARY and exited, stopped, or its restart limit exceeded).
        self.finished = False
        #: Started by `start_child` while the parent ran; leaves the tree once finished.
        self.dynamic = False
        #: Declares no children, so it has no cancel scope of its own (`scope` stays None): it
        #: runs in its parent's `host` and is cancelled with its parent's subtree.
        self.worker = worker
        #: The runtime's nursery (and its scope) for this incarnation's worker children.
        self.host: Canceller | None = None
        #: Why the tree killed this incarnation (a child's exceeded limit): its exit is DEAD.
        self.failure: BaseException | None = None
        #: A task exists for this node (waiting out a backoff, or running the function).
        self.running = False
        #: The task is waiting out a backoff; the function has not started yet.
        self.pending = False
        #: Own task (0 or 1) plus the children whose `live` is non-zero.
        self.live = 0
        #: Backoff interval carried across restarts (0.0: reset).
        self.interval = 0.0
        #: Incarnations whose function started, this one included.
        self.starts = 0
        #: When the node entered its current state (the runtime's clock).
        self.since = 0.0
        self.history: History | None = None
        self.scope: Canceller | None = None

    def dn(self) -> str:
        """The dotted name from the root, e.g. `root.net.dhcp`."""
        parts = []
        node: Node | None = self
        while node is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))

    def walk(self) -> Iterator[Node]:
        """This node and its descendants, depth first, children in declaration order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(reversed(node.children.values()))

    def __repr__(self) -> str:
        return f"<Node {self.dn()} {self.state.name}>"


def new_root(fn: Runnable, limit: RestartLimit | None = None) -> Node:
    """The root node of a new tree."""
    return Node(ROOT_NAME, fn, None, None, _PERMANENT, limit)


def _check_running(parent: Node) -> None:
    if not parent.running or parent.pending:
        raise RuntimeError(f"{parent.dn()} is not running: cannot declare children")
    if parent.worker:
        raise RuntimeError(f"{parent.dn()} is a worker: it cannot have children")


def _check_name(parent: Node, name: str) -> None:
    validate_name(name)
    if parent.children is not None and name in parent.children:
        raise ValueError(f"{parent.dn()} already has a runnable named {name!r}")
    if parent.reserved is not None and name in parent.reserved:
        raise ValueError(f"{parent.dn()} has a sub-logger named {name!r}")


def declare(
    parent: Node,
    runnables: Mapping[str, Runnable | Child],
    limit: RestartLimit | None = None,
) -> list[Node]:
    """Declare a group of children on a NEW node (`run`, `run_group`).

    Args:
        parent: the declaring node; its function must be running and it must still be NEW.
        runnables: child name to runnable (or `Child`); all become one group.
        limit: the group's restart limit (deaths of any member count).

    Returns:
        The new child nodes, in the mapping's order, not yet started.

    Raises:
        RuntimeError: `parent` is not running its function, or is no longer NEW.
        ValueError: a name is invalid, or already used by a child or a sub-logger.
    """
    _check_running(parent)
    if parent.state is not NodeState.NEW:
        raise RuntimeError(f"{parent.dn()} is {parent.state.name}: children are declared while NEW")
    names = tuple(runnables)
    for name in names:
        _check_name(parent, name)
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate names in {names!r}")
    if not names:
        return []
    group = Group(names, limit) if len(names) > 1 or limit is not None else None
    if parent.children is None:
        parent.children = {}
    created = []
    for name in names:
        spec = runnables[name]
        if isinstance(spec, Child):
            child = Node(name, spec.fn, parent, group, spec.restart, spec.limit)
        else:
            child = Node(name, spec, parent, group)
        parent.children[name] = child
        created.append(child)
    return created


def declare_one(
    parent: Node,
    name: str,
    fn: Runnable,
    restart: Restart = _PERMANENT,
    limit: RestartLimit | None = None,
    *,
    worker: bool = False,
    dynamic: bool = False,
) -> Node:
    """Declare one child in a group of its own: `run` while NEW, `start_child` while running.

    Args:
        parent: the declaring node; its function must be running (and NEW unless `dynamic`).
        name, fn, restart, limit: as for `Child`.
        worker: the child declares no children (see `Node.worker`); not with `dynamic`.
        dynamic: started by a running node (`start_child`): allowed after NEW, and the child
            leaves the tree once it is finished.

    Raises:
        RuntimeError: `parent` is not running its function, or (not `dynamic`) no longer NEW.
        ValueError: the name is invalid, or already used by a child or a sub-logger.
    """
    _check_running(parent)
    if not dynamic and parent.state is not NodeState.NEW:
        raise RuntimeError(f"{parent.dn()} is {parent.state.name}: children are declared while NEW")
    _check_name(parent, name)
    assert not (worker and dynamic), "a dynamic child is stopped alone: it needs its own scope"
    child = Node(name, fn, parent, None, restart, limit, worker)
    child.dynamic = dynamic
    if parent.children is None:
        parent.children = {name: child}
    else:
        parent.children[name] = child
    return child


def reserve(node: Node, name: str) -> None:
    """Reserve a sub-logger name, which no child may then take (idempotent).

    Raises:
        ValueError: the name is invalid or already a child's.
    """
    validate_name(name)
    if node.children is not None and name in node.children:
        raise ValueError(f"{node.dn()} has a runnable named {name!r}: cannot be a sub-logger")
    if node.reserved is None:
        node.reserved = set()
    node.reserved.add(name)


def apply_signal(node: Node, signal: Signal) -> tuple[NodeState, NodeState] | None:
    """Apply a runnable's signal about itself.

    Returns:
        `(old, new)` if the state changed (HEALTHY), None if it did not (DONE only takes effect
        when the function returns cleanly).

    Raises:
        RuntimeError: the node is not running, HEALTHY was signalled other than from NEW, or
            DONE other than from HEALTHY (or twice).
    """
    if not node.running or node.pending:
        raise RuntimeError(f"{node.dn()} is not running: cannot signal {signal.name}")
    if signal is Signal.HEALTHY:
        if node.state is not NodeState.NEW:
            raise RuntimeError(f"{node.dn()} signalled HEALTHY while {node.state.name}")
        node.state = NodeState.HEALTHY
        node.interval = 0.0
        return NodeState.NEW, NodeState.HEALTHY
    if signal is Signal.DONE:
        if node.state is not NodeState.HEALTHY or node.done_signalled:
            what = "DONE twice" if node.done_signalled else f"DONE while {node.state.name}"
            raise RuntimeError(f"{node.dn()} signalled {what}")
        node.done_signalled = True
        node.interval = 0.0
        return None
    raise ValueError(f"unknown signal {signal!r}")


def task_started(node: Node, *, pending: bool) -> None:
    """Record that a task now runs `node` (count it in every ancestor's `live`)."""
    assert not node.running, f"{node.dn()} already has a task"
    node.running = True
    node.pending = pending
    walker: Node | None = node
    while walker is not None:
        walker.live += 1
        if walker.live > 1:
            break  # the parent already counts this subtree as busy
        walker = walker.parent


class ExitPlan:
    """What the runtime must do after a change.

    Attributes:
        cancel: nodes whose tasks (own scope) and worker children (host) to cancel.
        restart: nodes to replace and start again.
        died: nodes without a task that died now (a child's limit climbed to them), with
            their old state (for observers and logs).
        ended: finished nodes whose whole subtree has exited (removed from the tree if dynamic).
        fail: the exception that ends the tree (the root's restart limit was exceeded).
        emptied: nodes whose subtree has no task left: once the restarts are spawned, a host
            still empty can be closed.
    """

    __slots__ = ("cancel", "died", "emptied", "ended", "fail", "restart")

    def __init__(self) -> None:
        self.cancel: list[Node] = []
        self.restart: list[Node] = []
        self.died: list[tuple[Node, NodeState]] = []
        self.ended: list[Node] = []
        self.emptied: list[Node] = []
        self.fail: BaseException | None = None


_NOTHING = ExitPlan()


def _cancel_subtree(top: Node, out: list[Node]) -> None:
    for node in top.walk():
        node.cancelled = True
        if node.host is not None or (node.running and not node.worker):
            out.append(node)


def _history(node: Node) -> History:
    history = node.history
    if history is None:
        history = node.history = History()
    return history


def _exceeded(node: Node, now: float) -> RestartLimitExceeded | None:
    """Count a death against the node's and its group's limits; the error if one is exceeded."""
    error = node.history.last_error if node.history is not None else None
    if node.limit is not None:
        history = _history(node)
        if history.window is None:
            history.window = collections.deque()
        if node.limit.record(history.window, now):
            return RestartLimitExceeded(node.dn(), node.limit, error)
    group = node.group
    if group is not None and group.limit is not None:
        if group.history is None:
            group.history = collections.deque()
        if group.limit.record(group.history, now):
            return RestartLimitExceeded(node.dn(), group.limit, error, group.names)
    return None


def _died(node: Node, now: float, accountable: bool, plan: ExitPlan, tops: list[Node]) -> None:
    """The consequences of a death: cancel, count against limits, give up and climb."""
    _cancel_subtree(node, plan.cancel)
    parent = node.parent
    if node.restart is Restart.TEMPORARY:
        node.finished = True
        return  # a temporary death does not touch its group
    if not accountable:
        return  # leaving already: its group (if any) was cancelled by whoever asked
    exceeded = _exceeded(node, now)
    group = node.group
    if group is not None and parent is not None and parent.children is not None:
        for name in group.names:
            sibling = parent.children[name]
            if sibling is not node:
                _cancel_subtree(sibling, plan.cancel)
                if exceeded is not None:
                    sibling.finished = True
                tops.append(sibling)
    if exceeded is None:
        return
    node.finished = True
    if parent is None:
        plan.fail = exceeded
    elif not (parent.finished or parent.cancelled):
        if parent.running:
            # Its task is cancelled below (with its subtree); the exit is then a death.
            parent.failure = exceeded
            _cancel_subtree(parent, plan.cancel)
        else:
            # A DONE parent has no task to cancel: it dies now.
            plan.died.append((parent, parent.state))
            parent.state = _DEAD
            history = _history(parent)
            history.deaths += 1
            history.last_exit = _DEAD
            history.last_error = exceeded
            tops.append(parent)
            _died(parent, now, True, plan, tops)


def on_exit(
    node: Node,
    state: NodeState,
    *,
    now: float = 0.0,
    error: BaseException | None = None,
    restarts: bool = True,
) -> ExitPlan:
    """Record that `node`'s task has exited, classified as `state`.

    Args:
        node: the node whose task exited.
        state: DEAD, DONE or CANCELED.
        now: the time of the exit (for restart limits).
        error: for DEAD, the exception (None for a clean return without DONE).
        restarts: False while the tree shuts down: record the exit, decide nothing.

    Returns:
        What to do (see `ExitPlan`): the tasks to cancel (a DEAD node's children and group
        siblings, with their subtrees; a parent a limit climbed to) and the nodes to restart.
    """
    assert node.running, f"{node.dn()} exited without a task"
    assert not state.live, state
    node.running = False
    node.pending = False
    node.state = state
    if state is _DEAD or node.history is not None:
        history = _history(node)
        history.last_exit = state
        history.last_error = error
        history.resume_at = None
        if state is _DEAD:
            history.deaths += 1
    plan = ExitPlan() if restarts else _NOTHING
    walker: Node | None = node
    while walker is not None:
        walker.live -= 1
        assert walker.live >= 0, walker
        if walker.live > 0:
            break  # still busy: the parent keeps counting it
        if walker.host is not None and restarts:
            plan.emptied.append(walker)
        walker = walker.parent
    if not restarts:
        return _NOTHING
    tops = [node]
    if node.restart is Restart.TEMPORARY or (node.dynamic and state is NodeState.DONE):
        node.finished = True  # a dynamic child is a group of one: nothing would restart it
    if state is _DEAD:
        # A death the tree asked for (the node was leaving) does not count against limits;
        # a parent killed for a child's exceeded limit (`failure`) does.
        accountable = node.failure is not None or not node.cancelled
        _died(node, now, accountable, plan, tops)
    for top in tops:
        chosen = select_restart(top, plan.ended)
        if chosen is not None and chosen not in plan.restart:
            plan.restart.append(chosen)
    return plan


def stop(node: Node) -> ExitPlan:
    """Stop a child for good (`stop_child`): cancel its subtree, never restart it.

    Returns:
        The tasks to cancel; `ended` holds the node at once if it has no task left.
    """
    plan = ExitPlan()
    node.finished = True
    _cancel_subtree(node, plan.cancel)
    if node.live == 0:
        select_restart(node, plan.ended)
    return plan


def wants_restart(node: Node) -> bool:
    """Unfinished DEAD and CANCELED nodes want a restart; so does a DONE one the tree cancelled."""
    if node.finished:
        return False
    return (
        node.state is _DEAD
        or node.state is NodeState.CANCELED
        or (node.state is NodeState.DONE and node.cancelled)
    )


def select_restart(start: Node, ended: list[Node] | None = None) -> Node | None:
    """Choose the node to restart after something changed at `start`, if any.

    Walks up from `start` while the subtree is ready (no task left in it). The first node that
    wants a restart and whose parent is still wanted (not cancelled) is the answer; a node
    whose parent was cancelled defers to the parent, which restarts it with its whole subtree.
    Finished nodes met on the way are added to `ended`, and dynamic ones leave the tree.
    """
    node: Node | None = start
    while node is not None and node.live == 0:
        parent = node.parent
        if node.finished:
            if ended is not None and node not in ended:
                ended.append(node)
            siblings = parent.children if parent is not None else None
            if node.dynamic and siblings is not None and siblings.get(node.name) is node:
                del siblings[node.name]
        elif wants_restart(node) and (parent is None or not parent.cancelled):
            return node
        node = parent
    return None


def replacement(old: Node) -> Node:
    """Build the next incarnation of `old` and put it in `old`'s place in the tree.

    The new node keeps the name, function, group, restart type, limit, counters and backoff
    interval; it starts with no children and in `old`'s terminal state, which it leaves for
    NEW when its function starts.
    """
    assert old.live == 0, f"{old.dn()} restarted with {old.live} tasks in its subtree"
    new = Node(old.name, old.fn, old.parent, old.group, old.restart, old.limit, old.worker)
    new.dynamic = old.dynamic
    new.interval = old.interval
    new.state = old.state
    new.starts = old.starts
    new.since = old.since
    history = new.history = _history(old)
    history.restarts += 1
    parent = old.parent
    if parent is not None:
        assert parent.children is not None and parent.children[old.name] is old
        parent.children[old.name] = new
    return new
