"""Conformance of the codec against the DHCPv4 corpus and its tshark oracle (oracle.jsonl).

Every valid message parses with every header field and every option (RFC 3396-concatenated in
the oracle's RFC 2131 §4.1 area order) equal to tshark's reading, and builds back to the same
bytes; every malformed message raises MessageError. The compiled construct declarations of
`dhcp4c.protocol.wire`, which the codec runs, are checked against the same oracle on their own too.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from dhcp4c.protocol import wire
from dhcp4c.protocol.message import Message, MessageError, MessageType


@pytest.fixture(scope="session")
def oracle(dhcpv4_corpus: Path) -> dict[str, dict[str, Any]]:
    lines = (dhcpv4_corpus / "oracle.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return {record["bin"]: record for record in records}


def test_oracle_covers_the_corpus(dhcpv4_corpus: Path, oracle: dict[str, dict[str, Any]]) -> None:
    files = {p.relative_to(dhcpv4_corpus).as_posix() for p in dhcpv4_corpus.rglob("*.bin")}
    assert files == set(oracle)
    assert sum(record["set"] == "valid" for record in oracle.values()) == 172
    assert sum(record["set"] == "malformed" for record in oracle.values()) == 17


def concatenated(entries: list[list[Any]]) -> dict[int, bytes]:
    """RFC 3396 concatenation of the oracle's option entries, in the oracle's order."""
    values: dict[int, bytes] = {}
    for code, length, value_hex, _area in entries:
        value = bytes.fromhex(value_hex)
        assert len(value) == length
        values[code] = values.get(code, b"") + value
    return values


def test_valid_message_matches_oracle(
    dhcpv4_corpus: Path, oracle: dict[str, dict[str, Any]], valid_bin: str
) -> None:
    record = oracle[valid_bin]
    assert record["set"] == "valid"
    message = Message.parse((dhcpv4_corpus / valid_bin).read_bytes())

    for name in ("op", "htype", "hlen", "hops", "xid", "secs", "flags"):
        assert getattr(message, name) == record[name], name
    for name in ("ciaddr", "yiaddr", "siaddr", "giaddr"):
        assert getattr(message, name) == IPv4Address(record[name]), name
    assert message.chaddr.hex() == record["chaddr"]
    assert message.sname.hex() == record["sname"]
    assert message.file.hex() == record["file"]

    expected = concatenated(record["options"])
    assert dict(message.options) == expected
    assert list(message.options) == list(expected)  # first-appearance order
    assert message.overload == (record["overload"] or 0)
    if record["message_type"] is None:
        assert message.message_type is None
    else:
        assert message.message_type == MessageType(record["message_type"])


def test_valid_message_builds_back_byte_for_byte(dhcpv4_corpus: Path, valid_bin: str) -> None:
    data = (dhcpv4_corpus / valid_bin).read_bytes()
    message = Message.parse(data)
    assert message.build() == data
    assert Message.parse(message.build()) == message


def test_valid_message_rebuilt_canonically_is_equal(dhcpv4_corpus: Path, valid_bin: str) -> None:
    # Changing the options drops the wire layout: the canonical layout must still parse to an
    # equal message (overloaded sname/file excepted, as equality ignores them).
    message = Message.parse((dhcpv4_corpus / valid_bin).read_bytes())
    canonical = message.replace(options=dict(message.options))
    data = canonical.build()
    assert len(data) >= 300
    assert Message.parse(data) == message


def test_malformed_message_raises(
    dhcpv4_corpus: Path, oracle: dict[str, dict[str, Any]], malformed_bin: str
) -> None:
    assert oracle[malformed_bin]["set"] == "malformed"
    with pytest.raises(MessageError):
        Message.parse((dhcpv4_corpus / malformed_bin).read_bytes())


def declared_instances(data: bytes) -> tuple[Any, list[list[Any]]]:
    """The header and option instances as the compiled declarations alone read them.

    Areas in RFC 2131 §4.1 order, PAD and END left out, repeated codes not concatenated: the
    oracle.jsonl shape.
    """
    parsed = wire.compiled("message").parse(data)
    areas = [("options", parsed["options"])]
    overload = b"".join(item["value"] for item in parsed["options"] if item["code"] == 52)
    if overload and overload[0] & 1:
        areas.append(("file", wire.compiled("options").parse(parsed["file"])))
    if overload and overload[0] & 2:
        areas.append(("sname", wire.compiled("options").parse(parsed["sname"])))
    instances = [
        [item["code"], len(item["value"]), item["value"].hex(), name]
        for name, items in areas
        for item in items
        if item["code"] not in (0, 255)
    ]
    return parsed, instances


def test_construct_declaration_matches_oracle(
    dhcpv4_corpus: Path, oracle: dict[str, dict[str, Any]], valid_bin: str
) -> None:
    # The compiled construct declarations read every option instance, area and header field
    # exactly as tshark does, and build the message back from what they parsed.
    record = oracle[valid_bin]
    data = (dhcpv4_corpus / valid_bin).read_bytes()
    header, options = declared_instances(data)
    assert options == record["options"]
    assert header["xid"] == record["xid"]
    assert str(IPv4Address(header["yiaddr"])) == record["yiaddr"]
    assert header["sname"].hex() == record["sname"]
    assert wire.compiled("message").build(header) == data
