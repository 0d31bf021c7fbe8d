"""Trio shells around `ServerCore`: the in-memory network and a real UDP socket on port 67.

Each shell is one loop: receive a datagram, hand it to the core with `trio.current_time()` as
`now`, send what the core returns (after `ServerConfig.reply_delay`, without holding up the
next datagram). The core owns every decision; a shell only knows addressing:

- `serve_memory(core, endpoint)`: a server endpoint of `dhcp4c.testing.memory`; deterministic
  under `autojump_clock`.
- `serve_udp(core, ifname)`: a kernel UDP socket bound to 0.0.0.0:67 with SO_BINDTODEVICE and
  SO_BROADCAST (RFC 2131 §4.1: replies go to 255.255.255.255:68, or unicast to ciaddr:68, and
  to the relay agent at giaddr:67 when a request came through one). It reads the destination of
  each request with IP_PKTINFO, so that the core can tell REBINDING (broadcast, or relayed) from
  RENEWING (unicast). Run it inside a network namespace (`namespace=`), never on a host
  interface; serving a relayed subnet needs a route back to the relay.

Both run until cancelled and support `nursery.start()`, which returns once they are listening.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network

import trio

from dhcp4c.testing.memory import ServerEndpoint
from dhcp4c.testing.netns import Namespace
from dhcp4c.testing.server import Reply, ServerCore

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "open_server_socket",
    "serve_memory",
    "serve_socket",
    "serve_udp",
]

logger = logging.getLogger(__name__)

SERVER_PORT = 67
CLIENT_PORT = 68
_LIMITED_BROADCAST = IPv4Address("255.255.255.255")
_ZERO = IPv4Address(0)
_RECEIVE_SIZE = 0x10000
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # <linux/in.h>
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr (header dst)


_Send = Callable[[bytes, "IPv4Address | None"], Awaitable[None]]


class _Outbox:
    """Sends replies after the configured delay, in the order they were decided.

    One task drains a FIFO: the delay is the same for every reply, so send times never go
    backwards, and replies decided at the same instant leave in order (Trio would wake separate
    sleeping tasks in any order).
    """

    def __init__(self, core: ServerCore, nursery: trio.Nursery) -> None:
        self._core = core
        self._nursery = nursery
        self._queue: trio.MemorySendChannel[tuple[float, Reply, _Send]] | None = None

    async def deliver(self, replies: list[Reply], send: _Send) -> None:
        delay = self._core.config.reply_delay
        for reply in replies:
            if delay <= 0:
                await send(reply.payload, reply.destination)
                continue
            if self._queue is None:
                self._queue, receive = trio.open_memory_channel[tuple[float, Reply, _Send]](
                    math.inf
                )
                self._nursery.start_soon(self._drain, receive)
            self._queue.send_nowait((trio.current_time() + delay, reply, send))

    async def _drain(self, receive: trio.MemoryReceiveChannel[tuple[float, Reply, _Send]]) -> None:
        async for at, reply, send in receive:
            await trio.sleep_until(at)
            # The server may have gone away meanwhile: its late replies go with it.
            with contextlib.suppress(trio.ClosedResourceError):
                await send(reply.payload, reply.destination)


async def serve_memory(
    core: ServerCore,
    endpoint: ServerEndpoint,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `core` on an in-memory network's server endpoint until cancelled or closed.

    Args:
        core: the server; its stats and controls stay usable while this runs.
        endpoint: from `MemoryNetwork.server(core.config.server_id)`. Closing it (a server that
            dies) ends this coroutine normally.
        task_status: started once the loop is ready to receive.

    Broadcast replies go to every link; unicast ones (to ciaddr) to the requesting link. To
    leave renewals (unicast to the server identifier) unanswered while rebinding broadcasts are
    answered, open the endpoint at an address other than `core.config.server_id`.
    Trade-off: an undelayed reply goes out before the next datagram is read, which keeps the
    exchange order deterministic on the mock clock.
    """

    async with trio.open_nursery() as nursery:
        outbox = _Outbox(core, nursery)
        task_status.started()
        while True:
            try:
                datagram = await endpoint.receive()
            except trio.ClosedResourceError:
                nursery.cancel_scope.cancel()
                return
            hwaddr = datagram.hwaddr
            # Only a network that reports the destination lets the core tell RENEWING (unicast)
            # from REBINDING (broadcast); without it every request counts as broadcast.
            destination: IPv4Address | None = getattr(datagram, "destination", None)

            async def send(payload: bytes, to: IPv4Address | None, hwaddr: bytes = hwaddr) -> None:
                await endpoint.send(payload, None if to is None else hwaddr)

            now = trio.current_time()
            replies = core.handle_datagram(datagram.payload, now, broadcast=destination is None)
            try:
                await outbox.deliver(replies, send)
            except trio.ClosedResourceError:
                nursery.cancel_scope.cancel()
                return


