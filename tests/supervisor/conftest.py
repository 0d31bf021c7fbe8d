"""Helpers for the supervisor tests: run a tree in a nursery, with a recorder of its changes.

Every test runs on `autojump_clock`: backoffs elapse in virtual time, so the assertions are
about exact times. `Backoff(jitter=0.0)` makes the restart times exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from supervisor import Backoff, Handle, Runnable, StateChanges, supervise

#: Backoff without jitter: restart delays are 0.5, 0.75, 1.125, 1.6875, 2.53125, ...
EXACT = Backoff(jitter=0.0)

Running = Callable[..., AbstractAsyncContextManager[tuple[Handle, StateChanges]]]


@asynccontextmanager
async def _running(root: Runnable, **kwargs: Any) -> AsyncIterator[tuple[Handle, StateChanges]]:
    changes = StateChanges(max_buffer=100_000)
    kwargs.setdefault("backoff", EXACT)
    async with trio.open_nursery() as nursery:
        handle: Handle = await nursery.start(
            partial(supervise, root, observers=[changes], **kwargs)
        )
        yield handle, changes
        nursery.cancel_scope.cancel()


@pytest.fixture
def running() -> Running:
    """`async with running(root, **supervise_kwargs) as (handle, changes)`.

    The tests take `autojump_clock` themselves: pytest-trio only uses a clock fixture that the
    test function requests directly.
    """
    return _running


History = dict[str, list[tuple[str | None, str, float]]]


def _histories(changes: StateChanges) -> History:
    """Per dn, its transitions as `(old, new, time)` with state names, in order.

    Also checks the tree's bookkeeping invariants on the way: every transition starts where the
    previous one ended (or, for a child re-declared by a restarted parent, from nothing after a
    terminal state), and NEW never follows a live state: no name ever runs twice at once.
    """
    out: History = {}
    for change in changes.drain():
        history = out.setdefault(change.dn, [])
        last = history[-1][1] if history else None
        old = change.old.name if change.old is not None else None
        if old is None:
            assert last in (None, "DEAD", "DONE", "CANCELED"), (change, history)
        else:
            assert old == last, (change, history)
        if change.new.name == "NEW":
            assert old in (None, "DEAD", "DONE", "CANCELED"), (change, history)
        history.append((old, change.new.name, change.time))
    return out


@pytest.fixture
def histories() -> Callable[[StateChanges], History]:
    """`histories(changes)`: the per-dn transitions, invariants checked (see `_histories`)."""
    return _histories
