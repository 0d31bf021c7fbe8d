"""UnicastTransport on a real veth pair between two network namespaces (no autojump here)."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address

import pytest
import trio

from dhcp4c.shell.transport import Transport, UnicastTransport
from dhcp4c.testing.netns import Interface

pytestmark = pytest.mark.netns

Link = tuple[Interface, Interface]  # (client end, server end)
TIMEOUT = 5  # generous: only reached when something is broken
CLIENT_IP = IPv4Address("10.77.0.2")
SERVER_IP = IPv4Address("10.77.0.1")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def open_transport(link: Link, address: IPv4Address = CLIENT_IP) -> UnicastTransport:
    client_if, _ = link
    with client_if.namespace.entered():
        return UnicastTransport(client_if.name, address)


def server_socket(link: Link) -> trio.socket.SocketType:
    _, server_if = link
    sock = server_if.namespace.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, server_if.name.encode())
    sock.bind(("", 67))
    return trio.socket.from_stdlib_socket(sock)


async def test_unicast_exchange(addressed_link: Link) -> None:
    server = server_socket(addressed_link)
    with server, open_transport(addressed_link) as transport:
        checked: Transport = transport
        await checked.send(b"REQUEST (renewing)", SERVER_IP)
        with trio.fail_after(TIMEOUT):
            payload, source = await server.recvfrom(2048)
        assert (payload, source) == (b"REQUEST (renewing)", (str(CLIENT_IP), 68))
        await server.sendto(b"ACK", source)
        with trio.fail_after(TIMEOUT):
            assert await transport.receive() == b"ACK"


async def test_broadcast_from_the_leased_address(addressed_link: Link) -> None:
    # REBINDING (RFC 2131 §4.4.5) broadcasts with ciaddr set, from the address the client holds.
    server = server_socket(addressed_link)
    with server, open_transport(addressed_link) as transport:
        await transport.send(b"REQUEST (rebinding)", None)
        with trio.fail_after(TIMEOUT):
            assert await server.recvfrom(2048) == (b"REQUEST (rebinding)", (str(CLIENT_IP), 68))


async def test_reuseaddr_allows_a_second_socket(addressed_link: Link) -> None:
    with open_transport(addressed_link), open_transport(addressed_link):
        pass


async def test_close_is_idempotent_and_ends_receive(addressed_link: Link) -> None:
    transport = open_transport(addressed_link)
    async with trio.open_nursery() as nursery:

        async def receive() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await transport.receive()

        nursery.start_soon(receive)
        await trio.sleep(0.05)
        transport.close()
    transport.close()
    await transport.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await transport.receive()
    with pytest.raises(trio.ClosedResourceError):
        await transport.send(b"x", SERVER_IP)


async def test_no_fd_leaks(addressed_link: Link) -> None:
    before = open_fds()
    for _ in range(20):
        with open_transport(addressed_link):
            pass
    for _ in range(20):
        async with open_transport(addressed_link):
            pass
    with pytest.raises(OSError):
        open_transport(addressed_link, IPv4Address("192.0.2.1"))  # not an address we have
    with addressed_link[0].namespace.entered(), pytest.raises(OSError):
        UnicastTransport("nosuchif0", CLIENT_IP)
    assert open_fds() == before


def test_close_outside_trio(addressed_link: Link) -> None:
    before = open_fds()
    transport = open_transport(addressed_link)
    transport.close()
    transport.close()
    assert open_fds() == before
