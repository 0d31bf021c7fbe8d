"""Tests for dhcp4c.protocol.lease: timers, address prefix, options and route sanitising."""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from dhcp4c.protocol.lease import (
    LEASE_TIME_CAP,
    Lease,
    Route,
    classful_prefix,
    compute_timers,
    is_usable_address,
    sanitise_routes,
)
from dhcp4c.protocol.message import BOOTREPLY, Message, MessageError, MessageType
from dhcp4c.protocol.options import OptionCode

A = IPv4Address
N = IPv4Network
SERVER = A("192.0.2.1")
YIADDR = A("192.0.2.10")


def _u32(value: int) -> bytes:
    return struct.pack("!I", value)


def _addrs(*addresses: str) -> bytes:
    return b"".join(A(a).packed for a in addresses)


def _classless(*routes: tuple[str, str]) -> bytes:
    out = b""
    for destination, router in routes:
        network = N(destination)
        width = network.prefixlen
        out += bytes([width]) + network.network_address.packed[: (width + 7) // 8]
        out += A(router).packed
    return out


def ack(
    options: dict[int, bytes] | None = None, *, yiaddr: IPv4Address = YIADDR, lease_time: int = 3600
) -> Message:
    base: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: bytes([MessageType.ACK]),
        OptionCode.SERVER_IDENTIFIER: SERVER.packed,
        OptionCode.IP_ADDRESS_LEASE_TIME: _u32(lease_time),
        OptionCode.SUBNET_MASK: A("255.255.255.0").packed,
    }
    base.update(options or {})
    return Message(op=BOOTREPLY, xid=1, yiaddr=yiaddr, chaddr=b"\x02" * 6, options=base)


def lease_of(options: dict[int, bytes] | None = None, **kwargs: object) -> Lease:
    return Lease.from_ack(ack(options, **kwargs), 100.0, random.Random(1))  # type: ignore[arg-type]


# -- timers --------------------------------------------------------------------------------------


def test_default_timers_with_fuzz_are_ordered_and_close_to_rfc_defaults() -> None:
    rng = random.Random(7)
    for _ in range(1000):
        t1, t2, lease = compute_timers(3600, None, None, rng)
        assert lease == 3600
        assert 0.48 * 3600 <= t1 <= 0.52 * 3600
        assert 0.855 * 3600 <= t2 <= 0.895 * 3600
        assert 0 < t1 < t2 < lease


def test_default_timers_are_exactly_the_seeded_fuzz() -> None:
    expected = random.Random(3)
    fuzz2 = expected.uniform(-0.02, 0.02)
    fuzz1 = expected.uniform(-0.02, 0.02)
    assert compute_timers(1000, None, None, random.Random(3)) == (
        1000 * (0.5 + fuzz1),
        1000 * (0.875 + fuzz2),
        1000.0,
    )


@pytest.mark.parametrize(
    ("lease_time", "t1", "t2", "expected_t1", "expected_t2"),
    [
        pytest.param(3600, 1000, 2000, 1000, 2000, id="server-values-trusted"),
        pytest.param(3600, 1800, None, 1800, None, id="t1-only"),
        pytest.param(3600, None, 3000, None, 3000, id="t2-only"),
        pytest.param(3600, 3000, 2000, None, 2000, id="t1-after-t2"),
        pytest.param(3600, 2000, 2000, None, 2000, id="t1-equals-t2"),
        pytest.param(3600, 3000, 1000, 1000 * 4 / 7, 1000, id="short-t2-keeps-proportion"),
        pytest.param(3600, None, 600, 600 * 4 / 7, 600, id="short-t2-no-t1"),
        pytest.param(3600, 1000, 4000, 1000, None, id="t2-after-lease"),
        pytest.param(3600, 1000, 3600, 1000, None, id="t2-equals-lease"),
        pytest.param(3600, 0, 0, None, None, id="zeros"),
        pytest.param(3600, 5000, 5000, None, None, id="both-after-lease"),
    ],
)
def test_server_timers_are_clamped(
    lease_time: int,
    t1: int | None,
    t2: int | None,
    expected_t1: float | None,
    expected_t2: float | None,
) -> None:
    got_t1, got_t2, lease = compute_timers(lease_time, t1, t2, random.Random(0))
    assert 0 < got_t1 < got_t2 < lease == lease_time
    if expected_t2 is None:
        assert 0.855 * lease <= got_t2 <= 0.895 * lease
    else:
        assert got_t2 == expected_t2
    if expected_t1 is None:
        assert 0.48 * lease <= got_t1 <= 0.52 * lease
    else:
        assert got_t1 == pytest.approx(expected_t1)


