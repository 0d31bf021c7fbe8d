"""The command's `net` runnable: a client per interface that exists or appears (`--all`).

This module owns reconciling the clients with the links: `Network.run` follows the namespace's
Ethernet-like links (`dhcp4c.linux.links.LinkSet`, filtered by the patterns) and, for each wanted
name, starts `run_interface(client)` as a dynamic child `root.net.<ifname>`; when the link is
removed, it stops that child, drops the lease as lost (reason `interface-gone`) and forgets the
client. Links are followed by name and index (`LinkSet.indexes`): one deleted and created again
under its name between two reads is a removal and an appearance. Invariants:

- A `Client` object lives as long as its link: a restart of `net` (its children are dropped
  with it) starts the same objects again, so a link that stays keeps its lease (and its lease
  file); one that comes back after a removal gets a new client.
- Interfaces named on the command line are the fixed clients' and never get a second one here.
- `Served` is told of every client before it runs and after its last event, so the command's
  observers (`--json`, `--hook`, the service manager) follow the set; `synced()` once the first
  set of links has been reconciled (what `--once` waits for).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from dhcp4c.linux.links import LinkSet
    from dhcp4c.shell.client import Client

__all__ = ["Network", "Served"]


class Served(Protocol):
    """What the command does with the clients of the dynamic set (see `dhcp4c.cli.run`)."""

    def add(self, ifname: str, client: Client) -> None:
        """A client for `ifname`, before it runs."""

    def remove(self, ifname: str) -> None:
        """`ifname`'s client has stopped for good, its last event published."""

    def synced(self) -> None:
        """The links present at the start have their clients."""


class Network:
    """The `net` runnable: reconciles clients with the links that match.

    Args:
        patterns: which interface names to serve (`--match`; none: every one, `--all`), as
            for `dhcp4c.linux.links.name_filter`.
        exclude: names never served here (the fixed clients' interfaces).
        make_client: builds the client of a new interface (None: it cannot be served now,
            e.g. it vanished meanwhile; the reason is logged by it).
        run_client: the runnable of one client (`dhcp4c.shell.runner.run_interface`).
        served: told of the clients as they come and go.
        node_name: a node name for an interface, unique among the given taken names.
        links: builds the link set of a run from the filter (default: `LinkSet(match=...)`).

    Attributes:
        clients: the clients by interface name, kept across restarts of the runnable.
    """

    def __init__(
        self,
        patterns: Sequence[str],
        exclude: Collection[str],
        make_client: Callable[[str], Client | None],
        run_client: Callable[[Client], Awaitable[None]],
        served: Served,
        node_name: Callable[[str, set[str]], str],
        *,
        links: Callable[[Callable[[str], bool]], LinkSet] | None = None,
    ) -> None:
        self.patterns = tuple(patterns)
        self.exclude = frozenset(exclude)
        self.make_client = make_client
        self.run_client = run_client
        self.served = served
        self.node_name = node_name
        self._links = links
        self.clients: dict[str, Client] = {}
        self._indexes: dict[str, int] = {}  # the link each client was made for
        self._synced = False

    async def run(self) -> None:
        """Follow the links until cancelled: a supervisor runnable (HEALTHY once they are read).

        Raises:
            OSError: the netlink socket failed (a death: the restart reads every link again).
        """
        import trio

        import supervisor
        from dhcp4c.linux.links import LinkSet, name_filter
        from dhcp4c.protocol.events import LossReason

        log = supervisor.logger()
        named = name_filter(self.patterns)

        def match(ifname: str) -> bool:
            return ifname not in self.exclude and named(ifname)

        links = self._links(match) if self._links is not None else LinkSet(match=match)
        running: dict[str, str] = {}  # ifname -> node name, in this incarnation
        taken: set[str] = set()
        async with trio.open_nursery() as nursery:
            await nursery.start(links.run)
            supervisor.signal(supervisor.Signal.HEALTHY)
            values = cast(
                "AsyncGenerator[Mapping[str, int], None]", links.indexes.eventual_values()
            )
            async with contextlib.aclosing(values) as watch:
                async for present in watch:
                    wanted = {ifname: i for ifname, i in present.items() if match(ifname)}
                    gone = [n for n in self.clients if wanted.get(n) != self._indexes.get(n)]
                    for ifname in sorted(gone):
                        node = running.pop(ifname, None)
                        if node is not None:
                            taken.discard(node)
                            # KeyError: it ended DONE on its own (its link watch saw it go).
                            with contextlib.suppress(KeyError):
                                await supervisor.stop_child(node)
                        old = self.clients.pop(ifname)
                        del self._indexes[ifname]
                        try:
                            # A "lost" event, if it held a lease.
                            await old.forget(LossReason.INTERFACE_GONE)
                        except Exception as error:  # the lease callback: not the set's death
                            log.warning("%s: dropping its lease: %s", ifname, error)
                        self.served.remove(ifname)
                        log.info("%s: interface gone; its client stopped", ifname)
                    for ifname in sorted(set(wanted) - set(running)):
                        client = self.clients.get(ifname)
                        if client is None:
                            client = self.make_client(ifname)
                            if client is None:
                                continue
                            self.clients[ifname] = client
                            self._indexes[ifname] = wanted[ifname]
                            self.served.add(ifname, client)
                        node = self.node_name(ifname, taken)
                        supervisor.start_child(node, partial(self.run_client, client))
                        running[ifname] = node
                        log.info("%s: client started", ifname)
                    if not self._synced:
                        self._synced = True
                        which = f" matching {' '.join(self.patterns)}" if self.patterns else ""
                        now = ", ".join(sorted(wanted)) or "none yet"
                        log.info("following the interfaces%s: %s", which, now)
                        self.served.synced()
            nursery.cancel_scope.cancel()
