"""The dnsmasq fixture: its command line, and a real instance started, used and stopped."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig, DnsmasqError, which
from dhcp4c.testing.netns import Interface, Namespace, Topology, require_netns

NETWORK = IPv4Network("10.88.0.0/24")


def test_arguments_keep_everything_in_workdir(tmp_path: Path) -> None:
    config = DnsmasqConfig(
        interface="s0",
        network=NETWORK,
        t1=5,
        t2=8,
        router=IPv4Address("10.88.0.1"),
        dns_servers=(IPv4Address("10.88.0.53"), IPv4Address("10.88.0.54")),
        domain="example.test",
    )
    args = config.arguments(tmp_path)
    assert "--conf-file=/dev/null" in args and "--port=0" in args
    assert "--keep-in-foreground" in args and "--no-ping" in args
    assert f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}" in args
    assert f"--pid-file={tmp_path / 'dnsmasq.pid'}" in args
    assert "--dhcp-range=10.88.0.100,10.88.0.199,255.255.255.0,120" in args
    assert "--dhcp-option=58,5" in args and "--dhcp-option=59,8" in args
    assert "--dhcp-option=option:router,10.88.0.1" in args
    assert "--dhcp-option=option:dns-server,10.88.0.53,10.88.0.54" in args
    assert "--dhcp-option=option:domain-name,example.test" in args
    assert "--dhcp-rapid-commit" in args and "--dhcp-authoritative" in args
    paths = [a.split("=", 1)[1] for a in args if a.startswith(("--pid", "--dhcp-lease", "--log-f"))]
    assert all(Path(p).parent == tmp_path for p in paths)


def test_small_networks_get_a_pool_inside() -> None:
    config = DnsmasqConfig(interface="s0", network=IPv4Network("10.0.0.0/28"))
    first, last = config.pool_range()
    assert first in config.network and last in config.network and first <= last
    assert last != config.network.broadcast_address


def test_options_can_be_left_out(tmp_path: Path) -> None:
    args = DnsmasqConfig(
        interface="s0", network=NETWORK, rapid_commit=False, authoritative=False, ping_check=True
    ).arguments(tmp_path)
    assert not [a for a in args if a.startswith("--dhcp-option")]
    assert "--dhcp-rapid-commit" not in args and "--dhcp-authoritative" not in args
    assert "--no-ping" not in args


@pytest.fixture
def server_side(tmp_path: Path) -> Iterator[tuple[Namespace, Interface, Namespace, Interface]]:
    require_netns()
    if which() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    with Topology("dnsmasqtest") as topo:
        client, server = topo.namespace("c"), topo.namespace("s")
        c_if, s_if = topo.veth(client, server, address_b=IPv4Interface("10.88.0.1/24"))
        yield client, c_if, server, s_if


@pytest.mark.netns
def test_start_serve_restart_stop(
    server_side: tuple[Namespace, Interface, Namespace, Interface], tmp_path: Path
) -> None:
    client, c_if, server, s_if = server_side
    dnsmasq = Dnsmasq(server, DnsmasqConfig(interface=s_if.name, network=NETWORK), workdir=tmp_path)
    with dnsmasq:
        assert dnsmasq.running and dnsmasq.pid is not None
        pid = dnsmasq.pid
        with pytest.raises(DnsmasqError, match="already running"):
            dnsmasq.start()
        # busybox udhcpc when present, else no client: the fixture itself is what is tested.
        if subprocess.run(["which", "udhcpc"], capture_output=True).returncode == 0:
            client.run(["udhcpc", "-f", "-q", "-n", "-i", c_if.name, "-s", "/bin/true"])
            (lease,) = dnsmasq.leases()
            assert lease.address in NETWORK
            assert lease.hwaddr == c_if.hwaddr.hex(":")
            assert "DHCPACK" in dnsmasq.log_text()
        dnsmasq.reconfigure(DnsmasqConfig(interface=s_if.name, network=NETWORK, t1=3))
        assert dnsmasq.running and dnsmasq.pid != pid
        assert (tmp_path / "dnsmasq.leases").exists()  # kept across the restart
    assert not dnsmasq.running
    assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text()
    dnsmasq.stop()  # idempotent


@pytest.mark.netns
def test_a_bad_configuration_is_reported(
    server_side: tuple[Namespace, Interface, Namespace, Interface], tmp_path: Path
) -> None:
    _client, _c_if, server, _s_if = server_side
    config = DnsmasqConfig(interface="nosuch0", network=NETWORK)
    with pytest.raises(DnsmasqError, match="exited with"):
        Dnsmasq(server, config, workdir=tmp_path).start(timeout=5)
