"""`dhcp4c.rtnl`: the RTM_NEWADDR bytes, the ACK parsing, and a real kernel in a namespace."""

from __future__ import annotations

import errno
import json
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Interface

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
    [(0.0, 0), (-3.0, 0), (59.9, 59), (60.0, 60), (float("inf"), rtnl.INFINITY_LIFE_TIME)],
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
