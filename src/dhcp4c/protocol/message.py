"""The DHCP message value: parsing, building and the codec's one error type.

Owns `Message` (immutable), `MessageType`, `MessageError` (defined in `options`) and the layout
rules of RFC 2131 §2 (figure 1), §3 (magic cookie), §4.1 (option areas, overload order), RFC 2132
§2 (TLVs, PAD, END) and RFC 3396 (long and split options), run by the compiled declarations of
`wire`. Invariants:
* `Message.parse` raises `MessageError` and nothing else, for any bytes.
* A parsed message keeps its wire layout (PAD, split instances, a missing END, bytes after END)
  and `build()` writes it back: `Message.parse(b).build() == b`; layout takes no part in equality.
* A constructed message, or one whose options `replace` changed, is laid out canonically: all
  options in the options area (in `file`/`sname` only under option 52), values over 255 bytes
  split per RFC 3396, END written, padded to 300 bytes.
* Building never produces bytes that `parse` rejects: the constructor runs the same checks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from enum import IntEnum
from ipaddress import IPv4Address
from operator import itemgetter
from typing import Any

from construct import ConstructError

from dhcp4c.protocol import wire
from dhcp4c.protocol.options import CHECKED_CODES, MessageError, Options, check_value

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "FLAG_BROADCAST",
    "Message",
    "MessageError",
    "MessageType",
]

BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000  # RFC 2131 §2, figure 2: the leftmost bit of `flags`
MAGIC_COOKIE = wire.MAGIC_COOKIE  # RFC 2131 §3

_HEADER_SIZE = wire.DhcpHeader.sizeof()  # RFC 2131 figure 1's 236 bytes and the cookie's 4
_COOKIE = slice(_HEADER_SIZE - len(MAGIC_COOKIE), _HEADER_SIZE)
# RFC 1542 §2.1: BOOTP relay agents and old servers expect messages of at least 300 bytes.
BOOTP_MINIMUM_SIZE = 300
# RFC 2131 §2: a client must accept 576-byte messages, i.e. 312 bytes of options area
# (cookie included). Canonical building spills into file/sname (when option 52 allows)
# only past this size.
_OPTIONS_CAPACITY = 312 - len(MAGIC_COOKIE) - 1  # minus the END byte
_OVERLOAD_FILE = 1  # RFC 2132 §9.3
_OVERLOAD_SNAME = 2

# One area's layout: the option list `wire.OptionsArea` parses (or a canonical one made here),
# one dict per PAD, TLV or END with its `code`, `length` and `value` (None for PAD; for END, no
# length and the bytes after it). A missing END is simply the absence of a 255 item.
_Area = list[dict[str, Any]]

_FIELDS = (
    "op",
    "htype",
    "hlen",
    "hops",
    "xid",
    "secs",
    "flags",
    "ciaddr",
    "yiaddr",
    "siaddr",
    "giaddr",
    "chaddr",
    "sname",
    "file",
    "options",
)
_HEADER_FIELDS = _FIELDS[:14]
_header_of = itemgetter(*_HEADER_FIELDS)
_RANGES = {
    "op": 0xFF,
    "htype": 0xFF,
    "hlen": 0xFF,
    "hops": 0xFF,
    "xid": 0xFFFFFFFF,
    "secs": 0xFFFF,
    "flags": 0xFFFF,
}


class MessageType(IntEnum):
    """Option 53 values: RFC 2132 §9.6, RFC 3203 (9), RFC 4388 (10-13), RFC 6926 (14, 15),
    RFC 7724 (16-18). Any other byte is a pseudo-member named ``UNKNOWN_<n>``, not an error:
    the machine drops such messages by policy, the codec still decodes them."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
    FORCERENEW = 9
    LEASEQUERY = 10
    LEASEUNASSIGNED = 11
    LEASEUNKNOWN = 12
    LEASEACTIVE = 13
    BULKLEASEQUERY = 14
    LEASEQUERYDONE = 15
    ACTIVELEASEQUERY = 16
    LEASEQUERYSTATUS = 17
    TLS = 18

    @classmethod
    def _missing_(cls, value: object) -> MessageType | None:
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            return None
        pseudo = int.__new__(cls, value)
        pseudo._name_ = f"UNKNOWN_{value}"
        pseudo._value_ = value
        return pseudo


def _values(area: _Area, values: dict[int, bytes]) -> None:
    """Add one area's option values to `values`, RFC 3396 §7 concatenating repeated codes."""
    for item in area:
        code = item["code"]
        if code == 0 or code == 255:
            continue
        # RFC 3396 §7: repeated instances are concatenated in the order they appear.
        if code in values:
            values[code] += item["value"]
        else:
            values[code] = item["value"]


