"""The DHCPv4 wire format, declared with construct: the specification the codec is checked against.

This module owns the declarations of the message layout and nothing else:

* `BootpHeader`: the fixed 236-byte BOOTP header, field for field as RFC 2131 §2 figure 1
  draws it, followed in `DhcpHeader` by the magic cookie (RFC 2131 §3, RFC 2132 §2).
* `Option`: one option TLV (RFC 2132 §2): PAD (0) and END (255) are a lone code byte, every
  other code is followed by a length byte and that many value bytes.
* `OptionsArea`: a sequence of options up to and including END. It is declared with
  `RepeatUntil` rather than `GreedyRange` so that `.compile()` really compiles it.

The hot path in `dhcp4c.message` does not run these declarations: it uses a `struct` format and
a TLV walker that are derived from them and checked against them (test_message asserts
`struct_format(DhcpHeader) == dhcp4c.message.HEADER_FORMAT`; test_corpus and
test_codec_properties check that `reference_parse` and `Message.parse` read the corpus and
generated messages alike). Why, measured by bench/codec.py: the compiled declarations parse a
corpus message in ~28 µs and the compiled header alone takes ~3 µs, more than dpkt's whole parse
(~2.5 µs); importing construct also costs ~30 ms of the command's start-up. So only the tests
and the benchmark import this module, never `import dhcp4c.message`.
"""

from __future__ import annotations

from typing import Any

from construct import (
    Bytes,
    Const,
    Construct,
    FormatField,
    Int8ub,
    Int16ub,
    Int32ub,
    Pass,
    RepeatUntil,
    Struct,
    Switch,
    obj_,
    this,
)

MAGIC_COOKIE = b"\x63\x82\x53\x63"  # 99.130.83.99, RFC 2131 §3 / RFC 1497
PAD = 0
END = 255

#: RFC 2131 §2, figure 1: "Format of a DHCP message". Addresses are network-order 32-bit
#: integers here; `dhcp4c.message.Message` turns them into `ipaddress.IPv4Address` on access.
BootpHeader = Struct(
    "op" / Int8ub,  # 1 = BOOTREQUEST, 2 = BOOTREPLY
    "htype" / Int8ub,  # hardware address type, ARP's numbers (1 = 10 Mb Ethernet)
    "hlen" / Int8ub,  # hardware address length (6 for Ethernet)
    "hops" / Int8ub,  # relay agents increment it
    "xid" / Int32ub,  # transaction ID chosen by the client
    "secs" / Int16ub,  # seconds since the client began acquisition or renewal
    "flags" / Int16ub,  # bit 15: BROADCAST (RFC 2131 §2, figure 2)
    "ciaddr" / Int32ub,  # client IP address, only when BOUND, RENEWING or REBINDING
    "yiaddr" / Int32ub,  # 'your' (client) IP address
    "siaddr" / Int32ub,  # IP address of the next server to use in bootstrap
    "giaddr" / Int32ub,  # relay agent IP address
    "chaddr" / Bytes(16),  # client hardware address
    "sname" / Bytes(64),  # optional server host name, or options when overloaded (option 52)
    "file" / Bytes(128),  # boot file name, or options when overloaded (option 52)
)

#: The header as DHCP uses it: BOOTP's vendor area begins with the magic cookie (RFC 2131 §3).
DhcpHeader = Struct(*BootpHeader.subcons, "cookie" / Const(MAGIC_COOKIE))

#: RFC 2132 §2: one option. PAD and END are fixed-length (the code byte alone); every other
#: option is code, length, value.
Option = Struct(
    "code" / Int8ub,
    "length" / Switch(this.code, {PAD: Pass, END: Pass}, Int8ub),
    "value" / Switch(this.code, {PAD: Pass, END: Pass}, Bytes(this.length)),
)

#: An options area (the `options` field, or `file`/`sname` under overload): options up to and
#: including END (RFC 2131 §4.1). A peer may omit END when the options fill the area;
#: `reference_parse` appends one in that case.
OptionsArea = RepeatUntil(obj_.code == END, Option)

_compiled: dict[str, Construct[Any, Any]] = {}


def compiled(name: str) -> Construct[Any, Any]:
    """Return the compiled form of `DhcpHeader` or `OptionsArea`, compiling it once.

    Args:
        name: "header" or "options".
    Returns:
        The compiled construct.
    Raises:
        KeyError: for any other name.
    """
    if name not in _compiled:
        sources: dict[str, Construct[Any, Any]] = {"header": DhcpHeader, "options": OptionsArea}
        _compiled[name] = sources[name].compile()
    return _compiled[name]


def struct_format(declaration: Struct) -> str:
    """Return the `struct` format string equivalent to a Struct of fixed-size fields.

    Args:
        declaration: a construct Struct whose fields are FormatField, Bytes(n) or Const(bytes).
    Returns:
        A big-endian struct format, one item per field (Const fields become "Ns").
    Raises:
        TypeError: if a field has no fixed struct equivalent.
    """
    parts = [">"]
    for sub in declaration.subcons:
        inner = sub
        while not isinstance(inner, FormatField) and hasattr(inner, "subcon"):
            inner = inner.subcon  # through Renamed and Const
        if isinstance(inner, FormatField):
            parts.append(inner.fmtstr[1:])
        elif hasattr(inner, "length") and isinstance(inner.length, int):
            parts.append(f"{inner.length}s")
        else:
            raise TypeError(f"field {sub.name!r} has no fixed struct equivalent")
    return "".join(parts)


def reference_parse(data: bytes) -> tuple[dict[str, Any], list[tuple[int, bytes, str]]]:
    """Decode a message with the compiled construct declarations only (for tests and bench).

    It follows option 52 into `file` then `sname` (RFC 2131 §4.1) and does no content checks.

    Args:
        data: one DHCP message (UDP payload).
    Returns:
        The header fields, and the options as (code, value, area) in RFC 2131 §4.1 order,
        PAD and END left out, repeated codes not concatenated (the oracle.jsonl shape).
    Raises:
        construct.ConstructError: on framing errors, or struct.error on short input (compiled
            construct does not wrap it).
    """
    header = dict(compiled("header").parse(data))
    header.pop("_io", None)
    options = _area_options("options", data[DhcpHeader.sizeof() :])
    # Only the options field may carry option 52 (RFC 2131 §4.1); then file, then sname.
    overload = b"".join(value for code, value, _ in options if code == 52)
    if overload and overload[0] & 1:
        options += _area_options("file", header["file"])
    if overload and overload[0] & 2:
        options += _area_options("sname", header["sname"])
    return header, options


def _area_options(name: str, area: bytes) -> list[tuple[int, bytes, str]]:
    # An END is appended for areas that end without one; RepeatUntil stops at the first END.
    parsed = compiled("options").parse(area + bytes([END]))
    return [(option.code, option.value, name) for option in parsed if option.code not in (PAD, END)]
