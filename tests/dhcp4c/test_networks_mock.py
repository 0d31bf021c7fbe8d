"""Relays, moved networks and several servers: `Client` on the memory network, on the mock clock.

The twins of the namespace tests in `test_networks.py`, with exact times. The memory network is
one broadcast domain, so two pieces model what lies beyond it:

- `MemoryRelay` is a relay agent (RFC 2131 §4.1, RFC 1542 §4) on the client's link: it takes
  broadcasts, sets giaddr to its own address and hands them to a server on another subnet, and
  delivers that server's answers back onto the link.
- `serve_routed` serves a core that is *not* on the client's link: it sees only datagrams
  unicast to its address (routed to it), never the link's broadcasts.

Each server records what it received (`Seen`): the time, the path (relayed or direct) and the
message, so the tests can tell a renewal that went straight to the server from one that came
through the relay.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import trio
import trio.testing

from dhcp4c.protocol.config import ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import Message, MessageType
from dhcp4c.protocol.options import OptionCode, Options
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind
from dhcp4c.testing.memory import MemoryNetwork, ServerEndpoint
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory

HW = b"\x02\x00\x00\x00\x00\x07"
BOUND, RENEWED, LOST = LeaseEventKind.BOUND, LeaseEventKind.RENEWED, LeaseEventKind.LOST
DISCOVER, REQUEST = MessageType.DISCOVER, MessageType.REQUEST
ZERO = IPv4Address(0)
# A schedule without jitter, so retransmission times are exact (RFC 2131 §4.1).
EXACT: dict[str, Any] = {"retransmit_jitter": 0.0}

# The relay topology: the client's subnet with the relay as its router, the server elsewhere.
CLIENT_NET = IPv4Network("192.0.2.0/24")
RELAY = IPv4Address("192.0.2.1")
FAR_SERVER = IPv4Address("198.51.100.2")


@dataclass(frozen=True)
class Seen:
    """A datagram a server received: when, by which path, and what."""

    time: float
    path: str  # "relayed" (through the relay agent) or "direct" (unicast to the server)
    message: Message


@dataclass
class Recorder:
    """The client's lease events and callback calls, with their times."""

    events: list[tuple[float, LeaseEvent]] = field(default_factory=list)
    calls: list[tuple[float, Lease | None, Lease | None]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    async def until(self, count: int) -> None:
        while len(self.events) < count:
            await self.changed.wait()

    def kinds(self) -> list[LeaseEventKind]:
        return [event.kind for _, event in self.events]


async def serve_routed(
    core: ServerCore,
    endpoint: ServerEndpoint,
    seen: list[Seen],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `core` off the client's link: only unicasts to its address reach it (routed)."""
    task_status.started()
    while True:
        datagram = await endpoint.receive()
        if datagram.destination is None:
            continue  # a broadcast on a link this server is not on
        seen.append(Seen(trio.current_time(), "direct", Message.parse(datagram.payload)))
        replies = core.handle_datagram(datagram.payload, trio.current_time(), broadcast=False)
        for reply in replies:
            # Replies to ciaddr are routed back; the client's link is the only one here.
            await endpoint.send(reply.payload, datagram.hwaddr)


class MemoryRelay:
    """A relay agent on the client's link forwarding to a core on another subnet.

    It sets giaddr on what it forwards (RFC 1542 §4.1.1) and, as RFC 2131 §4.1 has the server
    reply to giaddr, delivers the core's replies back onto the link itself: broadcast when the
    reply is a broadcast, else to the requesting client. `seen` records what the core got.
    """

    def __init__(self, core: ServerCore, endpoint: ServerEndpoint, seen: list[Seen]) -> None:
        self.core = core
        self.endpoint = endpoint
        self.seen = seen
        self.online = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            datagram = await self.endpoint.receive()
            if datagram.destination is not None or not self.online:
                continue  # unicasts are routed, not relayed (RFC 1542 §4.1.1)
            message = Message.parse(datagram.payload)
            relayed = message.replace(giaddr=self.endpoint.address, hops=message.hops + 1)
            now = trio.current_time()
            self.seen.append(Seen(now, "relayed", relayed))
            for reply in self.core.handle_datagram(relayed.build(), now, broadcast=True):
                to = None if reply.destination is None else datagram.hwaddr
                await self.endpoint.send(reply.payload, to)


@asynccontextmanager
async def client_on(
    net: MemoryNetwork, *, lease: Lease | None = None, seed: int = 0, **config: Any
) -> AsyncIterator[tuple[Client, Recorder]]:
    """A running client on `net` (link `HW`) and the recorder of its events."""
    link = net.attach(HW)
    recorder = Recorder()

    async def callback(old: Lease | None, new: Lease | None) -> None:
        recorder.calls.append((trio.current_time(), old, new))

    client = Client(
        "eth0",
        ClientConfig(**config),
        hwaddr=HW,
        transport_factory=lambda interface, address: link.open(),
        rng=random.Random(seed),
        lease=lease,
        callback=callback,
    )
    async with trio.open_nursery() as nursery:

        async def record() -> None:
            with client.subscribe() as events:
                async for event in events:
                    recorder.events.append((trio.current_time(), event))
                    recorder.changed.set()
                    recorder.changed = trio.Event()

        nursery.start_soon(record)
        nursery.start_soon(client.run)
        yield client, recorder
        nursery.cancel_scope.cancel()
    assert link.open_transports == 0, "the client leaked a transport"


def sent(net: MemoryNetwork) -> list[tuple[float, IPv4Address | None, Message]]:
    """(time, destination, message) of everything the client put on the network."""
    return [
        (c.time, c.destination, Message.parse(c.payload))
        for c in net.capture
        if c.direction == "to_server"
    ]


def lease_file(address: str, server: str, *, at: float = -100) -> Lease:
    """A lease from a previous run (what `--lease-dir` keeps), on the client's clock."""
    return Lease(
        address=IPv4Interface(address),
        server_id=IPv4Address(server),
        obtained=at,
        t1=at + 500,
        t2=at + 875,
        expiry=at + 1000,
        routers=(),
        dns_servers=(),
        domain=None,
        search=(),
        mtu=None,
        routes=(),
        options=Options(),
    )


# --- a server behind a relay -----------------------------------------------------------------


def far_server(**changes: Any) -> ServerConfig:
    """A server on 198.51.100.0/24 handing out 192.0.2.0/24 (the relay's subnet) for 1000 s."""
    values: dict[str, Any] = {
        "server_id": FAR_SERVER,
        "network": CLIENT_NET,
        "pool_start": IPv4Address("192.0.2.100"),
        "pool_end": IPv4Address("192.0.2.199"),
        "routers": (RELAY,),
        "lease_time": 1000,
        "t1": 500,
        "t2": 875,
    }
    values.update(changes)
    return ServerConfig(**values)


async def test_relay_renews_unicast_rebinds_relayed_and_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    core = ServerCore(far_server())
    seen: list[Seen] = []
    relay = MemoryRelay(core, net.server(RELAY), seen)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        direct = net.server(FAR_SERVER)
        routed = trio.CancelScope()

        async def serve() -> None:
            with routed:
                await serve_routed(core, direct, seen)

        nursery.start_soon(serve)
        async with client_on(net, **EXACT) as (client, recorder):
            lease = await client.wait_bound()
            assert trio.current_time() == 0
            assert lease.address == IPv4Interface("192.0.2.100/24")
            assert lease.server_id == FAR_SERVER and lease.routers == (RELAY,)
            # The lease came through the relay.
            assert [(s.path, s.message.giaddr) for s in seen] == [("relayed", RELAY)]

            # T1: the REQUEST goes straight to the server (RFC 2131 §4.4.5), from the leased
            # address, and the relay plays no part in it.
            await recorder.until(2)
            assert recorder.events[1][0] == 500 and recorder.events[1][1].kind is RENEWED
            _, path, renewal = seen[1].time, seen[1].path, seen[1].message
            assert (seen[1].time, path, renewal.message_type) == (500, "direct", REQUEST)
            assert (renewal.ciaddr, renewal.giaddr) == (lease.address.ip, ZERO)
            assert renewal.options.server_identifier is None
            assert sent(net)[-1][:2] == (500, FAR_SERVER)

            # The route to the server breaks: renewals go unanswered, and at T2 the broadcast
            # REQUEST reaches the server through the relay (giaddr set).
            routed.cancel()
            direct.close()
            await recorder.until(3)
            assert recorder.events[2][0] == 500 + 875 and recorder.events[2][1].kind is RENEWED
            rebind = seen[-1]
            assert (rebind.time, rebind.path, rebind.message.giaddr) == (1375, "relayed", RELAY)
            assert rebind.message.ciaddr == lease.address.ip
            client_view = [(t, d) for t, d, m in sent(net) if m.ciaddr == lease.address.ip]
            # RFC 2131 §4.4.5: from T1 (1000) half the time left to T2, at least 60 s.
            assert client_view[-5:-2] == [
                (1000, FAR_SERVER),
                (1187.5, FAR_SERVER),
                (1281.25, FAR_SERVER),
            ]
            assert client_view[-2:] == [(1341.25, FAR_SERVER), (1375, None)]

            # Nobody answers any more: the lease expires and its address is removed.
            relay.online = False
            await recorder.until(4)
            lost_at, lost = recorder.events[3]
            assert (lost_at, lost.kind, lost.reason) == (1375 + 1000, LOST, "expired")
            assert recorder.calls[-1][0] == 2375 and recorder.calls[-1][2] is None
            assert client.lease is None
        nursery.cancel_scope.cancel()


# --- moved networks --------------------------------------------------------------------------

NET_B = IPv4Network("203.0.113.0/24")
SERVER_B = IPv4Address("203.0.113.1")


def moved_server() -> ServerCore:
    """The server of network B: authoritative, so it NAKs an address from network A."""
    return ServerCore(
        ServerConfig(
            server_id=SERVER_B,
            network=NET_B,
            pool_start=IPv4Address("203.0.113.100"),
            pool_end=IPv4Address("203.0.113.199"),
            routers=(SERVER_B,),
            authoritative=True,
        )
    )


OLD = lease_file("192.0.2.150/24", "192.0.2.1")


async def test_moved_network_init_reboot_nak_then_bound_on_the_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    core = moved_server()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, net.server(SERVER_B))
        async with client_on(net, lease=OLD) as (client, recorder):
            lease = await client.wait_bound()
            assert lease.address == IPv4Interface("203.0.113.100/24")
            assert lease.server_id == SERVER_B
            messages = sent(net)
            assert [m.message_type for _, _, m in messages] == [REQUEST, DISCOVER]
            # INIT-REBOOT: option 50, no ciaddr, no server id, broadcast (RFC 2131 table 5).
            _, destination, reboot = messages[0]
            assert destination is None and reboot.ciaddr == ZERO
            assert reboot.options.requested_address == OLD.address.ip
            assert reboot.options.server_identifier is None
            assert core.stats.sent[MessageType.NAK] == 1
            # The callback removed the old address before the new one came.
            assert recorder.calls[0][1:] == (OLD, None)
            assert recorder.calls[1][1:] == (None, lease)
        nursery.cancel_scope.cancel()


async def test_moved_network_discovers_at_once_after_the_nak(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, moved_server(), net.server(SERVER_B))
        async with client_on(net, lease=OLD, backoff_initial=1.0, reboot_nak_grace=0.25) as (
            client,
            _,
        ):
            await client.wait_bound()
            # Well under the first backoff: the NAK says "not here", no failure to wait out
            # (RFC 2131 §3.2 step 3: restart the configuration process). It comes from another
            # server than the lease's, so it is held for the grace (the lease's server might
            # still ACK), and taken when the grace passes: the DISCOVER goes out right then.
            assert [t for t, _, m in sent(net) if m.message_type is DISCOVER] == [0.25]
            assert trio.current_time() < 0.5
        nursery.cancel_scope.cancel()


# --- two servers on one link -----------------------------------------------------------------

SERVER_1 = IPv4Address("192.0.2.1")
SERVER_2 = IPv4Address("192.0.2.2")


def link_server(server_id: IPv4Address, first: str, last: str, **changes: Any) -> ServerConfig:
    values: dict[str, Any] = {
        "server_id": server_id,
        "network": CLIENT_NET,
        "pool_start": IPv4Address(first),
        "pool_end": IPv4Address(last),
        "routers": (server_id,),
        "rapid_commit": False,
        "authoritative": True,
    }
    values.update(changes)
    return ServerConfig(**values)


async def test_two_servers_request_names_the_chosen_one_and_it_answers_the_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    # The second answers later, so the client takes the first offer (its only rule).
    one = ServerCore(link_server(SERVER_1, "192.0.2.100", "192.0.2.149"))
    two = ServerCore(link_server(SERVER_2, "192.0.2.150", "192.0.2.199", reply_delay=0.2))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, one, net.server(SERVER_1))
        await nursery.start(serve_memory, two, net.server(SERVER_2))
        async with client_on(net) as (client, _):
            lease = await client.wait_bound()
            await trio.sleep(1)  # the slower server's OFFER arrives and is ignored
        assert lease.server_id == SERVER_1
        assert lease.address == IPv4Interface("192.0.2.100/24")
        assert one.stats.sent[MessageType.OFFER] == 1 and two.stats.sent[MessageType.OFFER] == 1
        requests = [m for _, _, m in sent(net) if m.message_type is REQUEST]
        assert len(requests) == 1
        # RFC 2131 §4.4.1: the REQUEST names the chosen server (option 54) and its offer.
        assert requests[0].options.server_identifier == SERVER_1
        assert requests[0].options.requested_address == lease.address.ip
        assert two.stats.sent.get(MessageType.ACK, 0) == 0
        assert not two.bindings or all(b.address != lease.address.ip for b in two.bindings.values())

        # A restart with the lease file: INIT-REBOOT, answered by the same server with the same
        # address. The other one, authoritative and without a record of the client, NAKs it
        # (RFC 2131 §4.3.2 would have it stay silent; dnsmasq's authoritative mode NAKs too),
        # but after the ACK: the bound client ignores it.
        net.capture.clear()
        acks_before = one.stats.sent[MessageType.ACK]
        kept = lease_file(str(lease.address), str(lease.server_id), at=-1)
        async with client_on(net, lease=kept, seed=1) as (client, recorder):
            again = await client.wait_bound()
            await trio.sleep(1)
            assert recorder.kinds() == [BOUND]
            assert client.lease == again
        assert (again.address, again.server_id) == (lease.address, SERVER_1)
        assert trio.current_time() >= 1
        ((_, destination, reboot),) = [(t, d, m) for t, d, m in sent(net)]
        assert destination is None and reboot.options.server_identifier is None
        assert reboot.options.requested_address == lease.address.ip
        assert one.stats.sent[MessageType.ACK] == acks_before + 1
        assert two.stats.sent.get(MessageType.ACK, 0) == 0
        assert two.stats.sent.get(MessageType.NAK, 0) == 1
        nursery.cancel_scope.cancel()


