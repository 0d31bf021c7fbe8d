"""IPv4/UDP framing: checksums against known values, every rejection reason, and a property test."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhcp4c.linux.frames import (
    Datagram,
    FrameError,
    build_datagram,
    internet_checksum,
    parse_datagram,
)

SERVER = IPv4Address("10.0.0.1")
OFFERED = IPv4Address("10.0.0.50")


def reply(payload: bytes = b"offer", **kwargs: object) -> bytearray:
    """A server's reply to the client port, as a mutable frame."""
    fields: dict[str, object] = {
        "source": SERVER,
        "destination": OFFERED,
        "source_port": 67,
        "destination_port": 68,
    }
    fields.update(kwargs)
    return bytearray(build_datagram(payload, **fields))  # type: ignore[arg-type]


def refresh_ip_checksum(frame: bytearray) -> bytearray:
    """Recompute the IPv4 header checksum after a test edited the header."""
    header_length = (frame[0] & 0x0F) * 4
    frame[10:12] = b"\x00\x00"
    frame[10:12] = struct.pack("!H", internet_checksum(bytes(frame[:header_length])))
    return frame


def test_internet_checksum_known_header() -> None:
    # The worked example of an IPv4 header whose checksum is 0xb861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    patched = header[:10] + b"\xb8\x61" + header[12:]
    assert internet_checksum(patched) == 0


def test_internet_checksum_pads_odd_length() -> None:
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF


def test_build_client_broadcast_header_fields() -> None:
    frame = build_datagram(b"discover")
    assert len(frame) == 20 + 8 + 8
    version_ihl, _, total, _, flags, ttl, proto, _, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", frame[:20]
    )
    assert (version_ihl, total, flags, ttl, proto) == (0x45, 36, 0, 64, 17)
    assert (src, dst) == (bytes(4), b"\xff" * 4)
    assert internet_checksum(frame[:20]) == 0
    assert struct.unpack("!HHH", frame[20:26]) == (68, 67, 16)
    assert frame[28:] == b"discover"


def test_roundtrip() -> None:
    frame = bytes(reply(b"x" * 301))
    assert parse_datagram(frame) == Datagram(SERVER, OFFERED, 67, 68, b"x" * 301)


def test_udp_checksum_covers_pseudo_header() -> None:
    frame = reply()
    # Change only the destination address (header checksum fixed): the UDP checksum now fails.
    frame[16:20] = IPv4Address("10.0.0.51").packed
    with pytest.raises(FrameError) as caught:
        parse_datagram(bytes(refresh_ip_checksum(frame)))
    assert caught.value.reason == "udp_checksum"


def test_zero_udp_checksum_is_sent_as_all_ones() -> None:
    # Choose the last payload word so that the checksum computes to 0 (RFC 768: send 0xffff).
    first = build_datagram(b"ab\x00\x00", source=SERVER, destination=OFFERED)
    word = first[26:28]
    frame = build_datagram(b"ab" + word, source=SERVER, destination=OFFERED)
    assert frame[26:28] == b"\xff\xff"
    assert parse_datagram(frame, destination_port=67).payload == b"ab" + word


def test_zero_udp_checksum_means_none() -> None:
    frame = reply()
    frame[26:28] = b"\x00\x00"
    assert parse_datagram(bytes(frame)).payload == b"offer"


def test_unverified_checksum_when_kernel_says_not_ready() -> None:
    frame = reply()
    frame[26:28] = b"\x12\x34"
    with pytest.raises(FrameError):
        parse_datagram(bytes(frame))
    assert parse_datagram(bytes(frame), verify_udp_checksum=False).payload == b"offer"


def test_link_layer_padding_is_ignored() -> None:
    frame = bytes(reply(b"ok")) + bytes(18)
    assert parse_datagram(frame).payload == b"ok"


def test_ip_options_are_skipped() -> None:
    frame = reply()
    frame[0] = 0x46
    frame[2:4] = struct.pack("!H", len(frame) + 4)
    frame[20:20] = b"\x01\x01\x01\x00"  # NOP, NOP, NOP, end of options
    assert parse_datagram(bytes(refresh_ip_checksum(frame))).payload == b"offer"


def _edit(offset: int, value: bytes, *, fix_ip: bool = True) -> bytes:
    frame = reply()
    frame[offset : offset + len(value)] = value
    return bytes(refresh_ip_checksum(frame) if fix_ip else frame)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes(reply())[:19], "truncated"),
        (_edit(0, b"\x65"), "not_ipv4"),
        (_edit(0, b"\x44"), "bad_header_length"),
        (_edit(0, b"\x4f"), "bad_header_length"),
        (_edit(2, struct.pack("!H", 27)), "bad_length"),
        (_edit(2, struct.pack("!H", 1000)), "bad_length"),
        (_edit(8, b"\x01", fix_ip=False), "ip_checksum"),
        (_edit(6, b"\x20\x00"), "fragment"),  # MF
        (_edit(6, b"\x00\x01"), "fragment"),  # offset 8
        (_edit(6, b"\x40\x00"), None),  # DF alone is fine
        (_edit(9, b"\x06"), "not_udp"),
        (_edit(22, struct.pack("!H", 67)), "wrong_port"),
        (_edit(24, struct.pack("!H", 7)), "udp_length"),
        (_edit(24, struct.pack("!H", 100)), "udp_length"),
        (_edit(28, b"O"), "udp_checksum"),
    ],
)
def test_rejections(frame: bytes, reason: str | None) -> None:
    if reason is None:
        assert parse_datagram(frame).payload == b"offer"
        return
    with pytest.raises(FrameError) as caught:
        parse_datagram(frame)
    assert caught.value.reason == reason


def test_oversized_payload_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_datagram(bytes(0xFFFF - 27))


@given(st.binary(max_size=600))
def test_any_bytes_give_a_datagram_or_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        parse_datagram(data)


@given(
    payload=st.binary(max_size=1500),
    source=st.integers(0, 2**32 - 1).map(IPv4Address),
    destination=st.integers(0, 2**32 - 1).map(IPv4Address),
    port=st.integers(0, 0xFFFF),
)
def test_build_parse_roundtrip(
    payload: bytes, source: IPv4Address, destination: IPv4Address, port: int
) -> None:
    frame = build_datagram(
        payload, source=source, destination=destination, source_port=port, destination_port=68
    )
    assert parse_datagram(frame) == Datagram(source, destination, port, 68, payload)
