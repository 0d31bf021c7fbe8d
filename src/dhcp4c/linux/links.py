"""Every link of a network namespace: which Ethernet-like interfaces exist, as they come and go.

What the command needs to run one client per interface that exists or appears (`--all`, or a
name pattern: `name_filter`) and to stop it when the interface goes. The usual cut: a pure
`LinkTable` (link snapshots in, the set of present names out; `ethernet_like` says which
count), `AllLinks` (one netlink socket owned by Trio: a dump of every link, then changes) and
`LinkSet` (the set as a trio_util `AsyncValue`, kept up to date by `run()`).

Invariants:
- Ethernet-like: ARPHRD_ETHER with a MAC that is not all zeros, not loopback, and not enslaved
  (IFLA_MASTER: a bridge port or bond slave, whose addresses belong to its master). veths,
  bridges, bonds and VLANs count; tunnels without a MAC, loopback and PPP do not.
- The socket joins RTNLGRP_LINK *before* it asks for the dump, so no change falls between. Dump
  parts and the notifications interleaved with them are taken in arrival order, and the set is
  published only once the dump is complete: never half-read, never emptied on the way.
- When the kernel dropped notifications (ENOBUFS), or a datagram was malformed, a fresh socket
  and a fresh dump replace everything known, once complete; until then the old set stands.
- Links are followed by index: a new name for an index is a removal and an appearance. Only
  AF_UNSPEC messages count: AF_BRIDGE ones (bridge ports) say nothing about existence.
- The set changes, and wakes its watchers, only when a name comes or goes (its name -> index
  map also when a name's index changes); carrier, MTU or address changes wake nobody.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import socket
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, cast

import trio
from pyroute2.arp import ARPHRD_ETHER
from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTNLGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_LOOPBACK
from trio_util import AsyncValue

from dhcp4c._closing import Closing
from dhcp4c.linux.rtnl import (
    Link,
    NetlinkParseError,
    Subscription,
    build_getlink,
    open_socket,
    parse_error,
    parse_link,
    parse_messages,
)

__all__ = [
    "AllLinks",
    "LinkSet",
    "LinkTable",
    "LinkUpdate",
    "ethernet_like",
    "is_pattern",
    "name_filter",
]

_log = logging.getLogger("dhcp4c.linux.links")

_PATTERN_CHARACTERS = frozenset("*?[")


# -- which links, which names (pure) ------------------------------------------------------------


def ethernet_like(link: Link) -> bool:
    """Whether a DHCP client could run on `link` of its own: see the module's invariants."""
    return (
        not link.deleted
        and link.family == socket.AF_UNSPEC
        and link.name is not None
        and link.ifi_type == ARPHRD_ETHER
        and not link.flags & IFF_LOOPBACK
        and link.hwaddr is not None
        and any(link.hwaddr)
        and link.master is None
    )


def is_pattern(argument: str) -> bool:
    """Whether a command-line argument is a name pattern (`eth*`) rather than one name."""
    return not _PATTERN_CHARACTERS.isdisjoint(argument)


def name_filter(patterns: Iterable[str] = ()) -> Callable[[str], bool]:
    """Which interface names to serve: every one (no pattern: `--all`), or those matching one.

    Args:
        patterns: shell-style patterns (`fnmatch`: `eth*`, `enp?s[0-9]`), matched case-sensitively
            as the kernel's names are; a name without wildcards matches itself only.

    Raises:
        ValueError: an empty pattern.
    """
    wanted = tuple(patterns)
    if "" in wanted:
        raise ValueError("an empty interface name pattern")
    if not wanted:
        return lambda ifname: True
    return lambda ifname: any(fnmatch.fnmatchcase(ifname, pattern) for pattern in wanted)


@dataclass(frozen=True)
class LinkUpdate:
    """Link snapshots from the kernel, in arrival order.

    Attributes:
        links: the snapshots (RTM_NEWLINK and RTM_DELLINK).
        complete: a whole dump (with the notifications that came during it): every link that
            exists, in place of everything known before; otherwise changes only.
    """

    links: tuple[Link, ...]
    complete: bool = False


