"""BroadcastTransport on a real veth pair between two network namespaces (no autojump here)."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address

import pytest
import trio

from dhcp4c.linux.frames import Datagram, FrameError, build_datagram, parse_datagram
from dhcp4c.shell.transport import BroadcastTransport, Transport
from dhcp4c.testing.netns import Interface

pytestmark = pytest.mark.netns

Link = tuple[Interface, Interface]  # (client end, server end)
TIMEOUT = 5  # generous: only reached when something is broken
SERVER_IP = IPv4Address("10.77.0.1")
BROADCAST_MAC = b"\xff" * 6
ETH_P_IP = 0x0800


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def open_transport(link: Link) -> BroadcastTransport:
    client_if, _ = link
    with client_if.namespace.entered():
        return BroadcastTransport(client_if.name)


def server_socket(link: Link) -> trio.socket.SocketType:
    """A plain UDP socket on *:67 of the server end, as a DHCP server would open it."""
    _, server_if = link
    sock = server_if.namespace.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, server_if.name.encode())
    sock.bind(("", 67))
    return trio.socket.from_stdlib_socket(sock)


def injector(link: Link) -> socket.socket:
    """An AF_PACKET socket on the server side, to send hand-made frames."""
    return link[1].namespace.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)


async def test_discover_and_broadcast_reply(link: Link) -> None:
    server = server_socket(link)
    with server, open_transport(link) as transport:
        checked: Transport = transport
        await checked.send(b"DISCOVER-like payload", None)
        with trio.fail_after(TIMEOUT):
            payload, source = await server.recvfrom(2048)
        assert (payload, source) == (b"DISCOVER-like payload", ("0.0.0.0", 68))
        # The kernel's UDP stack leaves the checksum to the (virtual) NIC: the transport must
        # trust the kernel's TP_STATUS_CSUMNOTREADY rather than drop the reply.
        await server.sendto(b"OFFER-like payload", ("255.255.255.255", 68))
        with trio.fail_after(TIMEOUT):
            assert await transport.receive() == b"OFFER-like payload"
        assert transport.drops == {}


async def test_unicast_ip_in_a_unicast_frame(link: Link) -> None:
    # Linux drops unicast from 0.0.0.0 as a martian (only broadcast may come from nowhere), so
    # the server side watches the wire with a packet socket rather than a UDP socket.
    with injector(link) as raw_stdlib, open_transport(link) as transport:
        raw_stdlib.bind((link[1].name, ETH_P_IP))
        raw = trio.socket.from_stdlib_socket(raw_stdlib)
        await transport.send(b"to the server", SERVER_IP, hwaddr=link[1].hwaddr)
        with trio.fail_after(TIMEOUT):
            while True:
                frame, (_, _, pkttype, _, _) = await raw.recvfrom(2048)
                try:
                    datagram = parse_datagram(frame, destination_port=67)
                except FrameError:
                    continue
                break
        assert pkttype == socket.PACKET_HOST  # addressed to the server's MAC, not broadcast
        assert datagram == Datagram(IPv4Address("0.0.0.0"), SERVER_IP, 68, 67, b"to the server")


async def test_reply_to_the_offered_address_is_received(link: Link) -> None:
    # RFC 2131 §4.1: without the broadcast bit the server unicasts to chaddr and yiaddr, an
    # address the client does not have yet; the packet socket still sees it.
    with injector(link) as raw, open_transport(link) as transport:
        frame = build_datagram(
            b"unicast offer",
            source=SERVER_IP,
            destination=IPv4Address("10.77.0.50"),
            source_port=67,
            destination_port=68,
        )
        raw.sendto(frame, (link[1].name, ETH_P_IP, 0, 0, link[0].hwaddr))
        with trio.fail_after(TIMEOUT):
            assert await transport.receive() == b"unicast offer"


async def test_filter_and_verification_drop_everything_else(link: Link) -> None:
    with injector(link) as raw, open_transport(link) as transport:

        def inject(frame: bytes | bytearray) -> None:
            raw.sendto(bytes(frame), (link[1].name, ETH_P_IP, 0, 0, BROADCAST_MAC))

        def reply(payload: bytes, **kwargs: int) -> bytearray:
            return bytearray(
                build_datagram(payload, source=SERVER_IP, source_port=67, **kwargs)  # type: ignore[arg-type]
            )

        inject(reply(b"port 69", destination_port=69))
        fragment = reply(b"first fragment", destination_port=68)
        fragment[6] |= 0x20  # MF: rejected by the kernel filter before it is queued
        inject(fragment)
        bad_checksum = reply(b"bad checksum", destination_port=68)
        bad_checksum[-1] ^= 0xFF  # passes the filter, fails the UDP checksum
        inject(bad_checksum)
        inject(reply(b"good", destination_port=68))
        with trio.fail_after(TIMEOUT):
            assert await transport.receive() == b"good"
        assert transport.drops == {"udp_checksum": 1}


async def test_kernel_fragments_are_filtered(link: Link) -> None:
    server = server_socket(link)
    with server, open_transport(link) as transport:
        await server.sendto(b"x" * 3000, ("255.255.255.255", 68))  # > MTU: 3 fragments
        await server.sendto(b"small", ("255.255.255.255", 68))
        with trio.fail_after(TIMEOUT):
            assert await transport.receive() == b"small"
        assert transport.drops == {}


async def test_close_is_idempotent_and_ends_receive(link: Link) -> None:
    transport = open_transport(link)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await transport.receive()

        nursery.start_soon(receive)
        await trio.sleep(0.05)
        transport.close()
    transport.close()
    with pytest.raises(trio.ClosedResourceError):
        await transport.receive()
    with pytest.raises(trio.ClosedResourceError):
        await transport.send(b"x", None)


async def test_aclose_wakes_receiver_and_survives_cancellation(link: Link) -> None:
    before = open_fds()
    transport = open_transport(link)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await transport.receive()

        nursery.start_soon(receive)
        await trio.sleep(0.05)
        with trio.CancelScope() as scope:
            scope.cancel()
            await transport.aclose()  # cancelled, yet the socket is closed
    assert open_fds() == before
    await transport.aclose()


async def test_no_fd_leaks(link: Link) -> None:
    before = open_fds()
    for _ in range(20):
        with open_transport(link):
            pass
    for _ in range(20):
        async with open_transport(link):
            pass
    with link[0].namespace.entered(), pytest.raises(OSError):
        BroadcastTransport("nosuchif0")
    assert open_fds() == before


def test_close_outside_trio(link: Link) -> None:
    before = open_fds()
    transport = open_transport(link)
    transport.close()
    transport.close()
    assert open_fds() == before


def test_socket_is_created_with_protocol_0_then_bound(
    link: Link, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue #4: an AF_PACKET socket created with htons(ETH_P_IP) registers a protocol hook at
    # creation and costs a kernel RCU grace period (8-24 ms) to open and to close; created with
    # protocol 0 and then bound to ETH_P_IP it opens in ~0.05 ms. The speed is measured in
    # bench/, not here: this checks the cheap way is the one taken.
    created: list[tuple[int, int, int]] = []

    class RecordingSocket(socket.socket):
        def __init__(self, family: int = -1, type: int = -1, proto: int = -1) -> None:
            created.append((family, type, proto))
            super().__init__(family, type, proto)

    monkeypatch.setattr(socket, "socket", RecordingSocket)
    with open_transport(link) as transport:
        name = transport._stdlib_socket.getsockname()
    assert created == [(socket.AF_PACKET, socket.SOCK_DGRAM, 0)]
    assert name[1] == ETH_P_IP


def test_socket_is_bound_to_ip_on_the_interface(link: Link) -> None:
    with open_transport(link) as transport:
        # getsockname of an AF_PACKET socket: (ifname, protocol, pkttype, hatype, hwaddr)
        name = transport._stdlib_socket.getsockname()
        assert (name[0], name[1], name[4]) == (link[0].name, ETH_P_IP, link[0].hwaddr)
