"""Tests for dhcp4c.protocol.wire: the constructs it adds to construct's (`ToEnd`, `Record`) behave
the same
compiled and interpreted, and the declarations compile without falling back."""

from __future__ import annotations

import struct

import pytest
from construct import ConstructError, Int8ub, Int16ub, Struct

from dhcp4c.protocol import wire


@pytest.mark.parametrize("compile_it", [False, True])
def test_to_end_repeats_to_the_end_of_the_stream(compile_it: bool) -> None:
    items = wire.ToEnd(Int16ub)
    declaration = items.compile() if compile_it else items
    assert declaration.parse(b"") == []
    assert declaration.parse(b"\x00\x01\x00\x02") == [1, 2]
    assert declaration.build([1, 2]) == b"\x00\x01\x00\x02"
    with pytest.raises((ConstructError, struct.error)):
        declaration.parse(b"\x00\x01\x00")  # a last item that does not fit is an error


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # PAD
        b"\x35\x01\x05",  # a TLV
        b"\x0c\x00",  # an empty value
        b"\xff",  # END at the end of the area
        b"\xff\x00\x00junk",  # END and what follows it
    ],
)
def test_option_record_reads_alike_compiled_and_interpreted(data: bytes) -> None:
    interpreted = wire.Option.parse(data)
    compiled = wire.Option.compile().parse(data)
    assert dict(compiled) == {k: v for k, v in interpreted.items() if not k.startswith("_")}
    assert wire.Option.compile().build(compiled) == data == wire.Option.build(interpreted)


def test_record_compiles_to_plain_dicts() -> None:
    record = wire.Record("a" / Int8ub, "b" / Int8ub)
    assert type(record.compile().parse(b"\x01\x02")) is dict
    assert record.parse(b"\x01\x02").a == 1  # interpreted, it is a Struct
    assert isinstance(record, Struct)


def test_the_codec_declarations_compile_entirely() -> None:
    for name in ("message", "header", "options"):
        source = wire.compiled(name).source
        assert "linkedparsers[" not in source.split("linkedbuilders = {}")[1], name
    with pytest.raises(KeyError):
        wire.compiled("nothing")
