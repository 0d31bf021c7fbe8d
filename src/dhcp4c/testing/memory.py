"""An in-memory network on the Trio clock, with fault injection, for tests.

One `MemoryNetwork` is one broadcast domain, modelled as a switched Ethernet whose sockets exist
only while open: client links (`MemoryLink`, by hardware address; `link.open()` is a client
`Transport`) and servers (`ServerEndpoint`, by IPv4 address; `receive()` gives a
`ServerDatagram`, `send(reply, hwaddr or None)` answers one link or all). Invariants:
- A datagram reaches the endpoints open when it is sent (each open transport of a link gets a
  copy) or is lost as `no_recipient`; a closed transport's queue is gone; `carrier = False` is a
  dead link; queues hold at most `queue_limit` datagrams (`overflow`).
- Each direction's `Faults` apply per datagram at send time (mangle, loss, duplication, delay,
  jitter, reordering), drawn from a per-direction `random.Random` seeded from the injected one,
  a fixed number of draws per datagram: a run replays from its seed. Faults may change mid-run.
- Delivery times are on the Trio clock (`autojump_clock` skips them); equal times keep send order.
- `capture` records every datagram offered (before faults), `stats` every outcome.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Generic, Literal, NamedTuple, TypeVar

import trio

from dhcp4c._closing import AsyncClosing

__all__ = [
    "Captured",
    "Faults",
    "MemoryLink",
    "MemoryNetwork",
    "MemoryTransport",
    "ServerDatagram",
    "ServerEndpoint",
]

Direction = Literal["to_server", "to_client"]
_T = TypeVar("_T")


@dataclass
class Faults:
    """What happens to datagrams in one direction. All zero: a perfect network.

    Attributes:
        loss: probability that a datagram is dropped.
        duplicate: probability that a datagram is delivered twice (each copy delayed separately).
        reorder: probability that a copy is held back by `reorder_delay` more seconds.
        reorder_delay: the extra delay of a reordered copy.
        delay: one-way delay in seconds.
        jitter: extra delay drawn uniformly from [0, jitter).
        mangle: applied to each datagram first; returns the bytes to carry, or None to drop it
            (counted `mangled`). For malformed replies, truncation, bit flips.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 1.0
    delay: float = 0.0
    jitter: float = 0.0
    mangle: Callable[[bytes], bytes | None] | None = None


@dataclass(frozen=True)
class Captured:
    """One datagram as offered to the network (before faults).

    Attributes:
        time: Trio clock time of the send.
        direction: `"to_server"` or `"to_client"`.
        hwaddr: the client link's hardware address (sender, or recipient); None for a datagram
            a server broadcast to every link.
        destination: for `to_server`, the IP destination (None: broadcast); None for `to_client`.
        payload: the UDP payload.
    """

    time: float
    direction: Direction
    hwaddr: bytes | None
    destination: IPv4Address | None
    payload: bytes


class ServerDatagram(NamedTuple):
    """A datagram received by a server endpoint.

    Attributes:
        payload: the UDP payload.
        hwaddr: the sending client link's hardware address (reply with `send(..., hwaddr)`).
        destination: the IP destination the client used; None for a broadcast (a server tells
            REBINDING's broadcast from RENEWING's unicast by it, RFC 2131 §4.3.2).
    """

    payload: bytes
    hwaddr: bytes
    destination: IPv4Address | None = None


class _Inbox(Generic[_T]):
    """A delivery queue ordered by (delivery time, send order), awaited on the Trio clock."""

    def __init__(self, limit: int) -> None:
        self._heap: list[tuple[float, int, _T]] = []
        self._lot = trio.lowlevel.ParkingLot()
        self._limit = limit
        self.closed = False

    def put(self, at: float, seq: int, item: _T) -> bool:
        if len(self._heap) >= self._limit:
            return False
        heapq.heappush(self._heap, (at, seq, item))
        self._lot.unpark_all()
        return True

    async def get(self) -> _T:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self.closed:
                raise trio.ClosedResourceError("endpoint is closed")
            if self._heap and self._heap[0][0] <= trio.current_time():
                item = heapq.heappop(self._heap)[2]
                await trio.lowlevel.cancel_shielded_checkpoint()
                return item
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._lot.park()

    def close(self) -> None:
        self.closed = True
        self._heap.clear()
        self._lot.unpark_all()


