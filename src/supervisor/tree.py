"""The supervision tree: nodes, their transitions, and the choice of what to restart.

Pure: no Trio, no clock, no logging. The runtime (`supervisor.runtime`) calls these functions
when a runnable declares children, signals, or exits, and carries out what they return: which
tasks to cancel and which nodes to start again. Everything here runs synchronously between two
Trio checkpoints, so the tree never has to be locked (Monogon's mutex and processor goroutine
collapse into plain function calls).

Rules (after Monogon `osbase/supervisor`, `supervisor_processor.go`):
- A node is one *incarnation* of a runnable. A restart replaces the node by a fresh one with the
  same name, function, group and backoff interval; the old node and its children are dropped
  (the function re-declares its children when it runs again).
- `live` counts what keeps a node's subtree busy: its own task (running, or waiting out a
  backoff) plus each child whose own `live` is non-zero. A subtree is *ready* to restart when
  its `live` is zero: no name ever runs twice. (Counting busy children rather than all tasks
  below makes starts and exits O(1) amortised instead of O(depth).)
- A node *wants* a restart when it is DEAD or CANCELED, or DONE but cancelled by the tree (a
  group sibling died; Monogon's `TestCancelDoneSibling` fix).
- The node restarted is the smallest one that wants it, is ready, and whose parent has not been
  cancelled. If the parent has been cancelled, the parent (or an ancestor) restarts instead,
  once its whole subtree has exited: the smallest dead subtree restarts, never more.
- A DEAD node cancels its own children and its group siblings (with theirs); CANCELED and DONE
  exits cancel nothing.

Illegal calls (declaring children after NEW, bad or duplicate names, signals out of order)
raise and change nothing; impossible internal combinations are asserts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Protocol

from supervisor.states import ROOT_NAME, NodeState, Signal, validate_name

__all__ = [
    "Canceller",
    "ExitPlan",
    "Node",
    "Runnable",
    "apply_signal",
    "declare",
    "new_root",
    "on_exit",
    "replacement",
    "reserve",
    "select_restart",
    "task_started",
    "wants_restart",
]

#: A runnable: an async function without arguments that returns None.
Runnable = Callable[[], Awaitable[None]]


class Canceller(Protocol):
    """What the tree needs of the runtime's per-node cancel scope."""

    def cancel(self) -> None: ...


class Node:
    """One incarnation of a runnable in the tree.

    Children, reserved names and the group are created lazily (most leaves have none), and
    the class uses `__slots__`: the benchmark holds 10,000 of these.
    """

    __slots__ = (
        "cancelled",
        "children",
        "done_signalled",
        "fn",
        "group",
        "interval",
        "live",
        "name",
        "parent",
        "pending",
        "reserved",
        "running",
        "scope",
        "state",
    )

    def __init__(
        self,
        name: str,
        fn: Runnable,
        parent: Node | None,
        group: tuple[str, ...] | None = None,
    ) -> None:
        self.name = name
        self.fn = fn
        self.parent = parent
        #: Names of the whole group (this one included); None for a `run` (a group of one).
        self.group = group
        self.children: dict[str, Node] | None = None
        #: Sub-logger names, which block children of the same name.
        self.reserved: set[str] | None = None
        self.state = NodeState.NEW
        self.done_signalled = False
        #: The tree asked this incarnation to leave (its death, a sibling's, an ancestor's).
        self.cancelled = False
        #: A task exists for this node (waiting out a backoff, or running the function).
        self.running = False
        #: The task is waiting out a backoff; the function has not started yet.
        self.pending = False
        #: Own task (0 or 1) plus the children whose `live` is non-zero.
        self.live = 0
        #: Backoff interval carried across restarts (0.0: reset).
        self.interval = 0.0
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


def new_root(fn: Runnable) -> Node:
    """The root node of a new tree."""
    return Node(ROOT_NAME, fn, None)


