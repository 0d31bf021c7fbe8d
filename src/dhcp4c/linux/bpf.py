"""The classic BPF program that keeps everything but DHCP replies out of the packet socket.

Pure data: the program as a list of `(code, jt, jf, k)` instructions (Linux `struct sock_filter`,
`include/uapi/linux/filter.h`) and its packing into the array that `SO_ATTACH_FILTER` points to.
The packet socket attaches it (see `packet.py`); the tests run it through a small interpreter.

The program runs on an AF_PACKET SOCK_DGRAM socket, where offset 0 is the IPv4 header (the
link-layer header is already stripped). It accepts exactly the IPv4 packets that are UDP, not a
fragment (MF clear and offset zero) and addressed to the client port, as udhcpc's filter does, and
adds the version check. The userspace checks in `frames.parse_datagram` remain the contract: the
filter only keeps the socket quiet on a busy link.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from dhcp4c.linux.frames import CLIENT_PORT, IPPROTO_UDP

__all__ = [
    "Instruction",
    "dhcp_client_filter",
    "pack_program",
]

Instruction = tuple[int, int, int, int]
"""One `struct sock_filter`: (code, jt, jf, k)."""

# Instruction classes, sizes, modes and operations from include/uapi/linux/bpf_common.h.
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MSH = 0xA0
BPF_AND = 0x50
BPF_JEQ = 0x10
BPF_JSET = 0x40
BPF_K = 0x00

ACCEPT_ALL = 0xFFFFFFFF
"""Return value accepting the whole packet (the snap length is clamped to the packet length)."""

_SOCK_FILTER = struct.Struct("=HBBI")  # u16 code, u8 jt, u8 jf, u32 k


def dhcp_client_filter(port: int = CLIENT_PORT) -> list[Instruction]:
    """Return the filter accepting unfragmented IPv4 UDP packets to `port`.

    Args:
        port: the UDP destination port to accept (68, the DHCP client port).

    Returns:
        The program; jumps are relative, as classic BPF requires.
    """
    # Jump offsets count instructions after the jump itself; REJECT is the last instruction.
    program: list[Instruction] = [
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),  # 0: A = version/IHL byte
        (BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xF0),  # 1: A &= 0xf0 (version)
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 8, 0x40),  # 2: version 4, else REJECT
        (BPF_LD | BPF_B | BPF_ABS, 0, 0, 9),  # 3: A = protocol
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 6, IPPROTO_UDP),  # 4: UDP, else REJECT
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 6),  # 5: A = flags and fragment offset
        (BPF_JMP | BPF_JSET | BPF_K, 4, 0, 0x3FFF),  # 6: MF or an offset: REJECT
        (BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0),  # 7: X = IHL * 4
        (BPF_LD | BPF_H | BPF_IND, 0, 0, 2),  # 8: A = UDP destination port
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, port),  # 9: our port, else REJECT
        (BPF_RET | BPF_K, 0, 0, ACCEPT_ALL),  # 10: ACCEPT
        (BPF_RET | BPF_K, 0, 0, 0),  # 11: REJECT
    ]
    return program


def pack_program(program: Sequence[Instruction]) -> bytes:
    """Pack a program into the native-endian `struct sock_filter` array the kernel reads.

    Raises:
        ValueError: for an empty program, or one longer than the kernel's BPF_MAXINSNS (4096).
    """
    if not 0 < len(program) <= 4096:
        raise ValueError(f"a classic BPF program has 1 to 4096 instructions, not {len(program)}")
    return b"".join(_SOCK_FILTER.pack(*instruction) for instruction in program)
