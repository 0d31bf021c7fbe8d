"""IPv4 + UDP framing for the packet-socket transport: pure functions, no sockets.

A client without an address cannot send from 0.0.0.0 nor receive replies to the offered address
through the kernel's UDP stack (RFC 2131 §4.1), so the packet transport speaks raw IPv4 and this
module builds and checks the headers. Invariants:
- `build_datagram` emits a complete IPv4 header (RFC 791, no options, not fragmented) and a UDP
  header (RFC 768) with both checksums; a UDP checksum computing to 0 is sent as 0xffff.
- `parse_datagram` returns only a well-formed, unfragmented IPv4/UDP datagram to the expected
  port with verified checksums, and raises `FrameError` (a short stable `reason`, the shell's drop
  counter key) for anything else, nothing else. Bytes past the IPv4 total length are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

__all__ = [
    "CLIENT_PORT",
    "IPPROTO_UDP",
    "LIMITED_BROADCAST",
    "SERVER_PORT",
    "UNSPECIFIED",
    "Datagram",
    "FrameError",
    "build_datagram",
    "internet_checksum",
    "parse_datagram",
]

CLIENT_PORT = 68  # RFC 2131 §4.1: DHCP messages from a server to a client go to port 68
SERVER_PORT = 67
IPPROTO_UDP = 17

_IP_HEADER = struct.Struct("!BBHHHBBH4s4s")  # RFC 791 §3.1, without options
_UDP_HEADER = struct.Struct("!HHHH")  # RFC 768
_FLAG_MF = 0x2000
_FRAGMENT_OFFSET_MASK = 0x1FFF
_DEFAULT_TTL = 64  # RFC 1700 default, as udhcpc and systemd-networkd use
UNSPECIFIED = IPv4Address("0.0.0.0")
LIMITED_BROADCAST = IPv4Address("255.255.255.255")


class FrameError(ValueError):
    """A received frame that is not a valid IPv4/UDP datagram for us.

    Attributes:
        reason: a short stable key (`"fragment"`, `"udp_checksum"`, ...) for drop counters.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Datagram:
    """A verified UDP datagram with its IPv4 addresses."""

    source: IPv4Address
    destination: IPv4Address
    source_port: int
    destination_port: int
    payload: bytes


def internet_checksum(data: bytes) -> int:
    """Return the 16-bit one's complement of the one's complement sum of `data` (RFC 1071).

    An odd trailing byte is padded with a zero byte, as RFC 768 prescribes for UDP.
    """
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(source: IPv4Address, destination: IPv4Address, udp: bytes) -> int:
    # RFC 768: the checksum covers a pseudo-header of the addresses, protocol and UDP length.
    pseudo = source.packed + destination.packed + struct.pack("!BBH", 0, IPPROTO_UDP, len(udp))
    return internet_checksum(pseudo + udp)


def build_datagram(
    payload: bytes,
    *,
    source: IPv4Address = UNSPECIFIED,
    destination: IPv4Address = LIMITED_BROADCAST,
    source_port: int = CLIENT_PORT,
    destination_port: int = SERVER_PORT,
    ttl: int = _DEFAULT_TTL,
    tos: int = 0,
    identification: int = 0,
) -> bytes:
    """Build an IPv4 packet carrying one UDP datagram (no link-layer header).

    Args:
        payload: the UDP payload (a DHCP message).
        source, destination: IPv4 addresses; the defaults are a client without an address
            broadcasting (RFC 2131 §4.1).
        source_port, destination_port: UDP ports, client 68 to server 67 by default.
        ttl, tos, identification: IPv4 header fields.

    Returns:
        The IPv4 header, the UDP header and the payload, both checksums filled in.

    Raises:
        ValueError: when the datagram does not fit an IPv4 packet.

    The header never carries options or fragments: a DHCP message fits in the 576 bytes every host
    must accept (RFC 2131 §2), so the client has no reason to fragment.
    """
    udp_length = _UDP_HEADER.size + len(payload)
    total_length = _IP_HEADER.size + udp_length
    if total_length > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit an IPv4 packet")
    udp = _UDP_HEADER.pack(source_port, destination_port, udp_length, 0) + payload
    # RFC 768: a computed checksum of zero is transmitted as all ones (zero means "none").
    udp_sum = _udp_checksum(source, destination, udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    header = _IP_HEADER.pack(
        0x45,  # version 4, IHL 5 words
        tos,
        total_length,
        identification,
        0,  # flags and fragment offset: a whole datagram
        ttl,
        IPPROTO_UDP,
        0,
        source.packed,
        destination.packed,
    )
    ip_sum = internet_checksum(header)
    return header[:10] + struct.pack("!H", ip_sum) + header[12:] + udp


def parse_datagram(
    frame: bytes,
    *,
    destination_port: int = CLIENT_PORT,
    verify_udp_checksum: bool = True,
) -> Datagram:
    """Verify an IPv4 packet carrying one UDP datagram and return it.

    Args:
        frame: the bytes from the network header on (an AF_PACKET SOCK_DGRAM read).
        destination_port: the UDP port the datagram must be addressed to.
        verify_udp_checksum: False when the kernel reports the checksum as not computed yet
            (`TP_STATUS_CSUMNOTREADY`: a locally generated packet with checksum offload, e.g. over
            a veth pair); a zero UDP checksum (none sent, RFC 768) is never verified.

    Returns:
        The verified datagram.

    Raises:
        FrameError: for anything that is not a valid, unfragmented IPv4/UDP datagram to
            `destination_port`; `reason` says which check failed.

    The checks repeat the kernel BPF filter's on purpose: the filter is an optimisation, this is
    the contract, and a filter-less fallback stays safe.
    """
    if len(frame) < _IP_HEADER.size:
        raise FrameError("truncated", f"{len(frame)} bytes")
    (
        version_ihl,
        _tos,
        total_length,
        _ident,
        flags_offset,
        _ttl,
        protocol,
        _ip_sum,
        source,
        destination,
    ) = _IP_HEADER.unpack_from(frame)
    if version_ihl >> 4 != 4:
        raise FrameError("not_ipv4", f"version {version_ihl >> 4}")
    header_length = (version_ihl & 0x0F) * 4
    if header_length < _IP_HEADER.size or header_length > len(frame):
        raise FrameError("bad_header_length", f"IHL {header_length} bytes")
    if total_length < header_length + _UDP_HEADER.size or total_length > len(frame):
        raise FrameError("bad_length", f"total length {total_length} of {len(frame)} bytes")
    if internet_checksum(frame[:header_length]) != 0:
        raise FrameError("ip_checksum")
    if flags_offset & (_FLAG_MF | _FRAGMENT_OFFSET_MASK):
        raise FrameError("fragment")
    if protocol != IPPROTO_UDP:
        raise FrameError("not_udp", f"protocol {protocol}")
    udp = frame[header_length:total_length]
    sport, dport, udp_length, udp_sum = _UDP_HEADER.unpack_from(udp)
    if dport != destination_port:
        raise FrameError("wrong_port", f"port {dport}")
    if udp_length < _UDP_HEADER.size or udp_length > len(udp):
        raise FrameError("udp_length", f"UDP length {udp_length} of {len(udp)} bytes")
    udp = udp[:udp_length]
    src, dst = IPv4Address(source), IPv4Address(destination)
    if udp_sum != 0 and verify_udp_checksum and _udp_checksum(src, dst, udp) != 0:
        raise FrameError("udp_checksum")
    return Datagram(src, dst, sport, dport, udp[_UDP_HEADER.size :])