class LinkTable:
    """Every link of a namespace by index, and the names of the Ethernet-like ones present.

    Args:
        match: which names count (`name_filter`); every name by default.

    Attributes:
        present: the names of the present Ethernet-like links that `match` accepts.
        indexes: their interface indexes, by name: a link deleted and created again under its
            name, between two reads, keeps the name but changes the index.
    """

    def __init__(self, match: Callable[[str], bool] = lambda ifname: True) -> None:
        self.match = match
        self._links: dict[int, Link] = {}
        self._present: dict[str, Link] = {}
        self.present: frozenset[str] = frozenset()
        self.indexes: Mapping[str, int] = MappingProxyType({})

    @property
    def links(self) -> Mapping[str, Link]:
        """The latest snapshot of each present link, by name (a read-only view)."""
        return MappingProxyType(self._present)

    def update(self, link: Link) -> bool:
        """Take one snapshot; return whether `indexes` (and so perhaps `present`) changed."""
        self._take(link)
        return self._refresh()

    def replace(self, links: Iterable[Link]) -> bool:
        """Take a whole dump in place of everything known; return whether `indexes` changed."""
        self._links = {}
        for link in links:
            self._take(link)
        return self._refresh()

    def apply(self, update: LinkUpdate) -> bool:
        """Take an update (a dump replaces, changes update); return whether `indexes` changed."""
        if update.complete:
            return self.replace(update.links)
        for link in update.links:
            self._take(link)
        return self._refresh()

    def _take(self, link: Link) -> None:
        if link.family != socket.AF_UNSPEC:
            return  # AF_BRIDGE: a bridge port's settings, even in an RTM_DELLINK
        if link.deleted:
            self._links.pop(link.index, None)
        else:
            self._links[link.index] = link  # a full snapshot: a new name is a rename

    def _refresh(self) -> bool:
        present = {
            link.name: link
            for _, link in sorted(self._links.items())
            if link.name is not None and ethernet_like(link) and self.match(link.name)
        }
        self._present = present
        indexes = {name: link.index for name, link in present.items()}
        if indexes == self.indexes:
            return False
        self.indexes = MappingProxyType(indexes)
        self.present = frozenset(indexes)
        return True


# -- the Trio shell ---------------------------------------------------------------------------


class AllLinks(Closing):
    """A netlink socket subscribed to link changes that reads every link's state.

    Use `AllLinks.open(netns=...)`; read with `receive()`; `close()` when done. The first
    `receive()` that returns is a complete dump, and so is the first after notifications
    were lost.

    Args:
        open_socket: opens a subscribed socket, now and again after notifications were lost.

    Attributes:
        drops: malformed datagrams and link messages skipped.
    """

    def __init__(self, open_socket: Callable[[], trio.socket.SocketType]) -> None:
        self._feed = Subscription(open_socket)
        self._seq = 0
        self._asked = False
        self._dump: list[Link] | None = None  # the dump under way, with what came during it
        self.drops = 0

    @classmethod
    def open(cls, *, netns: str | None = None) -> AllLinks:
        """Subscribe to link changes in `netns` (None: the calling thread's namespace).

        Raises:
            OSError: the namespace cannot be entered or the socket opened.
        """
        return cls(partial(open_socket, netns, groups=(RTNLGRP_LINK,)))

    @property
    def resyncs(self) -> int:
        """How many times everything was read anew (notifications lost, a malformed datagram)."""
        return self._feed.resyncs

    async def receive(self) -> LinkUpdate:
        """Wait for the next snapshots: a complete dump, or changes.

        Raises:
            OSError: the kernel refused the dump, or the socket failed otherwise (not ENOBUFS,
                which is recovered from), or could not be replaced.
        """
        while True:
            if not self._asked:
                self._seq += 1
                await self._feed.sock.send(build_getlink(seq=self._seq))
                self._asked = True
                self._dump = []
            data = await self._feed.recv()
            if data is None:
                _log.info("link notifications lost; reading every link anew")
                self._asked = False
                continue
            try:
                messages = parse_messages(data)
            except NetlinkParseError as error:
                # It may have held a deletion, or the end of the dump: read everything anew.
                self.drops += 1
                _log.warning("malformed netlink datagram, reading every link anew: %s", error)
                self._feed.reopen()
                self._asked = False
                continue
            links, done = self._read(messages)
            if self._dump is None:
                if links:
                    return LinkUpdate(tuple(links))
                continue
            self._dump += links
            if done:
                update = LinkUpdate(tuple(self._dump), complete=True)
                self._dump = None
                return update

    def _read(self, messages: list[Any]) -> tuple[list[Link], bool]:
        """The link snapshots in `messages`, and whether our dump ended among them."""
        links: list[Link] = []
        done = False
        for message in messages:
            header = message["header"]
            kind = header["type"]
            if kind in (RTM_NEWLINK, RTM_DELLINK):
                try:
                    links.append(parse_link(message))
                except NetlinkParseError as error:
                    self.drops += 1
                    _log.warning("malformed link message skipped: %s", error)
            elif header["sequence_number"] != self._seq:
                continue
            elif kind == NLMSG_DONE:
                done = True
            elif kind == NLMSG_ERROR:
                code = parse_error(message)
                if code:
                    raise OSError(code, f"RTM_GETLINK dump: {os.strerror(code)}")
        return links, done

    def close(self) -> None:
        """Close the socket; idempotent."""
        self._feed.close()