def open_server_socket(ifname: str, namespace: Namespace | None = None) -> trio.socket.SocketType:
    """Open the server's UDP socket: 0.0.0.0:67, bound to `ifname`, broadcast allowed.

    Args:
        ifname: the interface to serve on.
        namespace: the network namespace to create the socket in (None: the calling thread's).

    Raises:
        OSError: no such interface, port 67 taken, or not permitted.
    """
    # Only the socket's creation needs the namespace: it stays in it for its whole life.
    with namespace.entered() if namespace is not None else contextlib.nullcontext():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        sock.bind(("0.0.0.0", SERVER_PORT))
    except BaseException:
        sock.close()
        raise
    return trio.socket.from_stdlib_socket(sock)


def _was_broadcast(ancillary: list[tuple[int, int, bytes]], network: IPv4Network) -> bool:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(data) >= _PKTINFO.size:
            _index, _local, raw = _PKTINFO.unpack_from(data)
            destination = IPv4Address(raw)
            return destination in (_LIMITED_BROADCAST, network.broadcast_address)
    return True  # no destination known: the usual case for a client without an address


def _giaddr(payload: bytes) -> IPv4Address:
    # The fixed header's giaddr (RFC 2131 figure 1, octets 24-27); short garbage reads as 0 and
    # is left to the core to drop.
    return IPv4Address(payload[24:28]) if len(payload) >= 28 else _ZERO


async def serve_socket(
    core: ServerCore,
    sock: trio.socket.SocketType,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `core` on an already open UDP socket (see `open_server_socket`) until cancelled.

    The socket is not closed here: the caller opened it.
    """

    async def send_to(payload: bytes, target: IPv4Address, port: int) -> None:
        try:
            await sock.sendto(payload, (str(target), port))
        except OSError as error:
            # A link that went down must not kill the server: the reply is lost, as on a wire.
            core.stats.dropped["send failed"] += 1
            logger.warning("reply to %s:%d not sent: %s", target, port, error)

    async def send(payload: bytes, destination: IPv4Address | None) -> None:
        await send_to(payload, destination or _LIMITED_BROADCAST, CLIENT_PORT)

    def relayed_to(agent: IPv4Address) -> _Send:
        # Bound to this request's relay: a delayed reply must not follow a later one's.
        async def send(payload: bytes, destination: IPv4Address | None) -> None:
            await send_to(payload, agent, SERVER_PORT)

        return send

    async with trio.open_nursery() as nursery:
        outbox = _Outbox(core, nursery)
        task_status.started()
        while True:
            payload, ancillary, _flags, _source = await sock.recvmsg(
                _RECEIVE_SIZE, socket.CMSG_SPACE(_PKTINFO.size)
            )
            giaddr = _giaddr(payload)
            # A relayed request was broadcast on the client's link (RFC 1542 §4.1.1), whatever
            # reached us: it is REBINDING, not RENEWING, when it carries ciaddr.
            relayed = giaddr != _ZERO
            broadcast = relayed or _was_broadcast(ancillary, core.config.network)
            replies = core.handle_datagram(payload, trio.current_time(), broadcast=broadcast)
            await outbox.deliver(replies, relayed_to(giaddr) if relayed else send)


async def serve_udp(
    core: ServerCore,
    ifname: str,
    *,
    namespace: Namespace | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `core` on UDP port 67 of interface `ifname` until cancelled.

    Args:
        core: the server.
        ifname: the interface; it should carry `core.config.server_id` so that replies have
            that source address and unicast replies a route.
        namespace: the network namespace of `ifname` (None: the calling thread's).
        task_status: started once the socket is bound.

    Raises:
        OSError: when the socket cannot be opened (see `open_server_socket`).
    """
    sock = open_server_socket(ifname, namespace)
    with sock:
        await serve_socket(core, sock, task_status=task_status)
