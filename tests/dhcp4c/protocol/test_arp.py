"""Tests for dhcp4c.protocol.arp: the RFC 826 layout, probes and announcements, and the one error
type for any bytes."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dhcp4c.protocol.arp import (
    ARPHRD_ETHER,
    ETH_P_IP,
    OP_REPLY,
    OP_REQUEST,
    SIZE,
    ArpError,
    ArpLayout,
    ArpPacket,
    announcement,
    probe,
)

A = IPv4Address
HW = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("020000000002")
ADDR = A("192.0.2.10")


def wire(
    op: int = OP_REQUEST,
    sha: bytes = HW,
    spa: str = "0.0.0.0",
    tha: bytes = bytes(6),
    tpa: str = "192.0.2.10",
    *,
    hrd: int = ARPHRD_ETHER,
    pro: int = ETH_P_IP,
    hln: int = 6,
    pln: int = 4,
) -> bytes:
    """An ARP packet laid out by hand, as RFC 826 draws it."""
    return struct.pack("!HHBBH", hrd, pro, hln, pln, op) + sha + A(spa).packed + tha + A(tpa).packed


def test_size_is_rfc_826s_28_bytes() -> None:
    assert SIZE == 28 == len(wire())


def test_probe_is_rfc_5227s_figure() -> None:
    packet = probe(HW, ADDR)
    # RFC 5227 §2.1.1: a request, sender IP 0, target hardware address zero, target the
    # candidate.
    assert packet == ArpPacket(OP_REQUEST, HW, A(0), bytes(6), ADDR)
    assert packet.build() == wire()
    assert packet.is_probe and not packet.is_announcement


def test_announcement_is_rfc_5227s_figure() -> None:
    packet = announcement(HW, ADDR)
    # §2.3: sender IP = target IP = the address.
    assert packet.build() == wire(spa="192.0.2.10")
    assert packet.is_announcement and not packet.is_probe


@pytest.mark.parametrize(
    "packet",
    [
        probe(HW, ADDR),
        announcement(HW, ADDR),
        ArpPacket(OP_REPLY, OTHER, ADDR, HW, A("192.0.2.99")),
        ArpPacket(0xFFFF, b"\xff" * 6, A("255.255.255.255"), b"\xff" * 6, A(0)),
    ],
    ids=["probe", "announcement", "reply", "extremes"],
)
def test_round_trip(packet: ArpPacket) -> None:
    data = packet.build()
    assert len(data) == SIZE
    assert ArpPacket.parse(data) == packet
    assert ArpPacket.parse(data).build() == data


def test_parse_reads_every_field() -> None:
    packet = ArpPacket.parse(wire(OP_REPLY, OTHER, "192.0.2.1", HW, "192.0.2.10"))
    assert (packet.op, packet.sha, packet.spa, packet.tha, packet.tpa) == (
        OP_REPLY,
        OTHER,
        A("192.0.2.1"),
        HW,
        A("192.0.2.10"),
    )
    assert not packet.is_probe and not packet.is_announcement


def test_ethernet_padding_is_ignored() -> None:
    # A packet socket delivers the frame's payload, padded to Ethernet's 46-byte minimum.
    padded = wire() + bytes(18)
    assert ArpPacket.parse(padded) == ArpPacket.parse(wire())
    assert ArpPacket.parse(bytearray(padded)) == ArpPacket.parse(wire())


def test_the_declaration_is_the_codec() -> None:
    parsed = ArpLayout.parse(wire())
    assert (parsed.hrd, parsed.pro, parsed.hln, parsed.pln) == (1, 0x0800, 6, 4)
    assert ArpLayout.build(dict(parsed)) == wire()
    assert ArpLayout.compile().parse(wire()).tpa == int(ADDR)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        wire()[:27],
        wire(hrd=6),  # IEEE 802 networks
        wire(pro=0x86DD),
        wire(hln=8),
        wire(pln=16),
    ],
    ids=["empty", "short", "not-ethernet", "not-ipv4", "hln", "pln"],
)
def test_malformed_bytes_raise_arp_error(data: bytes) -> None:
    with pytest.raises(ArpError):
        ArpPacket.parse(data)


def test_parse_refuses_what_is_not_bytes() -> None:
    with pytest.raises(ArpError):
        ArpPacket.parse(12345)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"op": -1},
        {"op": 0x10000},
        {"sha": b"\x00" * 5},
        {"tha": "020000000001"},
        {"spa": "192.0.2.1"},
        {"tpa": 3221225985},
    ],
    ids=str,
)
def test_constructor_refuses_what_build_cannot_encode(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"op": 1, "sha": HW, "spa": A(0), "tha": bytes(6), "tpa": ADDR}
    values.update(fields)
    with pytest.raises(ArpError):
        ArpPacket(**values)  # type: ignore[arg-type]


def test_arp_error_is_a_value_error() -> None:
    assert issubclass(ArpError, ValueError)


@given(st.binary(max_size=64))
@example(wire())
@example(wire()[:-1])
def test_any_bytes_give_a_packet_or_arp_error(data: bytes) -> None:
    try:
        packet = ArpPacket.parse(data)
    except ArpError:
        return
    assert packet.build() == data[:SIZE]


@given(
    st.integers(0, 0xFFFF),
    st.binary(min_size=6, max_size=6),
    st.integers(0, 0xFFFFFFFF),
    st.binary(min_size=6, max_size=6),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=32),
)
def test_valid_packets_parse_whatever_follows(
    op: int, sha: bytes, spa: int, tha: bytes, tpa: int, tail: bytes
) -> None:
    packet = ArpPacket(op, sha, A(spa), tha, A(tpa))
    assert ArpPacket.parse(packet.build() + tail) == packet
