"""rtnetlink: the netlink messages this project exchanges with the kernel, and a blocking client.

Everything the kernel side needs, without pyroute2: addresses (RTM_NEWADDR, RTM_DELADDR,
RTM_GETADDR), routes (RTM_NEWROUTE, RTM_DELROUTE), links (RTM_GETLINK by name, RTM_NEWLINK to set
the MTU) and the kernel's answers (NLMSG_ERROR, NLMSG_DONE). See rtnetlink(7), netlink(7) and
linux/if_addr.h, linux/rtnetlink.h, linux/if_link.h.

Two layers, the usual cut: pure functions building requests and parsing datagrams (bytes in,
values out, `NetlinkParseError` for anything malformed: the link watch reads notifications with
them too), and `Rtnl`, one blocking NETLINK_ROUTE socket that sends a request and reads its
answer. Only the standard library is imported: the command's fast start (`dhcp4c.faststart`)
adds the first address before Trio is imported, and the whole kernel side costs no import time
and no memory beyond this module (pyroute2 costs ~12 MiB of resident memory next to Trio, more
than the rest of the command's own; issue 5's memory target is pyroute2's own client).

Invariants:
- Address requests carry IFA_LOCAL and IFA_ADDRESS (the same address: not point-to-point),
  IFA_BROADCAST for prefixes up to /30 (RFC 3021: /31 and /32 have none), and IFA_CACHEINFO with
  valid = preferred = the remaining lease in whole seconds, rounded down, so that the kernel drops
  the address at expiry even if we die. The lifetime is capped at 0xfffffffe: 0xffffffff means
  "forever" and makes the kernel flag the address IFA_F_PERMANENT, which marks addresses the
  administrator owns and that we never touch.
- Every request asks for an acknowledgement (NLM_F_ACK, or NLM_F_DUMP ending in NLMSG_DONE): the
  kernel always answers, with error 0 or -errno, which becomes `NetlinkError(errno)`, an OSError.
- Replacing (NLM_F_CREATE | NLM_F_REPLACE, `ip addr replace` and `ip route replace`) updates an
  address's lifetimes or a route in place: sockets bound to the address and traffic on the route
  never see a flap.
"""

from __future__ import annotations

import errno as _errno
import math
import os
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dhcp4c._closing import Closing
from dhcp4c._netns import entered

__all__ = [
    "MAX_LIFETIME",
    "RTPROT_DHCP",
    "Address",
    "Link",
    "NetlinkError",
    "NetlinkMessage",
    "NetlinkParseError",
    "Route",
    "Rtnl",
    "build_deladdr",
    "build_getaddr",
    "build_newaddr",
    "build_route",
    "build_setmtu",
    "getlink_request",
    "lifetime",
    "parse_ack",
    "parse_address",
    "parse_error",
    "parse_link",
    "parse_messages",
    "replace_address",
]

# linux/netlink.h
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTMGRP_LINK = 0x1
RTN_UNICAST = 1
RTPROT_DHCP = 16
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_UNSPEC = 0
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_TABLE = 15
# linux/if_addr.h
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_CACHEINFO = 6
IFA_FLAGS = 8
# linux/if_link.h, linux/if.h
AF_UNSPEC = 0
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_OPERSTATE = 16
IFLA_CARRIER = 33
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

#: The largest lifetime we give an address: one below the kernel's "forever" (see above).
MAX_LIFETIME = 0xFFFF_FFFE

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope,
# type, flags
_RTATTR = struct.Struct("=HH")  # len, type
_CACHEINFO = struct.Struct("=IIII")  # ifa_prefered, ifa_valid, cstamp, tstamp
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")  # struct nlmsgerr: error (negative errno), then the request
_RECEIVE_SIZE = 0x10000


class NetlinkError(OSError):
    """The kernel refused a request (errno set), or its answer made no sense (EPROTO)."""


class NetlinkParseError(ValueError):
    """A netlink datagram or message that is truncated or inconsistent."""