class LinkSet:
    """The Ethernet-like links of a namespace, as a value kept up to date by `run()`.

    Args:
        netns: the namespace (a name under /run/netns or a path); None: the calling thread's.
        match: which names count (`name_filter`); every Ethernet-like link by default.
        source: opens the reader at each `run()` (default `AllLinks.open(netns=netns)`).

    Attributes:
        names: the names present, an `AsyncValue` that changes only when one comes or goes (a
            level: a watcher that is late or starts again misses nothing).
        indexes: the same links as name -> interface index, an `AsyncValue` that also changes
            when a link is deleted and created again under its name between two reads (which
            `names` cannot show): what a caller running one client per link should follow.
        synced: set once the first dump is in; until then `names` is empty for want of news.

    Trade-off: the whole set is recomputed at each snapshot, which keeps the table simple and
    is cheap next to the netlink decoding of that snapshot.
    """

    def __init__(
        self,
        netns: str | None = None,
        *,
        match: Callable[[str], bool] = lambda ifname: True,
        source: Callable[[], AllLinks] | None = None,
    ) -> None:
        self._source = source if source is not None else partial(AllLinks.open, netns=netns)
        self._table = LinkTable(match)
        self.names: AsyncValue[frozenset[str]] = AsyncValue(frozenset())
        self.indexes: AsyncValue[Mapping[str, int]] = AsyncValue(MappingProxyType({}))
        self.synced = trio.Event()

    @property
    def links(self) -> Mapping[str, Link]:
        """The latest snapshot of each present link, by name (hardware address, carrier, ...).

        Updated before `names`, so a watcher woken by `names` finds every name here.
        """
        return self._table.links

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read every link, then follow the changes, until cancelled.

        With `nursery.start(link_set.run)`, it has started once the first dump is in. The set
        survives a run that ends: the next one's dump replaces it when complete.

        Raises:
            OSError: the namespace cannot be entered, the socket opened, or it failed (lost
                notifications are recovered from; they are not an error).
        """
        source = self._source()
        try:
            started = False
            while True:
                update = await source.receive()
                self._table.apply(update)
                self.indexes.value = self._table.indexes
                self.names.value = self._table.present
                if update.complete and not started:
                    started = True
                    self.synced.set()
                    task_status.started()
        finally:
            source.close()

    async def watch(self) -> AsyncGenerator[frozenset[str], None]:
        """The names once the first dump is in, then again after every change.

        The `Links` protocol of examples/agent.py; close it when leaving early
        (`contextlib.aclosing`).
        """
        await self.synced.wait()
        values = cast(AsyncGenerator[frozenset[str], None], self.names.eventual_values())
        async with contextlib.aclosing(values):
            async for names in values:
                yield names
