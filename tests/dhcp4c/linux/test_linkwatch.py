"""Link changes: link messages decoded with pyroute2 (hand-made and recorded from a kernel), the
tracker, `run_interface` on a scripted link (mock clock, in-memory network) and on real veths in
network namespaces (real time), and the watch's socket handling (lost notifications included).
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from pyroute2.arp import ARPHRD_ETHER
from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTNLGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOWER_UP, IFF_UP

from dhcp4c.consumers import netconfig
from dhcp4c.linux.interface import read_ethernet
from dhcp4c.linux.linkwatch import (
    HWADDR_CHANGED,
    INTERFACE_GONE,
    CarrierChanged,
    HwaddrChanged,
    LinkGone,
    LinkTracker,
    LinkWatch,
)
from dhcp4c.linux.rtnl import (
    Link,
    NetlinkParseError,
    getlink_request,
    open_socket,
    parse_error,
    parse_link,
    parse_messages,
)
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import State
from dhcp4c.protocol.message import Message, MessageType
from dhcp4c.shell.client import Client, default_transport
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind
from dhcp4c.shell.runner import run_interface
from dhcp4c.shell.transport import Transport
from dhcp4c.testing import netns
from dhcp4c.testing.memory import MemoryLink, MemoryNetwork
from dhcp4c.testing.server import Exchange, ServerConfig, ServerCore, classify
from dhcp4c.testing.server_net import serve_memory, serve_udp
from supervisor import NodeState, run, signal
from supervisor import Signal as SupervisorSignal
from supervisor.testing import harness
from support.clients import split_options

# -- netlink bytes ------------------------------------------------------------------------------
# The decoding is `dhcp4c.linux.rtnl`'s (pyroute2's); its link messages are tested here, as the
# watch
# reads them, next to the helpers that the watch's socket tests below share.

HW = bytes.fromhex("020000000001")
HW2 = bytes.fromhex("020000000099")
UP = IFF_UP | IFF_LOWER_UP | 0x40 | 0x1000  # UP, LOWER_UP, RUNNING, MULTICAST


def rtattr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + bytes(-len(raw) % 4)


def nlmsg(kind: int, payload: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def link_message(
    kind: int = RTM_NEWLINK,
    *,
    index: int = 7,
    name: str | None = "eth0",
    hwaddr: bytes | None = HW,
    flags: int = UP,
    carrier: int | None = 1,
    family: int = 0,
    extra: bytes = b"",
) -> bytes:
    body = struct.pack("=BxHiII", family, 1, index, flags, 0)
    if name is not None:
        body += rtattr(3, name.encode() + b"\0")
    if hwaddr is not None:
        body += rtattr(1, hwaddr)
    body += rtattr(4, struct.pack("=I", 1500))
    body += rtattr(16, bytes([6]))
    if carrier is not None:
        body += rtattr(33, bytes([carrier]))
    return nlmsg(kind, body + extra)


def one_link(data: bytes) -> Link:
    (message,) = parse_messages(data)
    return parse_link(message)


def test_parse_a_link_message() -> None:
    (message,) = parse_messages(link_message())
    assert message["header"]["type"] == RTM_NEWLINK
    assert parse_link(message) == Link(
        index=7,
        name="eth0",
        hwaddr=HW,
        flags=UP,
        carrier=True,
        operstate="UP",
        mtu=1500,
        ifi_type=ARPHRD_ETHER,
    )


RECORDED = Path(__file__).parent / "data" / "rtnl"  # answers of a real kernel (see README)


def test_decode_recorded_link_messages() -> None:
    veth = one_link((RECORDED / "getlink-veth.bin").read_bytes())
    assert veth == Link(
        index=2,
        name="rec0",
        hwaddr=bytes.fromhex("020000000001"),
        flags=veth.flags,
        carrier=True,
        operstate="UP",
        mtu=1500,
        ifi_type=ARPHRD_ETHER,
    )
    assert veth.flags & IFF_UP and veth.flags & IFF_LOWER_UP and veth.usable
    gone = one_link((RECORDED / "dellink-veth.bin").read_bytes())
    assert (gone.index, gone.name, gone.deleted, gone.usable) == (2, "rec0", True, False)
    (refusal,) = parse_messages((RECORDED / "getlink-enodev.bin").read_bytes())
    assert (refusal["header"]["sequence_number"], parse_error(refusal)) == (4, errno.ENODEV)


def test_a_non_mac_hardware_address_is_unknown() -> None:
    # A tunnel's IFLA_ADDRESS is its IPv4 address: pyroute2 decodes only MACs there.
    tunnel = link_message(hwaddr=bytes([192, 0, 2, 1]))
    assert (one_link(tunnel).hwaddr, one_link(tunnel).name) == (None, "eth0")


def test_unknown_and_nested_attributes_are_skipped() -> None:
    nested = rtattr(0x8000 | 18, rtattr(1, b"veth"))  # IFLA_LINKINFO with NLA_F_NESTED
    extra = rtattr(7, struct.pack("=I", 3)) + nested + rtattr(200, b"\x01\x02\x03")
    link = one_link(link_message(extra=extra))
    assert (link.name, link.hwaddr, link.carrier) == ("eth0", HW, True)


def test_several_messages_in_one_datagram_with_padding() -> None:
    data = (
        link_message(name="a")  # "a\0" pads to 4: the message lengths are aligned
        + link_message(RTM_DELLINK, index=8, name="bcde")
        + nlmsg(NLMSG_DONE, b"\0\0\0\0")
    )
    messages = parse_messages(data)
    assert [m["header"]["type"] for m in messages] == [RTM_NEWLINK, RTM_DELLINK, NLMSG_DONE]
    gone = parse_link(messages[1])
    assert (gone.index, gone.name, gone.deleted, gone.usable) == (8, "bcde", True, False)


@pytest.mark.parametrize(
    ("flags", "carrier", "usable"),
    [
        (UP, 1, True),
        (UP, 0, False),  # IFLA_CARRIER wins over the flags
        (UP & ~IFF_UP, 1, False),  # administratively down
        (UP, None, True),  # no IFLA_CARRIER: IFF_LOWER_UP decides
        (UP & ~IFF_LOWER_UP, None, False),
    ],
)
def test_usable(flags: int, carrier: int | None, usable: bool) -> None:
    assert one_link(link_message(flags=flags, carrier=carrier)).usable is usable


@pytest.mark.parametrize(
    "data",
    [
        b"\x10\x00\x00",  # shorter than a header
        struct.pack("=IHHII", 15, RTM_NEWLINK, 0, 0, 0),  # length below the header
        struct.pack("=IHHII", 64, RTM_NEWLINK, 0, 0, 0),  # longer than the datagram
        link_message() + b"\x01\x02",  # trailing garbage
    ],
)
def test_malformed_datagrams(data: bytes) -> None:
    with pytest.raises(NetlinkParseError):
        parse_messages(data)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack("=BxHiII", 0, 1, 7, 0, 0)[:10],  # truncated ifinfomsg
        struct.pack("=BxHiII", 0, 1, 7, 0, 0) + struct.pack("=HH", 12, 3) + b"ab",  # overlong
        struct.pack("=BxHiII", 0, 1, 7, 0, 0) + struct.pack("=HH", 2, 3),  # below its header
        struct.pack("=BxHiII", 0, 1, 7, 0, 0) + rtattr(33, b""),  # empty IFLA_CARRIER
        struct.pack("=BxHiII", 0, 1, 7, 0, 0) + rtattr(4, b"\x01"),  # short IFLA_MTU
    ],
)
def test_malformed_link_messages(payload: bytes) -> None:
    with pytest.raises(NetlinkParseError):
        one_link(nlmsg(RTM_NEWLINK, payload))


def test_a_stub_too_short_for_an_attribute_is_ignored() -> None:
    # pyroute2 stops reading attributes where fewer bytes than a header are left.
    link = one_link(nlmsg(RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 7, 0, 0) + b"\x08\x00"))
    assert (link.index, link.name) == (7, None)


def test_parse_link_refuses_other_types() -> None:
    (done,) = parse_messages(nlmsg(NLMSG_DONE, bytes(4)))
    with pytest.raises(NetlinkParseError):
        parse_link(done)


def test_parse_error() -> None:
    (message,) = parse_messages(nlmsg(NLMSG_ERROR, struct.pack("=i", -19) + bytes(16), seq=3))
    assert (message["header"]["sequence_number"], parse_error(message)) == (3, 19)
    with pytest.raises(NetlinkParseError):
        parse_messages(nlmsg(NLMSG_ERROR, b"\x00"))  # no room for the error code
    with pytest.raises(NetlinkParseError):
        parse_error(parse_messages(link_message())[0])


def test_getlink_request_layout() -> None:
    data = getlink_request("eth0", 5)
    assert len(data) == 16 + 16 + 12 and len(data) % 4 == 0
    assert struct.unpack_from("=IHHII", data) == (len(data), RTM_GETLINK, 1, 5, 0)
    assert struct.unpack_from("=BxHiII", data, 16) == (0, 0, 0, 0, 0)
    assert data[32:] == struct.pack("=HH", 9, 3) + b"eth0\0" + bytes(3)
    for bad in ("", "x" * 16, "a\0b"):
        with pytest.raises(ValueError):
            getlink_request(bad, 1)


# -- the tracker --------------------------------------------------------------------------------


def snapshot(**changes: Any) -> Link:
    values: dict[str, Any] = {"index": 7, "name": "eth0", "hwaddr": HW, "flags": UP}
    values.update(changes)
    return Link(**values)


def test_tracker_steps() -> None:
    tracker = LinkTracker("eth0", hwaddr=HW)
    assert not tracker.known
    assert tracker.update(snapshot(index=3, name="eth1")) == []  # not ours
    assert tracker.update(snapshot(family=7)) == []  # AF_BRIDGE: not the link itself
    assert not tracker.known
    assert tracker.update(snapshot()) == []  # as the client assumes: up, same address
    assert (tracker.known, tracker.index) == (True, 7)
    assert tracker.update(snapshot(flags=UP & ~IFF_LOWER_UP)) == [CarrierChanged(False)]
    assert tracker.update(snapshot(flags=UP & ~IFF_LOWER_UP)) == []
    assert tracker.update(snapshot(carrier=True)) == [CarrierChanged(True)]
    assert tracker.update(snapshot(index=9, hwaddr=HW2)) == []  # another index
    assert tracker.update(snapshot(hwaddr=HW2, carrier=False)) == [
        CarrierChanged(False),
        HwaddrChanged(HW2),
    ]
    assert tracker.update(snapshot(hwaddr=HW2, deleted=True, family=7)) == []  # a bridge port
    assert tracker.update(snapshot(deleted=True)) == [LinkGone()]
    assert tracker.update(snapshot()) == []  # gone for good


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        (snapshot(flags=UP & ~IFF_UP), [CarrierChanged(False)]),  # a dead link at start-up
        (snapshot(hwaddr=HW2), [HwaddrChanged(HW2)]),  # changed since the client was made
        (Link(index=0, name="eth0", deleted=True), [LinkGone()]),  # no such interface
    ],
)
def test_tracker_first_snapshot(first: Link, expected: list[object]) -> None:
    assert LinkTracker("eth0", hwaddr=HW).update(first) == expected


def test_tracker_learns_the_address_and_treats_a_rename_as_gone() -> None:
    tracker = LinkTracker("eth0")
    assert tracker.update(snapshot()) == []
    assert tracker.hwaddr == HW
    assert tracker.update(snapshot(name="wan0")) == [LinkGone()]


# -- run_interface on a scripted link -----------------------------------------------------------

SERVER = IPv4Address("192.0.2.1")
CONFIG = ServerConfig(lease_time=1000, t1=500, t2=875)


class ScriptedLinks:
    """A `LinkSource` the test feeds; it also mirrors the carrier onto the memory link."""

    def __init__(self, link: MemoryLink) -> None:
        self.link = link
        self._send, self._receive = trio.open_memory_channel[list[Link]](math.inf)
        self.closed = False

    def push(self, **changes: Any) -> None:
        snap = snapshot(**changes)
        self.link.carrier = snap.usable
        self._send.send_nowait([snap])

    async def receive(self) -> list[Link]:
        return await self._receive.receive()

    def close(self) -> None:
        self.closed = True


@dataclass
class Net:
    net: MemoryNetwork
    link: MemoryLink
    core: ServerCore
    nursery: trio.Nursery

    def collect(self, client: Client) -> list[LeaseEvent]:
        """Every lease event of `client` from now on (a subscriber that is never late)."""
        return collect(self.nursery, client)

    def sent(self, since: float = 0.0) -> list[Message]:
        return [
            Message.parse(c.payload)
            for c in self.net.capture
            if c.direction == "to_server" and c.time >= since
        ]

    def client(self, **config: Any) -> Client:
        client_config, options = split_options(config)
        return Client(
            "eth0",
            client_config,
            hwaddr=HW,
            transport_factory=lambda interface, address: self.link.open(),
            rng=random.Random(0),
            **options,
        )


@asynccontextmanager
async def network() -> AsyncIterator[Net]:
    net = MemoryNetwork(random.Random(0))
    link = net.attach(HW)
    core = ServerCore(CONFIG)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, net.server(SERVER))
        yield Net(net, link, core, nursery)
        nursery.cancel_scope.cancel()


def collect(nursery: trio.Nursery, client: Client) -> list[LeaseEvent]:
    found: list[LeaseEvent] = []

    async def read(channel: trio.MemoryReceiveChannel[LeaseEvent]) -> None:
        async for event in channel:
            found.append(event)

    nursery.start_soon(read, client.subscribe())
    return found


async def test_a_dead_link_at_start_up_is_never_transmitted_into(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        links = ScriptedLinks(n.link)
        links.push(flags=UP & ~IFF_LOWER_UP)
        async with harness(partial(run_interface, client, source=links)) as handle:
            await trio.sleep(300)
            assert n.sent() == [] and n.net.stats["to_server.carrier_down"] == 0
            assert client.state is State.INIT
            links.push()
            lease = await client.wait_bound()
            assert [m.message_type for m in n.sent()] == [MessageType.DISCOVER]  # rapid commit
            await handle.wait_settled()
            assert handle.states() == {"root": NodeState.HEALTHY}
        assert lease.address.ip == IPv4Address("192.0.2.100")
        assert links.closed


async def test_carrier_down_pauses_and_up_reboots_with_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        got = n.collect(client)
        links = ScriptedLinks(n.link)
        links.push()
        async with harness(partial(run_interface, client, source=links)):
            lease = await client.wait_bound()
            await trio.sleep(100)
            links.push(carrier=False)
            await trio.sleep(700)  # past T1 and T2: a running client would renew and rebind
            assert client.state is State.INIT_REBOOT
            assert n.sent(since=1) == [] and n.net.stats["to_server.carrier_down"] == 0
            assert client.lease == lease  # still valid: kept, as RFC 2131 §3.2 allows
            up = trio.current_time()
            links.push()
            await trio.sleep(1)
            (request,) = n.sent(since=up)
            assert request.message_type is MessageType.REQUEST
            assert request.options.requested_address == lease.address.ip  # INIT-REBOOT
            assert request.options.server_identifier is None and int(request.ciaddr) == 0
            assert n.core.stats.exchanges[Exchange.INIT_REBOOT] == 1
            assert client.state.name == "BOUND" and client.lease is not None
            assert client.lease.address == lease.address
        assert [e.kind for e in got] == [LeaseEventKind.BOUND, LeaseEventKind.RENEWED]


async def test_carrier_back_after_expiry_discovers(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        links = ScriptedLinks(n.link)
        links.push()
        async with harness(partial(run_interface, client, source=links)):
            await client.wait_bound()
            links.push(carrier=False)
            await trio.sleep(1100)  # past the expiry: lost while down
            assert client.lease is None and n.sent(since=1) == []
            up = trio.current_time()
            links.push()
            await client.wait_bound()
            assert [m.message_type for m in n.sent(since=up)] == [MessageType.DISCOVER]


async def test_a_nak_on_carrier_up_falls_back_to_discovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        links = ScriptedLinks(n.link)
        links.push()
        async with harness(partial(run_interface, client, source=links)):
            first = await client.wait_bound()
            links.push(carrier=False)
            await trio.sleep(10)
            n.core.reconfigure(
                ServerConfig(
                    lease_time=1000,
                    t1=500,
                    t2=875,
                    network=IPv4Network("192.0.2.128/25"),
                    pool_start=IPv4Address("192.0.2.150"),
                    pool_end=IPv4Address("192.0.2.160"),
                ),
                forget=True,
            )
            up = trio.current_time()
            links.push()
            await trio.sleep(30)
            types = [m.message_type for m in n.sent(since=up)]
            assert types[:2] == [MessageType.REQUEST, MessageType.DISCOVER]
            assert n.core.stats.naks  # the INIT-REBOOT was refused
            assert client.lease is not None and client.lease.address != first.address


async def test_silence_on_carrier_up_is_bounded_then_falls_back_to_discovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Issue #6: carrier up does INIT-REBOOT with the current lease, bounded, and falls back to
    # discovery on silence: the link may now lead to another network. The lease is dropped
    # ("unconfirmed") and the DISCOVERs ask for the old address again (RFC 2131 §4.4.1).
    async with network() as n:
        client = n.client()
        got = n.collect(client)
        links = ScriptedLinks(n.link)
        links.push()
        async with harness(partial(run_interface, client, source=links)):
            lease = await client.wait_bound()
            links.push(carrier=False)
            await trio.sleep(10)
            n.core.stop()  # the server is gone while the link was down
            up = trio.current_time()
            links.push()
            await trio.sleep(120)
            sent = n.sent(since=up)
            kinds = [m.message_type for m in sent]
            assert kinds[:4] == [MessageType.REQUEST] * 4  # max_request_tries
            assert set(kinds[4:]) == {MessageType.DISCOVER}
            assert len(kinds) > 4
            assert all(m.options.requested_address == lease.address.ip for m in sent[4:])
            assert client.lease is None
            assert got[-1].kind == "lost" and got[-1].reason == "unconfirmed"
            assert lease.expiry > trio.current_time()  # dropped well before its expiry


async def test_a_new_hwaddr_starts_over(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[tuple[Lease | None, Lease | None]] = []

    async def callback(old: Lease | None, new: Lease | None) -> None:
        calls.append((old, new))

    async with network() as n:
        client = n.client(callback=callback)
        got = n.collect(client)
        links = ScriptedLinks(n.link)
        links.push()
        async with harness(partial(run_interface, client, source=links)):
            first = await client.wait_bound()
            await trio.sleep(10)
            changed = trio.current_time()
            links.push(hwaddr=HW2)
            await trio.sleep(1)
            second = await client.wait_bound()
            (discover,) = n.sent(since=changed)  # rapid commit: one DISCOVER, one ACK
            assert discover.message_type is MessageType.DISCOVER
            assert discover.chaddr[:6] == HW2 and client.hwaddr == HW2
            assert second.address != first.address  # a new client to the server
        assert [(e.kind, e.reason) for e in got] == [
            (LeaseEventKind.BOUND, None),
            (LeaseEventKind.LOST, HWADDR_CHANGED),
            (LeaseEventKind.BOUND, None),
        ]
        assert [e.seq for e in got] == [1, 2, 3]
        assert calls == [(None, first), (first, None), (None, second)]


@pytest.mark.parametrize("started_with_carrier", [False, True])
async def test_a_client_started_by_the_caller_is_taken_over(
    autojump_clock: trio.testing.MockClock, started_with_carrier: bool
) -> None:
    # The command starts the client before it imports this module (`running`): the first
    # snapshot corrects the carrier it started with, and a change of identity stops that run
    # before the client starts over in run_interface's own.
    async with network() as n:
        client = n.client()
        got = n.collect(client)
        client.set_carrier(started_with_carrier)
        scope, ended = trio.CancelScope(), trio.Event()
        stops: list[float] = []

        async def run_client() -> None:
            with scope:
                await client.run()
            ended.set()

        async def stop() -> None:
            stops.append(trio.current_time())
            scope.cancel()
            await ended.wait()

        n.nursery.start_soon(run_client)
        await trio.sleep(1)
        assert client.state is (State.BOUND if started_with_carrier else State.INIT)
        assert len(n.sent()) == (1 if started_with_carrier else 0)  # none into a dead link
        links = ScriptedLinks(n.link)
        links.push(flags=UP if not started_with_carrier else UP & ~IFF_LOWER_UP)
        async with harness(partial(run_interface, client, source=links, running=stop)):
            await trio.sleep(1)
            if started_with_carrier:
                # The link is dead after all: nothing is sent until it comes back, and then an
                # INIT-REBOOT verifies the lease.
                assert client.carrier.value is False and client.state is State.INIT_REBOOT
                links.push()
                await trio.sleep(1)
                assert client.state is State.BOUND
                assert n.sent()[-1].message_type is MessageType.REQUEST
            first = await client.wait_bound()
            assert client.carrier.value is True and stops == []
            await trio.sleep(10)
            links.push(hwaddr=HW2)
            await client.latest.wait_value(lambda e: e is not None and e.lease is None)
            assert len(stops) == 1 and ended.is_set()
            second = await client.wait_bound()
            assert client.hwaddr == HW2 and second.address != first.address
        renewed = [(LeaseEventKind.RENEWED, None)] if started_with_carrier else []
        assert [(e.kind, e.reason) for e in got] == [
            (LeaseEventKind.BOUND, None),
            *renewed,
            (LeaseEventKind.LOST, HWADDR_CHANGED),
            (LeaseEventKind.BOUND, None),
        ]


async def test_interface_gone_ends_its_client_only(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        other_link = n.net.attach(HW2)
        client = n.client()
        other = Client(
            "eth1",
            hwaddr=HW2,
            transport_factory=lambda interface, address: other_link.open(),
            rng=random.Random(1),
        )
        got = n.collect(client)
        links = ScriptedLinks(n.link)
        other_links = ScriptedLinks(other_link)
        links.push()
        other_links.push(name="eth1", hwaddr=HW2, index=8)

        async def root() -> None:
            run("eth0", partial(run_interface, client, source=links))
            run("eth1", partial(run_interface, other, source=other_links))
            signal(SupervisorSignal.HEALTHY)
            signal(SupervisorSignal.DONE)

        async with harness(root) as handle:
            await client.wait_bound()
            await other.wait_bound()
            links.push(deleted=True)
            await handle.wait_settled()
            assert handle.states() == {
                "root": NodeState.DONE,
                "root.eth0": NodeState.DONE,
                "root.eth1": NodeState.HEALTHY,
            }
            assert links.closed and client.state is State.STOPPED and client.lease is None
            renewed = n.core.stats.exchanges[Exchange.RENEWING]
            await trio.sleep(600)  # eth1 goes on: it renews at T1
            assert n.core.stats.exchanges[Exchange.RENEWING] > renewed
            assert other.lease is not None
        assert [(e.kind, e.reason) for e in got] == [
            (LeaseEventKind.BOUND, None),
            (LeaseEventKind.LOST, INTERFACE_GONE),
        ]


async def test_an_interface_missing_at_start_is_done_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        links = ScriptedLinks(n.link)
        links._send.send_nowait([Link(index=0, name="eth0", deleted=True)])
        async with harness(partial(run_interface, client, source=links)) as handle:
            await handle.wait_settled()
            assert handle.states() == {"root": NodeState.DONE}
        assert n.sent() == [] and client.stats.runs == 0


# -- real links in network namespaces ------------------------------------------------------------

SERVER_A = IPv4Address("10.81.0.1")
SERVER_B = IPv4Address("10.82.0.1")


def core_for(server: IPv4Address, **changes: Any) -> ServerCore:
    net = IPv4Network(f"{server}/24", strict=False)
    values: dict[str, Any] = {
        "server_id": server,
        "network": net,
        "pool_start": net.network_address + 100,
        "pool_end": net.network_address + 110,
        "routers": (server,),
        "dns_servers": (),
        "lease_time": 30,
        "t1": 15,
        "t2": 25,
    }
    values.update(changes)
    return ServerCore(ServerConfig(**values))


def real_client(end: netns.Interface) -> Client:
    namespace = end.namespace

    def factory(interface: str, address: IPv4Address | None) -> Transport:
        with namespace.entered():
            return default_transport(interface, address)

    with namespace.entered():
        facts = read_ethernet(end.name)
        hwaddr, mtu = facts.hwaddr, facts.mtu
    return Client(
        end.name,
        hwaddr=hwaddr,
        mtu=mtu,
        transport_factory=factory,
        callback=netconfig.configure(end.name, netns=namespace.name),
        rng=random.Random(),
    )


def addresses(end: netns.Interface) -> list[str]:
    info = json.loads(end.namespace.ip("-j", "-4", "addr", "show", "dev", end.name))
    return [f"{a['local']}/{a['prefixlen']}" for link in info for a in link.get("addr_info", ())]


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` (real time, real kernel: there is no event to wait on)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


@pytest.fixture
def topology() -> Iterator[netns.Topology]:
    netns.require_netns()
    with netns.Topology("dhcp4clink") as topo:
        yield topo


@pytest.mark.netns
async def test_link_watch_reads_the_kernel(topology: netns.Topology) -> None:
    client_ns, server_ns = topology.namespace("client"), topology.namespace("server")
    mine, peer = topology.veth(client_ns, server_ns)
    watch = LinkWatch.open(mine.name, netns=client_ns.name)
    try:
        tracker = LinkTracker(mine.name)
        with trio.fail_after(5):
            (first,) = await watch.receive()
            assert (first.name, first.hwaddr, first.usable) == (mine.name, mine.hwaddr, True)
            assert tracker.update(first) == []
            seen: list[object] = []
            peer.set_up(False)
            while not seen:
                seen += [c for link in await watch.receive() for c in tracker.update(link)]
            assert seen == [CarrierChanged(False)]
            client_ns.ip("link", "del", mine.name)
            while seen[-1] != LinkGone():
                seen += [c for link in await watch.receive() for c in tracker.update(link)]
    finally:
        watch.close()
    missing = LinkWatch.open("nosuch0", netns=client_ns.name)
    try:
        with trio.fail_after(5):
            assert await missing.receive() == [Link(index=0, name="nosuch0", deleted=True)]
    finally:
        missing.close()


@pytest.mark.netns
async def test_real_link_changes(topology: netns.Topology) -> None:
    client_ns, server_ns = topology.namespace("client"), topology.namespace("server")
    a, server_a = topology.veth(
        client_ns, server_ns, name_a="lwa", address_b=IPv4Interface(f"{SERVER_A}/24")
    )
    b, server_b = topology.veth(
        client_ns, server_ns, name_a="lwb", address_b=IPv4Interface(f"{SERVER_B}/24")
    )
    core_a = core_for(SERVER_A, t1=2, t2=20)  # a running client would renew every 2 s
    core_b = core_for(SERVER_B, lease_time=6, t1=2, t2=4)
    client_a, client_b = real_client(a), real_client(b)

    async def root() -> None:
        run("lwa", partial(run_interface, client_a, netns=client_ns.name))
        run("lwb", partial(run_interface, client_b, netns=client_ns.name))
        signal(SupervisorSignal.HEALTHY)
        signal(SupervisorSignal.DONE)

    def received(core: ServerCore) -> int:
        return sum(core.stats.received.values())

    async with trio.open_nursery() as nursery:
        events_a = collect(nursery, client_a)
        server_a_scope = trio.CancelScope()

        async def serve_a(task_status: trio.TaskStatus[None]) -> None:
            with server_a_scope:
                await serve_udp(core_a, server_a.name, namespace=server_ns, task_status=task_status)

        await nursery.start(serve_a)
        await nursery.start(partial(serve_udp, core_b, server_b.name, namespace=server_ns))
        async with harness(root) as handle:
            with trio.fail_after(10):
                lease = await client_a.wait_bound()
                await client_b.wait_bound()
            assert addresses(a) == [str(lease.address)]

            # Carrier down (the peer goes down): for three seconds, past T1, nothing is sent,
            # neither by the client nor seen by the server.
            sent, seen = sum(client_a.stats.sent.values()), received(core_a)
            server_a.set_up(False)
            await eventually(lambda: client_a.state is State.INIT_REBOOT)
            await trio.sleep(3)
            assert sum(client_a.stats.sent.values()) == sent
            assert received(core_a) == seen
            assert client_a.stats.errors["send"] == 0

            # Carrier up: one INIT-REBOOT REQUEST, no DISCOVER, the same address.
            log_mark = len(core_a.stats.log)
            server_a.set_up(True)
            await eventually(lambda: core_a.stats.exchanges[Exchange.INIT_REBOOT] == 1)
            await eventually(lambda: client_a.state is State.BOUND)
            after = core_a.stats.log[log_mark:]
            assert classify(after[0][1]) is Exchange.INIT_REBOOT
            assert MessageType.DISCOVER not in [m.message_type for _, m in after]
            assert client_a.lease is not None and client_a.lease.address == lease.address

            # A new MAC: a DISCOVER from it, a lease for it.
            log_mark = len(core_a.stats.log)
            new_mac = bytes.fromhex("02aabbccdd01")
            client_ns.ip("link", "set", "dev", a.name, "address", new_mac.hex(":"))
            await eventually(
                lambda: any(
                    m.message_type is MessageType.DISCOVER and m.chaddr[:6] == new_mac
                    for _, m in core_a.stats.log[log_mark:]
                )
            )
            second = await client_a.wait_bound()
            await eventually(lambda: client_a.lease is not None and client_a.hwaddr == new_mac)
            since = [m for _, m in core_a.stats.log[log_mark:]]
            first = next(i for i, m in enumerate(since) if m.chaddr[:6] == new_mac)
            assert since[first].message_type is MessageType.DISCOVER
            assert all(m.chaddr[:6] == new_mac for m in since[first:])
            assert addresses(a) == [str(second.address)]

            # The interface disappears: its node is DONE, the other client goes on.
            server_a_scope.cancel()
            client_ns.ip("link", "del", a.name)
            await eventually(lambda: handle.states().get("root.lwa") is NodeState.DONE)
            renewals = core_b.stats.exchanges[Exchange.RENEWING]
            await eventually(lambda: core_b.stats.exchanges[Exchange.RENEWING] > renewals)
            assert handle.states()["root.lwb"] is NodeState.HEALTHY
            assert client_b.lease is not None
        nursery.cancel_scope.cancel()
    kinds = [(e.kind, e.reason) for e in events_a]
    assert kinds[0] == (LeaseEventKind.BOUND, None)
    assert (LeaseEventKind.LOST, HWADDR_CHANGED) in kinds
    assert kinds[-1] == (LeaseEventKind.LOST, INTERFACE_GONE)


# -- the watch's socket handling, on a socket pair standing in for the kernel -------------------


async def test_watch_answers_and_errors() -> None:
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with kernel:
        watch = LinkWatch("eth0", lambda: trio.socket.from_stdlib_socket(ours))
        try:
            kernel.send(b"\x01\x02\x03")  # malformed: skipped and counted
            ack = struct.pack("=i", 0) + getlink_request("eth0", 1)[:16]
            kernel.send(nlmsg(NLMSG_ERROR, ack, seq=1))
            kernel.send(link_message(name="eth1", index=9))
            assert await watch.receive() == [one_link(link_message(name="eth1", index=9))]
            assert kernel.recv(100) == getlink_request("eth0", 1)  # the first receive asked
            assert watch.drops == 1
            # "No such device" for an older request is not about the current one.
            kernel.send(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.ENODEV) + bytes(16), seq=0))
            kernel.send(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.ENODEV) + bytes(16), seq=1))
            assert await watch.receive() == [Link(index=0, name="eth0", deleted=True)]
            kernel.send(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16), seq=1))
            with pytest.raises(PermissionError):
                await watch.receive()
        finally:
            watch.close()


class Overflowed:
    """A socket whose receive queue overflowed: ENOBUFS once, then the stale notifications."""

    def __init__(self, stale: bytes) -> None:
        self.stale = stale
        self.sent: list[bytes] = []
        self.overflowed = False
        self.closed = False

    async def send(self, data: bytes) -> int:
        await trio.lowlevel.checkpoint()
        self.sent.append(data)
        return len(data)

    async def recv(self, size: int) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.overflowed:
            self.overflowed = True
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return self.stale

    def close(self) -> None:
        self.closed = True


async def test_lost_notifications_reopen_the_socket_and_read_the_state_anew() -> None:
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    overflowed = Overflowed(stale=link_message(carrier=1))  # what was true before the loss
    sockets = iter([overflowed, trio.socket.from_stdlib_socket(ours)])
    with kernel:
        watch = LinkWatch("eth0", lambda: next(sockets))
        try:
            kernel.send(link_message(carrier=0))  # the answer on the new socket: the state now
            assert await watch.receive() == [one_link(link_message(carrier=0))]
            assert overflowed.sent == [getlink_request("eth0", 1)] and overflowed.closed
            assert kernel.recv(100) == getlink_request("eth0", 2)  # asked again, anew
            assert (watch.resyncs, watch.drops) == (1, 0)
        finally:
            watch.close()


@pytest.mark.netns
async def test_a_kernel_overflow_reads_the_state_anew(topology: netns.Topology) -> None:
    client_ns, server_ns = topology.namespace("client"), topology.namespace("server")
    mine, _ = topology.veth(client_ns, server_ns)
    opened: list[trio.socket.SocketType] = []

    def open_watch_socket() -> trio.socket.SocketType:
        sock = open_socket(client_ns.name, groups=(RTNLGRP_LINK,))
        if not opened:  # the first one as small as the kernel allows: one message fits
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        opened.append(sock)
        return sock

    watch = LinkWatch(mine.name, open_watch_socket)
    try:
        with trio.fail_after(5):
            (first,) = await watch.receive()
            assert (first.index, first.mtu, watch.resyncs) == (mine.index, 1500, 0)
            for mtu in range(1400, 1410):  # notifications nobody reads: the queue overflows
                client_ns.ip("link", "set", "dev", mine.name, "mtu", str(mtu))
            links = await watch.receive()
        assert (watch.resyncs, len(opened)) == (1, 2)
        assert opened[0].fileno() == -1  # closed: what it still held was stale
        assert links and {(link.index, link.mtu) for link in links} == {(mine.index, 1409)}
    finally:
        watch.close()


async def test_a_failing_client_is_a_death_with_its_own_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def callback(old: Lease | None, new: Lease | None) -> None:
        raise RuntimeError("cannot configure")

    async with network() as n:
        client = n.client(callback=callback)
        links = ScriptedLinks(n.link)
        links.push()
        with pytest.raises(RuntimeError, match="cannot configure"):
            async with harness(partial(run_interface, client, source=links)):
                await trio.sleep(10)
        assert links.closed