def _checked(area: _Area, name: str) -> _Area:
    """Reject an area whose last value the end of the area cut short.

    Compiled `Bytes(n)` returns what is left of the stream, so only the last item can be short.
    """
    if area:
        last = area[-1]
        if last["code"] != 0 and last["code"] != 255 and len(last["value"]) != last["length"]:
            raise MessageError(f"option {last['code']} in {name}: length overruns the area")
    # No END before the end of the area: accepted, as tshark, dpkt, scapy and servers do.
    return area


def _parse_area(data: bytes, name: str) -> _Area:
    try:
        area: _Area = wire.compiled("options").parse(data)
    except (struct.error, ConstructError) as error:
        raise MessageError(f"{name}: truncated option ({error})") from error
    return _checked(area, name)


def _item(code: int, value: bytes) -> dict[str, Any]:
    return {"code": code, "length": None if code == 255 else len(value), "value": value}


def _instances(code: int, value: bytes) -> list[dict[str, Any]]:
    # RFC 3396 §5: a value longer than 255 bytes is split into consecutive instances.
    if len(value) <= 255:
        return [_item(code, value)]
    return [_item(code, value[i : i + 255]) for i in range(0, len(value), 255)]


def _size(area: _Area) -> int:
    return sum(2 + len(item["value"]) for item in area)


def _end(area: _Area, size: int) -> _Area:
    """`area` closed by END, whose value pads it to `size` bytes."""
    return [*area, _item(255, bytes(max(0, size - _size(area) - 1)))]


def _canonical(options: Options, overload: int) -> tuple[_Area, _Area | None, _Area | None]:
    """Lay out options canonically: (options area, file area or None, sname area or None)."""
    minimum = BOOTP_MINIMUM_SIZE - _HEADER_SIZE
    if not overload:
        items = [item for code, value in options.items() for item in _instances(code, value)]
        return _end(items, minimum), None, None
    # Option 52 must be in the options area (RFC 2131 §4.1), so it goes first. Each other
    # instance goes into the first area with room for it: the options area up to its
    # 576-byte-message size, then file, then sname, never into an area before the one that
    # holds the previous instance of its code, so that RFC 3396 concatenation in RFC 2131 §4.1's
    # reading order gives the value back.
    order = [52, *(code for code in options if code != 52)]
    instances = [item for code in order for item in _instances(code, options[code])]
    sizes = {"options": _OPTIONS_CAPACITY + 1}
    if overload & _OVERLOAD_FILE:
        sizes["file"] = 128
    if overload & _OVERLOAD_SNAME:
        sizes["sname"] = 64
    names = list(sizes)
    areas: dict[str, _Area] = {name: [] for name in names}
    free = [sizes[name] - 1 for name in names]  # each area keeps a byte for its END
    earliest: dict[int, int] = {}
    for item in instances:
        code, size = item["code"], 2 + len(item["value"])
        index = earliest.get(code, 0)
        while index < len(names) and size > free[index]:
            index += 1
        if index == len(names):
            # More than a 576-byte message holds: everything stays in the options area.
            areas = {name: [] for name in names}
            areas["options"] = instances
            break
        areas[names[index]].append(item)
        free[index] -= size
        earliest[code] = index

    def area(name: str) -> _Area | None:
        return _end(areas[name], sizes[name]) if name in areas else None

    return _end(areas["options"], minimum), area("file"), area("sname")


def _address(name: str, value: IPv4Address | str | int) -> int:
    try:
        return int(IPv4Address(value))
    except ValueError as error:
        raise MessageError(f"{name}: {error}") from error


def _padded(name: str, value: bytes, size: int) -> bytes:
    value = bytes(value)
    if len(value) > size:
        raise MessageError(f"{name} is {len(value)} bytes, at most {size}")
    return value.ljust(size, b"\x00")


