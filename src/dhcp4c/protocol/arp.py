"""The ARP packet for IPv4 over Ethernet (RFC 826), declared with construct: the ACD codec.

This module owns `ArpLayout` (the 28-byte packet, field for field as RFC 826 lists it, with its
compiled form), the `ArpPacket` value, `ArpError` (the codec's one error type), and the two
packets address conflict detection sends: the ARP Probe (RFC 5227 §2.1.1: sender IP 0.0.0.0,
target the candidate) and the ARP Announcement (§2.3: sender IP = target IP = the address).

Invariants:

* `ArpPacket.parse` raises `ArpError` and nothing else, for any bytes: only Ethernet (hardware
  type 1, 6-byte addresses) and IPv4 (protocol type 0x0800, 4-byte addresses) are accepted, and
  construct's and `struct`'s exceptions are wrapped.
* Bytes after the 28 of the packet are ignored: ARP has no length field, and a packet socket
  hands over the Ethernet minimum-size padding with it.
* The packet is the payload of an AF_PACKET SOCK_DGRAM socket bound to `ETH_P_ARP`: the kernel
  writes the Ethernet header from the destination address (`BROADCAST_HWADDR`, as RFC 5227 §2.1.1
  asks) and the ethertype 0x0806, as n-acd does, so no frame is built here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from construct import Bytes, Const, Construct, ConstructError, Int8ub, Int16ub, Int32ub, Struct

__all__ = [
    "ARPHRD_ETHER",
    "BROADCAST_HWADDR",
    "ETH_P_ARP",
    "ETH_P_IP",
    "OP_REPLY",
    "OP_REQUEST",
    "SIZE",
    "ArpError",
    "ArpLayout",
    "ArpPacket",
    "announcement",
    "probe",
]

ETH_P_ARP = 0x0806  # the Ethernet type of ARP (RFC 826 "ether_type$ADDRESS_RESOLUTION")
ETH_P_IP = 0x0800  # the protocol type of IPv4 in `pro`
ARPHRD_ETHER = 1  # the hardware type of Ethernet in `hrd` (IANA ARP parameters)
OP_REQUEST = 1  # RFC 826 "ares_op$REQUEST"
OP_REPLY = 2  # RFC 826 "ares_op$REPLY"
BROADCAST_HWADDR = b"\xff" * 6
_HLEN = 6
_PLEN = 4
_UNSPECIFIED = IPv4Address(0)
_ZERO_HWADDR = bytes(_HLEN)

#: RFC 826 "Packet format", for IPv4 over Ethernet: the fixed part with its values checked, then
#: the four addresses. Protocol addresses are network-order 32-bit integers here.
ArpLayout = Struct(
    "hrd" / Const(ARPHRD_ETHER, Int16ub),  # ar$hrd: hardware address space
    "pro" / Const(ETH_P_IP, Int16ub),  # ar$pro: protocol address space
    "hln" / Const(_HLEN, Int8ub),  # ar$hln: byte length of each hardware address
    "pln" / Const(_PLEN, Int8ub),  # ar$pln: byte length of each protocol address
    "op" / Int16ub,  # ar$op: REQUEST or REPLY (other values decode; ACD ignores them)
    "sha" / Bytes(_HLEN),  # ar$sha: sender hardware address
    "spa" / Int32ub,  # ar$spa: sender protocol address
    "tha" / Bytes(_HLEN),  # ar$tha: target hardware address
    "tpa" / Int32ub,  # ar$tpa: target protocol address
)

SIZE: int = ArpLayout.sizeof()  # 28 bytes
_compiled: list[Construct[Any, Any]] = []


def _layout() -> Construct[Any, Any]:
    if not _compiled:
        _compiled.append(ArpLayout.compile())
    return _compiled[0]


class ArpError(ValueError):
    """The one error for malformed ARP bytes or packet values."""


@dataclass(frozen=True)
class ArpPacket:
    """One ARP packet for IPv4 over Ethernet (RFC 826).

    Attributes:
        op: `OP_REQUEST` or `OP_REPLY` (any 16-bit value decodes).
        sha, tha: sender and target hardware addresses, 6 bytes each.
        spa, tpa: sender and target IPv4 addresses.

    Raises:
        ArpError: from the constructor, for a value `build` cannot encode.
    """

    op: int
    sha: bytes
    spa: IPv4Address
    tha: bytes
    tpa: IPv4Address

    def __post_init__(self) -> None:
        if not isinstance(self.op, int) or not 0 <= self.op <= 0xFFFF:
            raise ArpError(f"op={self.op!r} is not in 0..65535")
        for name in ("sha", "tha"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != _HLEN:
                raise ArpError(f"{name} must be {_HLEN} bytes: {value!r}")
        for name in ("spa", "tpa"):
            if not isinstance(getattr(self, name), IPv4Address):
                raise ArpError(f"{name} must be an IPv4Address: {getattr(self, name)!r}")

    @property
    def is_probe(self) -> bool:
        """Whether this is an ARP Probe (RFC 5227 §1.1, §2.1.1): a request from 0.0.0.0."""
        return self.op == OP_REQUEST and self.spa == _UNSPECIFIED

    @property
    def is_announcement(self) -> bool:
        """Whether this is an ARP Announcement (RFC 5227 §2.3): a request with spa == tpa."""
        return self.op == OP_REQUEST and self.spa == self.tpa != _UNSPECIFIED

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> ArpPacket:
        """Decode one ARP packet (the payload of an ETH_P_ARP packet socket).

        Args:
            data: the bytes, starting at `hrd`; bytes after the 28 of the packet are ignored.
        Returns:
            The packet.
        Raises:
            ArpError: for any malformed input (short, not Ethernet/IPv4), and nothing else.
        """
        if not isinstance(data, bytes):
            try:
                data = bytes(data)
            except TypeError as error:
                raise ArpError(f"cannot parse {type(data).__name__}") from error
        if len(data) < SIZE:
            # Checked here: a compiled `Bytes(n)` at the end of the stream returns fewer bytes.
            raise ArpError(f"{len(data)} bytes is shorter than the {SIZE}-byte ARP packet")
        try:
            fields = _layout().parse(data[:SIZE])
        except (struct.error, ConstructError) as error:
            raise ArpError(f"not an Ethernet/IPv4 ARP packet ({error})") from error
        packet = object.__new__(cls)
        setter = object.__setattr__
        setter(packet, "op", fields["op"])
        setter(packet, "sha", fields["sha"])
        setter(packet, "spa", IPv4Address(fields["spa"]))
        setter(packet, "tha", fields["tha"])
        setter(packet, "tpa", IPv4Address(fields["tpa"]))
        return packet

    def build(self) -> bytes:
        """Encode the packet: the 28 bytes, without Ethernet padding (the kernel adds it)."""
        data: bytes = _layout().build(
            {
                "op": self.op,
                "sha": self.sha,
                "spa": int(self.spa),
                "tha": self.tha,
                "tpa": int(self.tpa),
            }
        )
        return data


def probe(hwaddr: bytes, candidate: IPv4Address) -> ArpPacket:
    """The ARP Probe for `candidate` (RFC 5227 §2.1.1).

    A request with our hardware address as sender, sender IP 0.0.0.0 (so that no host's ARP
    cache learns a mapping for an address we may not get), the target hardware address zero and
    the candidate as target IP.

    Raises:
        ArpError: for a hardware address that is not 6 bytes.
    """
    return ArpPacket(OP_REQUEST, hwaddr, _UNSPECIFIED, _ZERO_HWADDR, candidate)


def announcement(hwaddr: bytes, address: IPv4Address) -> ArpPacket:
    """The ARP Announcement of `address` (RFC 5227 §2.3), also sent to defend it (§2.4 (b)).

    A request with our hardware address and `address` as sender, `address` as target IP (so that
    it updates the other hosts' caches and is no question), the target hardware address zero.

    Raises:
        ArpError: for a hardware address that is not 6 bytes.
    """
    return ArpPacket(OP_REQUEST, hwaddr, address, _ZERO_HWADDR, address)
