"""The classic BPF programs that keep everything but DHCP replies (and ACD's ARP) out of the
packet sockets.

Pure data: the program as a list of `(code, jt, jf, k)` instructions (Linux `struct sock_filter`,
`include/uapi/linux/filter.h`) and its packing into the array that `SO_ATTACH_FILTER` points to.
The packet socket attaches it (see `packet.py`); the tests run it through a small interpreter.

The program runs on an AF_PACKET SOCK_DGRAM socket, where offset 0 is the IPv4 header (the
link-layer header is already stripped). It accepts exactly the IPv4 packets that are UDP, not a
fragment (MF clear and offset zero) and addressed to the client port, as udhcpc's filter does, and
adds the version check. The userspace checks in `frames.parse_datagram` remain the contract: the
filter only keeps the socket quiet on a busy link. `arp_filter` does the same for the ARP socket of
conflict detection (`arp.py`): only Ethernet/IPv4 requests and replies about one address, from
another host; `dhcp4c.protocol.acd` still judges every packet.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from ipaddress import IPv4Address

from dhcp4c.linux.frames import CLIENT_PORT, IPPROTO_UDP

__all__ = [
    "Instruction",
    "arp_filter",
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


def arp_filter(hwaddr: bytes, address: IPv4Address) -> list[Instruction]:
    """Return the filter accepting the ARP packets that can conflict with `address`.

    Offset 0 is the ARP header (SOCK_DGRAM on ETH_P_ARP). Accepted: hardware type 1, protocol
    type 0x0800, address lengths 6 and 4, operation request or reply, a sender hardware address
    other than `hwaddr` (the socket also sees what this host sends), and either the sender IP
    `address` or a probe (sender IP 0.0.0.0) for it as target (RFC 5227 §2.1.1, §2.4).

    Args:
        hwaddr: this interface's Ethernet address (6 bytes).
        address: the address probed, announced or defended.

    Raises:
        ValueError: `hwaddr` is not 6 bytes.
    """
    if len(hwaddr) != 6:
        raise ValueError(f"an Ethernet address has 6 bytes, not {len(hwaddr)}")
    sha_high = int.from_bytes(hwaddr[:4], "big")
    sha_low = int.from_bytes(hwaddr[4:], "big")
    ip = int(address)
    # ACCEPT is instruction 18, REJECT 19; offsets count from the instruction after the jump.
    program: list[Instruction] = [
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 0),  # 0: A = hrd
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 17, 1),  # 1: Ethernet, else REJECT
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 2),  # 2: A = pro
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 15, 0x0800),  # 3: IPv4, else REJECT
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 4),  # 4: A = hln, pln
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 13, 0x0604),  # 5: 6 and 4, else REJECT
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 6),  # 6: A = op
        (BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1),  # 7: request: to 9
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 10, 2),  # 8: reply, else REJECT
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, 8),  # 9: A = sha[0:4]
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 2, sha_high),  # 10: ours so far, else to 13
        (BPF_LD | BPF_H | BPF_ABS, 0, 0, 12),  # 11: A = sha[4:6]
        (BPF_JMP | BPF_JEQ | BPF_K, 6, 0, sha_low),  # 12: our own packet: REJECT
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, 14),  # 13: A = spa
        (BPF_JMP | BPF_JEQ | BPF_K, 3, 0, ip),  # 14: spa == address: ACCEPT
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0),  # 15: spa 0.0.0.0 (a probe), else REJECT
        (BPF_LD | BPF_W | BPF_ABS, 0, 0, 24),  # 16: A = tpa
        (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, ip),  # 17: tpa == address: ACCEPT, else REJECT
        (BPF_RET | BPF_K, 0, 0, ACCEPT_ALL),  # 18: ACCEPT
        (BPF_RET | BPF_K, 0, 0, 0),  # 19: REJECT
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
