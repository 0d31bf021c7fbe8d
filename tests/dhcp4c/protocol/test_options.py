"""Tests for dhcp4c.protocol.options: the Options mapping, the framing checks, every typed accessor
and the
registry of option declarations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from construct import (
    Bytes,
    FixedSized,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Struct,
    Switch,
    this,
)

from dhcp4c.protocol.message import Message, MessageError
from dhcp4c.protocol.options import (
    CHECKED_CODES,
    OptionCode,
    OptionDeclaration,
    Options,
    check_value,
    declaration,
    register,
    unregister,
)
from dhcp4c.protocol.wire import ToEnd


def a(text: str) -> IPv4Address:
    return IPv4Address(text)


def test_option_codes_have_rfc_2132_names() -> None:
    expected = {
        "PAD": 0, "SUBNET_MASK": 1, "ROUTER": 3, "DOMAIN_NAME_SERVER": 6, "HOST_NAME": 12,
        "DOMAIN_NAME": 15, "INTERFACE_MTU": 26, "BROADCAST_ADDRESS": 28, "STATIC_ROUTE": 33,
        "NTP_SERVERS": 42, "VENDOR_SPECIFIC": 43, "REQUESTED_IP_ADDRESS": 50,
        "IP_ADDRESS_LEASE_TIME": 51, "OPTION_OVERLOAD": 52, "DHCP_MESSAGE_TYPE": 53,
        "SERVER_IDENTIFIER": 54, "PARAMETER_REQUEST_LIST": 55, "MESSAGE": 56,
        "MAXIMUM_DHCP_MESSAGE_SIZE": 57, "RENEWAL_TIME_VALUE": 58, "REBINDING_TIME_VALUE": 59,
        "VENDOR_CLASS_IDENTIFIER": 60, "CLIENT_IDENTIFIER": 61, "RAPID_COMMIT": 80,
        "IPV6_ONLY_PREFERRED": 108, "CAPTIVE_PORTAL": 114, "DOMAIN_SEARCH": 119,
        "CLASSLESS_STATIC_ROUTE": 121, "END": 255,
    }  # fmt: skip
    for name, code in expected.items():
        assert OptionCode[name] == code


# -- the mapping ---------------------------------------------------------------------------------


def test_mapping_from_dict_and_pairs() -> None:
    options = Options({53: b"\x01", 12: b"host"})
    assert options[53] == b"\x01"
    assert 12 in options and 13 not in options
    assert len(options) == 2
    assert list(options) == [53, 12]
    assert options == {53: b"\x01", 12: b"host"}
    assert options == Options([(53, b"\x01"), (12, b"host")])
    assert options != {53: b"\x01"}
    assert options.get(99) is None


def test_repeated_codes_concatenate_in_order() -> None:
    # RFC 3396 §7: the iterable form behaves like the wire.
    options = Options([(12, b"ho"), (53, b"\x01"), (12, b"st")])
    assert options[12] == b"host"
    assert list(options) == [12, 53]


def test_mapping_is_immutable_and_hashable() -> None:
    options = Options({1: bytes(4)})
    assert hash(options) == hash(Options({1: bytes(4)}))
    assert not hasattr(options, "__setitem__")
    with pytest.raises(AttributeError):
        options.extra = 1  # type: ignore[attr-defined]


def test_bytes_like_values_become_bytes() -> None:
    assert type(Options({60: bytearray(b"x")})[60]) is bytes  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 255, 256, -1])
def test_pad_end_and_out_of_range_codes_are_rejected(code: int) -> None:
    with pytest.raises(MessageError):
        Options({code: b""})


def test_non_bytes_value_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Options({12: "host"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (53, b""),  # RFC 2132 §9.6: exactly one byte
        (53, b"\x01\x02"),
        (1, b"\xff\xff\xff"),
        (51, b"\x00\x00\x00\x00\x00"),
        (80, b"\x01"),  # RFC 4039: rapid commit has length 0
        (118, bytes(9)),  # the corpus' FreeRADIUS error vector
        (52, b"\x00"),  # RFC 2132 §9.3: 1, 2 or 3
        (52, b"\x04"),
        (82, b"\x01\x05abc"),  # RFC 3046: sub-option overruns
        (82, b"\x01"),
        (125, b"\x00"),  # RFC 3925: truncated enterprise record
        (125, b""),
        (124, b"\x00\x00\x00\x01\x03ab"),
    ],
)
def test_framing_checks_reject(code: int, value: bytes) -> None:
    with pytest.raises(MessageError):
        check_value(code, value)
    with pytest.raises(MessageError):
        Options({code: value})


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (53, b"\x63"),
        (52, b"\x03"),
        (80, b""),
        (82, b"\x01\x03abc\x02\x00"),
        (82, b""),
        (125, b"\x00\x00\x0d\xe9\x03abc\x00\x00\x00\x01\x00"),
        (43, b"anything"),
        (200, b"unknown stays bytes"),
    ],
)
def test_framing_checks_accept(code: int, value: bytes) -> None:
    check_value(code, value)
    assert Options({code: value})[code] == value


# -- typed accessors -----------------------------------------------------------------------------


def test_absent_options_give_none_or_empty() -> None:
    options = Options()
    for name in (
        "subnet_mask", "domain_name", "lease_time", "renewal_time", "rebinding_time",
        "server_identifier", "requested_address", "max_message_size", "client_identifier",
        "hostname", "mtu", "broadcast_address", "classless_static_routes",
        "ipv6_only_preferred", "captive_portal",
    ):  # fmt: skip
        assert getattr(options, name) is None, name
    for name in (
        "routers", "dns_servers", "parameter_request_list", "ntp_servers", "static_routes",
        "domain_search",
    ):  # fmt: skip
        assert getattr(options, name) == (), name
    assert options.rapid_commit is False


def test_scalar_accessors() -> None:
    options = Options(
        {
            1: bytes([255, 255, 255, 0]),
            12: b"myhost",
            15: b"example.org\x00",  # a NUL-terminated value from a sloppy server
            26: (1500).to_bytes(2, "big"),
            28: bytes([192, 0, 2, 255]),
            50: bytes([192, 0, 2, 7]),
            51: b"\xff\xff\xff\xff",
            54: bytes([192, 0, 2, 1]),
            57: (1500).to_bytes(2, "big"),
            58: (1800).to_bytes(4, "big"),
            59: (3150).to_bytes(4, "big"),
            61: b"\x01\x02\x03\x04\x05\x06\x07",
            80: b"",
            108: (1800).to_bytes(4, "big"),
            114: b"https://portal.example/api",
        }
    )
    assert options.subnet_mask == a("255.255.255.0")
    assert options.hostname == "myhost"
    assert options.domain_name == "example.org"
    assert options.mtu == 1500
    assert options.broadcast_address == a("192.0.2.255")
    assert options.requested_address == a("192.0.2.7")
    assert options.lease_time == 0xFFFFFFFF
    assert options.server_identifier == a("192.0.2.1")
    assert options.max_message_size == 1500
    assert options.renewal_time == 1800
    assert options.rebinding_time == 3150
    assert options.client_identifier == b"\x01\x02\x03\x04\x05\x06\x07"
    assert options.rapid_commit is True
    assert options.ipv6_only_preferred == 1800
    assert options.captive_portal == "https://portal.example/api"


def test_address_lists() -> None:
    options = Options({3: bytes([10, 0, 0, 1, 10, 0, 0, 2]), 6: bytes([9, 9, 9, 9]), 42: bytes(4)})
    assert options.routers == (a("10.0.0.1"), a("10.0.0.2"))
    assert options.dns_servers == (a("9.9.9.9"),)
    assert options.ntp_servers == (a("0.0.0.0"),)
    assert Options({55: bytes([1, 3, 6, 15, 121])}).parameter_request_list == (1, 3, 6, 15, 121)


@pytest.mark.parametrize(
    ("values", "accessor"),
    [
        ({3: bytes(5)}, "routers"),
        ({3: b""}, "routers"),
        ({6: bytes(3)}, "dns_servers"),
        ({42: bytes(7)}, "ntp_servers"),
        ({1: bytes([255, 0, 255, 0])}, "subnet_mask"),  # not contiguous
        ({12: b""}, "hostname"),
        ({12: b"a\x00b"}, "hostname"),
        ({15: "exämple".encode()}, "domain_name"),
        ({26: (67).to_bytes(2, "big")}, "mtu"),  # RFC 2132 §5.1: minimum 68
        ({57: (575).to_bytes(2, "big")}, "max_message_size"),  # RFC 2132 §9.10: minimum 576
        ({61: b"\x01"}, "client_identifier"),  # RFC 2132 §9.14: minimum 2
        ({33: bytes(12)}, "static_routes"),
        ({33: b""}, "static_routes"),
        ({114: b"\xff"}, "captive_portal"),
    ],
)
def test_malformed_values_raise_on_access(values: dict[int, bytes], accessor: str) -> None:
    options = Options(values)  # framing is fine: only the typed value is malformed
    with pytest.raises(MessageError):
        getattr(options, accessor)


def test_static_routes() -> None:
    value = bytes([10, 0, 0, 0, 192, 0, 2, 1, 172, 16, 0, 0, 192, 0, 2, 2])
    assert Options({33: value}).static_routes == (
        (a("10.0.0.0"), a("192.0.2.1")),
        (a("172.16.0.0"), a("192.0.2.2")),
    )


# -- RFC 3442 classless static routes ------------------------------------------------------------


def test_classless_static_routes_compact_descriptors() -> None:
    # RFC 3442 §3's examples of descriptors, each followed by its router.
    value = (
        bytes([0]) + bytes([192, 0, 2, 1])  # 0.0.0.0/0 (default route)
        + bytes([8, 10]) + bytes([192, 0, 2, 2])  # 10.0.0.0/8
        + bytes([12, 10, 17]) + bytes([192, 0, 2, 3])  # 10.16.0.0/12: bits past 12 ignored
        + bytes([24, 10, 229, 0]) + bytes([0, 0, 0, 0])  # 10.229.0.0/24, on-link
        + bytes([32, 10, 27, 129, 1]) + bytes([192, 0, 2, 5])  # a host route
    )  # fmt: skip
    assert Options({121: value}).classless_static_routes == (
        (IPv4Network("0.0.0.0/0"), a("192.0.2.1")),
        (IPv4Network("10.0.0.0/8"), a("192.0.2.2")),
        (IPv4Network("10.16.0.0/12"), a("192.0.2.3")),
        (IPv4Network("10.229.0.0/24"), a("0.0.0.0")),
        (IPv4Network("10.27.129.1/32"), a("192.0.2.5")),
    )


@pytest.mark.parametrize(
    "value",
    [
        b"",  # RFC 3442: minimum length 5
        bytes([33, 10, 0, 0, 0, 0, 192, 0, 2, 1]),  # width > 32
        bytes([24, 10, 0, 0, 192, 0, 2]),  # router truncated
        bytes([24, 10]),  # descriptor truncated
        bytes([0, 192, 0, 2, 1, 8]),  # a second, truncated route
    ],
)
def test_classless_static_routes_malformed(value: bytes) -> None:
    with pytest.raises(MessageError):
        _ = Options({121: value}).classless_static_routes


# -- RFC 3397 domain search ----------------------------------------------------------------------


def labels(*names: str) -> bytes:
    out = b""
    for name in names:
        out += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return out


def test_domain_search_with_compression() -> None:
    # RFC 3397 §3's example: "eng.apple.com." then "marketing.apple.com." pointing into it.
    value = labels("eng.apple.com") + b"\x09marketing\xc0\x04"
    assert Options({119: value}).domain_search == ("eng.apple.com", "marketing.apple.com")


def test_domain_search_plain_and_chained_pointers() -> None:
    value = labels("a.example", "b.example") + b"\x01c\xc0\x0b"  # c + pointer to "b.example"
    assert Options({119: value}).domain_search == ("a.example", "b.example", "c.b.example")


def test_domain_search_root_name_is_skipped() -> None:
    assert Options({119: b"\x00" + labels("example")}).domain_search == ("example",)


@pytest.mark.parametrize(
    "value",
    [
        b"\xc0\x00",  # points at itself: a loop
        labels("a") + b"\xc0\x05",  # points forward (at itself again)
        b"\x01a\xc0\x00",  # "a" then back to "a": a loop through a backward pointer's target
        b"\x05abc",  # label runs past the end
        b"\x03abc",  # no terminating zero
        b"\x01a\xc0",  # truncated pointer
        b"\x41" + bytes(65),  # reserved label type 0b01
        b"\x03a.b\x00",  # a dot inside a label
        b"\x02\xff\xfe\x00",  # not ASCII
        (b"\x3f" + b"a" * 63) * 4 + b"\x03abc\x00",  # longer than 255 octets
    ],
)
def test_domain_search_malformed(value: bytes) -> None:
    with pytest.raises(MessageError):
        _ = Options({119: value}).domain_search


def test_unknown_options_stay_bytes_and_repr_names_codes() -> None:
    options = Options({53: b"\x05", 250: b"\x00\x01"})
    assert options[250] == b"\x00\x01"
    assert repr(options) == "Options({DHCP_MESSAGE_TYPE: b'\\x05', 250: b'\\x00\\x01'})"


# -- the registry of declarations ----------------------------------------------------------------

# RFC 2132 and later RFCs: the options with one legal length, as the parse-time framing checks
# must see them (derived from the declarations' sizes).
FIXED_SIZES = {
    1: 4, 2: 4, 13: 2, 16: 4, 19: 1, 20: 1, 22: 2, 23: 1, 24: 4, 26: 2, 27: 1, 28: 4, 29: 1,
    30: 1, 31: 1, 32: 4, 34: 1, 35: 4, 36: 1, 37: 1, 38: 4, 39: 1, 46: 1, 50: 4, 51: 4, 52: 1,
    53: 1, 54: 4, 57: 2, 58: 4, 59: 4, 80: 0, 91: 4, 108: 4, 116: 1, 118: 4,
}  # fmt: skip


@pytest.fixture
def registry() -> Iterator[None]:
    """Undo what a test registers: the registry is process-wide."""
    before = {code for code in range(1, 255) if declaration(code) is not None}
    yield
    for code in range(1, 255):
        if code not in before and declaration(code) is not None:
            unregister(code)


def site_message(options: dict[int, bytes]) -> Message:
    return Message.parse(Message(op=2, xid=7, options={53: b"\x05", **options}).build())


def test_framing_checks_come_from_the_declarations() -> None:
    sizes = {
        code: entry.size
        for code in range(1, 255)
        if (entry := declaration(code)) is not None and entry.size is not None
    }
    assert sizes == FIXED_SIZES
    assert frozenset(FIXED_SIZES) | {52, 82, 124, 125} == CHECKED_CODES
    for code, size in FIXED_SIZES.items():
        check_value(code, bytes([1]) * size)
        with pytest.raises(MessageError):
            check_value(code, bytes(size + 1))


def test_every_project_declaration_compiles_entirely() -> None:
    # Compiled code that falls back to an interpreted construct calls `linkedparsers[...]`.
    for code in range(1, 255):
        entry = declaration(code)
        if entry is None:
            continue
        compiled = entry.construct.compile()
        assert "linkedparsers[" not in compiled.source.split("linkedbuilders = {}")[1], code


@pytest.mark.parametrize(
    ("code", "value", "expected"),
    [
        (2, b"\xff\xff\xf1\xf0", -3600),  # RFC 2132 §3.4: signed
        (55, b"\x01\x03\x06", (1, 3, 6)),
        (82, b"\x01\x03abc\x02\x00", ({"code": 1, "length": 3, "value": b"abc"},
                                     {"code": 2, "length": 0, "value": b""})),
        (125, b"\x00\x00\x0d\xe9\x03abc", ((3561, b"abc"),)),
        (124, b"\x00\x00\x00\x01\x02ab\x00\x00\x00\x02\x00", ((1, b"ab"), (2, b""))),
        (80, b"", True),
        (43, b"\x01\x02", b"\x01\x02"),  # vendor-defined: bytes until someone registers 43
        (224, b"site", b"site"),
    ],
)  # fmt: skip
def test_decoded_reads_through_the_declaration(code: int, value: bytes, expected: object) -> None:
    assert Options({code: value}).decoded(code) == expected
    assert Options().decoded(code) is None


def test_a_registered_vendor_option_is_what_typed_access_uses(registry: None) -> None:
    # RFC 2132 §8.4: option 43 is vendor-defined, commonly sub-option TLVs; here a PXE-like
    # layout (PXE_DISCOVERY_CONTROL = 6, a one-byte bitmap; boot menu prompt = 10).
    menu_prompt = Struct("timeout" / Int8ub, "prompt" / GreedyBytes)
    pxe = ToEnd(
        Struct(
            "code" / Int8ub,
            "length" / Int8ub,
            "value"
            / FixedSized(
                this.length,
                Switch(this.code, {6: Int8ub, 10: menu_prompt}, GreedyBytes),
            ),
        )
    )
    entry = register(
        43, pxe, name="PXE_VENDOR", convert=lambda subs: {s["code"]: s["value"] for s in subs}
    )
    assert declaration(43) is entry and entry.size is None
    message = site_message({43: b"\x06\x01\x08\x0a\x06\x0aPress"})
    decoded = message.options.decoded(43)
    assert decoded[6] == 8
    assert (decoded[10].timeout, decoded[10].prompt) == (10, b"Press")
    assert "PXE_VENDOR" in repr(message.options)


def test_a_registered_site_option_reads_typed(registry: None) -> None:
    # RFC 2132 §2: 224-254 are site-specific.
    location = Struct("site" / Int16ub, "rack" / Int8ub)
    register(224, location, name="SITE_LOCATION", convert=lambda parsed: (parsed.site, parsed.rack))
    assert declaration(224) is not None and declaration(224).size == 3  # type: ignore[union-attr]
    assert site_message({224: b"\x01\x02\x07"}).options.decoded(224) == (258, 7)
    with pytest.raises(MessageError):
        Options({224: b"\x01\x02"}).decoded(224)  # the declaration's fixed size


def test_a_malformed_value_nobody_reads_never_costs_the_message(registry: None) -> None:
    register(225, Struct("count" / Int8ub, "names" / Bytes(this.count)))
    register(226, Int8ub, convert=lambda n: n if n < 10 else int("not a number"))
    message = site_message({225: b"\x09abc", 226: b"\x63"})  # both malformed; parse succeeds
    assert message.options[225] == b"\x09abc"
    with pytest.raises(MessageError, match="225"):
        message.options.decoded(225)  # compiled Bytes(9) would return 3 bytes: an error here
    with pytest.raises(MessageError, match="226"):
        message.options.decoded(226)  # convert's ValueError becomes MessageError
    with pytest.raises(MessageError, match="left over"):
        Options({225: b"\x01ab"}).decoded(225)  # the declaration must read the whole value


def test_a_declaration_that_does_not_compile_still_reads(registry: None) -> None:
    register(227, GreedyRange(Int16ub))  # construct cannot compile GreedyRange: interpreted
    assert Options({227: b"\x00\x01\x00\x02"}).decoded(227) == [1, 2]


def test_registration_conflicts_and_bad_declarations_are_clear_errors(registry: None) -> None:
    with pytest.raises(ValueError, match="declared by dhcp4c"):
        register(1, Int32ub)  # the project's own: the accessors depend on it
    with pytest.raises(ValueError, match="declared by dhcp4c"):
        unregister(121)
    for code in (0, 255, 300, -1):
        with pytest.raises(ValueError, match=r"1\.\.254"):
            register(code, Int8ub)
    with pytest.raises(TypeError, match="not a construct declaration"):
        register(228, b"\x00")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        register(228, Int8ub, convert=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already option 1"):
        register(228, Int8ub, name="SUBNET_MASK")
    register(228, Int8ub, name="SITE_A")
    with pytest.raises(ValueError, match="already registered as SITE_A"):
        register(228, Int16ub)
    with pytest.raises(ValueError, match="already option 228"):
        register(229, Int8ub, name="SITE_A")
    register(228, Int16ub, name="SITE_B", replace=True)
    assert Options({228: b"\x01\x00"}).decoded(228) == 256
    register(229, Int8ub, name="SITE_A")  # the replaced name is free again
    unregister(228)
    assert declaration(228) is None
    with pytest.raises(KeyError):
        unregister(228)


def test_the_documented_example_runs(registry: None, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[3] / "docs" / "options.md").read_text()
    example = re.findall(r"```python\n(.*?)```", text, re.DOTALL)[1]
    exec(compile(example, "docs/options.md", "exec"), {})
    out = capsys.readouterr().out
    assert "SITE_LOCATION" in out and "must be 3" in out
    assert declaration(224) is None and declaration(43) is None  # the example cleans up


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (3, bytes(range(12))),
        (33, bytes(range(16))),
        (55, b"\x01\x03\x06"),
        (82, b"\x01\x03abc\x02\x00\x09\x04wxyz"),
        (121, b"\x18\x0a\x00\x00\xc0\x00\x02\x01\x00\xc0\x00\x02\x02"),
        (124, b"\x00\x00\x00\x01\x02ab\x00\x00\x00\x02\x00"),
        (125, b"\x00\x00\x0d\xe9\x03abc\x00\x00\x00\x01\x01z"),
        (81, b"\x01\x00\x00host"),
        (12, b"host"),
        (2, b"\x00\x00\x0e\x10"),
    ],
)
def test_project_declarations_reject_every_short_read_themselves(code: int, value: bytes) -> None:
    # The project's declarations are read from a plain stream, where compiled `Bytes` returns a
    # short value silently: on every prefix of a value they must decide exactly as the strict
    # stream used for users' declarations does.
    entry = declaration(code)
    assert entry is not None
    strict = OptionDeclaration(code, "strict", entry.construct, entry.convert)
    for end in range(len(value) + 1):
        prefix = value[:end]
        try:
            expected: object = strict.decode(prefix)
        except MessageError:
            expected = MessageError
        try:
            got: object = entry.decode(prefix)
        except MessageError:
            got = MessageError
        assert got == expected, (code, prefix)


def test_names_of_undeclared_codes_come_from_option_code(registry: None) -> None:
    assert repr(Options({43: b"x", 60: b"y"})) == (
        "Options({VENDOR_SPECIFIC: b'x', VENDOR_CLASS_IDENTIFIER: b'y'})"
    )
    assert register(43, GreedyBytes).name == "VENDOR_SPECIFIC"
    assert register(230, GreedyBytes).name == "OPTION_230"
