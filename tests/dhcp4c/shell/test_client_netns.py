"""`Client` over the real transports, in network namespaces the tests create and remove.

A veth pair joins a client namespace and a server namespace; the in-process server serves on a
real UDP socket in the server namespace. Real time (never autojump with real sockets), short
leases so that a renewal happens within seconds. Skipped only without root outside CI.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
import trio

from dhcp4c.consumers import netconfig
from dhcp4c.linux.interface import read_ethernet
from dhcp4c.protocol.machine import State
from dhcp4c.shell.client import Client, default_transport
from dhcp4c.shell.observe import LeaseEventKind
from dhcp4c.shell.transport import Transport
from dhcp4c.testing import netns
from dhcp4c.testing.server import Exchange, ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_udp
from support.clients import split_options

pytestmark = pytest.mark.netns

SERVER = IPv4Address("10.78.0.1")


@pytest.fixture
def topology() -> Iterator[netns.Topology]:
    netns.require_netns()
    with netns.Topology("dhcp4cclient") as topo:
        yield topo


@pytest.fixture
def link(topology: netns.Topology) -> tuple[netns.Interface, netns.Interface]:
    client, server = topology.namespace("client"), topology.namespace("server")
    return topology.veth(client, server, address_b=IPv4Interface(f"{SERVER}/24"))


def server_core(**changes: Any) -> ServerCore:
    values: dict[str, Any] = {
        "server_id": SERVER,
        "network": IPv4Network("10.78.0.0/24"),
        "pool_start": IPv4Address("10.78.0.100"),
        "pool_end": IPv4Address("10.78.0.110"),
        "routers": (SERVER,),
        "dns_servers": (),
        "lease_time": 6,
        "t1": 2,
        "t2": 4,
    }
    values.update(changes)
    return ServerCore(ServerConfig(**values))


def client_for(end: netns.Interface, **config: Any) -> Client:
    """A client on `end`, its sockets created in `end`'s namespace."""
    namespace = end.namespace

    def factory(interface: str, address: IPv4Address | None) -> Transport:
        with namespace.entered():
            return default_transport(interface, address)

    with namespace.entered():
        facts = read_ethernet(end.name)
    client_config, options = split_options(config)
    return Client(
        end.name,
        client_config,
        hwaddr=facts.hwaddr,
        mtu=facts.mtu,
        transport_factory=factory,
        rng=random.Random(),
        **options,
    )


def addresses(end: netns.Interface) -> list[str]:
    info = json.loads(end.namespace.ip("-j", "-4", "addr", "show", "dev", end.name))
    return [f"{a['local']}/{a['prefixlen']}" for link in info for a in link.get("addr_info", ())]


async def test_binds_configures_and_renews_for_real(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, server_end = link
    core = server_core()
    client = client_for(
        client_end,
        callback=netconfig.address_callback(client_end.name, netns=client_end.namespace.name),
    )
    events = client.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            lease = await client.wait_bound()
            assert (await events.receive()).kind is LeaseEventKind.BOUND
            assert lease.address == IPv4Interface("10.78.0.100/24")
            assert addresses(client_end) == ["10.78.0.100/24"]
            # T1 = 2 s: the renewal goes out over the UDP socket bound to the leased address,
            # unicast to the server (which sees it as RENEWING, not REBINDING).
            renewed = await events.receive()
        assert renewed.kind is LeaseEventKind.RENEWED
        assert core.stats.exchanges[Exchange.RENEWING] >= 1
        assert client.stats.errors == {}
        assert client.state is State.BOUND
        nursery.cancel_scope.cancel()
    assert client.stats.sent["REQUEST"] >= 1


async def test_restart_reuses_the_lease_by_init_reboot(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, server_end = link
    core = server_core(lease_time=60, t1=30, t2=50, rapid_commit=False)
    client = client_for(client_end)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        events = client.subscribe()
        for expected in (LeaseEventKind.BOUND, LeaseEventKind.RENEWED):
            scope = trio.CancelScope()

            async def run(scope: trio.CancelScope = scope) -> None:
                with scope:
                    await client.run()

            nursery.start_soon(run)
            with trio.fail_after(10):
                assert (await events.receive()).kind is expected
            scope.cancel()
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert core.stats.exchanges[Exchange.DISCOVER] == 1
    assert core.stats.exchanges[Exchange.SELECTING] == 1
    assert core.stats.exchanges[Exchange.INIT_REBOOT] == 1
    assert client.stats.runs == 2


async def test_nak_of_a_renewal_is_heard(link: tuple[netns.Interface, netns.Interface]) -> None:
    client_end, server_end = link
    core = server_core()
    client = client_for(
        client_end,
        callback=netconfig.address_callback(client_end.name, netns=client_end.namespace.name),
    )
    events = client.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            assert (await events.receive()).kind is LeaseEventKind.BOUND
            core.force_nak = True
            # RFC 2131 §4.1: the NAK is broadcast; the renewal's UDP socket must still hear it.
            lost = await events.receive()
        assert (lost.kind, lost.reason) == (LeaseEventKind.LOST, "nak")
        assert core.stats.exchanges[Exchange.RENEWING] == 1
        assert addresses(client_end) == []  # the callback removed it
        nursery.cancel_scope.cancel()


async def test_unconfigured_address_falls_back_to_the_packet_socket(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, server_end = link
    core = server_core()
    client = client_for(client_end)  # no callback: nothing configures the address
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            await client.wait_bound()
            # T2 = 4 s: the REBINDING broadcast goes out of the packet socket. (The RENEWING
            # unicast from 0.0.0.0 before it is a martian to the server's kernel, and the
            # server's answers to ciaddr cannot arrive while nobody owns the address: without
            # a callback that configures it, a lease ends at its expiry.)
            while core.stats.exchanges[Exchange.REBINDING] == 0:
                await trio.sleep(0.05)
        assert client.stats.errors["unicast-open"] >= 1
        assert client.stats.errors["send"] == 0
        nursery.cancel_scope.cancel()
