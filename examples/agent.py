"""A small node agent: DHCP on every Ethernet link, a resolver file, a flaky reporter.

The tree it runs (`Agent.root` under `supervisor.supervise`):

    root                  declares the three below, then HEALTHY and DONE
      net                 one DHCP client per link, started and stopped as links come and go
        eth0, eth1, ...   `Client.run`, dynamic children with a restart limit each
      resolver            subscribes to every client's lease events, keeps the resolver file
      report              HEALTHY parent of `push`; dies (and restarts) when `push` gives up
        push              sends lease summaries to a sink that may fail: a restart limit

What it shows, one feature each: dynamic children (`net` starts a client per link with
`start_child` and stops it with `stop_child`), lease events through memory channels (`resolver`
follows `Agent.clients`, a `trio_util.AsyncValue`, and subscribes to each client), a restart
limit that climbs (`push` may die three times a minute; the fourth death kills `report`, which
restarts after its backoff with a fresh `push`), and the tree dumped to a log on SIGUSR1.

Invariants: a client object lives as long as its link (its lease survives restarts of its
runnable and of `net`); the resolver file lists the name servers of every bound lease, by
interface name, and is rewritten whenever that list changes.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from functools import partial
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol, TypeVar, cast

import trio
from trio_util import AsyncValue

import supervisor
from dhcp4c.protocol.lease import Lease
from dhcp4c.shell.client import Client
from supervisor import RestartLimit, Signal

__all__ = ["Agent", "Links", "MemoryLinks", "node_name"]

_log = logging.getLogger("agent")

#: A client that dies more than this often is given up, and `net` restarts (re-reading links).
CLIENT_LIMIT = RestartLimit(5, 60.0)
#: The reporter's sink may fail three times a minute; the fourth failure restarts `report`.
PUSH_LIMIT = RestartLimit(3, 60.0)

_INVALID = re.compile(r"[^a-z0-9_]")
T = TypeVar("T")


class Links(Protocol):
    """Where `net` learns about links: the names of the Ethernet links present, as they change.

    `watch()` yields the whole set now, then again after every change (a level, not edges:
    changes may be coalesced, and a watcher that starts late, or again after a restart, misses
    nothing). A production agent implements it over rtnetlink (RTM_NEWLINK and RTM_DELLINK for
    all links); tests use `MemoryLinks`.
    """

    def watch(self) -> AsyncGenerator[frozenset[str], None]: ...


class MemoryLinks:
    """`Links` driven by the test: `add(name)`, `remove(name)`."""

    def __init__(self, *names: str) -> None:
        self.present: AsyncValue[frozenset[str]] = AsyncValue(frozenset(names))

    def add(self, name: str) -> None:
        self.present.value = self.present.value | {name}

    def remove(self, name: str) -> None:
        self.present.value = self.present.value - {name}

    def watch(self) -> AsyncGenerator[frozenset[str], None]:
        # An async generator at run time; trio-util annotates it as an iterator.
        return cast(AsyncGenerator[frozenset[str], None], self.present.eventual_values())


def node_name(ifname: str) -> str:
    """The child name for an interface: `enp0s3` stays, `br-lan.10` becomes `br_lan_10`."""
    return _INVALID.sub("_", ifname.lower())[:64] or "_"


class Agent:
    """The agent's runnables and the state they share.

    Args:
        links: where links come from.
        client_factory: `factory(ifname)` builds the DHCP client of a new link.
        resolv_path: the resolver file to keep up to date.
        sink: `await sink(summary)` publishes `{ifname: address}`; it may raise.
        match: which links get a client (the command's `--all` or name pattern).
        debug_log: when given, the tree is logged there on SIGUSR1.

    Trade-off: the resolver file is written synchronously (small, atomic rename) rather than in
    a thread, which keeps the agent deterministic on the mock clock; a slow disk stalls the
    resolver runnable for the length of one write.
    """

    def __init__(
        self,
        links: Links,
        client_factory: Callable[[str], Client],
        resolv_path: Path,
        sink: Callable[[Mapping[str, str]], Awaitable[None]],
        *,
        match: Callable[[str], bool] = lambda ifname: True,
        debug_log: logging.Logger | None = None,
    ) -> None:
        self.links = links
        self.client_factory = client_factory
        self.resolv_path = resolv_path
        self.sink = sink
        self.match = match
        self.debug_log = debug_log
        #: The clients of the matching links present now, by interface name (a new mapping at
        #: each change; kept across restarts of `net`).
        self.clients: AsyncValue[Mapping[str, Client]] = AsyncValue({})
        #: The lease each client holds now (None: none), as the resolver last heard it.
        self.leases: AsyncValue[Mapping[str, Lease | None]] = AsyncValue({})

    async def root(self) -> None:
        """The root runnable."""
        supervisor.run("net", self.network)
        supervisor.run("resolver", self.resolver)
        supervisor.run("report", self.report)
        if self.debug_log is not None:
            supervisor.run("debug", partial(supervisor.dump_on_signal, self.debug_log))
        supervisor.signal(Signal.HEALTHY)
        supervisor.signal(Signal.DONE)

    # -- net: a DHCP client per link -------------------------------------------------------------

    async def network(self) -> None:
        """Run a client for every matching link, stop it when the link goes (reconciling)."""
        log = supervisor.logger()
        running: dict[str, str] = {}  # ifname -> child name, in this incarnation
        supervisor.signal(Signal.HEALTHY)
        async with contextlib.aclosing(self.links.watch()) as watch:
            async for present in watch:
                wanted = {ifname for ifname in present if self.match(ifname)}
                clients = {n: c for n, c in self.clients.value.items() if n in wanted}
                for ifname in sorted(set(running) - wanted):
                    # KeyError: it had finished on its own (a runnable that signals DONE when
                    # its interface vanishes, like `dhcp4c.linux.linkwatch.run_interface`).
                    with contextlib.suppress(KeyError):
                        await supervisor.stop_child(running.pop(ifname))
                    log.info("%s: gone, client stopped", ifname)
                for ifname in sorted(wanted - set(running)):
                    child = node_name(ifname)
                    if child in running.values():
                        log.warning("%s: child name %s is taken, no client", ifname, child)
                        continue
                    # A link still present across a restart of `net` keeps its client object,
                    # and so its lease: the client's next run verifies it (INIT-REBOOT).
                    client = clients.get(ifname)
                    if client is None:
                        client = clients[ifname] = self.client_factory(ifname)
                    supervisor.start_child(child, client.run, limit=CLIENT_LIMIT)
                    running[ifname] = child
                    log.info("%s: client started", ifname)
                self.clients.value = clients

    # -- resolver: lease events to a file --------------------------------------------------------

    async def resolver(self) -> None:
        """Follow every client's lease events and keep the resolver file up to date."""
        following: dict[str, tuple[Client, trio.CancelScope]] = {}
        self.leases.value = {}
        supervisor.signal(Signal.HEALTHY)
        async with trio.open_nursery() as nursery, _values(self.clients) as values:
            async for clients in values:
                for ifname, (client, scope) in list(following.items()):
                    if clients.get(ifname) is not client:
                        scope.cancel()
                        del following[ifname]
                        self._set_lease(ifname, None, remove=True)
                for ifname, client in clients.items():
                    if ifname not in following:
                        scope = trio.CancelScope()
                        following[ifname] = (client, scope)
                        nursery.start_soon(self._follow, ifname, client, scope)

    async def _follow(self, ifname: str, client: Client, scope: trio.CancelScope) -> None:
        with scope, client.subscribe() as events:
            async for event in events:
                self._set_lease(ifname, event.lease)

    def _set_lease(self, ifname: str, lease: Lease | None, *, remove: bool = False) -> None:
        leases = dict(self.leases.value)
        if remove:
            leases.pop(ifname, None)
        else:
            leases[ifname] = lease
        before = _nameservers(self.leases.value)
        self.leases.value = leases
        after = _nameservers(leases)
        if after != before or not self.resolv_path.exists():
            _write_resolv(self.resolv_path, after)

    # -- report: a flaky sink under a restart limit ----------------------------------------------

    async def report(self) -> None:
        """The parent of `push`; it dies when `push` exceeds its restart limit."""
        supervisor.run("push", self.push, limit=PUSH_LIMIT)
        supervisor.signal(Signal.HEALTHY)
        await trio.sleep_forever()

    async def push(self) -> None:
        """Send `{ifname: address}` to the sink at every lease change; the sink may raise."""
        healthy = False
        async with _values(self.leases) as values:
            async for leases in values:
                summary = {n: str(lease.address.ip) for n, lease in leases.items() if lease}
                await self.sink(summary)
                if not healthy:
                    # HEALTHY once the sink took something: a push that keeps failing never
                    # resets its backoff, so its restarts slow down (0.5 s, 0.75 s, ...).
                    supervisor.signal(Signal.HEALTHY)
                    healthy = True


def _values(value: AsyncValue[T]) -> contextlib.aclosing[AsyncGenerator[T, None]]:
    """`value.eventual_values()`, closed when left (an async generator must not be abandoned)."""
    return contextlib.aclosing(cast(AsyncGenerator[T, None], value.eventual_values()))


def _nameservers(leases: Mapping[str, Lease | None]) -> list[IPv4Address]:
    seen: list[IPv4Address] = []
    for ifname in sorted(leases):
        lease = leases[ifname]
        for address in lease.dns_servers if lease is not None else ():
            if address not in seen:
                seen.append(address)
    return seen


def _write_resolv(path: Path, nameservers: list[IPv4Address]) -> None:
    # Only IPv4Address values reach the file: nothing from the wire is copied as text.
    text = "# Generated by the example agent.\n" + "".join(
        f"nameserver {address}\n" for address in nameservers
    )
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
