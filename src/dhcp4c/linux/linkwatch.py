"""Link changes: the carrier, hardware address and existence of one interface, fed to its client.

A pure `LinkTracker` turns `dhcp4c.linux.rtnl.Link` snapshots of one interface into
`LinkChange`s; `LinkWatch` is its Trio shell (one netlink socket, cancellable, no thread), and
`dhcp4c.shell.runner.run_interface` runs it with the client in one supervisor node. Carrier down
and up become `Client.set_carrier` (up verifies a held lease by INIT-REBOOT, RFC 2131 §3.2); a new
hardware address ends the client's run (lease lost, `HWADDR_CHANGED`) to start anew; the
interface disappearing or renamed away ends it for good (`INTERFACE_GONE`, the runnable is DONE).

Invariants: the socket joins RTNLGRP_LINK before asking for the state, so no change is missed;
on ENOBUFS it is replaced and the state asked again (a snapshot repairs any loss); only
AF_UNSPEC link messages count (AF_BRIDGE ones speak of bridge ports); the interface is followed
by index once known; the socket is created in `netns` and stays there. Why: docs/design.md.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import trio
from pyroute2.netlink import NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTNLGRP_LINK

from dhcp4c.linux.rtnl import (
    Link,
    NetlinkParseError,
    Subscription,
    getlink_request,
    open_socket,
    parse_error,
    parse_link,
    parse_messages,
)

__all__ = [
    "HWADDR_CHANGED",
    "INTERFACE_GONE",
    "CarrierChanged",
    "HwaddrChanged",
    "Link",
    "LinkChange",
    "LinkGone",
    "LinkSource",
    "LinkTracker",
    "LinkWatch",
    "NetlinkParseError",
    "getlink_request",
    "parse_error",
    "parse_link",
    "parse_messages",
]

_log = logging.getLogger("dhcp4c.linux.linkwatch")

#: The `reason` of the "lost" event when the interface's hardware address changed.
HWADDR_CHANGED = "hwaddr-changed"
#: The `reason` of the "lost" event when the interface disappeared.
INTERFACE_GONE = "interface-gone"


# -- the pure tracker ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CarrierChanged:
    """The link became usable (`up`) or stopped being usable."""

    up: bool


@dataclass(frozen=True)
class HwaddrChanged:
    """The interface has a new hardware address."""

    hwaddr: bytes


@dataclass(frozen=True)
class LinkGone:
    """The interface was deleted, renamed, or does not exist."""


LinkChange = CarrierChanged | HwaddrChanged | LinkGone


class LinkTracker:
    """Follows one interface through link snapshots and says what changed for its client.

    Args:
        ifname: the interface's name.
        hwaddr: the hardware address the client uses, if known; a first snapshot with another
            one is a change.

    The carrier starts as up, as the client assumes it, so a first snapshot of a dead link is a
    `CarrierChanged(False)`. After `LinkGone`, nothing changes any more.
    """

    def __init__(self, ifname: str, *, hwaddr: bytes | None = None) -> None:
        self.ifname = ifname
        self.index: int | None = None
        self.hwaddr = hwaddr
        self.carrier = True
        self.gone = False

    @property
    def known(self) -> bool:
        """Whether the interface was seen (or found missing) at least once."""
        return self.index is not None or self.gone

    def update(self, link: Link) -> list[LinkChange]:
        """Take a snapshot; return the changes it brings for our interface, carrier first.

        A `LinkGone` is always last and alone with the carrier change before it, if any.
        """
        if self.gone or link.family != socket.AF_UNSPEC:
            return []
        if self.index is None:
            if link.name != self.ifname:
                return []
            if not link.deleted:
                self.index = link.index
        elif link.index != self.index:
            return []
        if link.deleted or (link.name is not None and link.name != self.ifname):
            self.gone = True
            return [LinkGone()]
        changes: list[LinkChange] = []
        if link.usable != self.carrier:
            self.carrier = link.usable
            changes.append(CarrierChanged(link.usable))
        if link.hwaddr is not None and link.hwaddr != self.hwaddr:
            if self.hwaddr is not None:
                changes.append(HwaddrChanged(link.hwaddr))
            self.hwaddr = link.hwaddr
        return changes


# -- the Trio shell ---------------------------------------------------------------------------


class LinkSource(Protocol):
    """Where `run_interface` reads link snapshots from (a `LinkWatch`, or a test's script)."""

    async def receive(self) -> list[Link]:
        """The next snapshots; the first call includes the interface's current state."""
        ...

    def close(self) -> None: ...


class LinkWatch:
    """A netlink socket subscribed to link changes, that asks for one interface's state.

    Use `LinkWatch.open(ifname, netns=...)`; read with `receive()`; `close()` when done.

    Args:
        ifname: the interface to ask about (the subscription sees every link in the namespace;
            `LinkTracker` picks ours).
        open_socket: opens a subscribed socket, now and again after notifications were lost.

    Attributes:
        ifname: the interface asked about.
        resyncs: how many times the kernel dropped notifications and the state was read anew.
        drops: malformed datagrams skipped.
    """

    def __init__(self, ifname: str, open_socket: Callable[[], trio.socket.SocketType]) -> None:
        self.ifname = ifname
        self._feed = Subscription(open_socket)
        self._seq = 0
        self._asked = False
        self.drops = 0

    @property
    def resyncs(self) -> int:
        """How many times the kernel dropped notifications and the state was read anew."""
        return self._feed.resyncs

    @classmethod
    def open(cls, ifname: str, *, netns: str | None = None) -> LinkWatch:
        """Subscribe to link changes in `netns`; the first `receive()` asks for `ifname`'s state.

        Raises:
            OSError: the namespace cannot be entered or the socket opened.
            ValueError: an invalid interface name.
        """
        getlink_request(ifname, 0)  # check the name before opening anything
        return cls(ifname, partial(open_socket, netns, groups=(RTNLGRP_LINK,)))

    async def _ask(self) -> None:
        self._seq += 1
        await self._feed.sock.send(getlink_request(self.ifname, self._seq))
        self._asked = True

    async def receive(self) -> list[Link]:
        """Wait for the next datagram and return the link snapshots in it.

        The first call asks for the interface's state; an answer "no such device" becomes a
        deleted `Link` named after the interface. After a notification overflow (ENOBUFS) the
        socket is replaced and the state asked for again.

        Raises:
            OSError: the socket failed otherwise, or could not be replaced.
        """
        while True:
            if not self._asked:
                await self._ask()
            data = await self._feed.recv()
            if data is None:  # notifications lost: a fresh socket, on which we ask again
                _log.info("%s: link notifications lost; reading the state anew", self.ifname)
                self._asked = False
                continue
            try:
                links = self._links(parse_messages(data))
            except NetlinkParseError as error:
                self.drops += 1
                _log.warning("%s: malformed netlink datagram: %s", self.ifname, error)
                continue
            if links:
                return links

    def _links(self, messages: list[Any]) -> list[Link]:
        links = []
        for message in messages:
            header = message["header"]
            if header["type"] in (RTM_NEWLINK, RTM_DELLINK):
                links.append(parse_link(message))
            elif header["type"] == NLMSG_ERROR and header["sequence_number"] == self._seq:
                code = parse_error(message)
                if code == errno.ENODEV:
                    links.append(Link(index=0, name=self.ifname, deleted=True))
                elif code != 0:
                    raise OSError(code, f"RTM_GETLINK {self.ifname}: {os.strerror(code)}")
        return links

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._feed.close()
