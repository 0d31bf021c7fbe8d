"""`dhcp4c.rtnl`: the RTM_NEWADDR bytes, the ACK parsing, and a real kernel in a namespace."""

from __future__ import annotations

import errno
import json
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from dhcp4c import rtnl
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


def test_parse_ack() -> None:
    assert rtnl.parse_ack(_error(3, 0), 3) == 0
    assert rtnl.parse_ack(_error(3, -errno.EEXIST), 3) == errno.EEXIST
    # Another message first (a multicast notification, say), then the answer.
    other = struct.pack("=IHHII", 20, 20, 0, 0, 0) + bytes(4)
    assert rtnl.parse_ack(other + _error(3, -errno.ENODEV), 3) == errno.ENODEV
    assert rtnl.parse_ack(_error(4, 0), 3) is None
    assert rtnl.parse_ack(b"", 3) is None


def test_parse_ack_collects_a_dump_until_done() -> None:
    multi = struct.pack("=IHHII", 20, 20, 0x2, 3, 0) + bytes(4)  # RTM_NEWADDR, NLM_F_MULTI
    late = struct.pack("=IHHII", 20, 20, 0x2, 2, 0) + bytes(4)  # an earlier request's
    done = struct.pack("=IHHII", 20, 3, 0x2, 3, 0) + bytes(4)  # NLMSG_DONE
    answer: list[rtnl.NetlinkMessage] = []
    assert rtnl.parse_ack(late + multi + multi, 3, answer) is None  # more to come
    assert rtnl.parse_ack(multi + done, 3, answer) == 0
    assert [(m.type, m.seq) for m in answer] == [(20, 3)] * 3
    single = struct.pack("=IHHII", 20, 16, 0, 3, 0) + bytes(4)  # RTM_NEWLINK, not multipart
    assert rtnl.parse_ack(single, 3, answer) == 0


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("=IHHII", 8, 2, 0, 3, 0),  # shorter than its header
        struct.pack("=IHHII", 64, 2, 0, 3, 0),  # longer than the datagram
        struct.pack("=IHHII", 16, 2, 0, 3, 0),  # an error without its code
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
    data = rtnl.build_route(rtnl.RTM_NEWROUTE, route, seq=4)
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
    data = rtnl.build_route(rtnl.RTM_DELROUTE, route, seq=1)
    length, kind, flags = struct.unpack_from("=IHH", data)
    assert (length, kind, flags) == (len(data), 25, 0x1 | 0x4)
    family, dst_len, _, _, table, proto, scope, rtype, _ = struct.unpack_from(
        "=BBBBBBBBI", data, 16
    )
    assert (family, dst_len, table, proto, scope, rtype) == (socket.AF_INET, 0, 0, 16, 255, 0)
    attrs = data[28:]
    assert struct.pack("=HHI", 8, 15, 1000) in attrs  # RTA_TABLE carries the real table
    assert struct.pack("=HH", 8, 1) not in attrs  # no RTA_DST for /0
    with pytest.raises(ValueError):
        rtnl.build_route(rtnl.RTM_NEWADDR, route)


def test_setmtu_and_deladdr_bytes() -> None:
    data = rtnl.build_setmtu(9, 1400, seq=2)
    assert data == (
        struct.pack("=IHHII", 40, 16, 0x1 | 0x4, 2, 0)
        + struct.pack("=BxHiII", 0, 0, 9, 0, 0)
        + struct.pack("=HHI", 8, 4, 1400)
    )
    data = rtnl.build_deladdr(IPv4Interface("10.0.0.5/24"), 9, seq=3)
    assert struct.unpack_from("=IHHII", data) == (len(data), 21, 0x1 | 0x4, 3, 0)
    assert struct.unpack_from("=BBBBI", data, 16) == (socket.AF_INET, 24, 0, 0, 9)


def _newaddr(family: int, prefix: int, flags: int, index: int, attrs: bytes) -> rtnl.NetlinkMessage:
    payload = struct.pack("=BBBBI", family, prefix, flags, 0, index) + attrs
    return rtnl.NetlinkMessage(rtnl.RTM_NEWADDR, 0, 0, payload)


