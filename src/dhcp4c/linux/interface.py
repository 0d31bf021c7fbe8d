"""Interface facts: what DHCP needs to know of an interface, read from the kernel on demand.

This module owns the one reader of an interface's hardware address, MTU, link type and carrier
flags: ioctls (SIOCGIFHWADDR, SIOCGIFMTU, SIOCGIFFLAGS) on a throw-away UDP socket. They are
cheap, need no netlink library, and answer for the network namespace of the calling thread,
whereas /sys/class/net shows the namespace sysfs was mounted in (`nsenter --net` does not
remount it).

Invariant: every read is a fresh question to the kernel; nothing is cached.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from dataclasses import dataclass

__all__ = ["ARPHRD_ETHER", "InterfaceFacts", "has_carrier", "read_ethernet", "read_interface"]

#: The ARP hardware type of Ethernet (include/uapi/linux/if_arp.h), the link type DHCP runs on.
ARPHRD_ETHER = 1
_SIOCGIFFLAGS = 0x8913
_SIOCGIFMTU = 0x8921
_SIOCGIFHWADDR = 0x8927
_IFF_UP = 0x1
_IFF_RUNNING = 0x40


@dataclass(frozen=True)
class InterfaceFacts:
    """An interface as the kernel described it at one moment.

    Attributes:
        name: the interface name.
        hwaddr: its hardware address (the six bytes of an Ethernet address).
        mtu: its MTU (as the kernel reports it; 0 or less when it reports none).
        link_type: its ARP hardware type (`ARPHRD_ETHER` for Ethernet).
    """

    name: str
    hwaddr: bytes
    mtu: int
    link_type: int


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("16s16x", name.encode()))


def read_interface(name: str) -> InterfaceFacts:
    """Read the hardware address, MTU and link type of `name` in the calling thread's namespace.

    Raises:
        OSError: the kernel cannot tell (ENODEV: no such interface).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = _ioctl(sock, _SIOCGIFHWADDR, name)
        mtu_raw = _ioctl(sock, _SIOCGIFMTU, name)
    link_type = int(struct.unpack_from("=H", raw, 16)[0])
    mtu = int(struct.unpack_from("=i", mtu_raw, 16)[0])
    return InterfaceFacts(name, bytes(raw[18:24]), mtu, link_type)


def read_ethernet(name: str) -> InterfaceFacts:
    """`read_interface`, for an interface DHCP is to run on.

    Raises:
        OSError: no such interface (ENODEV), or a link type other than Ethernet.
    """
    facts = read_interface(name)
    if facts.link_type != ARPHRD_ETHER:
        raise OSError(f"{name}: link type {facts.link_type} is not Ethernet")
    return facts


def has_carrier(name: str) -> bool:
    """Whether `name` is up with a carrier (IFF_UP and IFF_RUNNING, SIOCGIFFLAGS).

    Raises:
        OSError: the kernel cannot tell (ENODEV: no such interface).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = _ioctl(sock, _SIOCGIFFLAGS, name)
    flags = int(struct.unpack_from("=H", raw, 16)[0])
    return flags & (_IFF_UP | _IFF_RUNNING) == _IFF_UP | _IFF_RUNNING
