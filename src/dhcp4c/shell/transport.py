"""Transports: how DHCP payloads get on and off the wire.

The client's Trio shell owns at most one open transport at a time and opens the one its state
needs: `BroadcastTransport` (AF_PACKET + classic BPF, raw IPv4/UDP from 0.0.0.0:68) while it has
no usable address, `UnicastTransport` (a kernel UDP socket bound to the leased address:68 with
SO_BINDTODEVICE) once it has one. Tests use `dhcp4c.testing.memory`, an in-memory network on the
Trio clock with fault injection. All three satisfy `Transport`. Address conflict detection
sends and receives ARP over an `ArpLink` (`dhcp4c.linux.arp.ArpTransport` on a real interface).

Modules: `ipudp` (pure IPv4/UDP framing and verification), `bpf` (the filter program, pure),
`packet` (BroadcastTransport), `udp` (UnicastTransport), `memory` (in-memory network).
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dhcp4c.linux.frames import FrameError
    from dhcp4c.linux.packet import BroadcastTransport
    from dhcp4c.linux.udp import UnicastTransport

__all__ = ["ArpLink", "BroadcastTransport", "FrameError", "Transport", "UnicastTransport"]

# Imported lazily (PEP 562): `packet` and `udp` import trio, while `Transport` and the pure
# `ipudp` and `bpf` need nothing beyond the standard library.
_LAZY = {
    "FrameError": "dhcp4c.linux.frames",
    "BroadcastTransport": "dhcp4c.linux.packet",
    "UnicastTransport": "dhcp4c.linux.udp",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


class Transport(Protocol):
    """One open socket (or in-memory port) carrying DHCP client traffic on one interface."""

    async def send(self, payload: bytes, destination: IPv4Address | None) -> None:
        """Send `payload` to `destination`:67; None is the limited broadcast 255.255.255.255."""

    async def receive(self) -> bytes:
        """Return the next UDP payload addressed to port 68 (headers checked and stripped).

        Raises trio.ClosedResourceError once the transport is closed.
        """

    def close(self) -> None:
        """Release the socket; idempotent."""


class ArpLink(Protocol):
    """One open ARP socket (or in-memory port) for conflict detection on one interface."""

    def watch(self, address: IPv4Address) -> None:
        """Receive the ARP packets about `address` from now on (instead of the previous one)."""

    async def send(self, packet: bytes, destination: bytes) -> None:
        """Send one ARP packet (the 28 bytes) to the link-layer `destination`."""

    async def receive(self) -> bytes:
        """Return the next ARP packet about the watched address (possibly padded).

        Raises trio.ClosedResourceError once the transport is closed.
        """

    def close(self) -> None:
        """Release the socket; idempotent."""
