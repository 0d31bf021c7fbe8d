"""Names, node states and signals of the supervision tree.

This module owns the vocabulary shared by the pure policy and the Trio runtime: the
`NodeState` of a runnable, the `Signal` a runnable sends about itself, a child's `Restart` type,
and the naming rule for children and sub-loggers. It has no behaviour beyond validation.

Invariants:
- A node name matches `^[a-z0-9_]{1,64}$` as a whole (Monogon's `reNodeName` was unanchored and
  accepted `Foo.bar` because it contained `oo`; we use `fullmatch`).
- A node's distinguished name (dn) is the dotted path of names from `root`: `root.net.dhcp`.
"""

from __future__ import annotations

import enum
import re

__all__ = ["ROOT_NAME", "NodeState", "Restart", "Signal", "validate_name"]

#: The name of the root node, and so the first component of every dn.
ROOT_NAME = "root"

_NAME_RE = re.compile(r"[a-z0-9_]{1,64}")
# Names already found valid: trees reuse a few names many times (`n0`..`n99`, `eth0`), and a
# set lookup is cheaper than a match. Bounded, so that a stream of unique names costs nothing.
_VALID: set[str] = set()
_VALID_MAX = 4096


class NodeState(enum.Enum):
    """The state of a runnable, and so of the tree node that runs it.

    NEW and HEALTHY are live states (the runnable's function is running); DEAD, DONE and
    CANCELED are the classification of an exit.
    """

    #: Started (its function is running) but has not signalled anything yet.
    NEW = "new"
    #: Signalled `Signal.HEALTHY`: set up, children declared, now serving.
    HEALTHY = "healthy"
    #: Raised, or returned without signalling `Signal.DONE`; restarted after a backoff.
    DEAD = "dead"
    #: Signalled `Signal.DONE` and then returned cleanly; restarted only if its group dies.
    DONE = "done"
    #: Left because the tree cancelled it (its group, an ancestor died, or shutdown).
    CANCELED = "canceled"

    @property
    def live(self) -> bool:
        """True for states in which the runnable's function is running."""
        return self is NodeState.NEW or self is NodeState.HEALTHY


class Signal(enum.Enum):
    """What a runnable tells the supervisor about itself (`supervisor.signal`)."""

    #: Done with setup and with declaring children; now serving. Allowed from NEW only.
    HEALTHY = "healthy"
    #: Nothing more to do: the next clean return is DONE, not DEAD. Allowed from HEALTHY only.
    DONE = "done"


class Restart(enum.Enum):
    """When a child runs again (OTP's child `restart` types).

    What its group does with each is in `docs/supervisor.md`; in short, a group restarts its
    PERMANENT and TRANSIENT members together, and never a TEMPORARY one.
    """

    #: Always restarted: a death (or a clean return without DONE) restarts it after a backoff.
    PERMANENT = "permanent"
    #: Restarted after a death; a clean return (DONE signalled or not) ends it as DONE.
    TRANSIENT = "transient"
    #: Never restarted; its death is logged and does not touch its group. A clean return is DONE.
    TEMPORARY = "temporary"


def validate_name(name: str) -> None:
    """Check a child or sub-logger name.

    Args:
        name: the name to check.

    Raises:
        ValueError: the name does not match `^[a-z0-9_]{1,64}$` as a whole.
    """
    if isinstance(name, str) and name in _VALID:
        return
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid runnable name {name!r}: must match ^[a-z0-9_]{{1,64}}$")
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID.add(name)
