"""DHCP option codes, the option value declarations (a registry) and the option mapping.

Owns `OptionCode` (RFC 2132's names), `Options` (per code, the value bytes after RFC 3396
concatenation, in first-appearance order; immutable, hashable) and the registry: one construct
declaration per code (`declaration(code)`) with its conversion to a typed value, extended with
`register` (docs/options.md). `Options.decoded(code)` and the typed accessors decode on access,
raising `MessageError` for a malformed value, so a bad value nobody reads costs nothing. The
framing checks every message passes (`check_value`: fixed sizes, option 52, the sub-option
framing of 82/124/125) derive from the same declarations and run on parse and construction.

Invariants: keys are 1..254 (PAD and END are framing, not options); values are `bytes`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import IntEnum
from io import BytesIO
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from construct import (
    Adapter,
    Bytes,
    Check,
    Construct,
    ConstructError,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32sb,
    Int32ub,
    Pass,
    Rebuild,
    Struct,
    len_,
    this,
)

from dhcp4c.protocol.wire import Record, ToEnd

__all__ = [
    "CHECKED_CODES",
    "Address",
    "AddressList",
    "IPv4AddressAdapter",
    "MessageError",
    "OptionCode",
    "OptionDeclaration",
    "Options",
    "SubOption",
    "Text",
    "ToEnd",
    "check_value",
    "declaration",
    "register",
    "unregister",
]


class MessageError(ValueError):
    """The one error for malformed DHCP bytes or option values.

    Defined here because the option accessors raise it and `dhcp4c.protocol.message` imports this
    module; `dhcp4c.protocol.message` re-exports it, and that is where callers import it from.
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


# -- value declarations ----------------------------------------------------------------------------


# construct's classes are generic only in construct-typing's stubs.
if TYPE_CHECKING:
    _AddressBase = Adapter[int, int, IPv4Address, IPv4Address | str | int]
else:
    _AddressBase = Adapter


class IPv4AddressAdapter(_AddressBase):
    """A network-order 32-bit integer as an `ipaddress.IPv4Address`; compiles."""

    def _decode(self, obj: int, context: Any, path: Any) -> IPv4Address:
        return IPv4Address(obj)

    def _encode(self, obj: IPv4Address | str | int, context: Any, path: Any) -> int:
        return int(IPv4Address(obj))

    def _emitparse(self, code: Any) -> str:
        code.append("from ipaddress import IPv4Address")
        return f"IPv4Address({self.subcon._compileparse(code)})"  # type: ignore[attr-defined]

    def _emitbuild(self, code: Any) -> str:
        code.append("from ipaddress import IPv4Address")
        build = self.subcon._compilebuild(code)  # type: ignore[attr-defined]
        return f"reuse(int(IPv4Address(obj)), lambda obj: {build})"


