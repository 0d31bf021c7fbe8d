"""The BPF filter, run through a small classic-BPF interpreter written here for the purpose."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhcp4c.linux import bpf
from dhcp4c.linux.frames import build_datagram, internet_checksum


def run_bpf(program: Sequence[bpf.Instruction], packet: bytes) -> int:
    """Interpret classic BPF as the kernel does for the instructions a socket filter may use.

    Returns the accepted length (0: drop). A load past the end of the packet drops it, as in
    the kernel.
    """
    a = x = 0
    pc = 0
    for _ in range(len(program) + 1):  # classic BPF only jumps forward
        code, jt, jf, k = program[pc]
        pc += 1
        cls = code & 0x07
        if cls in (bpf.BPF_LD, bpf.BPF_LDX):
            mode, size = code & 0xE0, code & 0x18
            if cls == bpf.BPF_LDX and mode == bpf.BPF_MSH:
                if k >= len(packet):
                    return 0
                x = (packet[k] & 0x0F) * 4
                continue
            if cls == bpf.BPF_LDX and mode == bpf.BPF_IMM:
                x = k
                continue
            if mode == bpf.BPF_IMM:
                a = k
                continue
            offset = k if mode == bpf.BPF_ABS else x + k
            width = {bpf.BPF_W: 4, bpf.BPF_H: 2, bpf.BPF_B: 1}[size]
            if mode not in (bpf.BPF_ABS, bpf.BPF_IND) or offset + width > len(packet):
                return 0
            a = int.from_bytes(packet[offset : offset + width], "big")
        elif cls == bpf.BPF_ALU:
            assert code & 0xF8 == bpf.BPF_AND | bpf.BPF_K, f"unsupported ALU {code:#x}"
            a &= k
        elif cls == bpf.BPF_JMP:
            op = code & 0xF0
            assert code & 0x08 == bpf.BPF_K, f"unsupported jump source {code:#x}"
            if op == bpf.BPF_JEQ:
                taken = a == k
            elif op == bpf.BPF_JSET:
                taken = bool(a & k)
            else:
                raise AssertionError(f"unsupported jump {code:#x}")
            pc += jt if taken else jf
        elif cls == bpf.BPF_RET:
            assert code & 0x18 == bpf.BPF_K
            return min(k, len(packet))
        else:
            raise AssertionError(f"unsupported class {code:#x}")
    raise AssertionError("program ran off its end")


PROGRAM = bpf.dhcp_client_filter()


def frame(
    *,
    port: int = 68,
    flags_offset: int = 0,
    protocol: int = 17,
    version: int = 4,
    options: bytes = b"",
) -> bytes:
    data = bytearray(
        build_datagram(
            b"reply", source=IPv4Address("10.0.0.1"), source_port=67, destination_port=port
        )
    )
    if options:
        data[0] = 0x40 | (5 + len(options) // 4)
        data[20:20] = options
        data[2:4] = struct.pack("!H", len(data))
    data[0] = (version << 4) | (data[0] & 0x0F)
    data[6:8] = struct.pack("!H", flags_offset)
    data[9] = protocol
    data[10:12] = b"\x00\x00"
    header_length = (data[0] & 0x0F) * 4
    data[10:12] = struct.pack("!H", internet_checksum(bytes(data[:header_length])))
    return bytes(data)


@pytest.mark.parametrize(
    ("packet", "accepted"),
    [
        (frame(), True),
        (frame(flags_offset=0x4000), True),  # DF
        (frame(options=b"\x01\x01\x01\x00"), True),  # the port is found after options
        (frame(port=67), False),
        (frame(port=69), False),
        (frame(port=68 << 8), False),
        (frame(flags_offset=0x2000), False),  # MF: first fragment
        (frame(flags_offset=0x0001), False),  # a later fragment
        (frame(flags_offset=0x1FFF), False),
        (frame(protocol=6), False),  # TCP
        (frame(version=6), False),
        (b"", False),
        (frame()[:20], False),  # no UDP header: the port load runs off the end
    ],
)
def test_filter_decisions(packet: bytes, accepted: bool) -> None:
    result = run_bpf(PROGRAM, packet)
    assert (result == len(packet) > 0) if accepted else result == 0


def test_filter_for_another_port() -> None:
    assert run_bpf(bpf.dhcp_client_filter(67), frame(port=67)) > 0
    assert run_bpf(bpf.dhcp_client_filter(67), frame(port=68)) == 0


@given(
    port=st.integers(0, 0xFFFF),
    flags_offset=st.integers(0, 0xFFFF),
    protocol=st.integers(0, 255),
)
def test_filter_accepts_exactly_unfragmented_udp_to_68(
    port: int, flags_offset: int, protocol: int
) -> None:
    packet = frame(port=port, flags_offset=flags_offset, protocol=protocol)
    expected = port == 68 and protocol == 17 and flags_offset & 0x3FFF == 0
    assert (run_bpf(PROGRAM, packet) > 0) == expected


def test_jumps_stay_inside_the_program() -> None:
    for pc, (code, jt, jf, _k) in enumerate(PROGRAM):
        if code & 0x07 == bpf.BPF_JMP:
            assert pc + 1 + max(jt, jf) < len(PROGRAM)
    assert PROGRAM[-1][0] & 0x07 == bpf.BPF_RET


def test_pack_program_layout() -> None:
    packed = bpf.pack_program(PROGRAM)
    assert len(packed) == 8 * len(PROGRAM)
    assert struct.unpack_from("=HBBI", packed, 8 * 2) == PROGRAM[2]
    with pytest.raises(ValueError):
        bpf.pack_program([])


# -- the ARP filter of conflict detection ------------------------------------------------------

OURS = b"\x02\x00\x00\x00\x00\x01"
THEIRS = b"\x02\x00\x00\x00\x00\x02"
WATCHED = IPv4Address("192.0.2.50")
ARP_PROGRAM = bpf.arp_filter(OURS, WATCHED)


def arp(
    op: int = 2,
    sha: bytes = THEIRS,
    spa: str = "192.0.2.50",
    tpa: str = "192.0.2.1",
    *,
    hrd: int = 1,
    pro: int = 0x0800,
    lengths: tuple[int, int] = (6, 4),
) -> bytes:
    return (
        struct.pack("!HHBBH", hrd, pro, *lengths, op)
        + sha
        + IPv4Address(spa).packed
        + bytes(6)
        + IPv4Address(tpa).packed
        + bytes(18)
    )


@pytest.mark.parametrize(
    ("packet", "accepted"),
    [
        (arp(), True),  # a reply from the address
        (arp(op=1), True),  # a request from it (an announcement, a gratuitous ARP)
        (arp(op=1, spa="0.0.0.0", tpa="192.0.2.50"), True),  # another host probing for it
        (arp(op=1, spa="0.0.0.0", tpa="192.0.2.51"), False),  # a probe for another address
        (arp(spa="192.0.2.51"), False),  # about another address
        (arp(sha=OURS), False),  # what this host sent
        (arp(op=1, sha=OURS, spa="0.0.0.0", tpa="192.0.2.50"), False),  # our own probe
        (arp(sha=OURS[:4] + b"\x00\x09"), True),  # another host sharing our first 4 bytes
        (arp(op=3), False),  # RARP request
        (arp(hrd=6), False),
        (arp(pro=0x86DD), False),
        (arp(lengths=(6, 16)), False),
        (arp()[:16], False),  # short: the load past the end drops it
    ],
)
def test_arp_filter_decisions(packet: bytes, accepted: bool) -> None:
    assert (run_bpf(ARP_PROGRAM, packet) > 0) is accepted


def test_arp_filter_jumps_stay_inside_and_refuse_bad_hwaddr() -> None:
    for pc, (code, jt, jf, _k) in enumerate(ARP_PROGRAM):
        if code & 0x07 == bpf.BPF_JMP:
            assert pc + 1 + max(jt, jf) < len(ARP_PROGRAM)
    assert ARP_PROGRAM[-1] == (bpf.BPF_RET | bpf.BPF_K, 0, 0, 0)
    with pytest.raises(ValueError):
        bpf.arp_filter(b"\x02", WATCHED)
