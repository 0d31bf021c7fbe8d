"""DNS name validation: the gate between option 12/15/119 bytes and any file we write."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhcp4c.protocol.dnsname import MAX_NAME_LENGTH, is_valid_name, normalize, valid_names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "example.com"),
        ("example.com.", "example.com"),  # an explicitly rooted name: the dot is removed
        ("Corp.Example.COM", "Corp.Example.COM"),  # case preserved
        ("localhost", "localhost"),
        ("a", "a"),
        ("3com.com", "3com.com"),  # RFC 1123 §2.1: a label may start with a digit
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # IDNs arrive as punycode
        ("a-b.c-d", "a-b.c-d"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_valid_names(name: str, expected: str) -> None:
    assert normalize(name) == expected
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".example.com",
        "example..com",
        "example.com..",
        "-example.com",
        "example-.com",
        "exa_mple.com",
        "exa mple.com",
        "example.com\nnameserver 203.0.113.66",  # a resolv.conf line injection
        "example.com\n",  # `$` would match here; `\Z` does not
        "example.com;reboot",  # CVE-2018-1111
        "example.com'$(reboot)'",  # CVE-2011-0997
        "example.com\x00",
        "exam\tple.com",
        "exam\x7fple.com",
        "bücher.example",  # not ASCII
        "a" * 64 + ".com",  # a label over 63
        "/etc/passwd",
        "*.example.com",
    ],
)
def test_invalid_names(name: str) -> None:
    assert normalize(name) is None
    assert not is_valid_name(name)


def test_total_length_limit() -> None:
    label = "a" * 63
    longest = ".".join([label, label, label, "a" * 61])
    assert len(longest) == MAX_NAME_LENGTH
    assert is_valid_name(longest)
    assert is_valid_name(longest + ".")
    assert not is_valid_name(longest + "a")


def test_valid_names_drops_invalid_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dhcp4c.protocol.dnsname"):
        kept = valid_names(
            ["example.com", "evil.com\nnameserver 6.6.6.6", "EXAMPLE.com.", "lab.example"],
            what="search domain",
        )
    assert kept == ("example.com", "lab.example")  # duplicates compare case-insensitively
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "search domain" in message
    assert "\\n" in message and "\n" not in message  # logged as repr, never as a raw newline


@given(st.text(max_size=300))
def test_accepted_names_contain_only_ldh_and_dots(name: str) -> None:
    normalized = normalize(name)
    if normalized is not None:
        assert re.fullmatch(r"[A-Za-z0-9.-]{1,253}", normalized)
        assert normalize(normalized) == normalized


LABEL = r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?"


@given(st.from_regex(rf"{LABEL}(\.{LABEL}){{0,5}}", fullmatch=True))
def test_generated_ldh_names_are_accepted(name: str) -> None:
    assert normalize(name) == name
