"""A snapshot of the tree: what every node is doing, printable as text and as JSON.

Pure: `take_snapshot(root, now)` copies the tree into frozen `NodeSnapshot` values at `now` (the
runtime passes the Trio clock); nothing here reads a clock or holds a node. `format_tree` renders
an indented text tree, one node per line; `NodeSnapshot.to_json()` the same as nested objects.

Invariants: a snapshot is taken in one synchronous pass, so it is consistent (no transition
happens half-way); it holds no reference to the tree or to exceptions (the last exception is
kept as its `repr`), so keeping a snapshot keeps nothing alive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from supervisor.states import NodeState, Restart
from supervisor.tree import Node

__all__ = ["NodeSnapshot", "format_tree", "take_snapshot"]


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """One node, and its children, at the time of the snapshot.

    Attributes:
        dn: the dotted name (`root.net.eth0`).
        state: the node's state (a node waiting out a backoff shows DEAD).
        restart: its restart type.
        starts: incarnations whose function started.
        deaths: DEAD exits, over all incarnations.
        restarts: replacements made (each restart is one, whatever its cause).
        last_exit: how the last incarnation exited (None: never exited).
        last_error: `repr` of the exception of the last exit, if it was a death with one.
        in_state: seconds since the node entered `state`.
        backoff: seconds left before a pending restart runs (None: not waiting).
        finished: the node will never run again (stopped, TEMPORARY, limit exceeded).
        children: the children, in declaration order.
    """

    dn: str
    state: NodeState
    restart: Restart
    starts: int
    deaths: int
    restarts: int
    last_exit: NodeState | None
    last_error: str | None
    in_state: float
    backoff: float | None
    finished: bool
    children: tuple[NodeSnapshot, ...]

    @property
    def name(self) -> str:
        """The node's own name (the last component of `dn`)."""
        return self.dn.rpartition(".")[2]

    def walk(self) -> list[NodeSnapshot]:
        """This node and its descendants, depth first."""
        out = []
        stack = [self]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def find(self, dn: str) -> NodeSnapshot | None:
        """The node with this dn in the snapshot, or None."""
        for node in self.walk():
            if node.dn == dn:
                return node
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (enum members as their names), children nested."""
        return {
            "dn": self.dn,
            "state": self.state.name,
            "restart": self.restart.name,
            "starts": self.starts,
            "deaths": self.deaths,
            "restarts": self.restarts,
            "last_exit": self.last_exit.name if self.last_exit is not None else None,
            "last_error": self.last_error,
            "in_state": self.in_state,
            "backoff": self.backoff,
            "finished": self.finished,
            "children": [child.to_dict() for child in self.children],
        }

    def to_json(self, **kwargs: Any) -> str:
        """`json.dumps(self.to_dict(), **kwargs)`."""
        return json.dumps(self.to_dict(), **kwargs)


def take_snapshot(root: Node, now: float) -> NodeSnapshot:
    """Copy the tree under `root` at time `now` (iteratively: depth is not limited)."""
    built: dict[int, list[NodeSnapshot]] = {}
    order: list[tuple[Node, str]] = []
    stack: list[tuple[Node, str]] = [(root, root.name)]
    while stack:
        node, dn = stack.pop()
        order.append((node, dn))
        if node.children:
            for child in node.children.values():
                stack.append((child, f"{dn}.{child.name}"))
    # Children come after their parent in `order`: build in reverse, leaves first.
    for node, dn in reversed(order):
        history = node.history
        resume_at = history.resume_at if history is not None else None
        error = history.last_error if history is not None else None
        kids = built.pop(id(node), [])  # in declaration order (see the stack above)
        snap = NodeSnapshot(
            dn=dn,
            state=node.state,
            restart=node.restart,
            starts=node.starts,
            deaths=history.deaths if history is not None else 0,
            restarts=history.restarts if history is not None else 0,
            last_exit=history.last_exit if history is not None else None,
            last_error=repr(error) if error is not None else None,
            in_state=max(0.0, now - node.since),
            backoff=max(0.0, resume_at - now) if resume_at is not None and node.pending else None,
            finished=node.finished,
            children=tuple(kids),
        )
        parent = node.parent
        if parent is not None and node is not root:
            built.setdefault(id(parent), []).append(snap)
        else:
            built[-1] = [snap]
    return built[-1][0]


def format_tree(snapshot: NodeSnapshot) -> str:
    """An indented text tree, one line per node: name, state, time in state, counters.

    Example line: `  eth0 DEAD 0.3s starts=4 deaths=4 restarts=3 backoff=1.1s last=DEAD
    RuntimeError('no carrier')`.
    """
    lines: list[str] = []
    stack: list[tuple[NodeSnapshot, int]] = [(snapshot, 0)]
    while stack:
        node, depth = stack.pop()
        parts = [f"{'  ' * depth}{node.name}", node.state.name, f"{node.in_state:.1f}s"]
        if node.restart is not Restart.PERMANENT:
            parts.append(node.restart.name.lower())
        parts.append(f"starts={node.starts} deaths={node.deaths} restarts={node.restarts}")
        if node.backoff is not None:
            parts.append(f"backoff={node.backoff:.1f}s")
        if node.finished:
            parts.append("finished")
        if node.last_exit is not None:
            last = f"last={node.last_exit.name}"
            if node.last_error is not None:
                last += f" {node.last_error}"
            parts.append(last)
        lines.append(" ".join(parts))
        stack.extend((child, depth + 1) for child in reversed(node.children))
    return "\n".join(lines)
