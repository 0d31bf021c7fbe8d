"""The ARP transport on a veth pair: broadcast sends, the kernel filter, watch, close."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import pytest
import trio
import trio.testing

from dhcp4c.linux.arp import ETH_P_ARP, ArpTransport
from dhcp4c.protocol.arp import OP_REPLY, ArpPacket, announcement, probe
from dhcp4c.testing import netns

pytestmark = pytest.mark.netns

Link = tuple[netns.Interface, netns.Interface]
CANDIDATE = IPv4Address("10.77.0.50")
OTHER = IPv4Address("10.77.0.51")


def open_transport(link: Link, address: IPv4Address = CANDIDATE) -> ArpTransport:
    client_if, _ = link
    with client_if.namespace.entered():
        return ArpTransport(client_if.name, client_if.hwaddr, address)


def peer_socket(link: Link) -> socket.socket:
    """An ETH_P_ARP packet socket on the other end, to see and send ARP."""
    _, server_if = link
    sock = server_if.namespace.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ARP))
    sock.bind((server_if.name, ETH_P_ARP))
    sock.settimeout(5)
    return sock


def reply(link: Link, spa: IPv4Address) -> bytes:
    client_if, server_if = link
    return ArpPacket(OP_REPLY, server_if.hwaddr, spa, client_if.hwaddr, IPv4Address(0)).build()


async def test_probe_goes_out_broadcast_and_the_filter_keeps_only_the_watched_address(
    link: Link,
) -> None:
    client_if, server_if = link
    peer = peer_socket(link)
    with open_transport(link) as transport, peer:
        await transport.send(probe(client_if.hwaddr, CANDIDATE).build())
        data, address = peer.recvfrom(1500)
        assert ArpPacket.parse(data) == probe(client_if.hwaddr, CANDIDATE)
        assert address[4] == client_if.hwaddr  # the sender; the frame went to ff:ff:ff:ff:ff:ff
        destination = (server_if.name, ETH_P_ARP, 0, 0, client_if.hwaddr)
        peer.sendto(reply(link, OTHER), destination)  # about another address: filtered
        peer.sendto(reply(link, CANDIDATE), destination)
        with trio.fail_after(5):
            received = ArpPacket.parse(await transport.receive())
        assert received.spa == CANDIDATE and received.sha == server_if.hwaddr
        transport.watch(OTHER)
        peer.sendto(announcement(server_if.hwaddr, CANDIDATE).build(), destination)
        peer.sendto(announcement(server_if.hwaddr, OTHER).build(), destination)
        with trio.fail_after(5):
            received = ArpPacket.parse(await transport.receive())
        assert received.spa == OTHER


async def test_own_packets_are_not_received_and_aclose_ends_receive(link: Link) -> None:
    client_if, _ = link
    transport = open_transport(link)
    await transport.send(announcement(client_if.hwaddr, CANDIDATE).build())
    with trio.move_on_after(0.3) as scope:
        await transport.receive()
    assert scope.cancelled_caught
    async with trio.open_nursery() as nursery:

        async def receiver() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await transport.receive()

        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await transport.aclose()
    await transport.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await transport.send(b"")
    with pytest.raises(trio.ClosedResourceError):
        transport.watch(OTHER)
