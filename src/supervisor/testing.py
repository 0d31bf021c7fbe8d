"""Test helpers: a harness that runs a tree for one test, and a remote-controlled runnable.

`harness(root_fn)` is an async context manager (use it inside a pytest-trio test, ideally on
`autojump_clock`). By default it runs `root_fn` under `supervise(..., propagate_exceptions=True)`:
the first exception a runnable raises ends the tree and is re-raised from the `async with` (bare,
not wrapped in an exception group). On exit it cancels the tree and waits for every runnable to
exit; any runnable still live `grace` seconds later fails the test, listed by name, once it has
exited (Trio cannot abandon a task, so a runnable that never exits hangs the test, as a nursery
would; the names are logged at the deadline so the hang is explained).

`RemoteControlled` is the port of Monogon's `rc`: a runnable whose next step is commanded by
the test (become healthy, become done, die, return), which records its incarnations.
"""

from __future__ import annotations

import collections
import enum
import logging
import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial

import trio

from supervisor.backoff import Backoff
from supervisor.limits import RestartLimit
from supervisor.observe import Observer
from supervisor.runtime import Handle, signal, supervise
from supervisor.states import NodeState, Signal
from supervisor.tree import Runnable

__all__ = ["Command", "RemoteControlled", "harness"]

_log = logging.getLogger("supervisor.testing")


@asynccontextmanager
async def harness(
    root_fn: Runnable,
    *,
    backoff: Backoff = Backoff(),  # noqa: B008 (frozen, immutable)
    rng: random.Random | None = None,
    observers: Iterable[Observer] = (),
    limit: RestartLimit | None = None,
    propagate_exceptions: bool = True,
    grace: float = 5.0,
) -> AsyncIterator[Handle]:
    """Run `root_fn` as a supervision tree for the duration of the `async with` block.

    Args:
        root_fn: the root runnable.
        backoff, rng, observers, limit: passed to `supervise`.
        propagate_exceptions: passed to `supervise`; False to test restarts and limits (a
            death is then a restart, and only the root's exceeded limit ends the block).
        grace: seconds (Trio clock) every runnable has to exit once the harness cancels the
            tree on exit.

    Yields:
        The tree's `Handle` (`states()`, `wait_settled()`, ...).

    Raises:
        Exception: the first exception a runnable raised (propagated by `supervise`).
        AssertionError: on exit, runnables were still live after `grace`; the message lists
            their dns.
    """
    stragglers: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            stopped = trio.Event()

            async def run_tree(*, task_status: trio.TaskStatus[Handle]) -> None:
                try:
                    await supervise(
                        root_fn,
                        propagate_exceptions=propagate_exceptions,
                        backoff=backoff,
                        rng=rng,
                        observers=observers,
                        limit=limit,
                        task_status=task_status,
                    )
                finally:
                    stopped.set()

            handle: Handle = await nursery.start(partial(run_tree))
            try:
                yield handle
            finally:
                nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True) as wait:
                    wait.deadline = trio.current_time() + grace
                    await stopped.wait()
                if not stopped.is_set():
                    stragglers = handle.live()
                    _log.warning("runnables still live after %s s: %s", grace, stragglers)
    except BaseException as exc:
        inner = getattr(exc, "exceptions", None)
        if inner is not None and len(inner) == 1 and isinstance(inner[0], Exception):
            raise inner[0] from None
        raise
    if stragglers:
        raise AssertionError(
            f"runnables still live {grace} s after the tree was cancelled: " + ", ".join(stragglers)
        )


class Command(enum.Enum):
    """What a `RemoteControlled` runnable does next."""

    HEALTHY = "healthy"  #: signal(Signal.HEALTHY)
    DONE = "done"  #: signal(Signal.DONE)
    DIE = "die"  #: raise RuntimeError("died on request")
    RETURN = "return"  #: return cleanly (DONE if signalled, else a death)


class RemoteControlled:
    """A runnable driven by the test, one command at a time (Monogon's `rc`).

    Use the instance itself as the runnable: `supervisor.run("one", rc)`. Commands are queued
    and taken in order by the running incarnation (or the next one, if none is running).

    Attributes:
        state: what the runnable itself last did: NEW when an incarnation starts, then HEALTHY
            or DONE after the matching command.
        starts: how many incarnations have started.
        running: an incarnation is running now.
    """

    def __init__(self) -> None:
        self._commands: collections.deque[Command] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self.state = NodeState.NEW
        self.starts = 0
        self.running = False

    def command(self, command: Command) -> None:
        """Queue a command for the runnable."""
        self._commands.append(command)
        self._lot.unpark_all()

    def become_healthy(self) -> None:
        self.command(Command.HEALTHY)

    def become_done(self) -> None:
        self.command(Command.DONE)

    def die(self) -> None:
        self.command(Command.DIE)

    def finish(self) -> None:
        self.command(Command.RETURN)

    async def __call__(self) -> None:
        self.starts += 1
        self.state = NodeState.NEW
        self.running = True
        try:
            while True:
                while not self._commands:
                    await self._lot.park()
                command = self._commands.popleft()
                if command is Command.HEALTHY:
                    signal(Signal.HEALTHY)
                    self.state = NodeState.HEALTHY
                elif command is Command.DONE:
                    signal(Signal.DONE)
                    self.state = NodeState.DONE
                elif command is Command.DIE:
                    raise RuntimeError("died on request")
                else:
                    return
        finally:
            self.running = False