class Message:
    """One DHCP message (RFC 2131 §2), an immutable value.

    Args:
        op: BOOTREQUEST (1) or BOOTREPLY (2); any byte is accepted.
        xid: the transaction ID.
        htype, hlen, hops, secs, flags: header fields (figure 1).
        ciaddr, yiaddr, siaddr, giaddr: addresses (IPv4Address, or anything it accepts).
        chaddr: hardware address, zero-padded to 16 bytes.
        sname, file: raw fields, zero-padded to 64 and 128 bytes.
        options: option values by code (RFC 3396 concatenated form).
    Raises:
        MessageError: for a field out of range or an option value `parse` would reject.

    Equality compares the header fields and the options; `sname`/`file` take no part when option
    52 uses them for options, and the wire layout of a parsed message never does. Trade-off:
    addresses are stored as integers and made IPv4Address on each access, which keeps parsing
    cheap at the cost of a small allocation per read.
    """

    __slots__ = ("_header", "_layout", "_options")

    _header: tuple[Any, ...]
    _options: Options
    _layout: tuple[_Area, _Area | None, _Area | None] | None

    def __init__(
        self,
        *,
        op: int,
        xid: int,
        htype: int = 1,
        hlen: int = 6,
        hops: int = 0,
        secs: int = 0,
        flags: int = 0,
        ciaddr: IPv4Address | str | int = 0,
        yiaddr: IPv4Address | str | int = 0,
        siaddr: IPv4Address | str | int = 0,
        giaddr: IPv4Address | str | int = 0,
        chaddr: bytes = b"",
        sname: bytes = b"",
        file: bytes = b"",
        options: Mapping[int, bytes] | Iterable[tuple[int, bytes]] = (),
    ) -> None:
        numbers = {
            "op": op,
            "htype": htype,
            "hlen": hlen,
            "hops": hops,
            "xid": xid,
            "secs": secs,
            "flags": flags,
        }
        for name, number in numbers.items():
            if not isinstance(number, int) or not 0 <= number <= _RANGES[name]:
                raise MessageError(f"{name}={number!r} is not in 0..{_RANGES[name]}")
        header = (
            op,
            htype,
            hlen,
            hops,
            xid,
            secs,
            flags,
            _address("ciaddr", ciaddr),
            _address("yiaddr", yiaddr),
            _address("siaddr", siaddr),
            _address("giaddr", giaddr),
            _padded("chaddr", chaddr, 16),
            _padded("sname", sname, 64),
            _padded("file", file, 128),
        )
        object.__setattr__(self, "_header", header)
        object.__setattr__(
            self, "_options", options if isinstance(options, Options) else Options(options)
        )
        object.__setattr__(self, "_layout", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Message is immutable; use replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Message is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle and copy would restore the slots through __setattr__, which refuses.
        return (_restore, (self._header, self._options, self._layout))

    def __copy__(self) -> Message:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Message:
        return self

    # -- fields --------------------------------------------------------------------------------

    @property
    def op(self) -> int:
        return int(self._header[0])

    @property
    def htype(self) -> int:
        return int(self._header[1])

    @property
    def hlen(self) -> int:
        return int(self._header[2])

    @property
    def hops(self) -> int:
        return int(self._header[3])

    @property
    def xid(self) -> int:
        return int(self._header[4])

    @property
    def secs(self) -> int:
        return int(self._header[5])

    @property
    def flags(self) -> int:
        return int(self._header[6])

    @property
    def ciaddr(self) -> IPv4Address:
        return IPv4Address(self._header[7])

    @property
    def yiaddr(self) -> IPv4Address:
        return IPv4Address(self._header[8])

    @property
    def siaddr(self) -> IPv4Address:
        return IPv4Address(self._header[9])

    @property
    def giaddr(self) -> IPv4Address:
        return IPv4Address(self._header[10])

    @property
    def chaddr(self) -> bytes:
        """The 16 raw bytes; the hardware address is the first `hlen` of them."""
        return bytes(self._header[11])

    @property
    def sname(self) -> bytes:
        """The raw 64-byte field, even when option 52 uses it for options."""
        return bytes(self._header[12])

    @property
    def file(self) -> bytes:
        """The raw 128-byte field, even when option 52 uses it for options."""
        return bytes(self._header[13])

    @property
    def options(self) -> Options:
        return self._options

    @property
    def message_type(self) -> MessageType | None:
        """Option 53 (RFC 2132 §9.6), or None when absent; unknown values are pseudo-members."""
        value = self._options.get(53)
        return None if value is None else MessageType(value[0])

    @property
    def overload(self) -> int:
        """Option 52's value (1 = file, 2 = sname, 3 = both), 0 when absent."""
        value = self._options.get(52)
        return 0 if value is None else value[0]

    # -- codec ---------------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes) -> Message:
        """Decode one DHCP message (a UDP payload).

        Args:
            data: the bytes, starting at `op`.
        Returns:
            The message, keeping its wire layout for a lossless `build()`.
        Raises:
            MessageError: for any malformed input, and for nothing else.

        Only framing is checked here (sizes, cookie, TLVs, option 52, fixed-size options and
        sub-option framing); typed values are decoded, and checked, when accessed.
        """
        if not isinstance(data, bytes):
            try:
                data = bytes(data)
            except TypeError as error:
                raise MessageError(f"cannot parse {type(data).__name__}") from error
        if len(data) < _HEADER_SIZE:
            raise MessageError(f"{len(data)} bytes is shorter than the 240-byte header and cookie")
        if data[_COOKIE] != wire.MAGIC_COOKIE:
            raise MessageError(f"bad magic cookie {data[_COOKIE].hex()}")
        try:
            parsed = wire.compiled("message").parse(data)
        except (struct.error, ConstructError) as error:
            raise MessageError(f"options: truncated option ({error})") from error
        items = _checked(parsed["options"], "options")
        values: dict[int, bytes] = {}
        _values(items, values)
        file_items: _Area | None = None
        sname_items: _Area | None = None
        overload = values.get(52)
        if overload is not None:
            check_value(52, overload)
            # RFC 2131 §4.1: the options field first, then file, then sname.
            if overload[0] & _OVERLOAD_FILE:
                file_items = _parse_area(parsed["file"], "file")
                _values(file_items, values)
            if overload[0] & _OVERLOAD_SNAME:
                sname_items = _parse_area(parsed["sname"], "sname")
                _values(sname_items, values)
        for code in values.keys() & CHECKED_CODES:
            check_value(code, values[code])
        message = object.__new__(cls)
        setter = object.__setattr__
        setter(message, "_header", _header_of(parsed))
        setter(message, "_options", Options._trusted(values))
        setter(message, "_layout", (items, file_items, sname_items))
        return message

    def build(self) -> bytes:
        """Encode the message.

        Returns:
            The bytes: a parsed, unchanged message exactly as it was received; otherwise the
            canonical layout (END written, long values split per RFC 3396, at least 300 bytes).
        """
        layout = self._layout
        if layout is None:
            layout = _canonical(self._options, self.overload)
        fields = dict(zip(_HEADER_FIELDS, self._header, strict=True))
        area = wire.compiled("options")
        if layout[1] is not None:
            fields["file"] = area.build(layout[1])
        if layout[2] is not None:
            fields["sname"] = area.build(layout[2])
        fields["options"] = layout[0]
        data: bytes = wire.compiled("message").build(fields)
        return data

    def replace(self, **changes: Any) -> Message:
        """Return a copy with some fields changed (the same keywords as the constructor).

        The wire layout of a parsed message survives header-only changes; changing `options`,
        or an area option 52 uses, makes the copy canonical.

        Raises:
            TypeError: for an unknown field.
            MessageError: for a value the constructor rejects.
        """
        unknown = changes.keys() - set(_FIELDS)
        if unknown:
            raise TypeError(f"unknown Message fields: {sorted(unknown)}")
        fields: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        fields.update(changes)
        copy = Message(**fields)
        overloaded = {"file"} if self.overload & 1 else set()
        if self.overload & 2:
            overloaded.add("sname")
        if self._layout is not None and not (changes.keys() & ({"options"} | overloaded)):
            object.__setattr__(copy, "_layout", self._layout)
        return copy

    # -- value semantics -----------------------------------------------------------------------

    def _key(self) -> tuple[object, ...]:
        header = self._header
        overload = self.overload
        if overload:
            sname = None if overload & _OVERLOAD_SNAME else header[12]
            file = None if overload & _OVERLOAD_FILE else header[13]
            header = (*header[:12], sname, file)
        return (header, self._options)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        h = self._header
        parts = [f"op={h[0]}", f"xid={h[4]:#010x}"]
        defaults = {"htype": 1, "hlen": 6, "hops": 0, "secs": 0, "flags": 0}
        for index, name in enumerate(("htype", "hlen", "hops"), start=1):
            if h[index] != defaults[name]:
                parts.append(f"{name}={h[index]}")
        for index, name in ((5, "secs"), (6, "flags")):
            if h[index] != defaults[name]:
                parts.append(f"{name}={h[index]:#x}" if name == "flags" else f"{name}={h[index]}")
        for index, name in enumerate(("ciaddr", "yiaddr", "siaddr", "giaddr"), start=7):
            if h[index]:
                parts.append(f"{name}={IPv4Address(h[index])}")
        parts.append(f"chaddr={h[11][: max(h[2], 1)].hex(':')}")
        for index, name in ((12, "sname"), (13, "file")):
            if any(h[index]):
                parts.append(f"{name}={h[index].rstrip(bytes(1))!r}")
        parts.append(f"options={self._options!r}")
        return f"Message({', '.join(parts)})"


def _restore(
    header: tuple[Any, ...],
    options: Options,
    layout: tuple[_Area, _Area | None, _Area | None] | None,
) -> Message:
    message = object.__new__(Message)
    object.__setattr__(message, "_header", header)
    object.__setattr__(message, "_options", options)
    object.__setattr__(message, "_layout", layout)
    return message
