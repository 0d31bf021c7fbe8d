"""`dhcp4c.linux.rtnl`: pyroute2-built requests against fixed bytes, decoding of kernel answers, and
the Trio socket against a real kernel in a namespace, checked with `ip -j`.
"""

from __future__ import annotations

import errno
import json
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import trio
from pyroute2.netlink.rtnl import RTM_DELROUTE, RTM_NEWADDR, RTM_NEWROUTE

from dhcp4c.linux import rtnl
from dhcp4c.testing import netns


def test_newaddr_bytes() -> None:
    data = rtnl.build_newaddr(IPv4Interface("10.0.0.5/24"), 7, 120, seq=9)
    expected = (
        # nlmsghdr: len 68, RTM_NEWADDR, REQUEST|ACK|REPLACE|CREATE, seq 9, pid 0
        struct.pack("=IHHII", 68, 20, 0x1 | 0x4 | 0x100 | 0x400, 9, 0)
        # ifaddrmsg: AF_INET, /24, no flags, universe scope, index 7
        + struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 7)
        + struct.pack("=HH", 8, 2)  # IFA_LOCAL
        + bytes([10, 0, 0, 5])
        + struct.pack("=HH", 8, 1)  # IFA_ADDRESS
        + bytes([10, 0, 0, 5])
        + struct.pack("=HH", 8, 4)  # IFA_BROADCAST
        + bytes([10, 0, 0, 255])
        + struct.pack("=HH", 20, 6)  # IFA_CACHEINFO: preferred, valid, cstamp, tstamp
        + struct.pack("=IIII", 120, 120, 0, 0)
    )
    assert data == expected


@pytest.mark.parametrize("prefix", [31, 32])
def test_no_broadcast_for_31_and_32(prefix: int) -> None:
    # RFC 3021: /31 and /32 have no broadcast address.
    data = rtnl.build_newaddr(IPv4Interface(f"10.0.0.5/{prefix}"), 1, 60)
    assert len(data) == 16 + 8 + 8 + 8 + 20
    assert struct.pack("=HH", 8, 4) not in data


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (0.0, 0),
        (-3.0, 0),
        (0.5, 0),
        (59.9, 59),  # rounded down: never past the lease
        (60.0, 60),
        (3599.99, 3599),
        (float("nan"), 0),
        # An infinite lease stays below 0xffffffff, which the kernel would make "permanent".
        (float("inf"), 0xFFFF_FFFE),
        (1e12, 0xFFFF_FFFE),
        (float(0xFFFF_FFFF), 0xFFFF_FFFE),
    ],
)
def test_lifetime(remaining: float, expected: int) -> None:
    assert rtnl.lifetime(remaining) == expected


def _error(seq: int, code: int) -> bytes:
    return struct.pack("=IHHII", 36, 2, 0, seq, 0) + struct.pack("=i", code) + bytes(16)


def _message(kind: int, payload: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


IFADDRMSG = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 1)  # a notification's fixed part
IFINFOMSG = struct.pack("=BxHiII", 0, 1, 7, 0, 0)


def test_parse_ack() -> None:
    assert rtnl.parse_ack(_error(3, 0), 3) == 0
    assert rtnl.parse_ack(_error(3, -errno.EEXIST), 3) == errno.EEXIST
    # Another message first (a multicast notification, say), then the answer.
    other = _message(20, IFADDRMSG)
    assert rtnl.parse_ack(other + _error(3, -errno.ENODEV), 3) == errno.ENODEV
    assert rtnl.parse_ack(_error(4, 0), 3) is None
    assert rtnl.parse_ack(b"", 3) is None


