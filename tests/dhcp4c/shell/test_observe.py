"""Lease observers: fan-out, current state first, coalescing for slow subscribers, cleanup."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest
import trio
import trio.testing

from dhcp4c.protocol.events import LeaseBound, LeaseChanged, LeaseLost, LeaseRenewed, LossReason
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.options import Options
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind, LeaseObservers, kind_of

BOUND, RENEWED, CHANGED, LOST = (
    LeaseEventKind.BOUND,
    LeaseEventKind.RENEWED,
    LeaseEventKind.CHANGED,
    LeaseEventKind.LOST,
)


def lease(address: str = "192.0.2.100/24", obtained: float = 0.0) -> Lease:
    return Lease(
        address=IPv4Interface(address),
        server_id=IPv4Address("192.0.2.1"),
        obtained=obtained,
        t1=obtained + 50,
        t2=obtained + 87.5,
        expiry=obtained + 100,
        routers=(),
        dns_servers=(),
        domain=None,
        search=(),
        mtu=None,
        routes=(),
        options=Options(),
    )


def test_publish_numbers_events_and_tracks_the_lease() -> None:
    observers = LeaseObservers()
    assert observers.latest is None and observers.lease is None
    first = lease()
    event = observers.publish(BOUND, first, None)
    assert event == LeaseEvent(BOUND, first, None, None, 1, 0)
    assert observers.lease is first
    lost = observers.publish(LOST, None, first, "expired")
    assert (lost.seq, lost.reason, lost.old) == (2, "expired", first)
    assert observers.lease is None
    assert LeaseEventKind.LOST.value == "lost"


async def test_every_subscriber_gets_every_event_when_keeping_up() -> None:
    observers = LeaseObservers()
    a, b = observers.subscribe(), observers.subscribe()
    leases = [lease(obtained=t) for t in (0, 50, 100)]
    observers.publish(BOUND, leases[0], None)
    for channel in (a, b):
        assert (await channel.receive()).kind is BOUND
    observers.publish(RENEWED, leases[1], leases[0])
    for channel in (a, b):
        event = await channel.receive()
        assert (event.kind, event.seq, event.missed) == (RENEWED, 2, 0)


async def test_new_subscriber_first_gets_the_current_state() -> None:
    observers = LeaseObservers()
    held = lease()
    observers.publish(BOUND, held, None)
    observers.publish(RENEWED, held, held)
    with observers.subscribe() as channel:
        event = channel.receive_nowait()
        assert (event.kind, event.lease, event.seq, event.missed) == (RENEWED, held, 2, 0)
        with pytest.raises(trio.WouldBlock):
            channel.receive_nowait()


async def test_subscriber_before_any_event_waits_for_the_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    observers = LeaseObservers()
    channel = observers.subscribe()
    with pytest.raises(trio.WouldBlock):
        channel.receive_nowait()
    received: list[LeaseEvent] = []

    async def reader() -> None:
        received.append(await channel.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(5)
        observers.publish(BOUND, lease(), None)
    assert [e.kind for e in received] == [BOUND]
    assert trio.current_time() == 5


async def test_slow_subscriber_gets_latest_with_missed_count() -> None:
    observers = LeaseObservers()
    slow = observers.subscribe()
    fast = observers.subscribe()
    a, b = lease("192.0.2.100/24"), lease("192.0.2.101/24")
    # The publisher never blocks, however many events a subscriber leaves unread.
    observers.publish(BOUND, a, None)
    assert (await fast.receive()).seq == 1
    observers.publish(RENEWED, a, a)
    assert (await fast.receive()).seq == 2
    observers.publish(CHANGED, b, a)
    assert (await fast.receive()).seq == 3
    observers.publish(LOST, None, b, "nak")
    assert (await fast.receive()).missed == 0
    event = slow.receive_nowait()
    assert (event.kind, event.seq, event.missed, event.reason) == (LOST, 4, 3, "nak")
    with pytest.raises(trio.WouldBlock):
        slow.receive_nowait()  # one buffered event at most: no backlog


async def test_many_events_do_not_grow_a_slow_subscriber() -> None:
    observers = LeaseObservers()
    channel = observers.subscribe()
    held = lease()
    observers.publish(BOUND, held, None)
    for _ in range(10_000):
        observers.publish(RENEWED, held, held)
    assert channel.statistics().current_buffer_used == 1
    event = channel.receive_nowait()
    assert (event.seq, event.missed) == (10_001, 10_000)


async def test_closing_a_subscription_cleans_up() -> None:
    observers = LeaseObservers()
    kept = observers.subscribe()
    with observers.subscribe():
        assert observers.subscribers == 2
    dropped = observers.subscribe()
    dropped.close()
    observers.publish(BOUND, lease(), None)
    assert observers.subscribers == 1
    assert kept.receive_nowait().kind is BOUND
    # Closed after an event was buffered for it: forgotten at the next publish.
    kept.close()
    observers.publish(LOST, None, lease(), "expired")
    assert observers.subscribers == 0


async def test_close_ends_every_subscription() -> None:
    observers = LeaseObservers()
    channel = observers.subscribe()
    observers.publish(BOUND, lease(), None)
    observers.close()
    assert [event.kind async for event in channel] == [BOUND]
    late = observers.subscribe()
    assert [event async for event in late] == []
    with pytest.raises(RuntimeError):
        observers.publish(LOST, None, lease(), "expired")


async def test_wait_lease(autojump_clock: trio.testing.MockClock) -> None:
    observers = LeaseObservers()
    held = lease()

    async def bind_later() -> None:
        await trio.sleep(3)
        observers.publish(BOUND, held, None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bind_later)
        assert await observers.wait_lease() is held
        assert trio.current_time() == 3
    # Already held: returns at once.
    assert await observers.wait_lease() is held
    assert trio.current_time() == 3


def test_each_machine_event_is_one_kind() -> None:
    first, second = lease(), lease("192.0.2.101/24")
    assert kind_of(LeaseBound(first)) is BOUND
    assert kind_of(LeaseRenewed(first)) is RENEWED
    assert kind_of(LeaseChanged(first, second)) is CHANGED
    assert kind_of(LeaseLost(first, LossReason.NAK)) is LOST