def test_infinite_lease_is_capped() -> None:
    t1, t2, lease = compute_timers(0xFFFFFFFF, None, None, random.Random(0))
    assert lease == LEASE_TIME_CAP
    assert 0 < t1 < t2 < lease


def test_one_second_lease() -> None:
    t1, t2, lease = compute_timers(1, None, None, random.Random(0))
    assert 0 < t1 < t2 < lease == 1


def test_lease_times_are_absolute_from_obtained() -> None:
    opts: dict[int, bytes] = {
        OptionCode.RENEWAL_TIME_VALUE: _u32(1000),
        OptionCode.REBINDING_TIME_VALUE: _u32(2000),
    }
    lease = lease_of(opts)
    assert (lease.obtained, lease.t1, lease.t2, lease.expiry) == (100.0, 1100.0, 2100.0, 3700.0)
    assert lease.remaining(100.0) == 3600.0
    assert lease.remaining(3000.0) == 700.0
    assert lease.remaining(5000.0) == 0.0


def test_lease_refuses_unordered_times() -> None:
    lease = lease_of()
    with pytest.raises(ValueError, match="out of order"):
        replace(lease, t1=lease.t2)


def test_from_ack_needs_lease_time_and_server_id() -> None:
    message = ack().replace(options={OptionCode.DHCP_MESSAGE_TYPE: bytes([MessageType.ACK])})
    with pytest.raises(MessageError):
        Lease.from_ack(message, 0.0, random.Random(0))


# -- address and options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yiaddr", "mask", "expected"),
    [
        ("192.0.2.10", "255.255.255.0", "192.0.2.10/24"),
        ("10.1.2.3", "255.255.255.252", "10.1.2.3/30"),
        ("10.1.2.3", "255.255.255.255", "10.1.2.3/32"),
        ("10.1.2.3", None, "10.1.2.3/8"),
        ("172.16.1.1", None, "172.16.1.1/16"),
        ("192.0.2.10", None, "192.0.2.10/24"),
        ("10.1.2.3", "255.0.255.0", "10.1.2.3/8"),  # non-contiguous: classful
        ("10.1.2.3", "0.0.0.0", "10.1.2.3/8"),  # a /0 subnet is no subnet
    ],
)
def test_address_prefix(yiaddr: str, mask: str | None, expected: str) -> None:
    message = ack(yiaddr=A(yiaddr))
    options = dict(message.options)
    del options[OptionCode.SUBNET_MASK]
    if mask is not None:
        options[OptionCode.SUBNET_MASK] = A(mask).packed
    lease = Lease.from_ack(message.replace(options=options), 0.0, random.Random(0))
    assert lease.address == IPv4Interface(expected)


def test_lease_fields_from_options() -> None:
    lease = lease_of(
        {
            OptionCode.ROUTER: _addrs("192.0.2.1", "0.0.0.0", "192.0.2.1", "192.0.2.2"),
            OptionCode.DOMAIN_NAME_SERVER: _addrs("0.0.0.0", "192.0.2.53", "192.0.2.53", "8.8.8.8"),
            OptionCode.DOMAIN_NAME: b"example.org",
            OptionCode.DOMAIN_SEARCH: b"\x07example\x03org\x00\x03lab\xc0\x00",
            OptionCode.INTERFACE_MTU: struct.pack("!H", 9000),
            OptionCode.NTP_SERVERS: _addrs("192.0.2.123"),
        }
    )
    assert lease.server_id == SERVER
    assert lease.routers == (A("192.0.2.1"), A("192.0.2.2"))
    assert lease.dns_servers == (A("192.0.2.53"), A("8.8.8.8"))
    assert lease.domain == "example.org"
    assert lease.search == ("example.org", "lab.example.org")
    assert lease.mtu == 9000
    assert lease.routes == (Route(N("0.0.0.0/0"), A("192.0.2.1")),)
    assert lease.options[OptionCode.NTP_SERVERS] == _addrs("192.0.2.123")