def test_parse_ack_collects_a_dump_until_done() -> None:
    multi = _message(20, IFADDRMSG, seq=3, flags=0x2)  # RTM_NEWADDR, NLM_F_MULTI
    late = _message(20, IFADDRMSG, seq=2, flags=0x2)  # an earlier (cancelled) request's
    done = _message(3, bytes(4), seq=3, flags=0x2)  # NLMSG_DONE
    answer: list[Any] = []
    assert rtnl.parse_ack(late + multi + multi, 3, answer) is None  # more to come
    assert rtnl.parse_ack(multi + done, 3, answer) == 0
    assert [(m["header"]["type"], m["header"]["sequence_number"]) for m in answer] == [(20, 3)] * 3
    single = _message(16, IFINFOMSG, seq=3)  # RTM_NEWLINK, not multipart
    assert rtnl.parse_ack(single, 3, answer) == 0


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("=IHHII", 8, 2, 0, 3, 0),  # shorter than its header
        struct.pack("=IHHII", 64, 2, 0, 3, 0),  # longer than the datagram
        struct.pack("=IHHII", 16, 2, 0, 3, 0),  # an error without its code
        _error(3, 0) + b"\x01\x02",  # trailing bytes
        _message(20, IFADDRMSG[:6], seq=4) + _error(3, 0),  # a truncated message, even another's
    ],
)
def test_parse_ack_refuses_malformed(data: bytes) -> None:
    with pytest.raises(rtnl.NetlinkError) as caught:
        rtnl.parse_ack(data, 3)
    assert caught.value.errno == errno.EPROTO


def test_newroute_bytes() -> None:
    route = rtnl.Route(
        IPv4Network("10.9.0.0/16"),
        IPv4Address("10.0.0.1"),
        index=7,
        metric=1007,
        prefsrc=IPv4Address("10.0.0.5"),
    )
    data = rtnl.build_route(RTM_NEWROUTE, route, seq=4)
    body = (
        # rtmsg: AF_INET, /16, no source, tos 0, main, dhcp, universe (via a gateway), unicast
        struct.pack("=BBBBBBBBI", socket.AF_INET, 16, 0, 0, 254, 16, 0, 1, 0)
        + struct.pack("=HHI", 8, 15, 254)  # RTA_TABLE
        + struct.pack("=HH", 8, 1)  # RTA_DST
        + bytes([10, 9, 0, 0])
        + struct.pack("=HHI", 8, 4, 7)  # RTA_OIF
        + struct.pack("=HHI", 8, 6, 1007)  # RTA_PRIORITY
        + struct.pack("=HH", 8, 5)  # RTA_GATEWAY
        + bytes([10, 0, 0, 1])
        + struct.pack("=HH", 8, 7)  # RTA_PREFSRC
        + bytes([10, 0, 0, 5])
    )
    flags = 0x1 | 0x4 | 0x100 | 0x400  # REQUEST|ACK|REPLACE|CREATE
    assert data == struct.pack("=IHHII", 16 + len(body), 24, flags, 4, 0) + body


def test_delroute_leaves_scope_and_type_open() -> None:
    # The default route on-link, in a table above 255 (only expressible as RTA_TABLE).
    route = rtnl.Route(IPv4Network("0.0.0.0/0"), None, index=3, metric=50, table=1000)
    data = rtnl.build_route(RTM_DELROUTE, route, seq=1)
    length, kind, flags = struct.unpack_from("=IHH", data)
    assert (length, kind, flags) == (len(data), 25, 0x1 | 0x4)
    family, dst_len, _, _, table, proto, scope, rtype, _ = struct.unpack_from(
        "=BBBBBBBBI", data, 16
    )
    # rtm_table says RT_TABLE_COMPAT (pyroute2's choice; the kernel reads RTA_TABLE).
    assert (family, dst_len, table, proto, scope, rtype) == (socket.AF_INET, 0, 252, 16, 255, 0)
    attrs = data[28:]
    assert struct.pack("=HHI", 8, 15, 1000) in attrs  # RTA_TABLE carries the real table
    assert struct.pack("=HH", 8, 1) not in attrs  # no RTA_DST for /0
    with pytest.raises(ValueError):
        rtnl.build_route(RTM_NEWADDR, route)


