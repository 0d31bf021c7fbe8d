"""Address conflict detection driven by the shell: probe before use, announce, defend, give up.

On `autojump_clock` over the in-memory network with the in-process server, and a scripted ARP
link: hosts in `taken` answer probes for their address, `inject` puts another host's packet on
the link. The ACD decisions themselves are tested in tests/dhcp4c/protocol/test_acd.py.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

import pytest
import trio
import trio.testing

from dhcp4c.protocol.acd import (
    ANNOUNCE_INTERVAL,
    DEFEND_INTERVAL,
    PROBE_NUM,
    AcdConfig,
)
from dhcp4c.protocol.arp import OP_REPLY, ArpPacket, announcement
from dhcp4c.protocol.config import ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import Message, MessageType
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEventKind
from dhcp4c.testing.memory import MemoryLink, MemoryNetwork
from dhcp4c.testing.server import DEFAULT_POOL, ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory

HW = b"\x02\x00\x00\x00\x00\x01"
OTHER = b"\x02\x00\x00\x00\x00\x99"
FIRST = DEFAULT_POOL[0]
SHORT = ServerConfig(lease_time=1000, t1=500, t2=875)
_UNSPECIFIED = IPv4Address(0)


class FakeArpLink:
    def __init__(self, owner: FakeArp, address: IPv4Address) -> None:
        self.owner = owner
        self.watched = address
        self.closed = False
        self._send, self._receive = trio.open_memory_channel[bytes](64)

    def watch(self, address: IPv4Address) -> None:
        assert not self.closed
        self.watched = address

    async def send(self, packet: bytes, destination: bytes) -> None:
        assert not self.closed and destination == b"\xff" * 6
        arp = ArpPacket.parse(packet)
        self.owner.sent.append((trio.current_time(), arp))
        holder = self.owner.taken.get(arp.tpa)
        if arp.is_probe and holder is not None:
            # The holder answers the probe (RFC 826 reply; RFC 5227 §2.1.1's conflict).
            self.inject(ArpPacket(OP_REPLY, holder, arp.tpa, arp.sha, _UNSPECIFIED))

    def inject(self, packet: ArpPacket) -> None:
        self._send.send_nowait(packet.build() + bytes(18))  # with the Ethernet padding

    async def receive(self) -> bytes:
        return await self._receive.receive()

    def close(self) -> None:
        self.closed = True
        self._receive.close()


@dataclass
class FakeArp:
    taken: dict[IPv4Address, bytes] = field(default_factory=dict)
    sent: list[tuple[float, ArpPacket]] = field(default_factory=list)
    links: list[FakeArpLink] = field(default_factory=list)

    def factory(self, interface: str, hwaddr: bytes, address: IPv4Address) -> FakeArpLink:
        assert hwaddr == HW
        link = FakeArpLink(self, address)
        self.links.append(link)
        return link

    @property
    def link(self) -> FakeArpLink:
        assert self.links and not self.links[-1].closed
        return self.links[-1]

    def probes(self, address: IPv4Address) -> list[float]:
        return [t for t, p in self.sent if p.is_probe and p.tpa == address]

    def announcements(self, address: IPv4Address) -> list[float]:
        return [t for t, p in self.sent if p.is_announcement and p.spa == address]


@dataclass
class Net:
    net: MemoryNetwork
    link: MemoryLink
    nursery: trio.Nursery
    arp: FakeArp
    calls: list[tuple[float, Lease | None, Lease | None]] = field(default_factory=list)

    async def record(self, old: Lease | None, new: Lease | None) -> None:
        self.calls.append((trio.current_time(), old, new))

    def client(self, *, arp: bool = True, **config: Any) -> Client:
        return Client(
            "eth0",
            ClientConfig(**config),
            callback=self.record,
            transport_factory=lambda interface, address: self.link.open(),
            arp_factory=self.arp.factory if arp else None,
            rng=random.Random(0),
            hwaddr=HW,
        )

    def messages(self, kind: MessageType) -> list[tuple[float, Message]]:
        found = []
        for c in self.net.capture:
            if c.direction == "to_server":
                message = Message.parse(c.payload)
                if message.message_type is kind:
                    found.append((c.time, message))
        return found

    def acks(self) -> list[float]:
        return [
            c.time
            for c in self.net.capture
            if c.direction == "to_client"
            and Message.parse(c.payload).message_type is MessageType.ACK
        ]


@asynccontextmanager
async def network(
    taken: dict[IPv4Address, bytes] | None = None, server: ServerConfig = SHORT
) -> AsyncIterator[Net]:
    net = MemoryNetwork(random.Random(0))
    link = net.attach(HW)
    core = ServerCore(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, net.server(SHORT.server_id))
        yield Net(net, link, nursery, FakeArp(dict(taken or {})))
        nursery.cancel_scope.cancel()
    assert link.open_transports == 0


async def start(n: Net, client: Client) -> trio.CancelScope:
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await client.run()

    n.nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    return scope


async def test_free_address_is_bound_after_the_probes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client(acd_timeout=1.4)
        scope = await start(n, client)
        lease = await client.wait_bound()
        bound = trio.current_time()
        address = lease.address.ip
        [ack] = n.acks()
        timing = AcdConfig(hwaddr=HW, probe_timeout=1.4)
        probes = n.arp.probes(address)
        assert len(probes) == PROBE_NUM
        assert ack <= probes[0] <= ack + timing.probe_wait
        for before, after in itertools.pairwise(probes):
            assert timing.probe_min <= after - before <= timing.probe_max
        # RFC 5227 §2.1.1: available ANNOUNCE_WAIT after the last probe, not a moment sooner;
        # the callback ran then, and the first announcement (§2.3) follows it.
        assert bound == pytest.approx(probes[-1] + timing.announce_wait)
        assert bound - ack <= 1.4 + 1e-9
        assert [(t, old, new) for t, old, new in n.calls] == [(bound, None, lease)]
        assert n.arp.announcements(address) == [bound]
        await trio.sleep(ANNOUNCE_INTERVAL)
        await trio.testing.wait_all_tasks_blocked()
        assert n.arp.announcements(address) == [bound, bound + ANNOUNCE_INTERVAL]
        assert client.stats.sent["ARP-PROBE"] == PROBE_NUM
        assert client.stats.sent["ARP-ANNOUNCE"] == 2
        assert n.arp.link.watched == address
        scope.cancel()
    assert all(link.closed for link in n.arp.links)


async def test_taken_address_is_declined_and_never_applied(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network(taken={FIRST: OTHER}) as n:
        client = n.client()
        events = client.subscribe()
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert lease.address.ip != FIRST
        # The taken address was probed, declined, and never reached the callback or observers.
        assert n.arp.probes(FIRST)
        [(declined_at, decline)] = n.messages(MessageType.DECLINE)
        assert decline.options.requested_address == FIRST
        assert all(new is None or new.address.ip != FIRST for _, _, new in n.calls)
        assert [(old, new) for _, old, new in n.calls] == [(None, lease)]
        first = events.receive_nowait()
        assert (first.kind, first.lease) == (LeaseEventKind.BOUND, lease)
        # RFC 2131 §3.1: at least 10 s before discovering again.
        [_, second_discover] = [t for t, _ in n.messages(MessageType.DISCOVER)]
        assert second_discover >= declined_at + 10
        assert client.stats.acd["conflict-probe"] == 1
        assert n.arp.announcements(lease.address.ip)
        scope.cancel()


async def test_one_conflict_is_defended(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        events = client.subscribe()
        scope = await start(n, client)
        lease = await client.wait_bound()
        address = lease.address.ip
        await trio.sleep(5)
        n.arp.link.inject(announcement(OTHER, address))
        await trio.testing.wait_all_tasks_blocked()
        defended_at = trio.current_time()
        assert n.arp.announcements(address)[-1] == defended_at
        assert client.stats.acd["defended"] == 1
        # After DEFEND_INTERVAL a conflict is defended again, not a reason to give up.
        await trio.sleep(DEFEND_INTERVAL)
        n.arp.link.inject(announcement(OTHER, address))
        await trio.testing.wait_all_tasks_blocked()
        assert client.stats.acd["defended"] == 2
        assert client.lease == lease
        assert events.receive_nowait().kind is LeaseEventKind.BOUND
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
        assert not n.messages(MessageType.DECLINE)
        scope.cancel()


async def test_second_conflict_gives_the_address_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        events = client.subscribe()
        scope = await start(n, client)
        lease = await client.wait_bound()
        address = lease.address.ip
        assert events.receive_nowait().kind is LeaseEventKind.BOUND
        await trio.sleep(5)
        n.arp.link.inject(announcement(OTHER, address))
        await trio.sleep(1)
        n.arp.link.inject(announcement(OTHER, address))
        lost = await events.receive()
        lost_at = trio.current_time()
        assert (lost.kind, lost.reason, lost.old) == (LeaseEventKind.LOST, "conflict", lease)
        assert n.calls[-1] == (lost_at, lease, None)  # the callback removed the address
        [(declined_at, decline)] = n.messages(MessageType.DECLINE)
        assert (declined_at, decline.options.requested_address) == (lost_at, address)
        assert client.stats.acd == {"defended": 1, "conflict-bound": 1}
        # The client starts over on another address.
        again = await client.wait_bound()
        assert again.address.ip != address
        scope.cancel()


async def test_acd_off_opens_no_arp_link(autojump_clock: trio.testing.MockClock) -> None:
    async with network(taken={FIRST: OTHER}) as n:
        client = n.client(acd_timeout=None)
        scope = await start(n, client)
        lease = await client.wait_bound()
        # Today's timing: bound when the ACK arrives, on the first address offered.
        assert (lease.address.ip, trio.current_time()) == (FIRST, n.acks()[0])
        assert n.arp.links == [] and n.arp.sent == []
        scope.cancel()


async def test_custom_transport_without_arp_factory_has_no_acd(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network(taken={FIRST: OTHER}) as n:
        client = n.client(arp=False)
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert (lease.address.ip, trio.current_time()) == (FIRST, n.acks()[0])
        scope.cancel()


async def test_no_arp_socket_uses_the_lease_unprobed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:

        def refuse(interface: str, hwaddr: bytes, address: IPv4Address) -> FakeArpLink:
            raise PermissionError("no CAP_NET_RAW")

        n.arp.factory = refuse  # type: ignore[method-assign]
        client = n.client()
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert trio.current_time() == n.acks()[0]
        assert n.calls == [(n.acks()[0], None, lease)]
        assert client.stats.errors["arp-open"] == 1
        scope.cancel()


async def test_zero_timeout_announces_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client(acd_timeout=0)
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert trio.current_time() == n.acks()[0]
        assert n.arp.probes(lease.address.ip) == []
        assert n.arp.announcements(lease.address.ip) == [trio.current_time()]
        scope.cancel()


async def test_release_stops_acd_before_the_release(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client(release_on_stop=True)
        scope = await start(n, client)
        await client.wait_bound()
        sent_before = len(n.arp.sent)
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert n.messages(MessageType.RELEASE)
        assert all(link.closed for link in n.arp.links)
        assert len(n.arp.sent) == sent_before


async def test_conflict_count_survives_restarts(autojump_clock: trio.testing.MockClock) -> None:
    async with network(taken={FIRST: OTHER}) as n:
        client = n.client()
        scope = await start(n, client)
        await client.wait_bound()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        acd = client._acd
        assert acd is not None and acd.conflicts == 0  # an address proved free since
        scope = await start(n, client)
        await client.wait_bound()
        assert client._acd is acd
        scope.cancel()


async def test_a_known_lease_is_probed_before_it_is_relied_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        first = n.client()
        scope = await start(n, first)
        lease = await first.wait_bound()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        address = lease.address.ip
        # The next process starts from the lease file; meanwhile another host took the address.
        n.arp.taken[address] = OTHER
        n.calls.clear()
        client = Client(
            "eth0",
            ClientConfig(),
            callback=n.record,
            lease=lease,
            transport_factory=lambda interface, address: n.link.open(),
            arp_factory=n.arp.factory,
            rng=random.Random(1),
            hwaddr=HW,
        )
        events = client.subscribe()
        scope = await start(n, client)
        again = await client.wait_bound()
        assert again.address.ip != address
        # The INIT-REBOOT was confirmed, the probe found the address taken: the address the
        # previous process configured is removed, and nobody was ever told of it.
        [(_, decline)] = n.messages(MessageType.DECLINE)
        assert decline.options.requested_address == address
        assert [(old, new) for _, old, new in n.calls] == [(lease, None), (None, again)]
        bound = events.receive_nowait()
        assert (bound.kind, bound.lease) == (LeaseEventKind.BOUND, again)
        assert client.stats.acd["conflict-probe"] == 1
        scope.cancel()


async def test_an_ipv6_only_offer_probes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    # RFC 8925 with conflict detection on: an OFFER with option 108 takes no address, so there
    # is nothing to probe; observers hear of the wait and the client stays quiet.
    v6only = ServerConfig(lease_time=1000, t1=500, t2=875, extra_options={108: bytes([0, 0, 1, 0])})
    async with network(server=v6only) as n:
        client = n.client(ipv6_only_preferred=True, rapid_commit=False)
        with client.subscribe() as events:
            scope = await start(n, client)
            event = await events.receive()
        assert event.kind is LeaseEventKind.IPV6_ONLY and event.wait == 300
        assert n.calls == [] and n.messages(MessageType.REQUEST) == []
        assert n.arp.links == [] and client.stats.sent.get("ARP-PROBE", 0) == 0
        scope.cancel()
