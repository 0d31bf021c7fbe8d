"""Link changes: the carrier, hardware address and existence of one interface, fed to its client.

This module owns what happens to a client when its link changes under it:

- carrier down: `Client.set_carrier(False)`; the machine stops transmitting (INIT_REBOOT with a
  lease, INIT without) until the carrier comes back;
- carrier up: `Client.set_carrier(True)`; with a lease, an INIT-REBOOT REQUEST verifies it at once
  (RFC 2131 §3.2, "the client may have moved to a new subnet"), without one a DISCOVER;
- a new hardware address: the client's run ends, its lease is dropped as lost (reason
  `LossReason.HWADDR_CHANGED`) and it runs again with the new address, a new client to the
  server;
- the interface disappearing (or being renamed away): the client's run ends, its lease is
  dropped (reason `LossReason.INTERFACE_GONE`) and the runnable signals DONE: not restarted,
  while the other interfaces' clients go on.

Three layers, the usual cut: `dhcp4c.linux.rtnl` decodes link messages with pyroute2 (`Link`
snapshots out, `NetlinkParseError` for anything malformed); a pure `LinkTracker` turns
snapshots of one interface into `LinkChange`s; and the Trio shell, `LinkWatch` (one netlink
socket owned by Trio: readable and cancellable for the client's life, no thread) and
`dhcp4c.shell.runner.run_interface` (a supervisor runnable: the client and the watcher of its
link in one node).

Invariants:
- The socket joins RTNLGRP_LINK *before* asking for the interface's state (RTM_GETLINK by
  name), so no change between the answer and the subscription is missed. Each RTM_NEWLINK is a
  full snapshot, so the answer and the notifications are handled alike.
- When the kernel drops notifications (ENOBUFS: our socket buffer overflowed), the watch closes
  the socket, opens a new one and asks for the state again: whatever the old socket still held
  is stale, and a fresh snapshot replaces any number of lost changes.
- Only AF_UNSPEC link messages count: AF_BRIDGE messages about bridge ports (including an
  RTM_DELLINK when a port leaves its bridge) say nothing about the link's existence.
- The interface is followed by its index once known: a message for another index is ignored,
  one carrying another name for ours means it was renamed, which for a client bound to a name
  is the same as gone.
- The socket is created in the network namespace `netns` (setns(2) on the calling thread for
  the `socket()` call only) and stays there for its life.
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
    getlink_request,
    open_socket,
    parse_error,
    parse_link,
    parse_messages,
)

__all__ = [
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
        self._open = open_socket
        self._sock = open_socket()
        self._seq = 0
        self._asked = False
        self.resyncs = 0
        self.drops = 0

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
        await self._sock.send(getlink_request(self.ifname, self._seq))
        self._asked = True

    def _reopen(self) -> None:
        fresh = self._open()  # subscribed before it asks: nothing falls between
        self._sock.close()
        self._sock = fresh
        self._asked = False

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
            try:
                data = await self._sock.recv(0x10000)
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                self.resyncs += 1
                _log.info("%s: link notifications lost; reading the state anew", self.ifname)
                self._reopen()
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
        self._sock.close()
