"""Tests for dhcp4c.protocol.message: the Message value, parse and build (RFC 2131 §2-§4.1, RFC
3396)."""

from __future__ import annotations

import copy
import pickle
from ipaddress import IPv4Address

import pytest

from dhcp4c.protocol import wire
from dhcp4c.protocol.message import (
    BOOTREPLY,
    BOOTREQUEST,
    FLAG_BROADCAST,
    Message,
    MessageError,
    MessageType,
)
from dhcp4c.protocol.options import Options

COOKIE = b"\x63\x82\x53\x63"


def header(
    *, op: int = 1, xid: int = 0x1234, sname: bytes = bytes(64), file: bytes = bytes(128)
) -> bytes:
    """A 240-byte header + cookie, built independently of the codec."""
    fixed = bytes([op, 1, 6, 0]) + xid.to_bytes(4, "big") + bytes(4 + 16)
    return fixed + bytes.fromhex("020000000001") + bytes(10) + sname + file + COOKIE


def discover(**changes: object) -> Message:
    fields: dict[str, object] = {
        "op": BOOTREQUEST,
        "xid": 0xDEADBEEF,
        "chaddr": bytes.fromhex("020000000001"),
        "flags": FLAG_BROADCAST,
        "options": {53: bytes([MessageType.DISCOVER]), 55: bytes([1, 3, 6, 15, 121])},
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]


def test_header_declaration_is_rfc_2131_figure_1() -> None:
    names = [sub.name for sub in wire.BootpHeader.subcons]
    assert names == [
        "op", "htype", "hlen", "hops", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr",
        "giaddr", "chaddr", "sname", "file",
    ]  # fmt: skip
    assert [sub.sizeof() for sub in wire.BootpHeader.subcons] == [1] * 4 + [4, 2, 2] + [4] * 4 + [
        16,
        64,
        128,
    ]
    assert wire.DhcpHeader.sizeof() == 240
    assert wire.BootpHeader.sizeof() == 236  # RFC 2131 figure 1
    assert [sub.name for sub in wire.DhcpMessage.subcons] == [*names, "cookie", "options"]


def test_parse_and_build_run_the_compiled_declaration() -> None:
    data = header() + b"\x00\x35\x01\x01\x0c\x02hi\xff" + b"tail"
    parsed = wire.compiled("message").parse(data)
    message = Message.parse(data)
    assert [parsed[name] for name in ("op", "xid", "chaddr")] == [
        message.op,
        message.xid,
        message.chaddr,
    ]
    assert [(item["code"], item["value"]) for item in parsed["options"]] == [
        (0, None),
        (53, b"\x01"),
        (12, b"hi"),
        (255, b"tail"),
    ]
    assert wire.compiled("message").build(parsed) == data == message.build()
    # Compiled, not interpreted: nothing in the generated code falls back to the declaration.
    for name in ("message", "header", "options"):
        assert "linkedparsers[" not in wire.compiled(name).source.split("linkedbuilders = {}")[1]


def test_constants() -> None:
    assert (BOOTREQUEST, BOOTREPLY, FLAG_BROADCAST) == (1, 2, 0x8000)


# -- the value -----------------------------------------------------------------------------------


def test_constructor_defaults_and_padding() -> None:
    message = Message(op=BOOTREQUEST, xid=7, chaddr=b"\x02\x00\x00\x00\x00\x01")
    assert (message.op, message.htype, message.hlen, message.hops) == (1, 1, 6, 0)
    assert (message.xid, message.secs, message.flags) == (7, 0, 0)
    for name in ("ciaddr", "yiaddr", "siaddr", "giaddr"):
        assert getattr(message, name) == IPv4Address(0)
    assert message.chaddr == b"\x02\x00\x00\x00\x00\x01" + bytes(10)
    assert message.sname == bytes(64)
    assert message.file == bytes(128)
    assert message.options == {}
    assert message.message_type is None


def test_addresses_accept_strings_and_give_ipv4address() -> None:
    message = Message(op=2, xid=1, yiaddr="192.0.2.7", siaddr=IPv4Address("192.0.2.1"))
    assert message.yiaddr == IPv4Address("192.0.2.7")
    assert message.siaddr == IPv4Address("192.0.2.1")


