"""The unicast transport: a kernel UDP socket bound to the leased address on one interface.

Used once the client holds an address (BOUND's RENEWING, and REBINDING's broadcasts, RFC 2131
§4.4.5): the kernel builds the headers and routes, and SO_BINDTODEVICE keeps traffic on the
interface the lease belongs to even when another interface has a route to the server.

Invariants: one socket per transport, opened in the constructor (a failing constructor closes
it), closed by `close()` (idempotent) or on leaving the `with` block.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import trio

from dhcp4c._closing import AsyncClosing
from dhcp4c.linux.frames import CLIENT_PORT, LIMITED_BROADCAST, SERVER_PORT

__all__ = ["UnicastTransport"]

_RECEIVE_SIZE = 0x10000


class UnicastTransport(AsyncClosing):
    """A UDP socket on `address`:68, bound to the interface `ifname`.

    Args:
        ifname: the interface, in the network namespace of the calling thread.
        address: the local address to bind (the leased address; 0.0.0.0 binds all addresses).

    Raises:
        OSError: when the socket cannot be set up (no such interface, address not configured,
            port 68 taken without SO_REUSEADDR).

    Trade-off: bound to the leased address, the socket does not see replies broadcast to
    255.255.255.255; servers unicast to a client that has a `ciaddr` (RFC 2131 §4.1), and the
    broadcast transport covers the states without one.
    """

    def __init__(self, ifname: str, address: IPv4Address) -> None:
        self.ifname = ifname
        self.address = address
        self._closed = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            # A numeric address never blocks, so binding here keeps the constructor synchronous.
            sock.bind((str(address), CLIENT_PORT))
        except BaseException:
            sock.close()
            raise
        self._stdlib_socket = sock
        self._socket = trio.socket.from_stdlib_socket(sock)

    async def send(self, payload: bytes, destination: IPv4Address | None = None) -> None:
        """Send one DHCP message to `destination`:67 (None: 255.255.255.255).

        Raises:
            trio.ClosedResourceError: after `close()`.
            OSError: from the kernel (no route, interface down).
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        target = destination or LIMITED_BROADCAST
        await self._socket.sendto(payload, (str(target), SERVER_PORT))

    async def receive(self) -> bytes:
        """Return the next UDP payload received on `address`:68.

        Raises:
            trio.ClosedResourceError: after `close()`, also when closed while waiting.
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        payload, _source = await self._socket.recvfrom(_RECEIVE_SIZE)
        return payload

    def close(self) -> None:
        """Close the socket; idempotent, also outside Trio.

        A task blocked in `receive()` gets trio.ClosedResourceError.
        """
        if not self._closed:
            self._closed = True
            try:
                self._socket.close()
            except RuntimeError:
                # Outside Trio (a `finally` after trio.run): nobody can be waiting on it.
                self._stdlib_socket.close()
