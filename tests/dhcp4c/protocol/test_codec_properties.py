"""Property tests for the codec (Hypothesis).

* Any bytes give a Message or MessageError, nothing else: random bytes, random tails after a
  valid header, and corpus messages mutated at random.
* Whatever parses builds back to the same bytes (the codec is lossless), and the compiled
  construct declarations of dhcp4c.protocol.wire alone read it the same way as `Message.parse`.
* Generated wire layouts (PAD runs, split instances, missing END, bytes after END, overload)
  parse to the RFC 3396 concatenation in RFC 2131 §4.1 order.
* Messages built through the API satisfy parse(build(m)) == m, values over 255 bytes and
  overload included; every typed accessor returns or raises MessageError.
"""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from construct import ConstructError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dhcp4c.protocol import wire
from dhcp4c.protocol.message import Message, MessageError
from dhcp4c.protocol.options import CHECKED_CODES, Options


def reference_parse(data: bytes) -> tuple[Any, list[tuple[int, bytes, str]]]:
    """The header and option instances (code, value, area) the compiled declarations read.

    The short-read rule the codec adds (compiled `Bytes` returns what is left) is applied here
    too, as a construct-level error, so that "the declaration reads it" means a full read.
    """
    parsed = wire.compiled("message").parse(data)
    areas = [("options", parsed["options"])]
    overload = b"".join(item["value"] for item in parsed["options"] if item["code"] == 52)
    if overload and overload[0] & 1:
        areas.append(("file", wire.compiled("options").parse(parsed["file"])))
    if overload and overload[0] & 2:
        areas.append(("sname", wire.compiled("options").parse(parsed["sname"])))
    instances = []
    for name, items in areas:
        for item in items:
            if item["code"] not in (0, 255):
                if len(item["value"]) != item["length"]:
                    raise ConstructError("short value")
                instances.append((item["code"], item["value"], name))
    return parsed, instances


COOKIE = b"\x63\x82\x53\x63"
ACCESSORS = [
    name
    for name in dir(Options)
    if isinstance(getattr(Options, name), property) and not name.startswith("_")
]


def parse_or_error(data: bytes) -> Message | None:
    try:
        return Message.parse(data)
    except MessageError:
        return None


def check_lossless(data: bytes) -> None:
    message = parse_or_error(data)
    if message is not None:
        assert message.build() == data
        assert Message.parse(message.build()) == message


headers = st.builds(
    lambda fixed, sname, file: fixed + sname + file + COOKIE,
    st.binary(min_size=44, max_size=44),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=128, max_size=128),
)


@given(st.binary(max_size=700))
@example(b"")
@example(bytes(240))
def test_arbitrary_bytes_give_message_or_message_error(data: bytes) -> None:
    check_lossless(data)


