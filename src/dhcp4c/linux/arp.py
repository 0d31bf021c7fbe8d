"""The ARP transport of address conflict detection: an AF_PACKET socket on ETH_P_ARP.

The shell opens one while `dhcp4c.protocol.acd` probes, announces or defends an address, and
closes it when conflict detection stops. It sends the 28-byte ARP packets the machine builds in
a link-layer broadcast (RFC 5227 §2.1.1: probes are broadcast) and receives the ARP packets the
`bpf.arp_filter` lets through: requests and replies about the watched address from other hosts.

Invariants:
- One socket per transport, opened in the constructor, closed by `close()` / `aclose()`
  (idempotent); a failing constructor closes it.
- As in `packet.py`, the socket is created with protocol 0 (it receives nothing), the filter is
  attached, and only then is it bound with ETH_P_ARP to the interface: no unfiltered packet is
  ever queued. `watch()` replaces the filter (SO_ATTACH_FILTER replaces the attached one).
- `receive()` returns the bytes as the kernel hands them (ARP header first, Ethernet padding
  included); `dhcp4c.protocol.arp.ArpPacket.parse` judges them.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import trio

from dhcp4c._closing import AsyncClosing
from dhcp4c.linux.bpf import arp_filter, pack_program
from dhcp4c.linux.packet import attach_filter

__all__ = ["ArpTransport"]

ETH_P_ARP = 0x0806
BROADCAST_HWADDR = b"\xff" * 6
_RECEIVE_SIZE = 1500


class ArpTransport(AsyncClosing):
    """A packet socket on one interface for the ARP packets about one address.

    Args:
        ifname: the interface, in the network namespace of the calling thread.
        hwaddr: the interface's Ethernet address (its own packets are filtered out).
        address: the address to watch first (see `watch`).

    Raises:
        OSError: when the socket cannot be opened or bound (no such interface, no CAP_NET_RAW).

    Trade-off: a socket per client rather than one per host: each sees only its own
    interface's ARP, filtered in the kernel, at the price of one file descriptor while ACD runs.
    """

    def __init__(self, ifname: str, hwaddr: bytes, address: IPv4Address) -> None:
        self.ifname = ifname
        self.hwaddr = hwaddr
        self._closed = False
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            attach_filter(sock, pack_program(arp_filter(hwaddr, address)))
            sock.bind((ifname, ETH_P_ARP))
        except BaseException:
            sock.close()
            raise
        self._stdlib_socket = sock
        self._socket = trio.socket.from_stdlib_socket(sock)

    def watch(self, address: IPv4Address) -> None:
        """Receive the packets about `address` from now on (the filter is replaced).

        Raises:
            trio.ClosedResourceError: after `close()`.
            OSError: from the kernel.
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        attach_filter(self._stdlib_socket, pack_program(arp_filter(self.hwaddr, address)))

    async def send(self, packet: bytes, destination: bytes = BROADCAST_HWADDR) -> None:
        """Send one ARP packet to the link-layer `destination` (default: broadcast).

        Raises:
            trio.ClosedResourceError: after `close()`.
            OSError: from the kernel (e.g. the interface is down).
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        await self._socket.sendto(packet, (self.ifname, ETH_P_ARP, 0, 0, destination))

    async def receive(self) -> bytes:
        """Return the next ARP packet the filter let through.

        Raises:
            trio.ClosedResourceError: after `close()`, also when closed while waiting.
        """
        if self._closed:
            raise trio.ClosedResourceError("transport is closed")
        data: bytes = await self._socket.recv(_RECEIVE_SIZE)
        return data

    def close(self) -> None:
        """Close the socket; idempotent, also outside Trio."""
        if not self._closed:
            self._closed = True
            try:
                self._socket.close()
            except RuntimeError:
                self._stdlib_socket.close()

    async def aclose(self) -> None:
        """Close the socket in a worker thread (see `packet.BroadcastTransport.aclose`)."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._stdlib_socket)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._stdlib_socket.close)