@dataclass(frozen=True)
class NetlinkMessage:
    """One netlink message: its header fields and its payload (after the 16-byte header)."""

    type: int
    flags: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Link:
    """A snapshot of one link, from an RTM_NEWLINK or RTM_DELLINK.

    Attributes:
        index: the interface index (0 when unknown: an interface that was not found).
        name: IFLA_IFNAME, or None when absent.
        hwaddr: IFLA_ADDRESS, or None when absent.
        flags: the `ifi_flags` (IFF_UP, IFF_LOWER_UP, ...).
        carrier: IFLA_CARRIER, or None when absent.
        operstate: IFLA_OPERSTATE (RFC 2863 values: 6 up, 2 down, 7 lower layer down), or None.
        mtu: IFLA_MTU, or None.
        deleted: an RTM_DELLINK, or no such interface.
        family: `ifi_family`; AF_UNSPEC (0) for the link itself.
    """

    index: int
    name: str | None = None
    hwaddr: bytes | None = None
    flags: int = 0
    carrier: bool | None = None
    operstate: int | None = None
    mtu: int | None = None
    deleted: bool = False
    family: int = AF_UNSPEC

    @property
    def usable(self) -> bool:
        """Administratively up with a carrier (IFLA_CARRIER, else IFF_LOWER_UP)."""
        if self.deleted or not self.flags & IFF_UP:
            return False
        if self.carrier is not None:
            return self.carrier
        return bool(self.flags & IFF_LOWER_UP)


@dataclass(frozen=True)
class Address:
    """An IPv4 address on an interface, from an RTM_NEWADDR: its index, address and IFA flags."""

    index: int
    address: IPv4Interface
    flags: int


@dataclass(frozen=True)
class Route:
    """An IPv4 route, as `build_route` asks for it.

    Attributes:
        destination: the destination network (0.0.0.0/0 for the default route).
        gateway: the next hop, or None for an on-link route.
        index: the outgoing interface.
        metric: RTA_PRIORITY.
        table: the routing table (254: main).
        protocol: who installed it (RTPROT_DHCP for ours).
        prefsrc: the preferred source address, or None.
    """

    destination: IPv4Network
    gateway: IPv4Address | None
    index: int
    metric: int
    table: int = 254
    protocol: int = RTPROT_DHCP
    prefsrc: IPv4Address | None = None


# -- building ------------------------------------------------------------------------------------


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + bytes(-length % 4)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body


def lifetime(remaining: float) -> int:
    """Whole seconds of a remaining lease for IFA_CACHEINFO (0 when expired).

    Rounded down so that the kernel never keeps the address past the lease; at most
    `MAX_LIFETIME` (about 136 years), also for an infinite lease (RFC 2131 §3.3), so that the
    address never becomes permanent.
    """
    if math.isnan(remaining) or remaining <= 0:
        return 0
    if remaining >= MAX_LIFETIME:
        return MAX_LIFETIME
    return int(remaining)


