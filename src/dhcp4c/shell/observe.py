"""Lease observers: lease events fanned out to any number of Trio memory channels.

This module owns the delivery of lease events from one client to its observers (the command's
`--json` output, tests, whatever embeds the client). It knows nothing of DHCP beyond `Lease`
and the machine's lease events, each of which is exactly one `LeaseEventKind` (`kind_of`).

Semantics (a "latest value" per subscriber, like Monogon's `event/memory` values):

- Each subscriber has its own channel with a buffer of exactly one event. Publishing never blocks
  and never waits for a subscriber: when a subscriber has not taken the previous event yet, that
  event is replaced by the new one, whose `missed` field then counts the events it never saw
  (their `seq` numbers are the gap). A slow subscriber therefore always reads the *latest* state
  and at most one event is buffered per subscriber: the protocol can never be stalled or made to
  grow memory by an observer. The price is that a slow observer sees a summary, not every step;
  `seq`/`missed` tell it exactly how much it skipped.
- A new subscriber first receives the current state: the latest event published (with
  `missed=0`), or nothing until the first event when none was published yet.
- A subscription ends when the subscriber closes its receive channel (`with` block or `close()`):
  the next publication notices and forgets it. `LeaseObservers.close()` ends every subscription
  (their `async for` loops finish).

The latest event is a trio-util `AsyncValue` (`LeaseObservers.value`), so waiting for a state
("a lease is held") is `wait_value(predicate)`; trio-util has no fan-out, so the per-subscriber
buffers stay Trio memory channels.

Invariants: `seq` increases by one per published event, from 1; the latest event's `lease` is the
lease currently held (None after LOST).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import trio
from trio_util import AsyncValue

from dhcp4c.protocol.events import (
    Ipv6OnlyPreferred,
    LeaseBound,
    LeaseChanged,
    LeaseLost,
    LeaseRenewed,
)
from dhcp4c.protocol.lease import Lease

__all__ = ["LeaseEvent", "LeaseEventKind", "LeaseObservers", "holds_lease", "kind_of"]


class LeaseEventKind(str, enum.Enum):
    """What happened to the lease; the values are plain strings (for JSON)."""

    #: A lease is held and none was before.
    BOUND = "bound"
    #: The held lease was extended; it configures the host exactly as before (new timers).
    RENEWED = "renewed"
    #: The held lease was replaced by one that configures the host differently.
    CHANGED = "changed"
    #: The lease is no longer held; `reason` says why (a `dhcp4c.protocol.events.LossReason`
    #: value).
    LOST = "lost"
    #: No lease is held and none is sought for `wait` seconds: the network prefers IPv6-only
    #: hosts (RFC 8925, with `ipv6_only_preferred`).
    IPV6_ONLY = "ipv6-only"


_KINDS: dict[type, LeaseEventKind] = {
    LeaseBound: LeaseEventKind.BOUND,
    LeaseRenewed: LeaseEventKind.RENEWED,
    LeaseChanged: LeaseEventKind.CHANGED,
    LeaseLost: LeaseEventKind.LOST,
    Ipv6OnlyPreferred: LeaseEventKind.IPV6_ONLY,
}


def kind_of(
    event: LeaseBound | LeaseRenewed | LeaseChanged | LeaseLost | Ipv6OnlyPreferred,
) -> LeaseEventKind:
    """The observer event a machine lease event is: one kind per event type, nothing inferred."""
    return _KINDS[type(event)]


@dataclass(frozen=True)
class LeaseEvent:
    """One change of the lease a client holds.

    Attributes:
        kind: what happened.
        lease: the lease held after the event; None for LOST and IPV6_ONLY.
        old: the lease held before the event; None for BOUND.
        reason: for LOST, why (a `LossReason` value: "expired", "nak", ...); else None.
        seq: the position of this event in the client's history, from 1.
        missed: how many events this subscriber did not receive just before this one, because
            it was slower than the client (they were replaced by this one).
        wait: for IPV6_ONLY, how long (seconds) DHCPv4 stays quiet; else None.
    """

    kind: LeaseEventKind
    lease: Lease | None
    old: Lease | None
    reason: str | None
    seq: int
    missed: int = 0
    wait: float | None = None


class _Subscription:
    __slots__ = ("receive", "send")

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[LeaseEvent](1)


class LeaseObservers:
    """The observers of one client's lease, and the latest event they were told.

    Publishing is synchronous and never blocks; see the module docstring for the coalescing
    rule that makes that possible.
    """

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []
        self._value: AsyncValue[LeaseEvent | None] = AsyncValue(None)
        self._seq = 0
        self._closed = False

    @property
    def value(self) -> AsyncValue[LeaseEvent | None]:
        """The latest event as an `AsyncValue` to wait on (None before the first); only
        `publish` assigns it."""
        return self._value

    @property
    def latest(self) -> LeaseEvent | None:
        """The latest event published, or None before the first one."""
        return self._value.value

    @property
    def lease(self) -> Lease | None:
        """The lease held according to the latest event."""
        latest = self._value.value
        return None if latest is None else latest.lease

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open (closed ones are counted until the next publish)."""
        return len(self._subscriptions)

    def subscribe(self) -> trio.MemoryReceiveChannel[LeaseEvent]:
        """Open a subscription: a receive channel of lease events, the current state first.

        Returns:
            A channel holding at most one pending event; close it (or use it in a `with`
            block) to unsubscribe. After `close()` it is already at its end.
        """
        subscription = _Subscription()
        if self._closed:
            subscription.send.close()
            return subscription.receive
        latest = self._value.value
        if latest is not None:
            subscription.send.send_nowait(replace(latest, missed=0))
        self._subscriptions.append(subscription)
        return subscription.receive

    def publish(
        self,
        kind: LeaseEventKind,
        lease: Lease | None,
        old: Lease | None,
        reason: str | None = None,
        *,
        wait: float | None = None,
    ) -> LeaseEvent:
        """Record an event and hand it to every subscriber without blocking.

        Returns:
            The event, with its `seq`.

        Raises:
            RuntimeError: after `close()`.
        """
        if self._closed:
            raise RuntimeError("lease observers are closed")
        self._seq += 1
        event = LeaseEvent(kind, lease, old, reason, self._seq, wait=wait)
        self._value.value = event  # wakes `wait_value` waiters (every event differs by `seq`)
        for subscription in tuple(self._subscriptions):
            self._offer(subscription, event)
        return event

    def _offer(self, subscription: _Subscription, event: LeaseEvent) -> None:
        missed = 0
        try:
            stale = subscription.receive.receive_nowait()
        except trio.WouldBlock:
            pass  # the subscriber took the previous event: nothing to coalesce
        except (trio.ClosedResourceError, trio.EndOfChannel):
            self._forget(subscription)
            return
        else:
            missed = stale.missed + 1
        try:
            subscription.send.send_nowait(replace(event, missed=missed) if missed else event)
        except trio.BrokenResourceError:
            self._forget(subscription)

    def _forget(self, subscription: _Subscription) -> None:
        subscription.send.close()
        self._subscriptions.remove(subscription)

    async def wait_lease(self) -> Lease:
        """Wait until a lease is held (return at once when one is) and return it.

        Subscribers woken by the same publication have run when it returns.
        """
        event = await self._value.wait_value(holds_lease)
        # `wait_value` returns in the scheduling batch the publication woke, alongside the
        # subscribers: one more checkpoint lets them take the event before our caller goes on.
        await trio.lowlevel.checkpoint()
        assert event is not None and event.lease is not None
        return event.lease

    def close(self) -> None:
        """End every subscription: pending events can still be read, then the channels end."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.send.close()
        self._subscriptions.clear()


def holds_lease(event: LeaseEvent | None) -> bool:
    """Whether a lease is held after `event` (the predicate for `wait_value`)."""
    return event is not None and event.lease is not None