#: RFC 2132 §2: an IPv4 address, four octets in network order.
Address = IPv4AddressAdapter(Int32ub)
#: RFC 2132: a list of addresses (minimum length 4, a multiple of 4: `convert` checks the first).
AddressList = ToEnd(Address)
#: RFC 2132 §3.14 and others: NVT ASCII text (`_text` decodes it: construct's string classes
#: do not compile).
Text = GreedyBytes
#: RFC 2132 §5.8: destination, router pairs.
StaticRoute = Record("destination" / Address, "router" / Address)
#: RFC 3442 §3: a prefix width, the significant octets of the destination, the router.
ClasslessRoute = Record(
    "width" / Int8ub,
    Check(this.width <= 32),
    "destination" / Bytes((this.width + 7) // 8),
    "router" / Address,
)
#: RFC 3046 §2.0 (82) and RFC 2132 §8.4 (43, by convention): code, length, value sub-options.
SubOption = Record(
    "code" / Int8ub,
    "length" / Rebuild(Int8ub, len_(this.value)),
    "value" / Bytes(this.length),
    Check(len_(this.value) == this.length),  # compiled Bytes returns a short value silently
)
#: RFC 3925 §3 (124) and §4 (125): an enterprise number and its data.
VendorRecord = Record(
    "enterprise" / Int32ub,
    "length" / Rebuild(Int8ub, len_(this.data)),
    "data" / Bytes(this.length),
    Check(len_(this.data) == this.length),  # compiled Bytes returns a short value silently
)
#: RFC 4702 §2: flags, two deprecated RCODE bytes, the domain name.
ClientFqdn = Struct("flags" / Int8ub, "rcode1" / Int8ub, "rcode2" / Int8ub, "name" / GreedyBytes)


T = TypeVar("T")


class _ShortRead(ConstructError):
    pass


class _ExactStream(BytesIO):
    # Compiled `Bytes(n)` returns fewer than n bytes at the end of the stream: reading through
    # this stream makes that an error, as the interpreted declaration would.
    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size >= 0 and len(data) != size:
            raise _ShortRead(f"{size} bytes wanted, {len(data)} left")
        return data


# Compiled forms by declaration: codes that share a declaration (`Address`, `Int32ub`, ...)
# share its compiled code, compiled when the first of them is read.
_compiled: dict[int, tuple[Construct[Any, Any], Construct[Any, Any]]] = {}


def _compile(construct: Construct[Any, Any]) -> Construct[Any, Any]:
    known = _compiled.get(id(construct))
    if known is not None and known[0] is construct:
        return known[1]
    try:
        compiled = construct.compile()
    except Exception:  # construct raises anything on what it cannot compile
        compiled = construct  # runs interpreted, with the same result
    _compiled[id(construct)] = (construct, compiled)
    return compiled


class OptionDeclaration(Generic[T]):
    """How one option code's value is read: a construct declaration and a conversion.

    Attributes:
        code: the option code, 1..254.
        name: the option's name (RFC 2132's, for the project's codes).
        construct: the declaration of the value (after RFC 3396 concatenation).
        convert: turns what `construct` parsed into the typed value, raising ValueError for a
            value that is well-formed but not legal; None keeps what `construct` parsed.
        size: the value's one legal length, when `construct` has a fixed size.
    """

    __slots__ = ("_compiled", "_stream", "code", "construct", "convert", "name", "size")

    code: int
    name: str
    construct: Construct[Any, Any]
    convert: Callable[[Any], T] | None
    size: int | None

    def __init__(
        self,
        code: int,
        name: str,
        construct: Construct[Any, Any],
        convert: Callable[[Any], T] | None = None,
        *,
        checks_lengths: bool = False,
    ) -> None:
        self.code = code
        self.name = name
        self.construct = construct
        self.convert = convert
        try:
            self.size = construct.sizeof()
        except ConstructError:
            self.size = None
        self._compiled: Construct[Any, Any] | None = None
        # A declaration that checks its own lengths (the project's: every variable `Bytes` is
        # followed by a `Check` or a fixed-size field, which fail on a short read) is read
        # from a plain stream, which costs a third of `_ExactStream` for long lists.
        self._stream: type[BytesIO] = BytesIO if checks_lengths else _ExactStream

    def __repr__(self) -> str:
        return f"OptionDeclaration({self.code}, {self.name!r}, {self.construct!r})"

    def parse(self, value: bytes) -> Any:
        """Parse `value` with the declaration (compiled on first use), without `convert`.

        Raises:
            MessageError: for a wrong fixed size, a value the declaration does not read or
                one it does not read to the end.
        """
        if self.size is not None and len(value) != self.size:
            raise MessageError(f"option {self.code} has length {len(value)}, must be {self.size}")
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = _compile(self.construct)
        stream = self._stream(value)
        try:
            parsed = compiled.parse_stream(stream)
        except (struct.error, ConstructError, ValueError) as error:
            raise MessageError(
                f"option {self.code} ({self.name}): {error or type(error).__name__}"
            ) from error
        if stream.tell() != len(value):
            raise MessageError(
                f"option {self.code} ({self.name}): {len(value) - stream.tell()} bytes left over"
            )
        return parsed

    def decode(self, value: bytes) -> T:
        """Parse and convert `value`: the option's typed value.

        Raises:
            MessageError: for any malformed value.
        """
        parsed = self.parse(value)
        if self.convert is None:
            return parsed  # type: ignore[no-any-return]
        try:
            return self.convert(parsed)
        except ValueError as error:
            raise MessageError(f"option {self.code} ({self.name}): {error}") from error


def _nonempty(items: Sequence[Any]) -> tuple[Any, ...]:
    if not items:
        raise ValueError("empty")
    return tuple(items)


def _contiguous(mask: IPv4Address) -> IPv4Address:
    inverted = ~int(mask) & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise ValueError(f"{mask} is not a contiguous netmask")
    return mask


def _at_least(minimum: int) -> Callable[[int], int]:
    def check(number: int) -> int:
        if number < minimum:
            raise ValueError(f"{number} < {minimum}")
        return number

    return check


def _text(value: bytes) -> str:
    # RFC 2132 §3.14/§3.17: NVT ASCII, "should not" be NUL-terminated. Servers that do it
    # anyway are common, so trailing NULs are dropped (systemd-networkd does the same); an
    # embedded NUL or non-ASCII byte is malformed.
    text = value.rstrip(b"\x00")
    if not text or b"\x00" in text:
        raise ValueError("empty or contains NUL")
    try:
        return text.decode("ascii")
    except UnicodeDecodeError as error:
        raise ValueError("not ASCII") from error


def _overload(value: int) -> int:
    # RFC 2132 §9.3: 1 = file, 2 = sname, 3 = both; anything else points at garbage.
    if value not in (1, 2, 3):
        raise ValueError(f"overload value {value}, must be 1, 2 or 3")
    return value


def _client_identifier(value: bytes) -> bytes:
    if len(value) < 2:
        raise ValueError(f"length {len(value)} < 2")
    return value


def _rapid_commit(_parsed: None) -> bool:
    return True


def _static_routes(routes: Sequence[Any]) -> tuple[tuple[IPv4Address, IPv4Address], ...]:
    return tuple((route["destination"], route["router"]) for route in _nonempty(routes))


def _classless_routes(routes: Sequence[Any]) -> tuple[tuple[IPv4Network, IPv4Address], ...]:
    # Bits past the width are ignored, as RFC 3442 §3's encoding leaves them undefined.
    return tuple(
        (
            IPv4Network(
                (int.from_bytes(route["destination"].ljust(4, b"\0"), "big"), route["width"]),
                strict=False,
            ),
            route["router"],
        )
        for route in _nonempty(routes)
    )


def _vendor_records(records: Sequence[Any]) -> tuple[tuple[int, bytes], ...]:
    return tuple((record["enterprise"], record["data"]) for record in _nonempty(records))


_registry: dict[int, OptionDeclaration[Any]] = {}
_names: dict[str, int] = {}


def _declare(
    code: OptionCode, construct: Construct[Any, Any], convert: Callable[[Any], Any] | None = None
) -> None:
    _registry[code] = OptionDeclaration(code, code.name, construct, convert, checks_lengths=True)
    _names[code.name] = code


_ADDRESS_LISTS = (3, 4, 5, 6, 7, 41, 42, 44)
_TEXTS = (12, 15, 17, 40, 47, 56, 66, 67, 114)
_UINT16 = (13, 22, 26, 57)
_UINT8 = (19, 20, 23, 27, 29, 30, 31, 34, 36, 37, 39, 46, 53, 116)
_UINT32 = (24, 35, 38, 51, 58, 59, 91, 108)
_ADDRESSES = (16, 28, 32, 50, 54, 118)

for _code in _ADDRESS_LISTS:
    _declare(OptionCode(_code), AddressList, _nonempty)
for _code in _TEXTS:
    _declare(OptionCode(_code), Text, _text)
for _code in _UINT8:
    _declare(OptionCode(_code), Int8ub)
for _code in _UINT16:
    _declare(OptionCode(_code), Int16ub)
for _code in _UINT32:
    _declare(OptionCode(_code), Int32ub)
for _code in _ADDRESSES:
    _declare(OptionCode(_code), Address)
_declare(OptionCode.SUBNET_MASK, Address, _contiguous)  # RFC 2132 §3.3
_declare(OptionCode.TIME_OFFSET, Int32sb)  # RFC 2132 §3.4: signed seconds from UTC
_declare(OptionCode.INTERFACE_MTU, Int16ub, _at_least(68))  # RFC 2132 §5.1
_declare(OptionCode.STATIC_ROUTE, ToEnd(StaticRoute), _static_routes)  # RFC 2132 §5.8
_declare(OptionCode.OPTION_OVERLOAD, Int8ub, _overload)  # RFC 2132 §9.3
_declare(OptionCode.PARAMETER_REQUEST_LIST, ToEnd(Int8ub), tuple)  # RFC 2132 §9.8
_declare(OptionCode.MAXIMUM_DHCP_MESSAGE_SIZE, Int16ub, _at_least(576))  # RFC 2132 §9.10
_declare(OptionCode.CLIENT_IDENTIFIER, GreedyBytes, _client_identifier)  # RFC 2132 §9.14
_declare(OptionCode.RAPID_COMMIT, Pass, _rapid_commit)  # RFC 4039 §4: length 0
_declare(OptionCode.CLIENT_FQDN, ClientFqdn)  # RFC 4702 §2
_declare(OptionCode.RELAY_AGENT_INFORMATION, ToEnd(SubOption), tuple)  # RFC 3046 §2.0
# RFC 3397 §2: RFC 1035 names with compression pointers into the whole value. The pointers are
# offsets into bytes already read, which a declaration does not follow without loops: the names
# are decoded from the bytes by `_domain_names`.
_declare(OptionCode.DOMAIN_SEARCH, GreedyBytes, _domain_names)
_declare(OptionCode.CLASSLESS_STATIC_ROUTE, ToEnd(ClasslessRoute), _classless_routes)  # RFC 3442
_declare(OptionCode.VENDOR_IDENTIFYING_VENDOR_CLASS, ToEnd(VendorRecord), _vendor_records)
_declare(OptionCode.VENDOR_IDENTIFYING_VENDOR_SPECIFIC, ToEnd(VendorRecord), _vendor_records)

#: The project's own declarations; `register` adds to the registry, never over these.
_BUILTIN = frozenset(_registry)

# The project's own declarations are compiled at import (see `wire`): a client's first reply
# should not pay for code generation. A user's declaration compiles when first read.
for _declaration in _registry.values():
    _declaration._compiled = _compile(_declaration.construct)
del _declaration

# Parse-time framing (RFC 2131 §4.1 lets a receiver drop a malformed message; systemd-networkd
# and FreeRADIUS do): every option whose declaration has one fixed size must have that size (the
# corpus' malformed/ set holds 53 with length 0 and 47, 118 with length 9), and these decode in
# full: option 52 (an overload value that points at garbage) and the sub-option framing of 82
# (Kea's "bad RAI" vector overruns it), 124 and 125 (Kea's "truncated VIVSO").
_DECODED_ON_PARSE = frozenset({52, 82, 124, 125})
_FIXED_SIZE = {code: entry.size for code, entry in _registry.items() if entry.size is not None}

#: The codes `check_value` has a rule for; the parser intersects the found codes with it.
CHECKED_CODES = frozenset(_FIXED_SIZE) | _DECODED_ON_PARSE


def check_value(code: int, value: bytes) -> None:
    """Check one (concatenated) option value against the framing rules every message must pass.

    Args:
        code: the option code.
        value: the value after RFC 3396 concatenation.
    Raises:
        MessageError: if the value has the wrong fixed size, option 52 has a value other than
            1, 2 or 3, or the sub-option framing of option 82, 124 or 125 is broken.
    """
    if code in _DECODED_ON_PARSE:
        _registry[code].decode(value)
        return
    size = _FIXED_SIZE.get(code)
    if size is not None and len(value) != size:
        raise MessageError(f"option {code} has length {len(value)}, must be {size}")


def register(
    code: int,
    construct: Construct[Any, Any],
    *,
    name: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    replace: bool = False,
) -> OptionDeclaration[Any]:
    """Declare how the value of an option the project does not declare is read.

    `Options.decoded(code)` then parses the value with `construct` (compiled on first use) and
    passes the result through `convert`. A declared value is only read when asked for, so a
    malformed one never makes `Message.parse` fail.

    Args:
        code: 1..254, not one the project declares (vendor 43, site options 224-254, ...).
        construct: the declaration of the whole value (after RFC 3396 concatenation).
        name: the option's name (in `repr`); default its `OptionCode` name, or ``OPTION_<code>``.
        convert: turns the parsed value into the typed one; a ValueError it raises becomes
            `MessageError`.
        replace: allow replacing an earlier `register` of the same code.
    Returns:
        The declaration now in force.
    Raises:
        TypeError: if `construct` is not a construct declaration or `convert` not callable.
        ValueError: for a code outside 1..254, one the project declares, one already
            registered (without `replace`), or a name another code has.

    Trade-off: the registry is process-wide, like construct's own declarations: register at
    import time of the module that reads the option, not per message.
    """
    if not isinstance(code, int) or not 1 <= code <= 254:
        raise ValueError(f"option code {code!r} is not in 1..254")
    if not isinstance(construct, Construct):
        raise TypeError(f"option {code}: {construct!r} is not a construct declaration")
    if convert is not None and not callable(convert):
        raise TypeError(f"option {code}: convert {convert!r} is not callable")
    code = int(code)
    if code in _BUILTIN:
        raise ValueError(f"option {code} ({_registry[code].name}) is declared by dhcp4c")
    if code in _registry and not replace:
        raise ValueError(f"option {code} is already registered as {_registry[code].name}")
    if name is None:
        name = _name(code) if code in OptionCode.__members__.values() else f"OPTION_{code}"
    if _names.get(name, code) != code:
        raise ValueError(f"option name {name!r} is already option {_names[name]}")
    previous = _registry.get(code)
    if previous is not None:
        del _names[previous.name]
    entry: OptionDeclaration[Any] = OptionDeclaration(code, name, construct, convert)
    _registry[code] = entry
    _names[name] = code
    return entry


def unregister(code: int) -> None:
    """Remove a declaration `register` added (for tests and plugins that unload).

    Raises:
        ValueError: for a code the project declares.
        KeyError: for a code nobody registered.
    """
    if code in _BUILTIN:
        raise ValueError(f"option {code} ({_registry[code].name}) is declared by dhcp4c")
    entry = _registry.pop(code)
    del _names[entry.name]


def declaration(code: int) -> OptionDeclaration[Any] | None:
    """The declaration of an option code (the project's or a registered one), or None."""
    return _registry.get(code)


class Options(Mapping[int, bytes]):
    """Immutable mapping of option code to value bytes, with typed accessors.

    Values are after RFC 3396 concatenation: an iterable with a repeated code concatenates its
    values, as the wire does. Iteration follows first appearance. `decoded(code)` and the
    accessors read a value through its declaration in the registry on access and raise
    `MessageError` on a malformed value; scalar accessors return None and list accessors an
    empty tuple when the option is absent.

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

    def decoded(self, code: int) -> Any:
        """The typed value of an option, read through its declaration (see `register`).

        Args:
            code: the option code.
        Returns:
            None when the option is absent; the value as its declaration reads it; the raw
            bytes for a code nothing declares.
        Raises:
            MessageError: for a value its declaration does not read, or `convert` rejects.
        """
        value = self._values.get(code)
        if value is None:
            return None
        entry = _registry.get(code)
        return value if entry is None else entry.decode(value)

    def _list(self, code: int) -> Any:
        value = self._values.get(code)
        return () if value is None else _registry[code].decode(value)

    # -- scalars -------------------------------------------------------------------------------

    @property
    def subnet_mask(self) -> IPv4Address | None:
        """Option 1 (RFC 2132 §3.3); a mask that is not contiguous ones is malformed."""
        mask: IPv4Address | None = self.decoded(1)
        return mask

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        """Option 3 (RFC 2132 §3.5), in the server's order of preference."""
        routers: tuple[IPv4Address, ...] = self._list(3)
        return routers

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        """Option 6 (RFC 2132 §3.8), in the server's order of preference."""
        servers: tuple[IPv4Address, ...] = self._list(6)
        return servers

    @property
    def hostname(self) -> str | None:
        """Option 12 (RFC 2132 §3.14)."""
        name: str | None = self.decoded(12)
        return name

    @property
    def domain_name(self) -> str | None:
        """Option 15 (RFC 2132 §3.17)."""
        name: str | None = self.decoded(15)
        return name

    @property
    def mtu(self) -> int | None:
        """Option 26 (RFC 2132 §5.1); below the minimum of 68 is malformed."""
        mtu: int | None = self.decoded(26)
        return mtu

    @property
    def broadcast_address(self) -> IPv4Address | None:
        """Option 28 (RFC 2132 §5.3)."""
        address: IPv4Address | None = self.decoded(28)
        return address

    @property
    def static_routes(self) -> tuple[tuple[IPv4Address, IPv4Address], ...]:
        """Option 33 (RFC 2132 §5.8): (destination, router) pairs, classful destinations."""
        routes: tuple[tuple[IPv4Address, IPv4Address], ...] = self._list(33)
        return routes

    @property
    def ntp_servers(self) -> tuple[IPv4Address, ...]:
        """Option 42 (RFC 2132 §8.3), in the server's order of preference."""
        servers: tuple[IPv4Address, ...] = self._list(42)
        return servers

    @property
    def requested_address(self) -> IPv4Address | None:
        """Option 50 (RFC 2132 §9.1)."""
        address: IPv4Address | None = self.decoded(50)
        return address

    @property
    def lease_time(self) -> int | None:
        """Option 51 (RFC 2132 §9.2), seconds; 0xffffffff means infinite (RFC 2131 §3.3)."""
        seconds: int | None = self.decoded(51)
        return seconds

    @property
    def server_identifier(self) -> IPv4Address | None:
        """Option 54 (RFC 2132 §9.7)."""
        address: IPv4Address | None = self.decoded(54)
        return address

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        """Option 55 (RFC 2132 §9.8): the requested codes, in the client's order."""
        codes: tuple[int, ...] = self._list(55)
        return codes

    @property
    def max_message_size(self) -> int | None:
        """Option 57 (RFC 2132 §9.10); below the minimum of 576 is malformed."""
        size: int | None = self.decoded(57)
        return size

    @property
    def renewal_time(self) -> int | None:
        """Option 58, T1 (RFC 2132 §9.11), seconds."""
        seconds: int | None = self.decoded(58)
        return seconds

    @property
    def rebinding_time(self) -> int | None:
        """Option 59, T2 (RFC 2132 §9.12), seconds."""
        seconds: int | None = self.decoded(59)
        return seconds

    @property
    def client_identifier(self) -> bytes | None:
        """Option 61 (RFC 2132 §9.14): type byte and identifier, raw (minimum length 2)."""
        identifier: bytes | None = self.decoded(61)
        return identifier

    @property
    def rapid_commit(self) -> bool:
        """Option 80 (RFC 4039 §4): present (with length 0) or not."""
        return self.decoded(80) is True

    @property
    def ipv6_only_preferred(self) -> int | None:
        """Option 108 (RFC 8925 §3.4): V6ONLY_WAIT in seconds."""
        seconds: int | None = self.decoded(108)
        return seconds

    @property
    def captive_portal(self) -> str | None:
        """Option 114 (RFC 8910 §2.1): the API URI."""
        uri: str | None = self.decoded(114)
        return uri

    @property
    def domain_search(self) -> tuple[str, ...]:
        """Option 119 (RFC 3397): the search list, names without the trailing dot.

        Compression pointers (RFC 1035 §4.1.4) are followed only backwards, which rules out loops.
        """
        names: tuple[str, ...] = self._list(119)
        return names

    @property
    def classless_static_routes(self) -> tuple[tuple[IPv4Network, IPv4Address], ...] | None:
        """Option 121 (RFC 3442): (destination, router) pairs; None when the option is absent.

        A router of 0.0.0.0 means the destination is on-link (RFC 3442 §3). Absent and empty
        differ: RFC 3442 §3 makes a client ignore option 3 only when 121 is present.
        """
        routes: tuple[tuple[IPv4Network, IPv4Address], ...] | None = self.decoded(121)
        return routes


def _name(code: int) -> str:
    entry = _registry.get(code)
    if entry is not None:
        return entry.name
    try:
        return OptionCode(code).name
    except ValueError:
        return str(code)
