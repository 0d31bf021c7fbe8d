"""Tests for dhcp4c.options: the Options mapping, the framing checks and every typed accessor."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from dhcp4c.message import MessageError
from dhcp4c.options import OptionCode, Options, check_value


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