@pytest.mark.parametrize(
    "changes",
    [
        {"op": 256},
        {"op": -1},
        {"xid": 2**32},
        {"secs": 65536},
        {"flags": -1},
        {"hops": 300},
        {"chaddr": bytes(17)},
        {"sname": bytes(65)},
        {"file": bytes(129)},
        {"ciaddr": "300.0.0.1"},
        {"options": {53: b""}},
        {"options": {0: b"x"}},
        {"options": {52: b"\x07"}},
    ],
)
def test_constructor_rejects_what_parse_would_reject(changes: dict[str, object]) -> None:
    with pytest.raises(MessageError):
        discover(**changes)


def test_message_is_immutable() -> None:
    message = discover()
    with pytest.raises(AttributeError):
        message.xid = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del message.op


def test_copy_and_pickle_keep_the_value_and_layout() -> None:
    data = header() + b"\x00\x35\x01\x01\xff" + b"junk"
    message = Message.parse(data)
    assert copy.copy(message) is message
    assert copy.deepcopy(message) is message
    restored = pickle.loads(pickle.dumps(message))
    assert restored == message
    assert restored.build() == data
    assert pickle.loads(pickle.dumps(MessageType(99))) == 99


def test_message_type() -> None:
    assert discover().message_type is MessageType.DISCOVER
    assert discover(options={53: b"\x05"}).message_type is MessageType.ACK
    assert MessageType(13) is MessageType.LEASEACTIVE  # RFC 4388


@pytest.mark.parametrize("value", [0, 99, 255])
def test_unknown_message_type_is_a_pseudo_member_not_an_error(value: int) -> None:
    message_type = discover(options={53: bytes([value])}).message_type
    assert message_type is not None
    assert message_type == value
    assert isinstance(message_type, MessageType)
    assert message_type.name == f"UNKNOWN_{value}"
    assert message_type not in set(MessageType)


def test_message_type_outside_a_byte_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        MessageType(256)


def test_equality_and_hash() -> None:
    assert discover() == discover()
    assert hash(discover()) == hash(discover())
    assert discover() != discover(xid=1)
    assert discover() != discover(options={53: b"\x01"})
    assert discover() != discover(sname=b"server")
    assert discover().__eq__(object()) is NotImplemented


def test_overloaded_areas_take_no_part_in_equality() -> None:
    base = {53: b"\x01", 52: b"\x03"}
    assert discover(options=base, sname=b"x", file=b"y") == discover(options=base)
    only_file = {53: b"\x01", 52: b"\x01"}
    assert discover(options=only_file, file=b"y") == discover(options=only_file)
    assert discover(options=only_file, sname=b"x") != discover(options=only_file)


def test_repr_is_informative() -> None:
    text = repr(discover(yiaddr="192.0.2.7", sname=b"srv"))
    assert "xid=0xdeadbeef" in text
    assert "yiaddr=192.0.2.7" in text
    assert "chaddr=02:00:00:00:00:01" in text
    assert "sname=b'srv'" in text
    assert "DHCP_MESSAGE_TYPE" in text


# -- canonical building --------------------------------------------------------------------------


def test_build_writes_end_and_pads_to_300_bytes() -> None:
    data = discover().build()
    assert len(data) == 300  # RFC 1542 §2.1 minimum
    assert data[236:240] == COOKIE
    assert data[240:] == b"\x35\x01\x01" + b"\x37\x05\x01\x03\x06\x0f\x79" + b"\xff" + bytes(49)
    assert Message.parse(data) == discover()


def test_build_splits_long_values_per_rfc_3396() -> None:
    value = bytes(range(256)) * 2 + b"tail"  # 516 bytes: 255 + 255 + 6
    message = discover(options={53: b"\x01", 43: value})
    data = message.build()
    options = data[240:]
    assert options[:3] == b"\x35\x01\x01"
    assert options[3:5] == b"\x2b\xff" and options[5:260] == value[:255]
    assert options[260:262] == b"\x2b\xff" and options[262:517] == value[255:510]
    assert options[517:519] == b"\x2b\x06" and options[519:525] == value[510:]
    assert options[525:] == b"\xff"
    parsed = Message.parse(data)
    assert parsed == message
    assert parsed.options[43] == value


def test_build_empty_value_and_large_message_are_not_padded_further() -> None:
    message = discover(options={80: b"", 60: bytes(200)})
    data = message.build()
    assert len(data) == 240 + 2 + 202 + 1
    assert Message.parse(data) == message


