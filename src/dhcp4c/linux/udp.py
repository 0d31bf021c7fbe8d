"""The unicast transport: a kernel UDP socket on port 68, bound to one interface.

The shell uses it in RENEWING and REBINDING, once the lease's address is configured: it binds
the wildcard address 0.0.0.0:68 with SO_BINDTODEVICE (a NAK is broadcast, RFC 2131 §4.1, and a
socket bound to the leased address would never see it), sends unicast to the server (RENEWING)
or to 255.255.255.255 (REBINDING, SO_BROADCAST), and the kernel builds the headers, routes and
sends from the leased address. SO_BINDTODEVICE keeps traffic on the lease's interface even when
another interface has a route to the server.

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
        address: the local address to bind; the shell passes 0.0.0.0 (every address of the
            interface, so broadcast NAKs arrive too), a specific address would see only
            datagrams sent to it.

    Raises:
        OSError: when the socket cannot be set up (no such interface, address not configured,
            port 68 taken without SO_REUSEADDR).

    Trade-off: the kernel's UDP stack does the framing and routing, but it can send only from
    a configured address, so this transport serves only the states that hold one.
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