def test_malformed_optional_options_are_ignored() -> None:
    lease = lease_of(
        {
            OptionCode.INTERFACE_MTU: struct.pack("!H", 20),  # below 68
            OptionCode.ROUTER: b"\xc0\x00\x02",  # not a multiple of 4
            OptionCode.CLASSLESS_STATIC_ROUTE: b"\x21",  # width 33
        }
    )
    assert lease.mtu is None
    assert lease.routers == ()
    assert lease.routes == ()


def test_same_configuration_ignores_timers_only() -> None:
    first = lease_of({OptionCode.ROUTER: _addrs("192.0.2.1")})
    renewed = Lease.from_ack(
        ack({OptionCode.ROUTER: _addrs("192.0.2.1")}, lease_time=7200), 500.0, random.Random(2)
    )
    assert first.same_configuration(renewed)
    moved = lease_of({OptionCode.ROUTER: _addrs("192.0.2.2")})
    assert not first.same_configuration(moved)
    other_address = lease_of({OptionCode.ROUTER: _addrs("192.0.2.1")}, yiaddr=A("192.0.2.11"))
    assert not first.same_configuration(other_address)
    ntp = lease_of(
        {OptionCode.ROUTER: _addrs("192.0.2.1"), OptionCode.NTP_SERVERS: _addrs("1.2.3.4")}
    )
    assert not first.same_configuration(ntp)


# -- routes --------------------------------------------------------------------------------------


def test_option_121_overrides_3_and_33() -> None:
    lease = lease_of(
        {
            OptionCode.ROUTER: _addrs("192.0.2.1"),
            OptionCode.STATIC_ROUTE: _addrs("10.0.0.0", "192.0.2.1"),
            OptionCode.CLASSLESS_STATIC_ROUTE: _classless(
                ("198.51.100.0/24", "192.0.2.254"), ("0.0.0.0/0", "192.0.2.2")
            ),
        }
    )
    assert lease.routes == (
        Route(N("198.51.100.0/24"), A("192.0.2.254")),
        Route(N("0.0.0.0/0"), A("192.0.2.2")),
    )
    assert lease.routers == (A("192.0.2.1"),)  # informational, not routed


def test_option_121_gateway_zero_is_on_link() -> None:
    lease = lease_of(
        {
            OptionCode.CLASSLESS_STATIC_ROUTE: _classless(
                ("203.0.113.1/32", "0.0.0.0"), ("0.0.0.0/0", "203.0.113.1")
            ),
        },
        yiaddr=A("198.51.100.7"),
    )
    assert lease.routes == (
        Route(N("203.0.113.1/32"), None),
        Route(N("0.0.0.0/0"), A("203.0.113.1")),
    )


def test_empty_option_121_means_no_routes_even_with_a_router() -> None:
    # An empty 121 is malformed (RFC 3442 minimum length 5), hence ignored: option 3 applies.
    lease = lease_of(
        {OptionCode.ROUTER: _addrs("192.0.2.1"), OptionCode.CLASSLESS_STATIC_ROUTE: b""}
    )
    assert lease.routes == (Route(N("0.0.0.0/0"), A("192.0.2.1")),)


def test_option_33_is_classful_and_precedes_the_default_route() -> None:
    lease = lease_of(
        {
            OptionCode.STATIC_ROUTE: _addrs(
                "10.1.2.3", "192.0.2.5", "0.0.0.0", "192.0.2.5", "172.16.9.9", "192.0.2.6"
            ),
            OptionCode.ROUTER: _addrs("127.0.0.1", "10.9.9.9", "192.0.2.1"),
        }
    )
    assert lease.routes == (
        Route(N("10.0.0.0/8"), A("192.0.2.5")),
        Route(N("172.16.0.0/16"), A("192.0.2.6")),
        # 127.0.0.1 is no router; 10.9.9.9 is reachable through the 10/8 route kept before it.
        Route(N("0.0.0.0/0"), A("10.9.9.9")),
    )


def test_default_route_skips_unreachable_routers() -> None:
    lease = lease_of({OptionCode.ROUTER: _addrs("198.51.100.1", "192.0.2.1")})
    assert lease.routes == (Route(N("0.0.0.0/0"), A("192.0.2.1")),)


