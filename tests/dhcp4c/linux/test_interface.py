"""Interface facts read by ioctl, in the calling thread's network namespace."""

from __future__ import annotations

import pytest

from dhcp4c.linux.interface import (
    ARPHRD_ETHER,
    InterfaceFacts,
    has_carrier,
    read_ethernet,
    read_interface,
)
from dhcp4c.testing import netns


def test_read_ethernet_refuses_what_it_cannot_use() -> None:
    with pytest.raises(OSError, match="not Ethernet"):
        read_ethernet("lo")
    with pytest.raises(OSError):
        read_ethernet("nonexistent0")


def test_loopback_is_read_as_it_is() -> None:
    facts = read_interface("lo")
    assert facts.name == "lo" and facts.link_type != ARPHRD_ETHER
    assert facts.hwaddr == bytes(6) and facts.mtu > 0
    with pytest.raises(OSError):
        has_carrier("nonexistent0")


@pytest.mark.netns
def test_facts_come_from_the_namespace_of_the_thread(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, server_end = link
    with client_end.namespace.entered():
        facts = read_ethernet(client_end.name)
        assert has_carrier(client_end.name)
        client_end.namespace.ip("link", "set", client_end.name, "down")
        assert not has_carrier(client_end.name)  # not IFF_UP any more
    assert facts == InterfaceFacts(client_end.name, client_end.hwaddr, 1500, ARPHRD_ETHER)
    # The other namespace has no interface of that name.
    with server_end.namespace.entered(), pytest.raises(OSError):
        read_interface(client_end.name)
