"""The DHCPv4 wire format, declared with construct: these declarations are the codec.

* `BootpHeader`: the fixed 236-byte BOOTP header, field for field as RFC 2131 §2 figure 1 draws
  it, followed in `DhcpHeader` by the magic cookie (RFC 2131 §3, RFC 2132 §2).
* `Option`: one option (RFC 2132 §2): PAD (0) is the code alone, END (255) the code followed by
  whatever the area holds after it, every other code is code, length, value.
* `OptionsArea`: the options of one area to its end; `DhcpMessage` is header plus options area.
* `ToEnd` (a compiled repeat-to-end that fails on a last item that does not fit, unlike
  `GreedyRange`) and `Record` (a `Struct` compiled to plain dicts; docs/options.md says why).

`message` runs the compiled forms (`compiled()`, built once on first use). Compiled construct
raises `struct.error` and `ConstructError`, and a compiled `Bytes(n)` at the end of the stream
returns fewer than n bytes: `message` turns the first two into `MessageError` and checks the last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from construct import (
    Bytes,
    Const,
    Construct,
    GreedyBytes,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int32ub,
    ListContainer,
    SizeofError,
    Struct,
    Subconstruct,
    stream_size,
    stream_tell,
    this,
)

__all__ = [
    "END",
    "MAGIC_COOKIE",
    "PAD",
    "BootpHeader",
    "DhcpHeader",
    "DhcpMessage",
    "Option",
    "OptionsArea",
    "ToEnd",
    "compiled",
]

MAGIC_COOKIE = b"\x63\x82\x53\x63"  # 99.130.83.99, RFC 2131 §3 / RFC 1497
PAD = 0
END = 255


def _emitted_parse(construct: Any, code: Any) -> str:
    # construct-typing's stubs leave out the compiler's interface.
    emitted: str = construct._compileparse(code)
    return emitted


def _emitted_build(construct: Any, code: Any) -> str:
    emitted: str = construct._compilebuild(code)
    return emitted


# construct's classes are generic only in construct-typing's stubs.
if TYPE_CHECKING:
    _Repeater = Subconstruct[Any, Any, ListContainer[Any], list[Any]]
else:
    _Repeater = Subconstruct


class ToEnd(_Repeater):
    """`subcon` repeated until the end of the stream, zero or more times.

    Unlike `GreedyRange` it compiles, and an item that does not fit is an error, not the end of
    the list (compiled `Bytes` excepted: it returns what is left, so the caller checks the last
    item). Every item must consume at least one byte.
    """

    def _parse(self, stream: Any, context: Any, path: Any) -> ListContainer[Any]:
        end = stream_size(stream)
        items: ListContainer[Any] = ListContainer()
        while stream_tell(stream, path) < end:
            items.append(self.subcon._parsereport(stream, context, path))
        return items

    def _build(self, obj: Any, stream: Any, context: Any, path: Any) -> Any:
        for item in obj:
            self.subcon._build(item, stream, context, path)
        return obj

    def _sizeof(self, context: Any, path: Any) -> int:
        raise SizeofError("ToEnd has no fixed size", path=path)

    def _emitparse(self, code: Any) -> str:
        name = f"parse_to_end_{code.allocateId()}"
        if isinstance(self.subcon, Record):
            # A record's statements go straight into the loop: one call less per item.
            item = [*self.subcon._parse_lines(code), "append(this)"]
        else:
            item = [f"append({_emitted_parse(self.subcon, code)})"]
        lines = [
            f"def {name}(io, this):",
            "    items = ListContainer()",
            "    append = items.append",
            "    position = io.tell()",
            "    end = io.seek(0, 2)",
            "    io.seek(position)",
            "    while position < end:",
            *(f"        {line}" for line in item),
            "        position = io.tell()",
            "    return items",
        ]
        code.append("\n".join(lines) + "\n")
        return f"{name}(io, this)"

    def _emitbuild(self, code: Any) -> str:
        name = f"build_to_end_{code.allocateId()}"
        if isinstance(self.subcon, Record):
            item = self.subcon._build_lines(code)
        else:
            item = ["obj = objdict", _emitted_build(self.subcon, code)]
        lines = [
            f"def {name}(items, io, this):",
            "    for objdict in items:",
            *(f"        {line}" for line in item),
            "    return items",
        ]
        code.append("\n".join(lines) + "\n")
        return f"{name}(obj, io, this)"


class Record(Struct):
    """A `Struct` whose compiled form keeps its fields in a plain dict instead of `Container`s.

    Why: the options area is a list of small structs, and a compiled `Struct` spends most of
    an option's time creating two `Container`s (the result and the context). Compiled, a
    `Record` parses to a dict of its named fields, which is also the context its fields see:
    they can refer to earlier fields (`this.code`), to nothing outside the record, and cannot
    hold a `Struct` (which wants the outer context); building reads a dict and writes nothing
    back into it. Interpreted, it is a `Struct`.
    """

    def _parse_lines(self, code: Any) -> list[str]:
        """The statements that parse one record into `this` (used inline by `ToEnd` too)."""
        lines = ["this = {}"]
        for sub in self.subcons:
            parse = _emitted_parse(sub, code)
            lines.append(f"this[{sub.name!r}] = {parse}" if sub.name else parse)
        return lines

    def _build_lines(self, code: Any) -> list[str]:
        """The statements that build the record `objdict` (used inline by `ToEnd` too).

        The fields see the dict being built as their context (so a `Rebuild` can use a later
        field), and nothing is written back into it.
        """
        lines = ["this = objdict"]
        for sub in self.subcons:
            if sub.name:
                get = f".get({sub.name!r})" if sub.flagbuildnone else f"[{sub.name!r}]"
                lines.append(f"obj = objdict{get}")
            lines.append(_emitted_build(sub, code))
        return lines

    def _emitparse(self, code: Any) -> str:
        name = f"parse_record_{code.allocateId()}"
        body = [*self._parse_lines(code), "return this"]
        code.append(f"def {name}(io, this):\n" + "".join(f"    {line}\n" for line in body))
        return f"{name}(io, this)"

    def _emitbuild(self, code: Any) -> str:
        name = f"build_record_{code.allocateId()}"
        body = ["objdict = obj", *self._build_lines(code), "return this"]
        code.append(f"def {name}(obj, io, this):\n" + "".join(f"    {line}\n" for line in body))
        return f"{name}(obj, io, this)"


#: RFC 2131 §2, figure 1: "Format of a DHCP message". Addresses are network-order 32-bit
#: integers here; `dhcp4c.protocol.message.Message` turns them into `ipaddress.IPv4Address` on
#: access.
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

#: RFC 2132 §2: one option. PAD is the code byte alone; END is the code byte, and its `value`
#: is what follows it in the area (padding, kept so that a message builds back byte for byte);
#: every other option is code, length, value. (Building takes the length from the item, not
#: `Rebuild(len_(this.value))`: it is a third of an option's build time, and the codec makes
#: every item it builds with its length.)
_TLV = (this.code != PAD) & (this.code != END)
Option = Record(
    "code" / Int8ub,
    "length" / If(_TLV, Int8ub),
    "value" / IfThenElse(_TLV, Bytes(this.length), If(this.code == END, GreedyBytes)),
)

#: An options area (the `options` field, or `file`/`sname` under overload, RFC 2131 §4.1): the
#: options to the end of the area. A peer may omit END when the options fill the area.
OptionsArea = ToEnd(Option)

#: A whole DHCP message: the header, the cookie and the options area.
DhcpMessage = Record(*DhcpHeader.subcons, "options" / OptionsArea)

_compiled: dict[str, Construct[Any, Any]] = {}
_SOURCES: dict[str, Construct[Any, Any]] = {
    "message": DhcpMessage,
    "header": DhcpHeader,
    "options": OptionsArea,
}


def compiled(name: str) -> Construct[Any, Any]:
    """Return the compiled form of `DhcpMessage`, `DhcpHeader` or `OptionsArea`, compiled once.

    Args:
        name: "message", "header" or "options".
    Returns:
        The compiled construct.
    Raises:
        KeyError: for any other name.
    """
    construct = _compiled.get(name)
    if construct is None:
        construct = _compiled[name] = _SOURCES[name].compile()
    return construct


# Compiled at import, as a module-level `re.compile` would be: generating the code is a one-off
# cost of loading the codec, never a cost of a client's first exchange.
for _name in _SOURCES:
    compiled(_name)
del _name