def test_no_reachable_router_no_default_route() -> None:
    lease = lease_of(
        {OptionCode.ROUTER: _addrs("198.51.100.1")}, yiaddr=A("192.0.2.10")
    )  # /24 from the mask
    assert lease.routes == ()


def _sanitised(assigned: str, routes: list[tuple[str, str | None, bool]]) -> None:
    candidates = [Route(N(d), None if g is None else A(g)) for d, g, _ in routes]
    expected = tuple(c for c, (_, _, keep) in zip(candidates, routes, strict=True) if keep)
    assert sanitise_routes(candidates, IPv4Interface(assigned)) == expected


# Monogon's TestSanitizeRoutes cases, plus ours.
SANITISE_CASES = {
    "simple-additional-route": ("10.0.5.2/24", [("10.0.7.0/24", "10.0.5.1", True)]),
    "out-of-network-gateway": (
        "10.5.0.2/32",
        [("10.0.7.1/32", None, True), ("0.0.0.0/0", "10.0.7.1", True)],
    ),
    "invalid-router": (
        "10.0.5.2/24",
        [("10.0.7.0/24", "127.0.0.1", False), ("10.0.8.0/24", "10.254.0.1", False)],
    ),
    "same-destination": (
        "10.0.5.2/24",
        [
            ("0.0.0.0/0", "10.0.5.1", True),
            ("10.0.7.0/24", "10.0.5.1", True),
            ("0.0.0.0/0", "10.0.7.1", False),
        ],
    ),
    "shadowing-loopback": (
        "10.0.5.2/24",
        [
            ("0.0.0.0/0", "10.0.5.1", True),
            ("126.0.0.0/7", "10.0.5.1", True),
            ("127.0.0.0/8", "10.0.5.1", False),
            ("127.0.0.1/32", "10.0.5.1", False),
        ],
    ),
    "shadowing-the-subnet-route": (
        "10.0.5.2/24",
        [("10.0.5.0/24", "10.0.5.1", False), ("10.0.5.0/24", None, False)],
    ),
    "multicast-and-reserved-destinations": (
        "10.0.5.2/24",
        [
            ("224.0.0.0/4", "10.0.5.1", False),
            ("239.1.0.0/16", None, False),
            ("240.0.0.0/4", "10.0.5.1", False),
            ("0.0.0.0/8", "10.0.5.1", False),
            ("0.1.0.0/16", "10.0.5.1", False),
        ],
    ),
    "unusable-gateways": (
        "10.0.5.2/24",
        [
            ("10.1.0.0/16", "224.0.0.1", False),
            ("10.2.0.0/16", "255.255.255.255", False),
            ("10.3.0.0/16", "10.0.5.0", False),  # the subnet's network address
            ("10.4.0.0/16", "10.0.5.255", False),  # the subnet's broadcast address
            ("10.5.0.0/16", "10.0.5.2", False),  # ourselves
            ("10.6.0.0/16", "10.0.5.254", True),
        ],
    ),
    "gateway-via-earlier-route-only": (
        "10.0.5.2/24",
        [("0.0.0.0/0", "172.16.0.1", False), ("172.16.0.0/16", "10.0.5.1", True)],
    ),
    "point-to-point-31": ("10.0.5.0/31", [("0.0.0.0/0", "10.0.5.1", True)]),
}


@pytest.mark.parametrize("case", SANITISE_CASES.values(), ids=SANITISE_CASES.keys())
def test_sanitise_routes(case: tuple[str, list[tuple[str, str | None, bool]]]) -> None:
    _sanitised(*case)


# -- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "usable"),
    [
        ("192.0.2.1", True),
        ("169.254.1.1", True),
        ("0.0.0.0", False),
        ("0.1.2.3", False),
        ("127.0.0.1", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
    ],
)
def test_is_usable_address(address: str, usable: bool) -> None:
    assert is_usable_address(A(address)) is usable


@pytest.mark.parametrize(
    ("address", "prefix"),
    [("10.0.0.1", 8), ("127.0.0.1", 8), ("128.0.0.1", 16), ("192.0.0.1", 24), ("224.0.0.1", 32)],
)
def test_classful_prefix(address: str, prefix: int) -> None:
    assert classful_prefix(A(address)) == prefix