class MemoryTransport(AsyncClosing):
    """A client-side `Transport` on a `MemoryLink`; open until `close()`."""

    def __init__(self, link: MemoryLink) -> None:
        self.link = link
        self._inbox: _Inbox[bytes] = _Inbox(link.network.queue_limit)

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    async def send(self, payload: bytes, destination: IPv4Address | None = None) -> None:
        """Send to the server at `destination` (None: every server).

        Raises:
            trio.ClosedResourceError: after `close()`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise trio.ClosedResourceError("transport is closed")
        self.link.network._to_server(self.link, payload, destination)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> bytes:
        """Return the next payload delivered to this link while this transport was open.

        Raises:
            trio.ClosedResourceError: after `close()`, also when closed while waiting.
        """
        return await self._inbox.get()

    def close(self) -> None:
        """Stop receiving; idempotent. A task blocked in `receive()` gets ClosedResourceError."""
        if not self.closed:
            self._inbox.close()
            self.link._transports.remove(self)


class MemoryLink:
    """A client's network interface on a `MemoryNetwork`, named by its hardware address.

    Attributes:
        hwaddr: the hardware address servers reply to.
        carrier: False models a link that is down: sends and deliveries are dropped.
    """

    def __init__(self, network: MemoryNetwork, hwaddr: bytes) -> None:
        self.network = network
        self.hwaddr = hwaddr
        self.carrier = True
        self._transports: list[MemoryTransport] = []

    def open(self) -> MemoryTransport:
        """Open a transport on this link (any number may be open; each receives every datagram)."""
        transport = MemoryTransport(self)
        self._transports.append(transport)
        return transport

    @property
    def open_transports(self) -> int:
        """How many transports are open: tests check that the client leaks none."""
        return len(self._transports)


class ServerEndpoint(AsyncClosing):
    """A server's port 67 on a `MemoryNetwork`; open until `close()`.

    Attributes:
        address: the server's IPv4 address (unicast from clients reaches it).
    """

    def __init__(self, network: MemoryNetwork, address: IPv4Address) -> None:
        self.network = network
        self.address = address
        self._inbox: _Inbox[ServerDatagram] = _Inbox(network.queue_limit)

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    async def send(self, payload: bytes, to_client: bytes | None) -> None:
        """Send to the link with hardware address `to_client` (None: every link).

        Raises:
            trio.ClosedResourceError: after `close()`.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise trio.ClosedResourceError("endpoint is closed")
        self.network._to_client(payload, to_client)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive(self) -> ServerDatagram:
        """Return the next datagram for this server: `(payload, hwaddr, destination)`.

        Raises:
            trio.ClosedResourceError: after `close()`, also when closed while waiting.
        """
        return await self._inbox.get()

    def close(self) -> None:
        """Take the server off the network; idempotent."""
        if not self.closed:
            self._inbox.close()
            self.network._servers.remove(self)