def _a(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def test_parse_address() -> None:
    local, peer = bytes([10, 0, 0, 5]), bytes([10, 0, 0, 9])
    message = _newaddr(socket.AF_INET, 24, 0x80, 4, _a(1, peer) + _a(2, local))
    assert rtnl.parse_address(message) == rtnl.Address(4, IPv4Interface("10.0.0.5/24"), 0x80)
    # IFA_FLAGS (32 bits) wins over the 8-bit ifa_flags; IFA_ADDRESS alone is the address.
    message = _newaddr(socket.AF_INET, 32, 0x80, 4, _a(1, peer) + _a(8, struct.pack("=I", 0x300)))
    assert rtnl.parse_address(message) == rtnl.Address(4, IPv4Interface("10.0.0.9/32"), 0x300)
    assert rtnl.parse_address(_newaddr(socket.AF_INET6, 64, 0, 4, b"")) is None
    assert rtnl.parse_address(_newaddr(socket.AF_INET, 24, 0, 4, b"")) is None


@pytest.mark.parametrize(
    "message",
    [
        rtnl.NetlinkMessage(rtnl.RTM_NEWLINK, 0, 0, bytes(8)),  # not an address message
        rtnl.NetlinkMessage(rtnl.RTM_NEWADDR, 0, 0, bytes(7)),  # truncated ifaddrmsg
        _newaddr(socket.AF_INET, 33, 0, 1, b""),  # no such IPv4 prefix
        _newaddr(socket.AF_INET, 24, 0, 1, _a(2, bytes(16))),  # an IPv6-sized IFA_LOCAL
        _newaddr(socket.AF_INET, 24, 0, 1, _a(8, b"\x01")),  # short IFA_FLAGS
        _newaddr(socket.AF_INET, 24, 0, 1, struct.pack("=HH", 40, 2)),  # attribute past the end
    ],
)
def test_parse_address_refuses_malformed(message: rtnl.NetlinkMessage) -> None:
    with pytest.raises(rtnl.NetlinkParseError):
        rtnl.parse_address(message)


# -- the real kernel ---------------------------------------------------------------------------


@pytest.fixture
def end() -> Iterator[netns.Interface]:
    netns.require_netns()
    with netns.Topology("dhcp4crtnl") as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        yield topo.veth(a, b)[0]


def _addr_info(end: netns.Interface) -> list[dict[str, object]]:
    info = json.loads(end.namespace.ip("-j", "-4", "addr", "show", "dev", end.name))
    return [a for link in info for a in link.get("addr_info", ())]


@pytest.mark.netns
def test_replace_address_in_a_namespace(end: netns.Interface) -> None:
    with end.namespace.entered():
        rtnl.replace_address(IPv4Interface("10.79.0.5/24"), end.index, 300.7)
    (info,) = _addr_info(end)
    assert (info["local"], info["prefixlen"], info["broadcast"]) == ("10.79.0.5", 24, "10.79.0.255")
    assert info["valid_life_time"] == info["preferred_life_time"] == 300
    # Replacing (a renewal, or netconfig taking over) updates the lifetimes in place.
    with end.namespace.entered():
        rtnl.replace_address(IPv4Interface("10.79.0.5/24"), end.index, 100.0)
    (info,) = _addr_info(end)
    assert info["valid_life_time"] == info["preferred_life_time"] == 100


@pytest.mark.netns
def test_kernel_error_is_oserror_with_errno(end: netns.Interface) -> None:
    with end.namespace.entered(), pytest.raises(OSError) as caught:
        rtnl.replace_address(IPv4Interface("10.79.0.5/24"), 999_999, 60)
    assert caught.value.errno == errno.ENODEV


@pytest.mark.netns
def test_the_client_configures_what_an_independent_reader_sees(end: netns.Interface) -> None:
    from pyroute2 import IPRoute  # the independent reader

    address = IPv4Interface("10.79.0.5/24")
    gateway = IPv4Address("10.79.0.1")
    default = rtnl.Route(IPv4Network("0.0.0.0/0"), gateway, end.index, 1234, prefsrc=address.ip)
    subnet = rtnl.Route(IPv4Network("10.80.0.0/16"), None, end.index, 1234, prefsrc=address.ip)
    netlink = rtnl.Rtnl.open(end.namespace.name)
    with netlink, end.namespace.entered(), IPRoute() as ipr:
        link = netlink.link(end.name)
        assert link is not None and link.index == end.index and link.name == end.name
        assert netlink.link("nosuchif0") is None
        netlink.replace_address(address, end.index, 300)
        netlink.replace_route(subnet)
        netlink.replace_route(default)
        netlink.set_mtu(end.index, 1400)
        assert netlink.addresses(end.index) == {address: 0}
        assert netlink.addresses(end.index + 1000) == {}

        (found,) = ipr.get_addr(family=socket.AF_INET, index=end.index)
        assert (found.get_attr("IFA_LOCAL"), found["prefixlen"]) == ("10.79.0.5", 24)
        assert found.get_attr("IFA_CACHEINFO")["ifa_valid"] == 300
        routes = {
            (r.get_attr("RTA_DST"), r["dst_len"]): r
            for r in ipr.get_routes(family=socket.AF_INET, oif=end.index, proto=rtnl.RTPROT_DHCP)
        }
        assert set(routes) == {(None, 0), ("10.80.0.0", 16)}
        assert routes[(None, 0)].get_attr("RTA_GATEWAY") == "10.79.0.1"
        assert routes[(None, 0)].get_attr("RTA_PRIORITY") == 1234
        assert routes[("10.80.0.0", 16)]["scope"] == 253  # on-link
        assert routes[("10.80.0.0", 16)].get_attr("RTA_PREFSRC") == "10.79.0.5"
        assert ipr.get_links(end.index)[0].get_attr("IFLA_MTU") == 1400

        # Replacing is idempotent; deleting twice says ESRCH / EADDRNOTAVAIL the second time.
        netlink.replace_route(default)
        netlink.delete_route(default)
        with pytest.raises(rtnl.NetlinkError) as caught:
            netlink.delete_route(default)
        assert caught.value.errno == errno.ESRCH
        netlink.delete_address(address, end.index)
        with pytest.raises(rtnl.NetlinkError) as caught:
            netlink.delete_address(address, end.index)
        assert caught.value.errno == errno.EADDRNOTAVAIL
        assert ipr.get_addr(family=socket.AF_INET, index=end.index) == ()
        with pytest.raises(ValueError):
            netlink.link("a" * 16)