def build_newaddr(address: IPv4Interface, index: int, valid: int, *, seq: int = 1) -> bytes:
    """An RTM_NEWADDR request adding or replacing `address` on interface `index`.

    Args:
        address: the address with its prefix.
        index: the interface index.
        valid: the valid and preferred lifetime in seconds (see `lifetime`).
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
    return _message(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq, body)


def build_deladdr(address: IPv4Interface, index: int, *, seq: int = 1) -> bytes:
    """An RTM_DELADDR request removing `address` (address and prefix) from interface `index`."""
    ip = address.ip.packed
    body = _IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
    body += _attr(IFA_LOCAL, ip) + _attr(IFA_ADDRESS, ip)
    return _message(RTM_DELADDR, NLM_F_ACK, seq, body)


def build_getaddr(*, seq: int = 1) -> bytes:
    """An RTM_GETADDR dump request for every IPv4 address (answered by RTM_NEWADDRs, then DONE)."""
    body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    return _message(RTM_GETADDR, NLM_F_DUMP, seq, body)


def build_route(kind: int, route: Route, *, seq: int = 1) -> bytes:
    """An RTM_NEWROUTE (replace) or RTM_DELROUTE request for `route`.

    A replace carries the route's scope (link for on-link routes, universe via a gateway), its
    type (unicast) and preferred source. A delete leaves scope and type open
    (RT_SCOPE_NOWHERE, RTN_UNSPEC, as `ip route del` does) and matches on destination, table,
    protocol, metric, interface and gateway.

    Raises:
        ValueError: `kind` is neither RTM_NEWROUTE nor RTM_DELROUTE.
    """
    if kind == RTM_NEWROUTE:
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        scope = RT_SCOPE_LINK if route.gateway is None else RT_SCOPE_UNIVERSE
        rtype = RTN_UNICAST
    elif kind == RTM_DELROUTE:
        flags, scope, rtype = NLM_F_ACK, RT_SCOPE_NOWHERE, 0
    else:
        raise ValueError(f"not a route request type: {kind}")
    destination = route.destination
    # Tables above 255 exist only as RTA_TABLE; rtm_table then says RT_TABLE_UNSPEC.
    table = route.table if route.table < 256 else RT_TABLE_UNSPEC
    body = _RTMSG.pack(
        socket.AF_INET, destination.prefixlen, 0, 0, table, route.protocol, scope, rtype, 0
    )
    body += _attr(RTA_TABLE, _U32.pack(route.table))
    if destination.prefixlen:
        body += _attr(RTA_DST, destination.network_address.packed)
    body += _attr(RTA_OIF, _U32.pack(route.index)) + _attr(RTA_PRIORITY, _U32.pack(route.metric))
    if route.gateway is not None:
        body += _attr(RTA_GATEWAY, route.gateway.packed)
    if route.prefsrc is not None and kind == RTM_NEWROUTE:
        body += _attr(RTA_PREFSRC, route.prefsrc.packed)
    return _message(kind, flags, seq, body)


def build_setmtu(index: int, mtu: int, *, seq: int = 1) -> bytes:
    """An RTM_NEWLINK request setting the MTU of interface `index` (`ip link set mtu`)."""
    body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0) + _attr(IFLA_MTU, _U32.pack(mtu))
    return _message(RTM_NEWLINK, NLM_F_ACK, seq, body)


def getlink_request(ifname: str, seq: int) -> bytes:
    """An RTM_GETLINK request for the interface named `ifname` (answered by one RTM_NEWLINK).

    Raises:
        ValueError: a name that is empty or longer than IFNAMSIZ - 1 (15 bytes).
    """
    name = ifname.encode()
    if not 0 < len(name) < 16 or b"\0" in name:
        raise ValueError(f"invalid interface name {ifname!r}")
    body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name + b"\0")
    return _message(RTM_GETLINK, 0, seq, body)


# -- parsing -------------------------------------------------------------------------------------


def parse_messages(data: bytes) -> list[NetlinkMessage]:
    """Split one netlink datagram into its messages.

    Raises:
        NetlinkParseError: a header that is short or claims more bytes than there are.
    """
    messages = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _NLMSGHDR.size:
            raise NetlinkParseError(f"truncated header at offset {offset}")
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            raise NetlinkParseError(f"message length {length} at offset {offset}")
        messages.append(
            NetlinkMessage(kind, flags, seq, bytes(data[offset + 16 : offset + length]))
        )
        offset += _align(length)
    return messages


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    while offset < len(data):
        if len(data) - offset < _RTATTR.size:
            raise NetlinkParseError(f"truncated attribute at offset {offset}")
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            raise NetlinkParseError(f"attribute length {length} at offset {offset}")
        yield kind & 0x3FFF, data[offset + 4 : offset + length]  # without NLA_F_* bits
        offset += _align(length)


def _u8(value: bytes, name: str) -> int:
    if len(value) < 1:
        raise NetlinkParseError(f"empty {name}")
    return value[0]


def _u32(value: bytes, name: str) -> int:
    if len(value) < 4:
        raise NetlinkParseError(f"short {name}")
    return int.from_bytes(value[:4], sys.byteorder)


def parse_link(message: NetlinkMessage) -> Link:
    """The link snapshot in an RTM_NEWLINK or RTM_DELLINK message.

    Raises:
        NetlinkParseError: another message type, or a malformed payload.
    """
    if message.type not in (RTM_NEWLINK, RTM_DELLINK):
        raise NetlinkParseError(f"message type {message.type} is not a link message")
    payload = message.payload
    if len(payload) < _IFINFOMSG.size:
        raise NetlinkParseError("truncated ifinfomsg")
    family, _type, index, flags, _change = _IFINFOMSG.unpack(payload[: _IFINFOMSG.size])
    name = hwaddr = carrier = operstate = mtu = None
    for kind, value in _attributes(payload, _IFINFOMSG.size):
        if kind == IFLA_IFNAME:
            name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind == IFLA_ADDRESS:
            hwaddr = bytes(value)
        elif kind == IFLA_CARRIER:
            carrier = bool(_u8(value, "IFLA_CARRIER"))
        elif kind == IFLA_OPERSTATE:
            operstate = _u8(value, "IFLA_OPERSTATE")
        elif kind == IFLA_MTU:
            mtu = _u32(value, "IFLA_MTU")
    return Link(
        index=index,
        name=name,
        hwaddr=hwaddr,
        flags=flags,
        carrier=carrier,
        operstate=operstate,
        mtu=mtu,
        deleted=message.type == RTM_DELLINK,
        family=family,
    )


def parse_address(message: NetlinkMessage) -> Address | None:
    """The IPv4 address in an RTM_NEWADDR message; None for another family.

    The address is IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links), else
    IFA_ADDRESS; the flags are IFA_FLAGS (32 bits) when present, else `ifa_flags` (8 bits).

    Raises:
        NetlinkParseError: another message type, or a malformed payload.
    """
    if message.type != RTM_NEWADDR:
        raise NetlinkParseError(f"message type {message.type} is not an address message")
    payload = message.payload
    if len(payload) < _IFADDRMSG.size:
        raise NetlinkParseError("truncated ifaddrmsg")
    family, prefixlen, flags, _scope, index = _IFADDRMSG.unpack_from(payload)
    if family != socket.AF_INET:
        return None
    if prefixlen > 32:
        raise NetlinkParseError(f"IPv4 prefix length {prefixlen}")
    local = address = None
    for kind, value in _attributes(payload, _IFADDRMSG.size):
        if kind in (IFA_LOCAL, IFA_ADDRESS):
            if len(value) != 4:
                raise NetlinkParseError(f"IPv4 address of {len(value)} bytes")
            if kind == IFA_LOCAL:
                local = IPv4Address(value)
            else:
                address = IPv4Address(value)
        elif kind == IFA_FLAGS:
            flags = _u32(value, "IFA_FLAGS")
    ip = local if local is not None else address
    if ip is None:
        return None
    return Address(index, IPv4Interface((ip, prefixlen)), flags)


def parse_error(message: NetlinkMessage) -> int:
    """The errno of an NLMSG_ERROR message (0 for an acknowledgement).

    Raises:
        NetlinkParseError: another message type, or a truncated payload.
    """
    if message.type != NLMSG_ERROR or len(message.payload) < _ERRNO.size:
        raise NetlinkParseError("not an NLMSG_ERROR message")
    return -int(_ERRNO.unpack_from(message.payload)[0])


def parse_ack(data: bytes, seq: int, answer: list[NetlinkMessage] | None = None) -> int | None:
    """Read one datagram of the kernel's answer to request `seq`.

    Messages for other requests (a late answer to one that timed out) are skipped. The answer
    ends with its NLMSG_ERROR (the ACK, or the refusal), with NLMSG_DONE after a dump, or with
    a single reply that is not multipart (RTM_GETLINK by name: no ACK follows).

    Args:
        data: the datagram.
        seq: the request's sequence number.
        answer: where the answer's messages (not the ACK or NLMSG_DONE) are appended, if given.

    Returns:
        0 when the answer is complete and successful, a positive errno for a refusal, None when
        it goes on in the next datagram (keep reading).

    Raises:
        NetlinkError: EPROTO when the bytes are not well-formed netlink.
    """
    try:
        for message in parse_messages(data):
            if message.seq != seq:
                continue
            if message.type == NLMSG_ERROR:
                return parse_error(message)
            if message.type == NLMSG_DONE:
                return 0
            if answer is not None:
                answer.append(message)
            if not message.flags & NLM_F_MULTI:
                return 0
    except NetlinkParseError as error:
        raise NetlinkError(_errno.EPROTO, f"malformed netlink answer: {error}") from None
    return None


# -- the blocking client -------------------------------------------------------------------------


class Rtnl(Closing):
    """One NETLINK_ROUTE socket for requests, blocking; use from one thread at a time.

    `Rtnl.open(netns)` creates it in a network namespace (the socket stays there for its life,
    whichever thread uses it); `with Rtnl.open(...) as rtnl:` closes it. Each call sends one
    request and reads until its answer: `NetlinkError` carries the kernel's errno.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0

    @classmethod
    def open(cls, netns: str | None = None, *, timeout: float = 5.0) -> Rtnl:
        """Open the socket in `netns` (a name under /run/netns or a path; None: this thread's).

        Raises:
            OSError: the namespace cannot be entered or the socket opened.
        """
        with entered(netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            sock.settimeout(timeout)  # the kernel answers at once; this only bounds a bug
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF_FFFF + 1
        return self._seq

    def _call(self, request: bytes, seq: int, what: str) -> list[NetlinkMessage]:
        """Send `request` and return the messages answering it, up to its ACK or NLMSG_DONE."""
        self._sock.send(request)
        answer: list[NetlinkMessage] = []
        while True:
            code = parse_ack(self._sock.recv(_RECEIVE_SIZE), seq, answer)
            if code is None:
                continue
            if code:
                raise NetlinkError(code, f"{what}: {os.strerror(code)}")
            return answer

    def link(self, ifname: str) -> Link | None:
        """The link named `ifname`, or None when there is none.

        Raises:
            ValueError: an invalid interface name.
            NetlinkError: the kernel refused otherwise.
        """
        seq = self._next_seq()
        try:
            answer = self._call(getlink_request(ifname, seq), seq, f"RTM_GETLINK {ifname}")
        except NetlinkError as error:
            if error.errno == _errno.ENODEV:
                return None
            raise
        for message in answer:
            if message.type == RTM_NEWLINK:
                try:
                    return parse_link(message)
                except NetlinkParseError as error:
                    raise NetlinkError(_errno.EPROTO, f"RTM_GETLINK: {error}") from None
        return None

    def addresses(self, index: int) -> dict[IPv4Interface, int]:
        """The IPv4 addresses on interface `index`, with their IFA flags."""
        seq = self._next_seq()
        found: dict[IPv4Interface, int] = {}
        for message in self._call(build_getaddr(seq=seq), seq, "RTM_GETADDR"):
            if message.type != RTM_NEWADDR:
                continue
            try:
                address = parse_address(message)
            except NetlinkParseError as error:
                raise NetlinkError(_errno.EPROTO, f"RTM_GETADDR: {error}") from None
            if address is not None and address.index == index:
                found[address.address] = address.flags
        return found

    def replace_address(self, address: IPv4Interface, index: int, valid: int) -> None:
        """Add or replace `address` on `index`, valid (and preferred) for `valid` seconds."""
        seq = self._next_seq()
        request = build_newaddr(address, index, valid, seq=seq)
        self._call(request, seq, f"RTM_NEWADDR {address}")

    def delete_address(self, address: IPv4Interface, index: int) -> None:
        """Remove `address` from `index` (EADDRNOTAVAIL when it is not there)."""
        seq = self._next_seq()
        self._call(build_deladdr(address, index, seq=seq), seq, f"RTM_DELADDR {address}")

    def replace_route(self, route: Route) -> None:
        """Add or replace `route` (same destination, table, metric: replaced in place)."""
        seq = self._next_seq()
        self._call(build_route(RTM_NEWROUTE, route, seq=seq), seq, "RTM_NEWROUTE")

    def delete_route(self, route: Route) -> None:
        """Remove `route` (ESRCH when there is no such route)."""
        seq = self._next_seq()
        self._call(build_route(RTM_DELROUTE, route, seq=seq), seq, "RTM_DELROUTE")

    def set_mtu(self, index: int, mtu: int) -> None:
        """Set the MTU of interface `index`."""
        seq = self._next_seq()
        self._call(build_setmtu(index, mtu, seq=seq), seq, f"MTU {mtu}")


def replace_address(address: IPv4Interface, index: int, remaining: float) -> None:
    """Add or replace `address` on interface `index`, valid for `remaining` seconds.

    Synchronous and blocking (a netlink round trip takes well under a millisecond); for the
    command's first lease, before Trio is imported.

    Raises:
        NetlinkError: the kernel refused (its errno), or answered nonsense (EPROTO).
        OSError: the netlink socket could not be opened.
    """
    with Rtnl.open() as rtnl:
        rtnl.replace_address(address, index, lifetime(remaining))
