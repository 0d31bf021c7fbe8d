"""Printing the tree for operators: on a signal (SIGUSR1), or once (a `--debug` flag).

This module owns the glue between `Handle.snapshot()` and a logger; the snapshot and its text
form are `supervisor.snapshot`'s. Invariant: dumping never changes the tree and never raises into
it (a logger that fails is the logging module's business, as for any record).
"""

from __future__ import annotations

import logging
import signal as signals

import trio

from supervisor.runtime import Handle, _current, handle, signal
from supervisor.snapshot import format_tree
from supervisor.states import NodeState, Signal

__all__ = ["dump_on_signal", "log_tree"]


def log_tree(log: logging.Logger, tree: Handle | None = None, *, level: int = logging.INFO) -> None:
    """Log the whole tree as an indented text tree, in one record.

    Args:
        log: where to log.
        tree: the tree; default: the calling runnable's (`supervisor.handle()`).
        level: the record's level.

    Raises:
        RuntimeError: no `tree` given and not called from a supervised runnable.
    """
    tree = tree if tree is not None else handle()
    log.log(level, "supervision tree:\n%s", format_tree(tree.snapshot()))


async def dump_on_signal(
    log: logging.Logger,
    signum: int = signals.SIGUSR1,
    tree: Handle | None = None,
    *,
    level: int = logging.INFO,
) -> None:
    """Log the tree (`log_tree`) each time the process receives `signum`, until cancelled.

    Args:
        log: where to log.
        signum: the signal to react to (default SIGUSR1).
        tree: the tree; default: the calling runnable's.
        level: the records' level.

    Run it as a runnable (`supervisor.run("debug", partial(dump_on_signal, log))`: it signals
    HEALTHY once the handler is installed), or as a plain task with `tree` given. Trio installs
    the handler only in the main thread; signals arriving in a burst may be coalesced.
    """
    tree = tree if tree is not None else handle()
    with trio.open_signal_receiver(signum) as received:
        node = _current.get(None)
        if node is not None and node.running and node.state is NodeState.NEW:
            signal(Signal.HEALTHY)
        async for _ in received:
            log_tree(log, tree, level=level)