def test_option_54_is_the_server_identifier() -> None:
    # The tests above read option 54 through `server_identifier`; keep that tie explicit.
    assert OptionCode.SERVER_IDENTIFIER == 54


async def test_two_servers_the_other_naks_first_and_the_lease_is_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    one = ServerCore(link_server(SERVER_1, "192.0.2.100", "192.0.2.149"))
    two = ServerCore(link_server(SERVER_2, "192.0.2.150", "192.0.2.199", reply_delay=0.2))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, one, net.server(SERVER_1))
        await nursery.start(serve_memory, two, net.server(SERVER_2))
        async with client_on(net) as (client, _):
            lease = await client.wait_bound()
        assert lease.server_id == SERVER_1
        # Now the lease's server is the slower one: the other's NAK comes first.
        one.reconfigure(dataclasses.replace(one.config, reply_delay=0.3))
        net.capture.clear()
        kept = lease_file(str(lease.address), str(lease.server_id), at=-1)
        async with client_on(net, lease=kept, seed=1) as (client, recorder):
            again = await client.wait_bound()
            await trio.sleep(1)
        assert two.stats.sent[MessageType.NAK] == 1
        assert one.stats.sent[MessageType.ACK] == 2
        assert (again.address, again.server_id) == (lease.address, SERVER_1)
        assert [m.message_type for _, _, m in sent(net)] == [REQUEST]
        assert recorder.kinds() == [BOUND]
        nursery.cancel_scope.cancel()