def test_overload_spills_into_file_then_sname() -> None:
    # More than a 576-byte message's options area: option 52 = 3 lets the rest go into `file`
    # then `sname`, the order RFC 2131 §4.1 reads them in.
    options = {53: b"\x02", 52: b"\x03", 60: bytes(250), 43: bytes(50), 12: b"h" * 70}
    options[66] = b"t" * 50
    message = Message(op=2, xid=9, sname=b"ignored", options=options)
    data = message.build()
    assert len(data) <= 576
    assert data[240:246] == b"\x34\x01\x03\x35\x01\x02"  # option 52 first, in the options area
    file_area = data[108:236]
    sname_area = data[44:108]
    assert file_area[:54] == b"\x2b\x32" + bytes(50) + b"\x0c\x46"  # 43 and 12 spilled
    assert sname_area == b"\x42\x32" + b"t" * 50 + b"\xff" + bytes(11)  # 66 did not fit in file
    parsed = Message.parse(data)
    assert parsed == message
    assert parsed.file == file_area  # the raw field is what was on the wire
    assert parsed.build() == data


def test_overload_keeps_split_instances_in_reading_order() -> None:
    # A 300-byte value is split in two instances; the second may not land in an area read
    # before the first's (RFC 3396 concatenation order).
    options = {52: b"\x03", 60: bytes(200), 43: bytes(range(100)) * 3}
    message = Message(op=2, xid=9, options=options)
    assert Message.parse(message.build()) == message


def test_overload_with_too_much_for_576_bytes_stays_in_the_options_area() -> None:
    options = {52: b"\x01", 60: bytes(255), 43: bytes(255), 77: bytes(255)}
    message = Message(op=2, xid=9, options=options)
    data = message.build()
    assert data[108:236] == b"\xff" + bytes(127)  # an empty overloaded file area
    assert Message.parse(data) == message


def test_overload_with_little_to_spill_leaves_empty_areas() -> None:
    message = Message(op=2, xid=9, options={52: b"\x02", 53: b"\x02"})
    data = message.build()
    assert data[44:108] == b"\xff" + bytes(63)
    assert Message.parse(data) == message


# -- parsing -------------------------------------------------------------------------------------


def test_parse_reads_figure_1_fields() -> None:
    data = bytearray(header(op=2, xid=0xCAFEBABE) + b"\x35\x01\x05\xff")
    data[2] = 6
    data[3] = 2
    data[8:12] = b"\x00\x05\x80\x00"
    data[12:28] = bytes([10, 0, 0, 1, 10, 0, 0, 2, 10, 0, 0, 3, 10, 0, 0, 4])
    message = Message.parse(bytes(data))
    assert (message.op, message.hops, message.xid) == (2, 2, 0xCAFEBABE)
    assert (message.secs, message.flags) == (5, FLAG_BROADCAST)
    assert [str(message.ciaddr), str(message.yiaddr), str(message.siaddr)] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert message.giaddr == IPv4Address("10.0.0.4")
    assert message.message_type is MessageType.ACK


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = header() + b"\x35\x01\x01\xff"
    assert Message.parse(bytearray(data)) == Message.parse(memoryview(data))  # type: ignore[arg-type]


def test_parse_without_end_is_accepted_and_kept() -> None:
    data = header() + b"\x35\x01\x01\x0c\x02hi"
    message = Message.parse(data)
    assert message.options == {53: b"\x01", 12: b"hi"}
    assert message.build() == data


def test_parse_keeps_pad_runs_and_bytes_after_end() -> None:
    data = header() + b"\x00\x00\x35\x01\x01\x00\x0c\x02hi\xff\x01\x02garbage\x00"
    message = Message.parse(data)
    assert message.options == {53: b"\x01", 12: b"hi"}
    assert message.build() == data


def test_parse_concatenates_across_areas_in_rfc_2131_order() -> None:
    # Options area, then file, then sname (RFC 2131 §4.1), RFC 3396 concatenation throughout.
    sname = b"\x0c\x01c\x0f\x03org\xff".ljust(64, b"\x00")
    file = b"\x0c\x01b\x0f\x03.ex".ljust(128, b"\x00")  # no END: the area is full of PADs
    data = header(sname=sname, file=file) + b"\x34\x01\x03\x0c\x01a\x35\x01\x01\xff"
    message = Message.parse(data)
    assert dict(message.options) == {52: b"\x03", 12: b"abc", 53: b"\x01", 15: b".exorg"}
    assert list(message.options) == [52, 12, 53, 15]
    assert message.overload == 3
    assert message.sname == sname
    assert message.build() == data


