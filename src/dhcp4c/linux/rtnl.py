"""rtnetlink with pyroute2's messages on a Trio socket: what the kernel side asks and is told.

Requests are pyroute2's `ifaddrmsg`, `rtmsg` and `ifinfmsg`, answers and events are decoded by
its `MarshalRtnl`. Pure functions build requests (`build_*`) and turn decoded messages into
`Link`, `Address` or an errno (`parse_*`); `RtnlSocket` is a NETLINK_ROUTE socket owned by Trio;
`Subscription` is one joined to multicast groups, replaced when the kernel drops notifications.

Invariants:
- Address requests carry IFA_LOCAL = IFA_ADDRESS, IFA_BROADCAST up to /30 (RFC 3021) and
  IFA_CACHEINFO valid = preferred = the remaining lease, capped below 0xffffffff ("forever").
- Every request is answered (its ACK or `NetlinkError(errno)`, a dump's NLMSG_DONE, or the one
  RTM_GETLINK reply), matched by sequence number, so a cancelled request's leftovers are dropped.
- Replacing (NLM_F_CREATE | NLM_F_REPLACE) updates an address or a route in place.
- Anything pyroute2 cannot decode raises `NetlinkParseError`, never pyroute2's or struct's errors.
- Importing this module imports pyroute2 and does nothing else (no socket, no thread).
"""

from __future__ import annotations

import errno as _errno
import math
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, TypeVar

