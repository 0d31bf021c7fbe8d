"""Fixtures for the real-socket transport tests: a client and a server namespace joined by veth."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Interface

import pytest

from dhcp4c.testing import netns


@pytest.fixture
def topology() -> Iterator[netns.Topology]:
    netns.require_netns()
    with netns.Topology("dhcp4ctest") as topo:
        yield topo


@pytest.fixture
def link(topology: netns.Topology) -> tuple[netns.Interface, netns.Interface]:
    """(client end without an address, server end at 10.77.0.1/24), each in its namespace."""
    client, server = topology.namespace("client"), topology.namespace("server")
    return topology.veth(client, server, address_b=IPv4Interface("10.77.0.1/24"))


@pytest.fixture
def addressed_link(topology: netns.Topology) -> tuple[netns.Interface, netns.Interface]:
    """(client end at 10.77.0.2/24, server end at 10.77.0.1/24), each in its namespace."""
    client, server = topology.namespace("client"), topology.namespace("server")
    return topology.veth(
        client,
        server,
        address_a=IPv4Interface("10.77.0.2/24"),
        address_b=IPv4Interface("10.77.0.1/24"),
    )
