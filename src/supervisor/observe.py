"""Observation of state changes, for metrics and tests.

The runtime calls every observer synchronously, inline, at each transition: `(dn, old, new,
time)` where `time` is `trio.current_time()` and `old` is None when a node's first incarnation
starts. Observers must not block (they cannot: they are plain functions) and should be cheap; an
observer that raises is logged and otherwise ignored, so metrics can never take the tree down.

`StateChanges` is the buffered observer: a bounded queue that drops the *oldest* change when
full and counts the drops, so a slow reader costs memory bounded by `max_buffer` and never
back-pressures the tree (Monogon's `Metrics.NotifyNodeState` is synchronous for the same reason).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import NamedTuple

import trio

from supervisor.states import NodeState

__all__ = ["Observer", "StateChange", "StateChanges"]


class StateChange(NamedTuple):
    """One transition of one node."""

    dn: str
    #: None when a node's first incarnation starts; a restart starts from DEAD/CANCELED/DONE.
    old: NodeState | None
    new: NodeState
    #: `trio.current_time()` at the transition.
    time: float


#: A synchronous callback taking each `StateChange`.
Observer = Callable[[StateChange], None]


class StateChanges:
    """A bounded, drop-oldest buffer of state changes; pass it as an observer.

    Args:
        max_buffer: how many changes to keep before dropping the oldest.

    Reading is `await changes.receive()`, `async for change in changes`, or `changes.drain()`
    for everything buffered now. Dropping the oldest (not the newest) keeps the latest state of
    every node visible to a reader that catches up, at the cost of history.
    """

    def __init__(self, max_buffer: int = 1024) -> None:
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self._buffer: collections.deque[StateChange] = collections.deque(maxlen=max_buffer)
        self._lot = trio.lowlevel.ParkingLot()
        #: Changes dropped because the buffer was full.
        self.dropped = 0

    def __call__(self, change: StateChange) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(change)
        self._lot.unpark_all()

    def drain(self) -> list[StateChange]:
        """Take every buffered change, oldest first, without waiting."""
        changes = list(self._buffer)
        self._buffer.clear()
        return changes

    async def receive(self) -> StateChange:
        """Take the oldest buffered change, waiting for one if there is none."""
        await trio.lowlevel.checkpoint()
        while not self._buffer:
            await self._lot.park()
        return self._buffer.popleft()

    def __aiter__(self) -> StateChanges:
        return self

    async def __anext__(self) -> StateChange:
        return await self.receive()