import trio
from pyroute2.netlink import (
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    nla,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkDecodeError
from pyroute2.netlink.rtnl import (
    IFNAMSIZ,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    rt_proto,
    rt_scope,
    rt_type,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOWER_UP, IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from dhcp4c._closing import Closing
from dhcp4c.linux.netns import entered

__all__ = [
    "MAIN_TABLE",
    "MAX_LIFETIME",
    "RTPROT_DHCP",
    "Address",
    "Link",
    "NetlinkError",
    "NetlinkParseError",
    "Route",
    "RtnlSocket",
    "Subscription",
    "build_deladdr",
    "build_getaddr",
    "build_getlink",
    "build_newaddr",
    "build_route",
    "build_setmtu",
    "getlink_request",
    "lifetime",
    "open_socket",
    "parse_ack",
    "parse_address",
    "parse_error",
    "parse_link",
    "parse_messages",
]

#: The protocol of our routes (`ip route ... proto dhcp`).
RTPROT_DHCP: int = rt_proto["dhcp"]
#: RT_TABLE_MAIN (linux/rtnetlink.h; pyroute2 names no routing table).
MAIN_TABLE = 254
#: The largest lifetime we give an address: one below the kernel's "forever" (see above).
MAX_LIFETIME = 0xFFFF_FFFE

_RECEIVE_SIZE = 0x10000
_MARSHAL = MarshalRtnl()


def _header_size(header: Iterable[tuple[str, str]]) -> int:
    return struct.calcsize("=" + "".join(fmt for _, fmt in header))


_NLMSG_HEADER = _header_size(nlmsg.header)
_NLA_HEADER = _header_size(nla.header)

_T = TypeVar("_T")


class NetlinkError(OSError):
    """The kernel refused a request (errno set), or its answer made no sense (EPROTO)."""


class NetlinkParseError(ValueError):
    """A netlink datagram or message that is truncated or inconsistent."""


@dataclass(frozen=True)
class Link:
    """A snapshot of one link, from an RTM_NEWLINK or RTM_DELLINK.

    Attributes:
        index: the interface index (0 when unknown: an interface that was not found).
        name: IFLA_IFNAME, or None when absent.
        hwaddr: IFLA_ADDRESS when it is a MAC address, else None.
        flags: the `ifi_flags` (IFF_UP, IFF_LOWER_UP, ...).
        carrier: IFLA_CARRIER, or None when absent.
        operstate: IFLA_OPERSTATE as pyroute2 names it ("UP", "DOWN", "LOWERLAYERDOWN", ...).
        mtu: IFLA_MTU, or None.
        deleted: an RTM_DELLINK, or no such interface.
        family: `ifi_family`; AF_UNSPEC for the link itself.
        ifi_type: the `ifi_type` (ARPHRD_ETHER, ARPHRD_LOOPBACK, ...); None when unknown (a
            snapshot not read from the kernel).
        master: IFLA_MASTER, the index of the bridge, bond or VRF the link is enslaved to, or
            None.
    """

    index: int
    name: str | None = None
    hwaddr: bytes | None = None
    flags: int = 0
    carrier: bool | None = None
    operstate: str | None = None
    mtu: int | None = None
    deleted: bool = False
    family: int = socket.AF_UNSPEC
    ifi_type: int | None = None
    master: int | None = None

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
        table: the routing table (main by default).
        protocol: who installed it (RTPROT_DHCP for ours).
        prefsrc: the preferred source address, or None.
    """

    destination: IPv4Network
    gateway: IPv4Address | None
    index: int
    metric: int
    table: int = MAIN_TABLE
    protocol: int = RTPROT_DHCP
    prefsrc: IPv4Address | None = None


# -- building ------------------------------------------------------------------------------------


def _encode(message: Any, kind: int, flags: int, seq: int) -> bytes:
    message["header"]["type"] = kind
    message["header"]["flags"] = NLM_F_REQUEST | flags
    message["header"]["sequence_number"] = seq
    message.encode()
    return bytes(message.data)


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


def _ifaddrmsg(address: IPv4Interface, index: int) -> Any:
    message = ifaddrmsg()
    message["family"] = socket.AF_INET
    message["prefixlen"] = address.network.prefixlen
    message["scope"] = rt_scope["universe"]
    message["index"] = index
    message["attrs"] = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip))]
    return message


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
    message = _ifaddrmsg(address, index)
    network = address.network
    if network.prefixlen <= 30:
        message["attrs"].append(("IFA_BROADCAST", str(network.broadcast_address)))
    cacheinfo = {"ifa_preferred": valid, "ifa_valid": valid, "cstamp": 0, "tstamp": 0}
    message["attrs"].append(("IFA_CACHEINFO", cacheinfo))
    return _encode(message, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq)


def build_deladdr(address: IPv4Interface, index: int, *, seq: int = 1) -> bytes:
    """An RTM_DELADDR request removing `address` (address and prefix) from interface `index`."""
    return _encode(_ifaddrmsg(address, index), RTM_DELADDR, NLM_F_ACK, seq)


def build_getaddr(*, seq: int = 1) -> bytes:
    """An RTM_GETADDR dump request for every IPv4 address (answered by RTM_NEWADDRs, then DONE)."""
    message = ifaddrmsg()
    message["family"] = socket.AF_INET
    return _encode(message, RTM_GETADDR, NLM_F_DUMP, seq)


def build_route(kind: int, route: Route, *, seq: int = 1) -> bytes:
    """An RTM_NEWROUTE (replace) or RTM_DELROUTE request for `route`.

    A replace carries the route's scope (link for on-link routes, universe via a gateway), its
    type (unicast) and preferred source. A delete leaves scope and type open (nowhere, unspec,
    as `ip route del` does) and matches on destination, table, protocol, metric, interface and
    gateway.

    Raises:
        ValueError: `kind` is neither RTM_NEWROUTE nor RTM_DELROUTE.
    """
    if kind == RTM_NEWROUTE:
        flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        scope = rt_scope["link"] if route.gateway is None else rt_scope["universe"]
        rtype = rt_type["unicast"]
    elif kind == RTM_DELROUTE:
        flags, scope, rtype = NLM_F_ACK, rt_scope["nowhere"], rt_type["unspec"]
    else:
        raise ValueError(f"not a route request type: {kind}")
    destination = route.destination
    message = rtmsg()
    message["family"] = socket.AF_INET
    message["dst_len"] = destination.prefixlen
    # rtm_table has 8 bits: a larger table is carried by RTA_TABLE, which the kernel prefers;
    # pyroute2's own policy says what the field holds then.
    message["table"] = rtmsg.field_policies[("field", "table")](route.table)
    message["proto"] = route.protocol
    message["scope"] = scope
    message["type"] = rtype
    attrs: list[tuple[str, object]] = [("RTA_TABLE", route.table)]
    if destination.prefixlen:
        attrs.append(("RTA_DST", str(destination.network_address)))
    attrs += [("RTA_OIF", route.index), ("RTA_PRIORITY", route.metric)]
    if route.gateway is not None:
        attrs.append(("RTA_GATEWAY", str(route.gateway)))
    if route.prefsrc is not None and kind == RTM_NEWROUTE:
        attrs.append(("RTA_PREFSRC", str(route.prefsrc)))
    message["attrs"] = attrs
    return _encode(message, kind, flags, seq)


def build_setmtu(index: int, mtu: int, *, seq: int = 1) -> bytes:
    """An RTM_NEWLINK request setting the MTU of interface `index` (`ip link set mtu`)."""
    message = ifinfmsg()
    message["index"] = index
    message["attrs"] = [("IFLA_MTU", mtu)]
    return _encode(message, RTM_NEWLINK, NLM_F_ACK, seq)


def build_getlink(*, seq: int = 1) -> bytes:
    """An RTM_GETLINK dump request for every link (answered by RTM_NEWLINKs, then NLMSG_DONE)."""
    return _encode(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP, seq)


def getlink_request(ifname: str, seq: int) -> bytes:
    """An RTM_GETLINK request for the interface named `ifname` (answered by one RTM_NEWLINK).

    Raises:
        ValueError: a name that is empty or longer than IFNAMSIZ - 1 bytes.
    """
    name = ifname.encode()
    if not 0 < len(name) < IFNAMSIZ or b"\0" in name:
        raise ValueError(f"invalid interface name {ifname!r}")
    message = ifinfmsg()
    message["attrs"] = [("IFLA_IFNAME", ifname)]
    return _encode(message, RTM_GETLINK, 0, seq)


# -- parsing -------------------------------------------------------------------------------------


def parse_messages(data: bytes) -> list[Any]:
    """Decode one netlink datagram into pyroute2 messages (`MarshalRtnl`).

    Raises:
        NetlinkParseError: a header or fixed part that is short, a length that does not fit the
            datagram, or bytes left over.
    """
    try:
        messages = list(_MARSHAL.parse(data))
    except Exception as error:  # pyroute2 lets struct.error and the like through
        raise NetlinkParseError(f"undecodable netlink datagram: {error!r}") from None
    end = 0
    for message in messages:
        header = message["header"]
        length = header.get("length", 0)
        if message.offset != end or length < _NLMSG_HEADER or end + length > len(data):
            raise NetlinkParseError(f"message length {length} at offset {end}")
        if isinstance(header.get("error"), NetlinkDecodeError):
            raise NetlinkParseError(f"undecodable message at offset {end}")
        end += message.msg_align(length)
    if end < len(data):
        raise NetlinkParseError(f"{len(data) - end} bytes after the last message")
    return messages


def _nla(message: Any, name: str) -> Any:
    """The first attribute `name` of `message`, decoded by pyroute2, or None when absent.

    Raises:
        NetlinkParseError: pyroute2 could not decode it, or its length does not fit the message
            or is short for its type.
    """
    for slot in message["attrs"]:
        if slot.name != name:
            continue
        if not slot.try_to_decode():  # pyroute2 logs why and would hand back the raw bytes
            raise NetlinkParseError(f"malformed {name}")
        cell = slot.nla
        length = cell.length  # as the attribute's header says, once decoded
        fits = cell.offset + length <= message.offset + message["header"]["length"]
        if not fits or length - _NLA_HEADER < cell.get_size():
            raise NetlinkParseError(f"{name} of {length} bytes")
        return cell
    return None


def _attr(message: Any, name: str, kind: type[_T]) -> _T | None:
    """The value of attribute `name` (see `_nla`), which must be a `kind`; None when absent."""
    cell = _nla(message, name)
    if cell is None:
        return None
    value = cell.getvalue()
    if not isinstance(value, kind):
        raise NetlinkParseError(f"malformed {name}")
    return value


def _name(message: Any) -> str | None:
    cell = _nla(message, "IFLA_IFNAME")
    value = None if cell is None else cell.getvalue()
    if isinstance(value, bytes):  # not UTF-8: pyroute2 leaves the bytes
        return value.decode("utf-8", "replace")
    if value is not None and not isinstance(value, str):
        raise NetlinkParseError("malformed IFLA_IFNAME")
    return value


def _hwaddr(message: Any) -> bytes | None:
    """IFLA_ADDRESS when it is a MAC address, which pyroute2 decodes (others are None)."""
    try:
        cell = _nla(message, "IFLA_ADDRESS")
    except NetlinkParseError:
        return None  # a tunnel's 4-byte address, say
    if cell is None or cell.length - _NLA_HEADER != cell.get_size():
        return None
    value = cell.getvalue()
    if not isinstance(value, str):
        raise NetlinkParseError("malformed IFLA_ADDRESS")
    return bytes.fromhex(value.replace(":", ""))


def _type(message: Any) -> int:
    return int(message["header"]["type"])


def parse_link(message: Any) -> Link:
    """The link snapshot in an RTM_NEWLINK or RTM_DELLINK message.

    Raises:
        NetlinkParseError: another message type, or a malformed payload.
    """
    kind = _type(message)
    if kind not in (RTM_NEWLINK, RTM_DELLINK):
        raise NetlinkParseError(f"message type {kind} is not a link message")
    carrier = _attr(message, "IFLA_CARRIER", int)
    return Link(
        index=int(message["index"]),
        name=_name(message),
        hwaddr=_hwaddr(message),
        flags=int(message["flags"]),
        carrier=None if carrier is None else bool(carrier),
        operstate=_attr(message, "IFLA_OPERSTATE", str),
        mtu=_attr(message, "IFLA_MTU", int),
        deleted=kind == RTM_DELLINK,
        family=int(message["family"]),
        ifi_type=int(message["ifi_type"]),
        master=_attr(message, "IFLA_MASTER", int) or None,  # no interface has index 0
    )


def parse_address(message: Any) -> Address | None:
    """The IPv4 address in an RTM_NEWADDR message; None for another family.

    The address is IFA_LOCAL (IFA_ADDRESS is the peer on point-to-point links), else
    IFA_ADDRESS; the flags are IFA_FLAGS (32 bits) when present, else `ifa_flags` (8 bits).

    Raises:
        NetlinkParseError: another message type, or a malformed payload.
    """
    kind = _type(message)
    if kind != RTM_NEWADDR:
        raise NetlinkParseError(f"message type {kind} is not an address message")
    if message["family"] != socket.AF_INET:
        return None
    local = _attr(message, "IFA_LOCAL", str)
    ip = local if local is not None else _attr(message, "IFA_ADDRESS", str)
    flags = _attr(message, "IFA_FLAGS", int)
    if ip is None:
        return None
    try:
        address = IPv4Interface((IPv4Address(ip), int(message["prefixlen"])))
    except ValueError as error:
        raise NetlinkParseError(f"IPv4 address: {error}") from None
    return Address(
        int(message["index"]), address, int(message["flags"]) if flags is None else flags
    )


def parse_error(message: Any) -> int:
    """The errno of an NLMSG_ERROR message (0 for an acknowledgement).

    Raises:
        NetlinkParseError: another message type.
    """
    if _type(message) != NLMSG_ERROR:
        raise NetlinkParseError("not an NLMSG_ERROR message")
    return -int(message["error"])


def parse_ack(data: bytes, seq: int, answer: list[Any] | None = None) -> int | None:
    """Read one datagram of the kernel's answer to request `seq`.

    Messages for other requests (what a cancelled request left behind) are skipped. The answer
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
            header = message["header"]
            if header["sequence_number"] != seq:
                continue
            if header["type"] == NLMSG_ERROR:
                return parse_error(message)
            if header["type"] == NLMSG_DONE:
                return 0
            if answer is not None:
                answer.append(message)
            if not header["flags"] & NLM_F_MULTI:
                return 0
    except NetlinkParseError as error:
        raise NetlinkError(_errno.EPROTO, f"malformed netlink answer: {error}") from None
    return None


# -- the Trio socket -----------------------------------------------------------------------------


def open_socket(netns: str | None = None, *, groups: Iterable[int] = ()) -> trio.socket.SocketType:
    """A NETLINK_ROUTE socket owned by Trio, created in `netns` and subscribed to `groups`.

    Args:
        netns: a namespace name under /run/netns or a path; None: the calling thread's. The
            socket stays in that namespace for its life.
        groups: multicast groups to join (RTNLGRP_* numbers), before anything is asked.

    Raises:
        OSError: the namespace cannot be entered or the socket opened.
    """
    with entered(netns):
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
    try:
        # Bound (the kernel picks the port id) before joining: an unbound socket has port id 0,
        # the kernel's own, and multicast is never delivered back to its sender.
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
        return trio.socket.from_stdlib_socket(sock)
    except BaseException:
        sock.close()
        raise


class Subscription(Closing):
    """A socket subscribed to rtnetlink notifications, replaced when the kernel dropped some.

    When our receive buffer overflows, the kernel drops notifications and says so once, by
    ENOBUFS; what the socket still holds is stale by then. `recv` answers that by opening a
    fresh subscribed socket, closing the old one and returning None: the caller asks for the
    state anew on the fresh socket, and a snapshot replaces any number of lost changes.

    Args:
        open_socket: opens a subscribed socket (`open_socket(netns, groups=...)`), now and at
            every replacement.

    Attributes:
        sock: the socket now; requests go out on it.
        resyncs: how many times the socket was replaced.
    """

    def __init__(self, open_socket: Callable[[], trio.socket.SocketType]) -> None:
        self._open = open_socket
        self.sock = open_socket()
        self.resyncs = 0

    async def recv(self) -> bytes | None:
        """The next datagram, or None when notifications were lost and the socket replaced.

        Raises:
            OSError: the socket failed otherwise, or could not be replaced.
        """
        try:
            return await self.sock.recv(_RECEIVE_SIZE)
        except OSError as error:
            if error.errno != _errno.ENOBUFS:
                raise
        self.reopen()
        return None

    def reopen(self) -> None:
        """Replace the socket by a fresh subscribed one (counted in `resyncs`).

        Raises:
            OSError: the new socket could not be opened (the old one is kept).
        """
        fresh = self._open()  # subscribed before anything is asked on it: nothing falls between
        self.sock.close()
        self.sock = fresh
        self.resyncs += 1

    def close(self) -> None:
        """Close the socket; idempotent."""
        self.sock.close()


class RtnlSocket(Closing):
    """One NETLINK_ROUTE socket for requests, on Trio; `with RtnlSocket.open(netns) as rtnl:`.

    Each call sends one request and reads until its answer; requests from several tasks take
    turns. Cancelling a call at any point leaves the socket usable: the next request has a new
    sequence number and skips the old answer. `NetlinkError` carries the kernel's errno.

    Args:
        sock: the socket (`open_socket`).
        timeout: the longest wait for an answer; the kernel answers at once, so this only
            bounds a bug (`NetlinkError(ETIMEDOUT)`).
    """

    def __init__(self, sock: trio.socket.SocketType, *, timeout: float = 5.0) -> None:
        self._sock = sock
        self._seq = 0
        self._turn = trio.Lock()
        self.timeout = timeout

    @classmethod
    def open(cls, netns: str | None = None) -> RtnlSocket:
        """Open the socket in `netns` (see `open_socket`).

        Raises:
            OSError: the namespace cannot be entered or the socket opened.
        """
        return cls(open_socket(netns))

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._sock.close()

    async def request(self, build: Callable[[int], bytes], what: str) -> list[Any]:
        """Send `build(seq)` and return the messages answering it, without the ACK or DONE.

        Raises:
            NetlinkError: the kernel refused (its errno), answered nonsense (EPROTO) or did not
                answer in time (ETIMEDOUT); `what` names the request in the message.
        """
        async with self._turn:
            self._seq = self._seq % 0xFFFF_FFFF + 1
            seq = self._seq
            request = build(seq)
            answer: list[Any] = []
            with trio.move_on_after(self.timeout):
                await self._sock.send(request)
                code = None
                while code is None:
                    code = parse_ack(await self._sock.recv(_RECEIVE_SIZE), seq, answer)
                if code:
                    raise NetlinkError(code, f"{what}: {os.strerror(code)}")
                return answer
        raise NetlinkError(_errno.ETIMEDOUT, f"{what}: no answer from the kernel")

    async def link(self, ifname: str) -> Link | None:
        """The link named `ifname`, or None when there is none.

        Raises:
            ValueError: an invalid interface name.
            NetlinkError: the kernel refused otherwise.
        """
        getlink_request(ifname, 0)  # an invalid name is the caller's error, not the kernel's
        try:
            answer = await self.request(partial(getlink_request, ifname), f"RTM_GETLINK {ifname}")
        except NetlinkError as error:
            if error.errno == _errno.ENODEV:
                return None
            raise
        for message in answer:
            if _type(message) == RTM_NEWLINK:
                try:
                    return parse_link(message)
                except NetlinkParseError as error:
                    raise NetlinkError(_errno.EPROTO, f"RTM_GETLINK: {error}") from None
        return None

    async def addresses(self, index: int) -> dict[IPv4Interface, int]:
        """The IPv4 addresses on interface `index`, with their IFA flags."""
        found: dict[IPv4Interface, int] = {}
        for message in await self.request(lambda seq: build_getaddr(seq=seq), "RTM_GETADDR"):
            if _type(message) != RTM_NEWADDR:
                continue
            try:
                address = parse_address(message)
            except NetlinkParseError as error:
                raise NetlinkError(_errno.EPROTO, f"RTM_GETADDR: {error}") from None
            if address is not None and address.index == index:
                found[address.address] = address.flags
        return found

    async def replace_address(self, address: IPv4Interface, index: int, valid: int) -> None:
        """Add or replace `address` on `index`, valid (and preferred) for `valid` seconds."""
        await self.request(
            lambda seq: build_newaddr(address, index, valid, seq=seq), f"RTM_NEWADDR {address}"
        )

    async def delete_address(self, address: IPv4Interface, index: int) -> None:
        """Remove `address` from `index` (EADDRNOTAVAIL when it is not there)."""
        await self.request(
            lambda seq: build_deladdr(address, index, seq=seq), f"RTM_DELADDR {address}"
        )

    async def replace_route(self, route: Route) -> None:
        """Add or replace `route` (same destination, table, metric: replaced in place)."""
        await self.request(lambda seq: build_route(RTM_NEWROUTE, route, seq=seq), "RTM_NEWROUTE")

    async def delete_route(self, route: Route) -> None:
        """Remove `route` (ESRCH when there is no such route)."""
        await self.request(lambda seq: build_route(RTM_DELROUTE, route, seq=seq), "RTM_DELROUTE")

    async def set_mtu(self, index: int, mtu: int) -> None:
        """Set the MTU of interface `index`."""
        await self.request(lambda seq: build_setmtu(index, mtu, seq=seq), f"MTU {mtu}")
