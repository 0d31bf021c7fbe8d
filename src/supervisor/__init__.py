"""A supervision tree of named, restartable Trio runnables (after Monogon `osbase/supervisor`).

A runnable is `async def fn() -> None`. `supervise(root_fn)` runs it as the node `root`; inside
any runnable, `run(name, fn)` and `run_group({name: fn, ...})` declare children (while the
caller is NEW), `start_child`/`stop_child` start and stop them while it runs,
`signal(Signal.HEALTHY)` and `signal(Signal.DONE)` report progress, and `logger()`,
`sub_logger(name)` and `dn()` name things after the node's dotted name (`root.net.dhcp`). When
a runnable dies, its subtree and its group are cancelled and, once the whole subtree has exited,
the smallest dead subtree runs again, after a per-node backoff. Children carry OTP's restart
types (`Restart`) and limits (`RestartLimit`: beyond it, the parent dies instead). A `Handle`
watches node states (`trio_util.AsyncValue`) and takes snapshots (`format_tree`, JSON).

Architecture: `states` (names, `NodeState`, `Signal`, `Restart`), `backoff` and `limits` (pure
policies), `tree` (pure: nodes, transitions, the choice of what to restart), `snapshot` (pure:
the tree as data and text), `runtime` (the Trio shell: one task per node in a single nursery,
a cancel scope per non-worker node, no processor loop), `observe` (state-change observers),
`debug` (the tree to a log on a signal), `testing` (harness and remote-controlled runnable).
Guide: docs/supervisor.md.

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
- Restart types and limits are OTP's, not Monogon's (which restarts everything forever); the
  defaults (PERMANENT, no limit) keep Monogon's behaviour.
- Logs go to stdlib `logging` (one logger per dn, created on first use) instead of a logtree;
  the root node's logger is therefore the stdlib root logger.
"""

from supervisor.backoff import Backoff
from supervisor.debug import dump_on_signal, log_tree
from supervisor.limits import RestartLimit, RestartLimitExceeded
from supervisor.observe import Observer, StateChange, StateChanges
from supervisor.runtime import (
    Handle,
    dn,
    handle,
    logger,
    run,
    run_group,
    signal,
    snapshot,
    start_child,
    stop_child,
    sub_logger,
    supervise,
)
from supervisor.snapshot import NodeSnapshot, format_tree
from supervisor.states import NodeState, Restart, Signal
from supervisor.tree import Child, Runnable

__all__ = [
    "Backoff",
    "Child",
    "Handle",
    "NodeSnapshot",
    "NodeState",
    "Observer",
    "Restart",
    "RestartLimit",
    "RestartLimitExceeded",
    "Runnable",
    "Signal",
    "StateChange",
    "StateChanges",
    "dn",
    "dump_on_signal",
    "format_tree",
    "handle",
    "log_tree",
    "logger",
    "run",
    "run_group",
    "signal",
    "snapshot",
    "start_child",
    "stop_child",
    "sub_logger",
    "supervise",
]