def test_parse_ignores_sname_and_file_without_overload() -> None:
    data = header(sname=b"\x01\x99" + bytes(62), file=b"boot/pxelinux.0".ljust(128, b"\x00"))
    message = Message.parse(data + b"\xff")
    assert message.options == {}
    assert message.file.rstrip(b"\x00") == b"boot/pxelinux.0"


def test_overload_file_only_does_not_read_sname() -> None:
    sname = b"\x01\x99garbage".ljust(64, b"\x00")  # would be an overrun if it were read
    file = b"\x0f\x02ab\xff".ljust(128, b"\x00")
    message = Message.parse(header(sname=sname, file=file) + b"\x34\x01\x01\xff")
    assert message.options[15] == b"ab"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (header()[:239], "truncated below header + cookie"),
        (header()[:236] + b"\x00\x00\x00\x00", "no magic cookie"),
        (header() + b"\x0c", "option without length byte"),
        (header() + b"\x0c\x05abc", "option overruns the buffer"),
        (header() + b"\x35\x02\x01\x01\xff", "option 53 with length 2"),
        (header() + b"\x35\x01\x01\x35\x01\x02\xff", "option 53 repeated (concatenates to 2)"),
        (header() + b"\x33\x03\x00\x00\x00\xff", "option 51 with length 3"),
        (header() + b"\x34\x01\x00\xff", "overload value 0"),
        (header() + b"\x34\x01\x04\xff", "overload value 4"),
        (header(file=b"\x0c\xf0".ljust(128, b"\x00")) + b"\x34\x01\x01\xff", "file garbage"),
        (header(sname=b"\x0c".rjust(64, b"\x00")) + b"\x34\x01\x02\xff", "sname garbage"),
        (header(file=b"\x34\x01\x01".ljust(128, b"\x00")) + b"\x34\x01\x01\xff", "52 in file"),
        (header() + b"\x52\x03\x01\x05a\xff", "option 82 sub-option overrun"),
    ],
)
def test_parse_rejects_malformed_input(data: bytes, reason: str) -> None:
    with pytest.raises(MessageError):
        Message.parse(data)


def test_parse_rejects_non_bytes() -> None:
    with pytest.raises(MessageError):
        Message.parse(12)  # type: ignore[arg-type]


# -- replace -------------------------------------------------------------------------------------


def test_replace_changes_fields_and_keeps_the_rest() -> None:
    message = discover()
    changed = message.replace(xid=5, ciaddr="192.0.2.9")
    assert changed.xid == 5
    assert changed.ciaddr == IPv4Address("192.0.2.9")
    assert changed.options == message.options
    assert message.xid == 0xDEADBEEF


def test_replace_header_only_keeps_the_wire_layout() -> None:
    data = header() + b"\x00\x35\x01\x01\xff" + b"junk"
    changed = Message.parse(data).replace(secs=9)
    expected = bytearray(data)
    expected[8:10] = b"\x00\x09"
    assert changed.build() == bytes(expected)


def test_replace_options_lays_out_canonically() -> None:
    data = header() + b"\x00\x35\x01\x01\xff" + b"junk"
    changed = Message.parse(data).replace(options={53: b"\x03", 50: bytes([192, 0, 2, 7])})
    built = changed.build()
    assert built[240:] == b"\x35\x01\x03\x32\x04\xc0\x00\x02\x07\xff" + bytes(50)
    assert Message.parse(built) == changed


def test_replace_overloaded_area_drops_the_layout() -> None:
    file = b"\x0f\x02ab\xff".ljust(128, b"\x00")
    message = Message.parse(header(file=file) + b"\x34\x01\x01\xff")
    changed = message.replace(file=b"new")
    assert Message.parse(changed.build()) == changed


def test_replace_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        discover().replace(colour="red")


def test_options_instance_is_shared_not_copied() -> None:
    options = Options({53: b"\x01"})
    assert Message(op=1, xid=1, options=options).options is options