def declare(parent: Node, runnables: Mapping[str, Runnable]) -> list[Node]:
    """Declare a group of children on a NEW node (`run`, `run_group`).

    Args:
        parent: the declaring node; its function must be running and it must still be NEW.
        runnables: child name to runnable; all become one group.

    Returns:
        The new child nodes, in the mapping's order, not yet started.

    Raises:
        RuntimeError: `parent` is not running its function, or is no longer NEW.
        ValueError: a name is invalid, or already used by a child or a sub-logger.
    """
    if not parent.running or parent.pending:
        raise RuntimeError(f"{parent.dn()} is not running: cannot declare children")
    if parent.state is not NodeState.NEW:
        raise RuntimeError(f"{parent.dn()} is {parent.state.name}: children are declared while NEW")
    names = tuple(runnables)
    for name in names:
        validate_name(name)
        if parent.children is not None and name in parent.children:
            raise ValueError(f"{parent.dn()} already has a runnable named {name!r}")
        if parent.reserved is not None and name in parent.reserved:
            raise ValueError(f"{parent.dn()} has a sub-logger named {name!r}")
    if not names:
        return []
    group = names if len(names) > 1 else None
    if parent.children is None:
        parent.children = {}
    created = []
    for name in names:
        child = Node(name, runnables[name], parent, group)
        parent.children[name] = child
        created.append(child)
    return created


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
    """What the runtime must do after an exit: cancel these tasks, restart these nodes."""

    __slots__ = ("cancel", "restart")

    def __init__(self, cancel: list[Node], restart: list[Node]) -> None:
        self.cancel = cancel
        self.restart = restart


def _cancel_subtree(top: Node, out: list[Node]) -> None:
    for node in top.walk():
        node.cancelled = True
        if node.running:
            out.append(node)


def on_exit(node: Node, state: NodeState, *, restarts: bool = True) -> ExitPlan:
    """Record that `node`'s task has exited, classified as `state`.

    Args:
        node: the node whose task exited.
        state: DEAD, DONE or CANCELED.
        restarts: False while the tree shuts down: record the exit, decide nothing.

    Returns:
        The tasks to cancel (a DEAD node's children and group siblings, with their subtrees)
        and the nodes to restart now (see `select_restart`).
    """
    assert node.running, f"{node.dn()} exited without a task"
    assert not state.live, state
    node.running = False
    node.pending = False
    node.state = state
    walker: Node | None = node
    while walker is not None:
        walker.live -= 1
        assert walker.live >= 0, walker
        if walker.live > 0:
            break  # still busy: the parent keeps counting it
        walker = walker.parent
    if not restarts:
        return ExitPlan([], [])
    cancel: list[Node] = []
    tops = [node]
    if state is NodeState.DEAD:
        _cancel_subtree(node, cancel)
        parent = node.parent
        if node.group is not None and parent is not None and parent.children is not None:
            for name in node.group:
                sibling = parent.children[name]
                if sibling is not node:
                    _cancel_subtree(sibling, cancel)
                    tops.append(sibling)
    restart: list[Node] = []
    for top in tops:
        chosen = select_restart(top)
        if chosen is not None and chosen not in restart:
            restart.append(chosen)
    return ExitPlan(cancel, restart)


def wants_restart(node: Node) -> bool:
    """DEAD and CANCELED nodes want a restart; so does a DONE node the tree cancelled."""
    return (
        node.state is NodeState.DEAD
        or node.state is NodeState.CANCELED
        or (node.state is NodeState.DONE and node.cancelled)
    )


def select_restart(start: Node) -> Node | None:
    """Choose the node to restart after something changed at `start`, if any.

    Walks up from `start` while the subtree is ready (no task left in it). The first node that
    wants a restart and whose parent is still wanted (not cancelled) is the answer; a node
    whose parent was cancelled defers to the parent, which restarts it with its whole subtree.
    """
    node: Node | None = start
    while node is not None and node.live == 0:
        parent = node.parent
        if wants_restart(node) and (parent is None or not parent.cancelled):
            return node
        node = parent
    return None


def replacement(old: Node) -> Node:
    """Build the next incarnation of `old` and put it in `old`'s place in the tree.

    The new node keeps the name, function, group and backoff interval; it starts with no
    children and in `old`'s terminal state, which it leaves for NEW when its function starts.
    """
    assert old.live == 0, f"{old.dn()} restarted with {old.live} tasks in its subtree"
    new = Node(old.name, old.fn, old.parent, old.group)
    new.interval = old.interval
    new.state = old.state
    parent = old.parent
    if parent is not None:
        assert parent.children is not None and parent.children[old.name] is old
        parent.children[old.name] = new
    return new
