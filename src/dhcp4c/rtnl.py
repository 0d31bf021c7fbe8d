"""Minimal rtnetlink: add or replace one IPv4 address, without pyroute2.

This module owns the few netlink bytes the command needs before pyroute2 is imported (see
`dhcp4c.faststart`): an RTM_NEWADDR request (rtnetlink(7), linux/if_addr.h) and the reading of
the kernel's answer (NLMSG_ERROR, netlink(7)). Building and parsing are pure; `replace_address`
is the one function doing I/O, over a stdlib AF_NETLINK socket.

Invariants:
- The request carries IFA_LOCAL and IFA_ADDRESS (the same address: not point-to-point),
  IFA_BROADCAST for prefixes up to /30 (RFC 3021: /31 and /32 have none), and IFA_CACHEINFO with
  valid = preferred = the remaining lease in seconds, so that the kernel drops the address at
  expiry even if we die (the same request `dhcp4c.netconfig` makes through pyroute2, so that
  its later replace is a no-flap update).
- Flags NLM_F_CREATE | NLM_F_REPLACE (`ip addr replace`) and NLM_F_ACK: the kernel always
  answers, with error 0 on success or -errno, which becomes OSError(errno).
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from ipaddress import IPv4Interface

__all__ = [
    "INFINITY_LIFE_TIME",
    "NetlinkError",
    "build_newaddr",
    "lifetime",
    "parse_ack",
    "replace_address",
]

# linux/netlink.h
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
# linux/rtnetlink.h, linux/if_addr.h
RTM_NEWADDR = 20
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_CACHEINFO = 6
RT_SCOPE_UNIVERSE = 0
INFINITY_LIFE_TIME = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTATTR = struct.Struct("=HH")  # len, type
_CACHEINFO = struct.Struct("=IIII")  # ifa_prefered, ifa_valid, cstamp, tstamp
_ERROR = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel refused a request (errno set), or its answer made no sense (EPROTO)."""


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + bytes(-length % 4)


def lifetime(remaining: float) -> int:
    """Whole seconds of a remaining lease for IFA_CACHEINFO (0 when expired).

    Rounded down so that the kernel never keeps the address past the lease; capped below the
    kernel's "forever" value, which an infinite lease (RFC 2131 §3.3) uses instead.
    """
    if remaining >= INFINITY_LIFE_TIME:
        return INFINITY_LIFE_TIME
    return max(0, int(remaining))


def build_newaddr(address: IPv4Interface, index: int, valid: int, *, seq: int = 1) -> bytes:
    """An RTM_NEWADDR request adding or replacing `address` on interface `index`.

    Args:
        address: the address with its prefix.
        index: the interface index.
        valid: the valid and preferred lifetime in seconds (`INFINITY_LIFE_TIME`: forever).
        seq: the sequence number the ACK will carry.

    Returns:
        The whole netlink message.
    """
    network = address.network
    ip = address.ip.packed
    attrs = _attr(IFA_LOCAL, ip) + _attr(IFA_ADDRESS, ip)
    if network.prefixlen <= 30:
        attrs += _attr(IFA_BROADCAST, network.broadcast_address.packed)
    attrs += _attr(IFA_CACHEINFO, _CACHEINFO.pack(valid, valid, 0, 0))
    body = _IFADDRMSG.pack(socket.AF_INET, network.prefixlen, 0, RT_SCOPE_UNIVERSE, index) + attrs
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_NEWADDR, flags, seq, 0) + body


def parse_ack(data: bytes, seq: int) -> int | None:
    """Read the kernel's answer to request `seq`.

    Returns:
        0 for success, a positive errno for a refusal, None when `data` holds no NLMSG_ERROR
        for `seq` (another message: keep reading).

    Raises:
        NetlinkError: EPROTO when the bytes are not well-formed netlink.
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkError(_errno.EPROTO, "malformed netlink message")
        if kind == NLMSG_ERROR and msg_seq == seq:
            if length < _NLMSGHDR.size + _ERROR.size:
                raise NetlinkError(_errno.EPROTO, "truncated netlink error")
            return -int(_ERROR.unpack_from(data, offset + _NLMSGHDR.size)[0])
        offset += (length + 3) & ~3
    return None


def replace_address(address: IPv4Interface, index: int, remaining: float) -> None:
    """Add or replace `address` on interface `index`, valid for `remaining` seconds.

    Synchronous and blocking (a netlink round trip takes well under a millisecond); for the
    command's first lease only, before Trio and pyroute2 are imported.

    Raises:
        NetlinkError: the kernel refused (its errno), or answered nonsense (EPROTO).
        OSError: the netlink socket could not be opened.
    """
    seq = 1
    request = build_newaddr(address, index, lifetime(remaining), seq=seq)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.settimeout(5.0)
        sock.bind((0, 0))
        sock.send(request)
        while True:
            code = parse_ack(sock.recv(65536), seq)
            if code is None:
                continue
            if code:
                raise NetlinkError(code, f"RTM_NEWADDR {address}: {os.strerror(code)}")
            return
