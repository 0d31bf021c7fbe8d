"""A supervision tree of named, restartable Trio runnables (after Monogon `osbase/supervisor`).

A runnable is `async def fn() -> None`. `supervise(root_fn)` runs it as the node `root`; inside
any runnable, `run(name, fn)` and `run_group({name: fn, ...})` declare children (while the
caller is NEW), `signal(Signal.HEALTHY)` and `signal(Signal.DONE)` report progress, and
`logger()`, `sub_logger(name)` and `dn()` name things after the node's dotted name
(`root.net.dhcp`). When a runnable dies, its subtree and its group are cancelled and, once the
whole subtree has exited, the smallest dead subtree runs again, after a per-node backoff.

Architecture: `states` (names, `NodeState`, `Signal`), `backoff` (pure backoff policy),
`tree` (pure: nodes, transitions, the choice of what to restart), `runtime` (the Trio shell:
one task and one cancel scope per node in a single nursery, no processor loop), `observe`
(state-change observers), `testing` (harness and remote-controlled runnable).

Deliberate deviations from Monogon:
- Decisions are event-driven, made synchronously at the exit that enables them, instead of a
  GC pass every millisecond; `Handle.wait_settled()` is exact (all tasks blocked, no restart
  pending) instead of "50 idle GC cycles".
- A DONE node whose group sibling dies is restarted with its children (Monogon's
  `TestCancelDoneSibling` bug), and a restart waiting out its backoff is cancelled with its
  parent (`TestCancelRestart`): the two waits never add.
- Names are checked with an anchored pattern (`^[a-z0-9_]{1,64}$`; Monogon's was unanchored
  and contained a typo, `[a-z90-9_]`); invalid or taken names raise `ValueError`, misuse of
  `run`/`signal` raises `RuntimeError` (Monogon returned errors or panicked).
- A runnable that returns cleanly after the tree cancelled it is CANCELED, not DEAD: under Trio
  a runnable may finish its cleanup and return.
- `propagate_exceptions` propagates every exception (Python has no panic/error split), so tests
  that exercise restarts after an exception run without it.
- Cancellation from outside the tree, `KeyboardInterrupt` and `SystemExit` are never restarted:
  the tree stops and they propagate (Go has no equivalent).
- Logs go to stdlib `logging` (one logger per dn, created on first use) instead of a logtree;
  the root node's logger is therefore the stdlib root logger.
"""

from supervisor.backoff import Backoff
from supervisor.observe import Observer, StateChange, StateChanges
from supervisor.runtime import (
    Handle,
    dn,
    logger,
    run,
    run_group,
    signal,
    sub_logger,
    supervise,
)
from supervisor.states import NodeState, Signal
from supervisor.tree import Runnable

__all__ = [
    "Backoff",
    "Handle",
    "NodeState",
    "Observer",
    "Runnable",
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
]
