"""Tests for dhcp4c.protocol.clientid: RFC 4361 and RFC 2132 client identifiers."""

from __future__ import annotations

import pytest

from dhcp4c.protocol.clientid import duid_ll, iaid_for_interface, mac_client_id, rfc4361_client_id

MAC = bytes.fromhex("020000000001")


def test_duid_ll() -> None:
    assert duid_ll(MAC) == b"\x00\x03\x00\x01" + MAC


def test_rfc4361_layout() -> None:
    assert rfc4361_client_id(0x01020304, b"\x00\x03\x00\x01" + MAC) == (
        b"\xff\x01\x02\x03\x04\x00\x03\x00\x01" + MAC
    )


@pytest.mark.parametrize(("iaid", "duid"), [(-1, b"x"), (2**32, b"x"), (0, b"")])
def test_rfc4361_refuses_bad_input(iaid: int, duid: bytes) -> None:
    with pytest.raises(ValueError):
        rfc4361_client_id(iaid, duid)


def test_iaid_is_stable_and_distinct_per_interface() -> None:
    assert iaid_for_interface("eth0") == iaid_for_interface("eth0")
    assert iaid_for_interface("eth0") != iaid_for_interface("eth0.100")
    assert 0 <= iaid_for_interface("eth0") < 2**32


def test_mac_client_id() -> None:
    assert mac_client_id(MAC) == b"\x01" + MAC
