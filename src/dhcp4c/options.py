"""DHCP option codes and the immutable option mapping with typed accessors.

This module owns:

* `OptionCode`: the option codes the project names, with RFC 2132's names.
* `Options`: per code, the option's value bytes after RFC 3396 concatenation of repeated
  instances, in first-appearance order. It is immutable and hashable.
* The framing checks every message must pass (`check_value`): the options with a fixed size
  (RFC 2132 and later RFCs, see `_FIXED_LENGTH`), option 52's value (RFC 2131 §4.1), and the
  sub-option framing of the relay agent information (82, RFC 3046 §2.0) and the vendor-identifying
  options (124/125, RFC 3925 §3/§4). `dhcp4c.message` runs them on every parse, and `Options`
  runs them on construction, so a value that `parse` would reject can never be built.
* Typed accessors that decode a value on access only (RFC 2132, RFC 3442, RFC 3397, RFC 4039,
  RFC 8925, RFC 8910), each raising `MessageError` on a malformed value. Decoding lazily keeps
  `Message.parse` within reach of dpkt's speed; codes without an accessor stay bytes.

Invariants: keys are 1..254 (PAD and END are framing, not options); values are `bytes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network

__all__ = ["CHECKED_CODES", "MessageError", "OptionCode", "Options", "check_value"]


class MessageError(ValueError):
    """The one error for malformed DHCP bytes or option values.

    Defined here because the option accessors raise it and `dhcp4c.message` imports this
    module; `dhcp4c.message` re-exports it, and that is where callers import it from.
    """


class OptionCode(IntEnum):
    """DHCP option codes, named as in RFC 2132 (and the RFCs that added later codes)."""

    PAD = 0
    SUBNET_MASK = 1
    TIME_OFFSET = 2
    ROUTER = 3
    TIME_SERVER = 4
    NAME_SERVER = 5
    DOMAIN_NAME_SERVER = 6
    LOG_SERVER = 7
    HOST_NAME = 12
    BOOT_FILE_SIZE = 13
    DOMAIN_NAME = 15
    SWAP_SERVER = 16
    ROOT_PATH = 17
    IP_FORWARDING = 19
    NON_LOCAL_SOURCE_ROUTING = 20
    MAXIMUM_DATAGRAM_REASSEMBLY_SIZE = 22
    DEFAULT_IP_TTL = 23
    PATH_MTU_AGING_TIMEOUT = 24
    INTERFACE_MTU = 26
    ALL_SUBNETS_ARE_LOCAL = 27
    BROADCAST_ADDRESS = 28
    PERFORM_MASK_DISCOVERY = 29
    MASK_SUPPLIER = 30
    PERFORM_ROUTER_DISCOVERY = 31
    ROUTER_SOLICITATION_ADDRESS = 32
    STATIC_ROUTE = 33
    TRAILER_ENCAPSULATION = 34
    ARP_CACHE_TIMEOUT = 35
    ETHERNET_ENCAPSULATION = 36
    TCP_DEFAULT_TTL = 37
    TCP_KEEPALIVE_INTERVAL = 38
    TCP_KEEPALIVE_GARBAGE = 39
    NIS_DOMAIN = 40
    NIS_SERVERS = 41
    NTP_SERVERS = 42
    VENDOR_SPECIFIC = 43
    NETBIOS_NAME_SERVER = 44
    NETBIOS_NODE_TYPE = 46
    NETBIOS_SCOPE = 47
    REQUESTED_IP_ADDRESS = 50
    IP_ADDRESS_LEASE_TIME = 51
    OPTION_OVERLOAD = 52
    DHCP_MESSAGE_TYPE = 53
    SERVER_IDENTIFIER = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAXIMUM_DHCP_MESSAGE_SIZE = 57
    RENEWAL_TIME_VALUE = 58
    REBINDING_TIME_VALUE = 59
    VENDOR_CLASS_IDENTIFIER = 60
    CLIENT_IDENTIFIER = 61
    TFTP_SERVER_NAME = 66
    BOOTFILE_NAME = 67
    USER_CLASS = 77
    RAPID_COMMIT = 80
    CLIENT_FQDN = 81
    RELAY_AGENT_INFORMATION = 82
    CLIENT_LAST_TRANSACTION_TIME = 91
    AUTO_CONFIGURE = 116
    IPV6_ONLY_PREFERRED = 108
    CAPTIVE_PORTAL = 114
    SUBNET_SELECTION = 118
    DOMAIN_SEARCH = 119
    CLASSLESS_STATIC_ROUTE = 121
    VENDOR_IDENTIFYING_VENDOR_CLASS = 124
    VENDOR_IDENTIFYING_VENDOR_SPECIFIC = 125
    END = 255


# Options whose value has exactly one legal length. A wrong length is a framing error: the
# whole message is rejected, as RFC 2131 §4.1 lets a receiver do with a malformed message and
# as systemd-networkd and FreeRADIUS do (the corpus' malformed/ set holds 53 with length 0 and
# 47, and 118 with length 9).
_FIXED_LENGTH: dict[int, int] = {
    1: 4,  # RFC 2132 §3.3 subnet mask
    2: 4,  # RFC 2132 §3.4 time offset
    13: 2,  # RFC 2132 §3.9 boot file size
    16: 4,  # RFC 2132 §3.12 swap server
    19: 1,  # RFC 2132 §4.1 IP forwarding
    20: 1,  # RFC 2132 §4.2 non-local source routing
    22: 2,  # RFC 2132 §4.4 maximum datagram reassembly size
    23: 1,  # RFC 2132 §4.5 default IP TTL
    24: 4,  # RFC 2132 §4.6 path MTU aging timeout
    26: 2,  # RFC 2132 §5.1 interface MTU
    27: 1,  # RFC 2132 §5.2 all subnets are local
    28: 4,  # RFC 2132 §5.3 broadcast address
    29: 1,  # RFC 2132 §5.4 perform mask discovery
    30: 1,  # RFC 2132 §5.5 mask supplier
    31: 1,  # RFC 2132 §5.6 perform router discovery
    32: 4,  # RFC 2132 §5.7 router solicitation address
    34: 1,  # RFC 2132 §6.1 trailer encapsulation
    35: 4,  # RFC 2132 §6.2 ARP cache timeout
    36: 1,  # RFC 2132 §6.3 ethernet encapsulation
    37: 1,  # RFC 2132 §7.1 TCP default TTL
    38: 4,  # RFC 2132 §7.2 TCP keepalive interval
    39: 1,  # RFC 2132 §7.3 TCP keepalive garbage
    46: 1,  # RFC 2132 §8.7 NetBIOS node type
    50: 4,  # RFC 2132 §9.1 requested IP address
    51: 4,  # RFC 2132 §9.2 IP address lease time
    52: 1,  # RFC 2132 §9.3 option overload
    53: 1,  # RFC 2132 §9.6 DHCP message type
    54: 4,  # RFC 2132 §9.7 server identifier
    57: 2,  # RFC 2132 §9.10 maximum DHCP message size
    58: 4,  # RFC 2132 §9.11 renewal (T1) time value
    59: 4,  # RFC 2132 §9.12 rebinding (T2) time value
    80: 0,  # RFC 4039 §4 rapid commit
    91: 4,  # RFC 4388 §6.1 client last transaction time
    108: 4,  # RFC 8925 §3.4 IPv6-only preferred
    116: 1,  # RFC 2563 §2 auto-configure
    118: 4,  # RFC 3011 §3 subnet selection
}


def _check_suboptions(code: int, value: bytes) -> None:
    # RFC 3046 §2.0: the relay agent information option is a sequence of sub-option TLVs that
    # must fill the value exactly (Kea's "bad RAI" vector overruns it).
    i, end = 0, len(value)
    while i < end:
        if i + 2 > end or i + 2 + value[i + 1] > end:
            raise MessageError(f"option {code}: sub-option at offset {i} overruns the value")
        i += 2 + value[i + 1]


def _check_vendor_identifying(code: int, value: bytes) -> None:
    # RFC 3925 §3 (124) and §4 (125): enterprise-number (4), data-len (1), data, repeated; the
    # records must fill the value exactly (Kea's "truncated VIVSO" has a 1-byte option 125).
    i, end = 0, len(value)
    if end == 0:
        raise MessageError(f"option {code}: empty")
    while i < end:
        if i + 5 > end or i + 5 + value[i + 4] > end:
            raise MessageError(f"option {code}: vendor record at offset {i} is truncated")
        i += 5 + value[i + 4]


def check_value(code: int, value: bytes) -> None:
    """Check one (concatenated) option value against the framing rules every message must pass.

    Args:
        code: the option code.
        value: the value after RFC 3396 concatenation.
    Raises:
        MessageError: if the value has the wrong fixed size, option 52 has a value other than
            1, 2 or 3, or the sub-option framing of option 82, 124 or 125 is broken.
    """
    size = _FIXED_LENGTH.get(code)
    if size is not None and len(value) != size:
        raise MessageError(f"option {code} has length {len(value)}, must be {size}")
    if code == 52 and value[0] not in (1, 2, 3):
        # RFC 2132 §9.3: 1 = file, 2 = sname, 3 = both; anything else points at garbage.
        raise MessageError(f"option 52 (overload) has value {value[0]}, must be 1, 2 or 3")
    if code == 82:
        _check_suboptions(code, value)
    elif code in (124, 125):
        _check_vendor_identifying(code, value)


#: The codes `check_value` has a rule for; the parser intersects the found codes with it.
CHECKED_CODES = frozenset(_FIXED_LENGTH) | {82, 124, 125}


def _u32(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _addresses(code: int, value: bytes) -> tuple[IPv4Address, ...]:
    # RFC 2132: address lists have a minimum length of 4 and a multiple of 4.
    if not value or len(value) % 4:
        raise MessageError(f"option {code}: length {len(value)} is not a positive multiple of 4")
    return tuple(IPv4Address(value[i : i + 4]) for i in range(0, len(value), 4))


def _text(code: int, value: bytes) -> str:
    # RFC 2132 §3.14/§3.17: NVT ASCII, "should not" be NUL-terminated. Servers that do it
    # anyway are common, so trailing NULs are dropped (systemd-networkd does the same); an
    # embedded NUL or non-ASCII byte is malformed.
    text = value.rstrip(b"\x00")
    if not text or b"\x00" in text:
        raise MessageError(f"option {code}: empty or contains NUL")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError as error:
        raise MessageError(f"option {code}: not ASCII") from error


def _prefix_routes(value: bytes) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    # RFC 3442 §3: each route is a width byte (0..32), the ceil(width/8) significant octets of
    # the destination, then the router.
    routes: list[tuple[IPv4Network, IPv4Address]] = []
    i, end = 0, len(value)
    if end == 0:
        raise MessageError("option 121: empty (minimum length is 5)")
    while i < end:
        width = value[i]
        if width > 32:
            raise MessageError(f"option 121: prefix width {width} > 32")
        significant = (width + 7) // 8
        if i + 1 + significant + 4 > end:
            raise MessageError(f"option 121: route at offset {i} is truncated")
        octets = value[i + 1 : i + 1 + significant] + bytes(4 - significant)
        # Bits past the width are ignored, as RFC 3442 §3's encoding leaves them undefined.
        destination = IPv4Network((_u32(octets), width), strict=False)
        router = IPv4Address(value[i + 1 + significant : i + 5 + significant])
        routes.append((destination, router))
        i += 5 + significant
    return tuple(routes)


# RFC 1035 §4.1.4 / RFC 3397 §2: domain names with compression pointers relative to the
# start of the option's (concatenated) value.
_MAX_NAME = 255


def _domain_names(value: bytes) -> tuple[str, ...]:
    names: list[str] = []
    i, end = 0, len(value)
    while i < end:
        labels: list[str] = []
        length = 0
        position = i
        next_name = -1
        # Loop protection: a pointer must point strictly before the start of the run of labels
        # it ends (the name's start, or the previous pointer's target), so every jump lands
        # earlier than the one before and the walk ends. Real encoders only point back at
        # names already written, which always satisfies this.
        segment = i
        while True:
            if position >= end:
                raise MessageError("option 119: name runs past the end of the value")
            label = value[position]
            if label == 0:
                if next_name < 0:
                    next_name = position + 1
                break
            if label & 0xC0 == 0xC0:
                if position + 1 >= end:
                    raise MessageError("option 119: truncated compression pointer")
                target = ((label & 0x3F) << 8) | value[position + 1]
                if target >= segment:
                    raise MessageError("option 119: compression pointer does not point back")
                if next_name < 0:
                    next_name = position + 2
                position = segment = target
                continue
            if label & 0xC0:
                raise MessageError(f"option 119: reserved label type {label:#x}")
            if position + 1 + label > end:
                raise MessageError("option 119: label runs past the end of the value")
            raw = value[position + 1 : position + 1 + label]
            length += label + 1
            if length > _MAX_NAME:
                raise MessageError("option 119: name longer than 255 octets")
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError as error:
                raise MessageError("option 119: label is not ASCII") from error
            if "." in text:
                raise MessageError("option 119: label contains a dot")
            labels.append(text)
            position += 1 + label
        if labels:
            names.append(".".join(labels))
        i = next_name
    return tuple(names)


class Options(Mapping[int, bytes]):
    """Immutable mapping of option code to value bytes, with typed accessors.

    Values are after RFC 3396 concatenation: an iterable with a repeated code concatenates its
    values, as the wire does. Iteration follows first appearance. Accessors decode on access
    and raise `MessageError` on a malformed value; scalar accessors return None and list
    accessors an empty tuple when the option is absent.

    Args:
        items: a mapping, or (code, value) pairs, codes 1..254.
    Raises:
        MessageError: for a code outside 1..254 or a value `check_value` rejects.

    Trade-off: decoding lazily means a malformed typed value is found when it is read, not when
    the message is parsed; only the framing checks run on parse.
    """

    __slots__ = ("_hash", "_values")

    _values: dict[int, bytes]
    _hash: int | None

    def __init__(self, items: Mapping[int, bytes] | Iterable[tuple[int, bytes]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        values: dict[int, bytes] = {}
        for code, value in pairs:
            if not isinstance(code, int) or not 1 <= code <= 254:
                raise MessageError(f"option code {code!r} is not in 1..254")
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"option {code}: value must be bytes, not {type(value).__name__}")
            values[int(code)] = values.get(code, b"") + bytes(value)
        for code in values.keys() & CHECKED_CODES:
            check_value(code, values[code])
        self._values = values
        self._hash = None

    @classmethod
    def _trusted(cls, values: dict[int, bytes]) -> Options:
        # The parser's constructor: `values` is already concatenated and checked, and is owned
        # by the new instance (never mutated afterwards).
        options = object.__new__(cls)
        options._values = values
        options._hash = None
        return options

    def __getitem__(self, code: int) -> bytes:
        return self._values[code]

    def __contains__(self, code: object) -> bool:
        return code in self._values

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Options):
            return self._values == other._values
        if isinstance(other, Mapping):
            return self._values == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._values.items()))
        return self._hash

    def __repr__(self) -> str:
        body = ", ".join(f"{_name(code)}: {value!r}" for code, value in self._values.items())
        return f"Options({{{body}}})"

    # -- scalars -------------------------------------------------------------------------------

    def _fixed(self, code: int) -> bytes | None:
        value = self._values.get(code)
        if value is not None and len(value) != _FIXED_LENGTH[code]:
            raise MessageError(f"option {code} has length {len(value)}")
        return value

    def _address(self, code: int) -> IPv4Address | None:
        value = self._fixed(code)
        return None if value is None else IPv4Address(value)

    def _int(self, code: int) -> int | None:
        value = self._fixed(code)
        return None if value is None else int.from_bytes(value, "big")

    @property
    def subnet_mask(self) -> IPv4Address | None:
        """Option 1 (RFC 2132 §3.3); a mask that is not contiguous ones is malformed."""
        mask = self._address(1)
        if mask is not None:
            inverted = ~int(mask) & 0xFFFFFFFF
            if inverted & (inverted + 1):
                raise MessageError(f"option 1: {mask} is not a contiguous netmask")
        return mask

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        """Option 3 (RFC 2132 §3.5), in the server's order of preference."""
        value = self._values.get(3)
        return () if value is None else _addresses(3, value)

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        """Option 6 (RFC 2132 §3.8), in the server's order of preference."""
        value = self._values.get(6)
        return () if value is None else _addresses(6, value)

    @property
    def hostname(self) -> str | None:
        """Option 12 (RFC 2132 §3.14)."""
        value = self._values.get(12)
        return None if value is None else _text(12, value)

    @property
    def domain_name(self) -> str | None:
        """Option 15 (RFC 2132 §3.17)."""
        value = self._values.get(15)
        return None if value is None else _text(15, value)

    @property
    def mtu(self) -> int | None:
        """Option 26 (RFC 2132 §5.1); below the minimum of 68 is malformed."""
        mtu = self._int(26)
        if mtu is not None and mtu < 68:
            raise MessageError(f"option 26: MTU {mtu} < 68")
        return mtu

    @property
    def broadcast_address(self) -> IPv4Address | None:
        """Option 28 (RFC 2132 §5.3)."""
        return self._address(28)

    @property
    def static_routes(self) -> tuple[tuple[IPv4Address, IPv4Address], ...]:
        """Option 33 (RFC 2132 §5.8): (destination, router) pairs, classful destinations."""
        value = self._values.get(33)
        if value is None:
            return ()
        if not value or len(value) % 8:
            raise MessageError(f"option 33: length {len(value)} is not a positive multiple of 8")
        addresses = _addresses(33, value)
        return tuple(zip(addresses[0::2], addresses[1::2], strict=True))

    @property
    def ntp_servers(self) -> tuple[IPv4Address, ...]:
        """Option 42 (RFC 2132 §8.3), in the server's order of preference."""
        value = self._values.get(42)
        return () if value is None else _addresses(42, value)

    @property
    def requested_address(self) -> IPv4Address | None:
        """Option 50 (RFC 2132 §9.1)."""
        return self._address(50)

    @property
    def lease_time(self) -> int | None:
        """Option 51 (RFC 2132 §9.2), seconds; 0xffffffff means infinite (RFC 2131 §3.3)."""
        return self._int(51)

    @property
    def server_identifier(self) -> IPv4Address | None:
        """Option 54 (RFC 2132 §9.7)."""
        return self._address(54)

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        """Option 55 (RFC 2132 §9.8): the requested codes, in the client's order."""
        return tuple(self._values.get(55, b""))

    @property
    def max_message_size(self) -> int | None:
        """Option 57 (RFC 2132 §9.10); below the minimum of 576 is malformed."""
        size = self._int(57)
        if size is not None and size < 576:
            raise MessageError(f"option 57: {size} < 576")
        return size

    @property
    def renewal_time(self) -> int | None:
        """Option 58, T1 (RFC 2132 §9.11), seconds."""
        return self._int(58)

    @property
    def rebinding_time(self) -> int | None:
        """Option 59, T2 (RFC 2132 §9.12), seconds."""
        return self._int(59)

    @property
    def client_identifier(self) -> bytes | None:
        """Option 61 (RFC 2132 §9.14): type byte and identifier, raw (minimum length 2)."""
        value = self._values.get(61)
        if value is not None and len(value) < 2:
            raise MessageError(f"option 61: length {len(value)} < 2")
        return value

    @property
    def rapid_commit(self) -> bool:
        """Option 80 (RFC 4039 §4): present (with length 0) or not."""
        value = self._values.get(80)
        if value:
            raise MessageError("option 80: length must be 0")
        return value is not None

    @property
    def ipv6_only_preferred(self) -> int | None:
        """Option 108 (RFC 8925 §3.4): V6ONLY_WAIT in seconds."""
        return self._int(108)

    @property
    def captive_portal(self) -> str | None:
        """Option 114 (RFC 8910 §2.1): the API URI."""
        value = self._values.get(114)
        return None if value is None else _text(114, value)

    @property
    def domain_search(self) -> tuple[str, ...]:
        """Option 119 (RFC 3397): the search list, names without the trailing dot.

        Compression pointers (RFC 1035 §4.1.4) are followed only backwards, which rules out loops.
        """
        value = self._values.get(119)
        return () if value is None else _domain_names(value)

    @property
    def classless_static_routes(self) -> tuple[tuple[IPv4Network, IPv4Address], ...] | None:
        """Option 121 (RFC 3442): (destination, router) pairs; None when the option is absent.

        A router of 0.0.0.0 means the destination is on-link (RFC 3442 §3). Absent and empty
        differ: RFC 3442 §3 makes a client ignore option 3 only when 121 is present.
        """
        value = self._values.get(121)
        return None if value is None else _prefix_routes(value)


def _name(code: int) -> str:
    try:
        return OptionCode(code).name
    except ValueError:
        return str(code)