class MemoryNetwork:
    """A broadcast domain of client links and server endpoints with per-direction faults.

    Args:
        rng: the source of every fault decision (default `random.Random(0)`); two per-direction
            generators are seeded from it at construction.
        queue_limit: the most datagrams one endpoint's queue holds.

    Attributes:
        to_server, to_client: the faults of each direction (mutable at any time).
        capture: every datagram offered to the network, in send order.
        stats: counters `{direction}.{sent,lost,mangled,duplicated,reordered,delivered,
            no_recipient,overflow,carrier_down}`; `delivered` counts copies queued.
    """

    def __init__(self, rng: random.Random | None = None, *, queue_limit: int = 256) -> None:
        source = rng if rng is not None else random.Random(0)
        self._rngs: dict[Direction, random.Random] = {
            "to_server": random.Random(source.getrandbits(64)),
            "to_client": random.Random(source.getrandbits(64)),
        }
        self.queue_limit = queue_limit
        self.to_server = Faults()
        self.to_client = Faults()
        self.capture: list[Captured] = []
        self.stats: Counter[str] = Counter()
        self._links: dict[bytes, MemoryLink] = {}
        self._servers: list[ServerEndpoint] = []
        self._seq = itertools.count()

    def attach(self, hwaddr: bytes) -> MemoryLink:
        """Return the link with this hardware address, creating it on first use."""
        link = self._links.get(hwaddr)
        if link is None:
            link = self._links[hwaddr] = MemoryLink(self, hwaddr)
        return link

    def server(self, address: IPv4Address) -> ServerEndpoint:
        """Open a server endpoint at `address` (several may share an address, like rogues)."""
        endpoint = ServerEndpoint(self, address)
        self._servers.append(endpoint)
        return endpoint

    def _to_server(self, link: MemoryLink, payload: bytes, destination: IPv4Address | None) -> None:
        now = trio.current_time()
        self.capture.append(Captured(now, "to_server", link.hwaddr, destination, payload))
        if not link.carrier:
            self.stats["to_server.carrier_down"] += 1
            return
        inboxes = [
            server._inbox
            for server in self._servers
            if destination is None or server.address == destination
        ]
        hwaddr = link.hwaddr
        self._transmit(
            "to_server",
            self.to_server,
            now,
            payload,
            inboxes,
            lambda carried: ServerDatagram(carried, hwaddr, destination),
        )

    def _to_client(self, payload: bytes, hwaddr: bytes | None) -> None:
        now = trio.current_time()
        self.capture.append(Captured(now, "to_client", hwaddr, None, payload))
        if hwaddr is None:
            links = list(self._links.values())
        else:
            link = self._links.get(hwaddr)
            links = [] if link is None else [link]
        if links and not any(link.carrier for link in links):
            self.stats["to_client.carrier_down"] += 1
            return
        inboxes = [t._inbox for link in links if link.carrier for t in link._transports]
        self._transmit("to_client", self.to_client, now, payload, inboxes, bytes)

    def _transmit(
        self,
        direction: Direction,
        faults: Faults,
        now: float,
        payload: bytes,
        inboxes: list[_Inbox[_T]],
        wrap: Callable[[bytes], _T],
    ) -> None:
        rng = self._rngs[direction]
        self.stats[f"{direction}.sent"] += 1
        # A fixed number of draws per datagram keeps the decision stream aligned across settings.
        lose, duplicate = rng.random(), rng.random()
        draws = [(rng.random(), rng.random()) for _ in range(2)]
        if faults.mangle is not None:
            mangled = faults.mangle(payload)
            if mangled is None:
                self.stats[f"{direction}.mangled"] += 1
                return
            payload = mangled
        if lose < faults.loss:
            self.stats[f"{direction}.lost"] += 1
            return
        copies = 1
        if duplicate < faults.duplicate:
            copies = 2
            self.stats[f"{direction}.duplicated"] += 1
        if not inboxes:
            self.stats[f"{direction}.no_recipient"] += 1
            return
        item = wrap(payload)
        for reorder, jitter in draws[:copies]:
            at = now + faults.delay + jitter * faults.jitter
            if reorder < faults.reorder:
                at += faults.reorder_delay
                self.stats[f"{direction}.reordered"] += 1
            seq = next(self._seq)
            for inbox in inboxes:
                if inbox.put(at, seq, item):
                    self.stats[f"{direction}.delivered"] += 1
                else:
                    self.stats[f"{direction}.overflow"] += 1