def test_setmtu_getaddr_and_deladdr_bytes() -> None:
    data = rtnl.build_setmtu(9, 1400, seq=2)
    assert data == (
        struct.pack("=IHHII", 40, 16, 0x1 | 0x4, 2, 0)
        + struct.pack("=BxHiII", 0, 0, 9, 0, 0)
        + struct.pack("=HHI", 8, 4, 1400)
    )
    data = rtnl.build_deladdr(IPv4Interface("10.0.0.5/24"), 9, seq=3)
    assert data == (
        struct.pack("=IHHII", 40, 21, 0x1 | 0x4, 3, 0)
        + struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 9)
        + struct.pack("=HH", 8, 2)  # IFA_LOCAL
        + bytes([10, 0, 0, 5])
        + struct.pack("=HH", 8, 1)  # IFA_ADDRESS
        + bytes([10, 0, 0, 5])
    )
    data = rtnl.build_getaddr(seq=4)  # a dump: REQUEST|ROOT|MATCH
    assert data == struct.pack("=IHHII", 24, 22, 0x301, 4, 0) + struct.pack(
        "=BBBBI", socket.AF_INET, 0, 0, 0, 0
    )


def _newaddr(family: int, prefix: int, flags: int, index: int, attrs: bytes) -> bytes:
    return _message(20, struct.pack("=BBBBI", family, prefix, flags, 0, index) + attrs)