@given(headers, st.binary(max_size=400))
@example(bytes(236) + COOKIE, b"\x34\x01\x03")  # overload over zero-filled areas
@example(bytes(236) + COOKIE, b"\x34\x01\x01\x34\x01\x01")
def test_arbitrary_options_give_message_or_message_error(header: bytes, tail: bytes) -> None:
    check_lossless(header + tail)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_corpus_messages(dhcpv4_corpus: Path, data: st.DataObject) -> None:
    seeds = sorted(dhcpv4_corpus.rglob("*.bin"))
    message = bytearray(data.draw(st.sampled_from(seeds)).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = data.draw(st.integers(0, max(len(message) - 1, 0)))
        if kind == "flip" and message:
            message[position] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del message[position:]
        elif kind == "insert":
            message[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del message[position : position + data.draw(st.integers(1, 4))]
    check_lossless(bytes(message))


# -- generated wire layouts ----------------------------------------------------------------------

# Codes without framing rules, so that any value is legal (52 is added by the layout itself).
free_codes = st.integers(1, 254).filter(lambda code: code not in CHECKED_CODES)
tlv = st.tuples(free_codes, st.binary(max_size=40))
item = st.one_of(tlv, tlv, tlv, st.integers(1, 5).map(lambda n: (0, bytes(n))))


def encode(items: list[tuple[int, bytes]]) -> bytes:
    return b"".join(
        value if code == 0 else bytes([code, len(value)]) + value for code, value in items
    )


@st.composite
def area(draw: st.DrawFn, size: int | None, prefix: bytes = b"") -> tuple[bytes, list]:  # type: ignore[type-arg]
    """An options area: TLVs and PAD runs, END or not, then padding or garbage."""
    items = draw(st.lists(item, max_size=8))
    body = prefix + encode(items)
    if size is not None:
        assume(len(body) <= size)
    end = draw(st.booleans()) or (size is not None and len(body) < size and draw(st.booleans()))
    tail = draw(st.binary(max_size=20)) if end else b""
    if size is not None:
        if not end and len(body) < size:
            body += bytes(size - len(body))  # no END: PADs fill the area
            tail = b""
        raw = (body + (b"\xff" if end else b"") + tail)[:size]
        raw = raw.ljust(size, b"\x00")
        assume(not end or len(body) < size)
    else:
        raw = body + (b"\xff" + tail if end else b"")
    return raw, [(code, value) for code, value in items if code != 0]


@st.composite
def layouts(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    overload = draw(st.sampled_from([0, 1, 2, 3]))
    prefix = bytes([52, 1, overload]) if overload else b""
    options_area, options = draw(area(None, prefix))
    sname, file = bytes(64), bytes(128)
    expected = ([(52, bytes([overload]))] if overload else []) + options
    if overload & 1:
        file, file_options = draw(area(128))
        expected += file_options
    if overload & 2:
        sname, sname_options = draw(area(64))
        expected += sname_options
    fixed = draw(st.binary(min_size=44, max_size=44))
    return fixed + sname + file + COOKIE + options_area, expected


@given(layouts())
def test_generated_layouts_parse_losslessly(layout: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    data, instances = layout
    concatenated: dict[int, bytes] = {}
    for code, value in instances:
        concatenated[code] = concatenated.get(code, b"") + value
    message = Message.parse(data)
    assert dict(message.options) == concatenated
    assert list(message.options) == list(concatenated)
    assert message.build() == data
    _header, reference = reference_parse(data)
    assert [(code, value) for code, value, _area in reference] == instances


@given(st.one_of(layouts().map(lambda layout: layout[0]), st.binary(max_size=600)))
def test_construct_declaration_agrees_with_the_codec(data: bytes) -> None:
    # Framing only: where the declaration reads a message, the codec reads the same instances
    # (it adds the content checks of dhcp4c.protocol.options on top).
    try:
        header, reference = reference_parse(data)
    except (ConstructError, struct.error):
        # Compiled construct lets struct.error through on short input: the codec wraps it,
        # and every construct error, into its own MessageError.
        reference = None
    message = parse_or_error(data)
    if message is not None:
        assert reference is not None
        concatenated: dict[int, bytes] = {}
        for code, value, _area in reference:
            concatenated[code] = concatenated.get(code, b"") + value
        assert dict(message.options) == concatenated
        assert message.xid == header["xid"]
        assert message.giaddr == IPv4Address(header["giaddr"])


# -- messages built through the API -------------------------------------------------------------

addresses = st.integers(0, 2**32 - 1).map(IPv4Address)
checked_values = st.one_of(
    st.tuples(st.just(53), st.binary(min_size=1, max_size=1)),
    st.tuples(st.sampled_from([1, 50, 51, 54, 58, 59, 108]), st.binary(min_size=4, max_size=4)),
    st.tuples(st.sampled_from([26, 57]), st.binary(min_size=2, max_size=2)),
    st.tuples(st.just(80), st.just(b"")),
    st.tuples(
        st.just(82),
        st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20))).map(
            lambda subs: b"".join(bytes([c, len(v)]) + v for c, v in subs)
        ),
    ),
    st.tuples(
        st.just(125),
        st.lists(st.tuples(st.binary(min_size=4, max_size=4), st.binary(max_size=30)), min_size=1)
        .map(lambda records: b"".join(e + bytes([len(v)]) + v for e, v in records)),
    ),
)  # fmt: skip
option_values = st.lists(
    st.one_of(
        st.tuples(free_codes, st.binary(max_size=40)),
        st.tuples(free_codes, st.binary(min_size=200, max_size=700)),  # RFC 3396 splitting
        checked_values,
    ),
    max_size=12,
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    options = dict(draw(option_values))
    overload = draw(st.sampled_from([0, 0, 1, 2, 3]))
    if overload:
        options[52] = bytes([overload])
    return Message(
        op=draw(st.sampled_from([1, 2])),
        xid=draw(st.integers(0, 2**32 - 1)),
        htype=draw(st.integers(0, 255)),
        hlen=draw(st.integers(0, 16)),
        hops=draw(st.integers(0, 255)),
        secs=draw(st.integers(0, 65535)),
        flags=draw(st.sampled_from([0, 0x8000])),
        ciaddr=draw(addresses),
        yiaddr=draw(addresses),
        siaddr=draw(addresses),
        giaddr=draw(addresses),
        chaddr=draw(st.binary(max_size=16)),
        sname=draw(st.binary(max_size=64)),
        file=draw(st.binary(max_size=128)),
        options=options,
    )


@given(messages())
def test_built_messages_parse_back_equal(message: Message) -> None:
    data = message.build()
    assert len(data) >= 300
    parsed = Message.parse(data)
    assert parsed == message
    assert parsed.build() == data
    if not message.overload:
        assert (parsed.sname, parsed.file) == (message.sname, message.file)


@given(messages(), st.integers(0, 2**32 - 1))
def test_replace_header_then_build(message: Message, xid: int) -> None:
    parsed = Message.parse(message.build())
    changed = parsed.replace(xid=xid)
    assert Message.parse(changed.build()) == message.replace(xid=xid)


@given(st.sampled_from(ACCESSORS), st.integers(1, 254), st.binary(max_size=80))
def test_accessors_return_or_raise_message_error(name: str, code: int, value: bytes) -> None:
    try:
        options = Options({code: value})
    except MessageError:
        return
    with contextlib.suppress(MessageError):
        getattr(options, name)


@given(st.sampled_from(ACCESSORS), st.binary(max_size=80))
def test_accessor_on_its_own_code_returns_or_raises_message_error(name: str, value: bytes) -> None:
    codes = {
        "subnet_mask": 1, "routers": 3, "dns_servers": 6, "hostname": 12, "domain_name": 15,
        "mtu": 26, "broadcast_address": 28, "static_routes": 33, "ntp_servers": 42,
        "requested_address": 50, "lease_time": 51, "server_identifier": 54,
        "parameter_request_list": 55, "max_message_size": 57, "renewal_time": 58,
        "rebinding_time": 59, "client_identifier": 61, "rapid_commit": 80,
        "ipv6_only_preferred": 108, "captive_portal": 114, "domain_search": 119,
        "classless_static_routes": 121,
    }  # fmt: skip
    assert set(codes) == set(ACCESSORS)
    try:
        options = Options({codes[name]: value})
    except MessageError:
        return
    with contextlib.suppress(MessageError):
        getattr(options, name)
