"""Every link of a namespace: which links count, the table (snapshots in, names out), the reader's
socket handling on a socket pair standing in for the kernel, and `LinkSet` on real veths in a
network namespace (the initial dump, links coming and going, lost notifications).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import pytest
import trio
import trio.testing
from pyroute2.arp import ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, ARPHRD_TUNNEL
from pyroute2.netlink import NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTNLGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOOPBACK, IFF_LOWER_UP, IFF_UP, ifinfmsg

from dhcp4c.linux.links import (
    AllLinks,
    LinkSet,
    LinkTable,
    LinkUpdate,
    ethernet_like,
    is_pattern,
    name_filter,
)
from dhcp4c.linux.rtnl import Link, build_getlink, open_socket
from dhcp4c.testing import netns

HW = bytes.fromhex("020000000001")
HW2 = bytes.fromhex("020000000002")
UP = IFF_UP | IFF_LOWER_UP


def snapshot(**changes: Any) -> Link:
    values: dict[str, Any] = {
        "index": 7,
        "name": "eth0",
        "hwaddr": HW,
        "flags": UP,
        "ifi_type": ARPHRD_ETHER,
    }
    values.update(changes)
    return Link(**values)


# -- which links count --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "counts"),
    [
        (snapshot(), True),  # a veth, a NIC, a bridge, a bond
        (snapshot(flags=0, carrier=False), True),  # down: it exists, its client waits
        (snapshot(hwaddr=bytes(6)), False),  # no MAC to put in chaddr
        (snapshot(hwaddr=None), False),
        (snapshot(ifi_type=ARPHRD_LOOPBACK, flags=UP | IFF_LOOPBACK, hwaddr=bytes(6)), False),
        (snapshot(flags=UP | IFF_LOOPBACK), False),
        (snapshot(ifi_type=ARPHRD_TUNNEL, hwaddr=None), False),  # ipip
        (snapshot(ifi_type=ARPHRD_NONE, hwaddr=None), False),  # wireguard, tun
        (snapshot(ifi_type=None), False),  # not read from the kernel
        (snapshot(master=3), False),  # a bridge port or bond slave: its master's business
        (snapshot(family=socket.AF_BRIDGE), False),  # a bridge port's settings
        (snapshot(deleted=True), False),
        (snapshot(name=None), False),
    ],
)
def test_ethernet_like(link: Link, counts: bool) -> None:
    assert ethernet_like(link) is counts


def test_name_filter() -> None:
    every = name_filter()
    assert every("eth0") and every("wlan0") and every("x")
    eth = name_filter(["eth*"])
    assert eth("eth0") and eth("eth10") and not eth("veth0") and not eth("ETH0")
    some = name_filter(["enp?s[0-9]", "wan0"])
    assert some("enp1s0") and some("wan0") and not some("enp1s") and not some("wan01")
    with pytest.raises(ValueError, match="empty"):
        name_filter(["eth*", ""])


def test_is_pattern() -> None:
    assert [is_pattern(a) for a in ("eth*", "en?", "en[0-9]", "eth0", "br-lan.10")] == [
        True,
        True,
        True,
        False,
        False,
    ]


# -- the table ------------------------------------------------------------------------------------

LO = snapshot(
    index=1, name="lo", ifi_type=ARPHRD_LOOPBACK, flags=UP | IFF_LOOPBACK, hwaddr=bytes(6)
)
ETH1 = snapshot(index=8, name="eth1", hwaddr=HW2)

PORT_GONE = snapshot(index=8, name="eth1", family=socket.AF_BRIDGE, deleted=True)
PORT = snapshot(index=9, name="port0", family=socket.AF_BRIDGE)
TUNNEL = snapshot(index=10, name="tun0", ifi_type=ARPHRD_TUNNEL, hwaddr=None)
BRIDGE = snapshot(index=11, name="br0", hwaddr=HW2)

# Each step: a snapshot, and the names present after it (the table changed iff they did).
STEPS: list[tuple[str, Link, set[str]]] = [
    ("eth0 appears", snapshot(), {"eth0"}),
    ("the same snapshot again", snapshot(), {"eth0"}),
    ("its carrier goes", snapshot(flags=IFF_UP, carrier=False), {"eth0"}),
    ("loopback is no Ethernet", LO, {"eth0"}),
    ("eth1 appears", ETH1, {"eth0", "eth1"}),
    ("a bridge port's deletion", PORT_GONE, {"eth0", "eth1"}),
    ("a bridge port's snapshot", PORT, {"eth0", "eth1"}),
    ("a tunnel appears", TUNNEL, {"eth0", "eth1"}),
    ("eth0 renamed", snapshot(name="wan0"), {"wan0", "eth1"}),
    ("eth1 enslaved", replace(ETH1, master=BRIDGE.index), {"wan0"}),
    ("its master appears", BRIDGE, {"wan0", "br0"}),
    ("eth1 released", ETH1, {"wan0", "br0", "eth1"}),
    ("wan0 deleted", snapshot(name="wan0", deleted=True), {"br0", "eth1"}),
    ("an unknown index deleted", snapshot(index=99, name="x", deleted=True), {"br0", "eth1"}),
    ("index 7 comes back as eth0", snapshot(), {"br0", "eth1", "eth0"}),
    ("its MAC is zeroed", snapshot(hwaddr=bytes(6)), {"br0", "eth1"}),
    ("eth1 created again", replace(ETH1, index=12), {"br0", "eth1"}),
]


def test_table_steps() -> None:
    table = LinkTable()
    before: dict[str, int] = {}
    for label, link, after in STEPS:
        changed = table.update(link)
        indexes = dict(table.indexes)
        assert (label, set(table.present), set(indexes)) == (label, after, after)
        assert (label, changed) == (label, indexes != before)
        before = indexes
    assert before == {"br0": BRIDGE.index, "eth1": 12}  # the last step: a new index, a change
    assert dict(table.links) == {"br0": BRIDGE, "eth1": replace(ETH1, index=12)}


def test_a_dump_replaces_everything_known() -> None:
    table = LinkTable()
    table.update(snapshot())
    table.update(ETH1)
    eth2 = snapshot(index=12, name="eth2")
    # The dump and what came during it, in arrival order: eth2 went before the dump ended.
    assert table.apply(LinkUpdate((LO, ETH1, eth2), complete=True))
    assert table.present == {"eth1", "eth2"}
    assert table.apply(LinkUpdate((ETH1, eth2, snapshot(index=12, deleted=True)), complete=True))
    assert table.present == {"eth1"}
    assert not table.apply(LinkUpdate((LO, ETH1), complete=True))  # the same again: no change
    assert table.apply(LinkUpdate((snapshot(), snapshot(name="wan0"))))  # changes add up
    assert table.present == {"eth1", "wan0"}
    assert not table.apply(LinkUpdate(()))


def test_the_table_keeps_only_matching_names() -> None:
    table = LinkTable(name_filter(["eth*"]))
    assert table.update(snapshot())
    assert not table.update(snapshot(index=8, name="wan0"))
    assert table.present == {"eth0"}
    assert table.update(snapshot(name="lan0"))  # renamed out of the pattern
    assert table.present == frozenset()
    assert table.update(snapshot(index=8, name="eth9"))  # and another one into it
    assert dict(table.links) == {"eth9": snapshot(index=8, name="eth9")}


# -- the reader's socket handling, on a socket pair standing in for the kernel --------------------


def link_bytes(
    kind: int = RTM_NEWLINK,
    *,
    index: int = 7,
    name: str = "eth0",
    hwaddr: bytes = HW,
    seq: int = 0,
    multi: bool = False,
) -> bytes:
    """A link message as the kernel sends it (encoded by pyroute2)."""
    message = ifinfmsg()
    message["ifi_type"] = ARPHRD_ETHER
    message["index"] = index
    message["flags"] = UP
    message["attrs"] = [("IFLA_IFNAME", name), ("IFLA_ADDRESS", hwaddr.hex(":"))]
    message["header"]["type"] = kind
    message["header"]["flags"] = NLM_F_MULTI if multi else 0
    message["header"]["sequence_number"] = seq
    message.encode()
    return bytes(message.data)


def nlmsg(kind: int, payload: bytes, *, seq: int) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, NLM_F_MULTI, seq, 0) + payload


def done(seq: int) -> bytes:
    return nlmsg(NLMSG_DONE, bytes(4), seq=seq)


#: The attribute type of IFLA_CARRIER: its place in pyroute2's table (positional there).
IFLA_CARRIER = [name for name, _ in ifinfmsg.nla_map].index("IFLA_CARRIER")
ETH0_BYTES = link_bytes(seq=1, multi=True)
ETH1_NOTE = link_bytes(index=8, name="eth1")  # a notification: sequence number 0


async def test_a_dump_with_notifications_in_between_then_changes() -> None:
    with trio.fail_after(5):  # a bug must not hang the run
        kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with kernel, AllLinks(lambda: trio.socket.from_stdlib_socket(ours)) as links:
            kernel.send(ETH0_BYTES)
            kernel.send(ETH1_NOTE)
            kernel.send(done(0))  # another request's end (sequence 0): not ours
            kernel.send(link_bytes(RTM_DELLINK, index=8, name="eth1", seq=1, multi=True) + done(1))
            update = await links.receive()
            assert kernel.recv(100) == build_getlink(seq=1)  # the first receive asked
            eth1 = snapshot(index=8, name="eth1")
            assert update == LinkUpdate(
                (snapshot(), eth1, replace(eth1, deleted=True)), complete=True
            )
            kernel.send(link_bytes(name="wan0"))
            assert await links.receive() == LinkUpdate((snapshot(name="wan0"),))
            kernel.send(done(1))  # nothing about links: nothing returned
            empty_carrier = struct.pack("=HH", 4, IFLA_CARRIER)
            malformed = nlmsg(RTM_NEWLINK, link_bytes(name="eth9")[16:] + empty_carrier, seq=0)
            kernel.send(malformed + ETH1_NOTE)  # one link message is skipped, not the datagram
            assert await links.receive() == LinkUpdate((eth1,))
            assert (links.drops, links.resyncs) == (1, 0)


async def test_a_refused_dump_is_an_error() -> None:
    with trio.fail_after(5):
        kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with kernel, AllLinks(lambda: trio.socket.from_stdlib_socket(ours)) as links:
            kernel.send(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16), seq=0))
            kernel.send(nlmsg(NLMSG_ERROR, struct.pack("=i", -errno.EPERM) + bytes(16), seq=1))
            with pytest.raises(PermissionError, match="RTM_GETLINK dump"):
                await links.receive()


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


async def test_lost_notifications_reopen_the_socket_and_dump_anew() -> None:
    with trio.fail_after(5):
        kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        overflowed = Overflowed(stale=ETH1_NOTE)  # what was true before the loss
        fake = cast(trio.socket.SocketType, overflowed)
        sockets = iter([fake, trio.socket.from_stdlib_socket(ours)])
        with kernel, AllLinks(lambda: next(sockets)) as links:
            kernel.send(ETH0_BYTES + done(2))  # the dump on the new socket: the state now
            assert await links.receive() == LinkUpdate((snapshot(),), complete=True)
            assert overflowed.sent == [build_getlink(seq=1)] and overflowed.closed
            assert kernel.recv(100) == build_getlink(seq=2)  # asked again, anew
            assert (links.resyncs, links.drops) == (1, 0)


async def test_a_malformed_datagram_reads_everything_anew() -> None:
    with trio.fail_after(5):
        first, first_ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        second, second_ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        sockets = iter([first_ours, second_ours])
        with (
            first,
            second,
            AllLinks(lambda: trio.socket.from_stdlib_socket(next(sockets))) as links,
        ):
            first.send(ETH0_BYTES + b"\x01\x02")  # it might have ended the dump: we cannot tell
            second.send(ETH0_BYTES + done(2))
            assert await links.receive() == LinkUpdate((snapshot(),), complete=True)
            assert first.recv(100) == build_getlink(seq=1)
            assert second.recv(100) == build_getlink(seq=2)
            assert first_ours.fileno() == -1  # closed
            assert (links.resyncs, links.drops) == (1, 1)


# -- LinkSet on scripted updates ----------------------------------------------------------------


class Scripted:
    """A reader the test feeds with updates."""

    def __init__(self) -> None:
        self.send, self._receive = trio.open_memory_channel[LinkUpdate](10)
        self.closed = False

    async def receive(self) -> LinkUpdate:
        return await self._receive.receive()

    def close(self) -> None:
        self.closed = True


async def test_link_set_publishes_once_the_dump_is_in() -> None:
    with trio.fail_after(5):
        scripted = Scripted()
        link_set = LinkSet(source=lambda: cast(AllLinks, scripted))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link_set.run)
            watch = link_set.watch()
            async with contextlib.aclosing(watch):
                first = trio.Event()
                got: list[frozenset[str]] = []

                async def read_first() -> None:
                    got.append(await watch.__anext__())
                    first.set()

                nursery.start_soon(read_first)
                await trio.testing.wait_all_tasks_blocked()
                assert not got and not link_set.synced.is_set()  # the watch waits for the dump
                scripted.send.send_nowait(LinkUpdate((snapshot(), ETH1), complete=True))
                await first.wait()
                assert got == [{"eth0", "eth1"}] and link_set.synced.is_set()
                assert link_set.links["eth1"] == ETH1
                scripted.send.send_nowait(LinkUpdate((snapshot(flags=0),)))  # no name came or went
                scripted.send.send_nowait(LinkUpdate((snapshot(deleted=True),)))
                assert await watch.__anext__() == {"eth1"}
            nursery.cancel_scope.cancel()
        assert scripted.closed


# -- real links in a network namespace -----------------------------------------------------------


@pytest.fixture
def topology() -> Iterator[netns.Topology]:
    netns.require_netns()
    with netns.Topology("dhcp4clinks") as topo:
        yield topo


async def wait_names(link_set: LinkSet, *names: str) -> None:
    with trio.fail_after(5):
        await link_set.names.wait_value(frozenset(names))


@pytest.mark.netns
async def test_links_come_and_go_in_a_namespace(topology: netns.Topology) -> None:
    here, there = topology.namespace("client"), topology.namespace("server")
    a, _ = topology.veth(here, there, name_a="lka")
    b, _ = topology.veth(here, there, name_a="lkb", up=False)
    link_set = LinkSet(here.name)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(link_set.run)
        assert link_set.names.value == {"lka", "lkb"}  # the dump; no loopback
        assert (link_set.links["lka"].index, link_set.links["lka"].hwaddr) == (a.index, a.hwaddr)

        topology.veth(here, here, name_a="lkc", name_b="lkd")  # both ends here
        await wait_names(link_set, "lka", "lkb", "lkc", "lkd")
        here.ip("link", "del", "lkc")  # and with it its peer
        await wait_names(link_set, "lka", "lkb")

        here.ip("link", "set", "dev", b.name, "name", "lkrenamed")  # down: it may be renamed
        await wait_names(link_set, "lka", "lkrenamed")

        # A bridge counts, its port does not, and the port's AF_BRIDGE messages (its own
        # RTM_DELLINK when it leaves) do not remove it.
        here.ip("link", "add", "lkbr", "type", "bridge")
        here.ip("link", "set", "dev", a.name, "master", "lkbr")
        await wait_names(link_set, "lkbr", "lkrenamed")
        here.ip("link", "set", "dev", a.name, "nomaster")
        await wait_names(link_set, "lka", "lkbr", "lkrenamed")
        assert link_set.indexes.value == {name: link.index for name, link in link_set.links.items()}
        nursery.cancel_scope.cancel()


@pytest.mark.netns
async def test_a_kernel_overflow_dumps_anew(topology: netns.Topology) -> None:
    here, there = topology.namespace("client"), topology.namespace("server")
    mine, _ = topology.veth(here, there, name_a="lko")
    opened: list[trio.socket.SocketType] = []
    readers: list[AllLinks] = []

    def open_small_socket() -> trio.socket.SocketType:
        sock = open_socket(here.name, groups=(RTNLGRP_LINK,))
        if not opened:  # the first one as small as the kernel allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        opened.append(sock)
        return sock

    def reader() -> AllLinks:
        readers.append(AllLinks(open_small_socket))
        return readers[-1]

    link_set = LinkSet(source=reader)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(link_set.run)
        assert link_set.names.value == {"lko"}
        # Changes nobody reads (these calls block the event loop): the queue overflows.
        for mtu in range(1400, 1410):
            here.ip("link", "set", "dev", mine.name, "mtu", str(mtu))
        topology.veth(here, here, name_a="lkx", name_b="lky")
        here.ip("link", "del", mine.name)
        await wait_names(link_set, "lkx", "lky")
        nursery.cancel_scope.cancel()
    assert (readers[0].resyncs, len(opened), len(readers)) == (1, 2, 1)
    assert opened[0].fileno() == -1  # closed: what it still held was stale
    assert opened[1].fileno() == -1  # and the run closed the fresh one when cancelled