def _a(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def _address(data: bytes) -> rtnl.Address | None:
    (message,) = rtnl.parse_messages(data)
    return rtnl.parse_address(message)


def test_parse_address() -> None:
    local, peer = bytes([10, 0, 0, 5]), bytes([10, 0, 0, 9])
    message = _newaddr(socket.AF_INET, 24, 0x80, 4, _a(1, peer) + _a(2, local))
    assert _address(message) == rtnl.Address(4, IPv4Interface("10.0.0.5/24"), 0x80)
    # IFA_FLAGS (32 bits) wins over the 8-bit ifa_flags; IFA_ADDRESS alone is the address.
    message = _newaddr(socket.AF_INET, 32, 0x80, 4, _a(1, peer) + _a(8, struct.pack("=I", 0x300)))
    assert _address(message) == rtnl.Address(4, IPv4Interface("10.0.0.9/32"), 0x300)
    assert _address(_newaddr(socket.AF_INET6, 64, 0, 4, b"")) is None
    assert _address(_newaddr(socket.AF_INET, 24, 0, 4, b"")) is None


RECORDED = Path(__file__).parent / "data" / "rtnl"  # answers of a real kernel (see README)


def test_decode_a_recorded_address_dump() -> None:
    answer: list[Any] = []
    assert rtnl.parse_ack((RECORDED / "getaddr-dump.bin").read_bytes(), 1, answer) == 0
    assert [rtnl.parse_address(m) for m in answer] == [
        rtnl.Address(1, IPv4Interface("127.0.0.1/8"), 0x80),  # IFA_F_PERMANENT: `ip addr add`
        rtnl.Address(1, IPv4Interface("10.79.0.5/24"), 0x80),
    ]


def test_decode_a_recorded_refusal() -> None:
    data = (RECORDED / "deladdr-eaddrnotavail.bin").read_bytes()
    assert rtnl.parse_ack(data, 2) == errno.EADDRNOTAVAIL
    assert rtnl.parse_ack(data, 3) is None  # not the answer to request 3


@pytest.mark.parametrize(
    "data",
    [
        _message(16, IFINFOMSG),  # not an address message
        _message(20, bytes(7)),  # truncated ifaddrmsg
        _newaddr(socket.AF_INET, 33, 0, 1, _a(2, bytes(4))),  # no such IPv4 prefix
        _newaddr(socket.AF_INET, 24, 0, 1, _a(2, bytes(16))),  # an IPv6-sized IFA_LOCAL
        _newaddr(socket.AF_INET, 24, 0, 1, _a(2, bytes(3))),  # a 3-byte IFA_LOCAL
        _newaddr(socket.AF_INET, 24, 0, 1, _a(8, b"\x01")),  # short IFA_FLAGS
        _newaddr(socket.AF_INET, 24, 0, 1, struct.pack("=HH", 40, 2)),  # attribute past the end
    ],
)
def test_parse_address_refuses_malformed(data: bytes) -> None:
    with pytest.raises(rtnl.NetlinkParseError):
        _address(data)


# -- the real kernel ---------------------------------------------------------------------------


@pytest.fixture
def end() -> Iterator[netns.Interface]:
    netns.require_netns()
    with netns.Topology("dhcp4crtnl") as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        yield topo.veth(a, b)[0]


def _ip(end: netns.Interface, *args: str) -> Any:
    return json.loads(end.namespace.ip("-j", *args))


def _addr_info(end: netns.Interface) -> list[dict[str, Any]]:
    info = _ip(end, "-4", "addr", "show", "dev", end.name)
    return [a for link in info for a in link.get("addr_info", ())]


def _routes(end: netns.Interface, table: str = "main") -> dict[str, dict[str, Any]]:
    routes = _ip(end, "-4", "route", "show", "table", table)
    return {route["dst"]: route for route in routes if route.get("protocol") == "dhcp"}


@pytest.mark.netns
async def test_replace_address_in_a_namespace(end: netns.Interface) -> None:
    with rtnl.RtnlSocket.open(end.namespace.name) as netlink:
        await netlink.replace_address(IPv4Interface("10.79.0.5/24"), end.index, 300)
        (info,) = _addr_info(end)
        assert (info["local"], info["prefixlen"]) == ("10.79.0.5", 24)
        assert info["broadcast"] == "10.79.0.255"
        assert info["valid_life_time"] == info["preferred_life_time"] == 300
        assert info["dynamic"] is True
        # Replacing (a renewal, or netconfig taking over) updates the lifetimes in place.
        await netlink.replace_address(IPv4Interface("10.79.0.5/24"), end.index, 100)
        (info,) = _addr_info(end)
        assert info["valid_life_time"] == info["preferred_life_time"] == 100


@pytest.mark.netns
async def test_kernel_error_is_oserror_with_errno(end: netns.Interface) -> None:
    with rtnl.RtnlSocket.open(end.namespace.name) as netlink, pytest.raises(OSError) as caught:
        await netlink.replace_address(IPv4Interface("10.79.0.5/24"), 999_999, 60)
    assert caught.value.errno == errno.ENODEV
    assert isinstance(caught.value, rtnl.NetlinkError)


@pytest.mark.netns
async def test_the_requests_do_what_ip_sees(end: netns.Interface) -> None:
    address = IPv4Interface("10.79.0.5/24")
    gateway = IPv4Address("10.79.0.1")
    default = rtnl.Route(IPv4Network("0.0.0.0/0"), gateway, end.index, 1234, prefsrc=address.ip)
    subnet = rtnl.Route(IPv4Network("10.80.0.0/16"), None, end.index, 1234, prefsrc=address.ip)
    far = rtnl.Route(IPv4Network("10.90.0.0/16"), gateway, end.index, 7, table=1000)
    with rtnl.RtnlSocket.open(end.namespace.name) as netlink:
        link = await netlink.link(end.name)
        assert link is not None and (link.index, link.name) == (end.index, end.name)
        assert (link.hwaddr, link.mtu, link.usable) == (end.hwaddr, 1500, True)
        assert await netlink.link("nosuchif0") is None
        await netlink.replace_address(address, end.index, 300)
        await netlink.replace_route(subnet)
        await netlink.replace_route(default)
        await netlink.replace_route(far)
        await netlink.set_mtu(end.index, 1400)
        assert await netlink.addresses(end.index) == {address: 0}
        assert await netlink.addresses(end.index + 1000) == {}

        (info,) = _addr_info(end)
        assert (info["local"], info["prefixlen"], info["valid_life_time"]) == ("10.79.0.5", 24, 300)
        assert _routes(end) == {
            "default": {
                "dst": "default",
                "gateway": "10.79.0.1",
                "dev": end.name,
                "protocol": "dhcp",
                "prefsrc": "10.79.0.5",
                "metric": 1234,
                "flags": [],
            },
            "10.80.0.0/16": {
                "dst": "10.80.0.0/16",
                "dev": end.name,
                "protocol": "dhcp",
                "scope": "link",
                "prefsrc": "10.79.0.5",
                "metric": 1234,
                "flags": [],
            },
        }
        assert list(_routes(end, "1000")) == ["10.90.0.0/16"]
        (shown,) = _ip(end, "link", "show", "dev", end.name)
        assert shown["mtu"] == 1400

        # Replacing is idempotent; deleting twice says ESRCH / EADDRNOTAVAIL the second time.
        await netlink.replace_route(default)
        await netlink.delete_route(default)
        await netlink.delete_route(far)
        with pytest.raises(rtnl.NetlinkError) as caught:
            await netlink.delete_route(default)
        assert caught.value.errno == errno.ESRCH
        assert list(_routes(end)) == ["10.80.0.0/16"]
        assert _routes(end, "1000") == {}
        await netlink.delete_address(address, end.index)
        with pytest.raises(rtnl.NetlinkError) as caught:
            await netlink.delete_address(address, end.index)
        assert caught.value.errno == errno.EADDRNOTAVAIL
        assert _addr_info(end) == []
        with pytest.raises(ValueError):
            await netlink.link("a" * 16)


class Relay:
    """Stands between an `RtnlSocket` and its kernel socket: counts datagrams, and can cancel
    the request in flight just before it reads its answer."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.received = 0
        self.cancel: trio.CancelScope | None = None

    async def send(self, data: bytes) -> int:
        return await self.sock.send(data)

    async def recv(self, size: int) -> bytes:
        if self.cancel is not None:
            self.cancel.cancel()  # the request was sent: its answer stays in the socket
            self.cancel = None
        data = await self.sock.recv(size)
        self.received += 1
        return data

    def close(self) -> None:
        self.sock.close()


@pytest.mark.netns
async def test_a_dump_over_many_datagrams(end: netns.Interface, tmp_path: Path) -> None:
    # Enough addresses that the kernel splits the dump (NLM_F_MULTI) over several datagrams.
    wanted = {IPv4Interface(f"10.{100 + i // 200}.{i % 200}.1/32") for i in range(2000)}
    batch = tmp_path / "batch"
    batch.write_text("".join(f"addr add {a} dev {end.name}\n" for a in wanted))
    end.namespace.ip("-batch", str(batch))
    relay = Relay(rtnl.open_socket(end.namespace.name))
    with rtnl.RtnlSocket(relay) as netlink:
        assert await netlink.addresses(end.index) == dict.fromkeys(wanted, 0x80)
    assert relay.received > 1


@pytest.mark.netns
async def test_a_cancelled_request_leaves_no_answer_behind(end: netns.Interface) -> None:
    relay = Relay(rtnl.open_socket(end.namespace.name))
    address = IPv4Interface("10.79.0.5/24")
    with rtnl.RtnlSocket(relay) as netlink:
        with trio.CancelScope() as scope:
            relay.cancel = scope
            await netlink.replace_address(address, end.index, 300)
        assert scope.cancelled_caught and relay.received == 0
        assert _addr_info(end)[0]["local"] == "10.79.0.5"  # the kernel did it and answered
        # The next request skips that ACK: it is not mistaken for the (empty) dump's end.
        assert await netlink.addresses(end.index) == {address: 0}
        with trio.CancelScope() as scope:
            relay.cancel = scope
            await netlink.addresses(end.index)
        # A refusal left behind is not this request's either.
        with trio.CancelScope() as scope:
            relay.cancel = scope
            await netlink.delete_address(IPv4Interface("10.79.0.9/24"), end.index)
        link = await netlink.link(end.name)
        assert link is not None and link.index == end.index


@pytest.mark.netns
async def test_concurrent_requests_take_turns(end: netns.Interface) -> None:
    found: dict[str, rtnl.Link | None] = {}
    with rtnl.RtnlSocket.open(end.namespace.name) as netlink:

        async def look(name: str) -> None:
            found[name] = await netlink.link(name)

        async with trio.open_nursery() as nursery:
            for name in (end.name, "lo", "nosuch0", end.name):
                nursery.start_soon(look, name)
    assert found["nosuch0"] is None
    assert found["lo"] is not None and found["lo"].name == "lo"
    assert found[end.name] is not None and found[end.name].index == end.index
