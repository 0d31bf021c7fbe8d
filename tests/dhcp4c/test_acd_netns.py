"""Conflict detection on real sockets: the command declines an address another host holds.

Three namespaces on one bridge: the server (dnsmasq, its own ping check off, the first address
it offers the client reserved by MAC address), a host that already holds that address on its
interface, and the client running `dhcp4c --once --json`. The client must end on another
address, the taken one must never appear on its interface (an `ip monitor address` listener
started before the client), and a DHCPDECLINE for it must be on the wire.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from dhcp4c.protocol.message import MessageType
from dhcp4c.testing.capture import Capture
from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig
from dhcp4c.testing.dnsmasq import which as dnsmasq_binary
from dhcp4c.testing.netns import Namespace, Topology, require_netns

pytestmark = pytest.mark.netns

NETWORK = IPv4Network("10.79.0.0/24")
SERVER = IPv4Interface("10.79.0.1/24")
TAKEN = IPv4Address("10.79.0.50")  # reserved for the client, and held by the other host
POOL = (IPv4Address("10.79.0.100"), IPv4Address("10.79.0.110"))
CLIENT_MAC = b"\x02\x79\x00\x00\x00\x01"
CLIENT_IF = "acd0"


@dataclass
class Net:
    client: Namespace
    server: Namespace
    server_port: str  # the bridge port towards the client, in the server namespace
    tmp: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_netns()
    if dnsmasq_binary() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    with Topology("dhcp4cacd") as topo:
        client, server, host = (topo.namespace(x) for x in ("client", "server", "host"))
        topo.veth(client, server, name_a=CLIENT_IF, name_b="acdc", hwaddr_a=CLIENT_MAC)
        topo.veth(
            host, server, name_a="acdh0", name_b="acdh", address_a=IPv4Interface(f"{TAKEN}/24")
        )
        server.ip("link", "add", "br0", "type", "bridge")
        for port in ("acdc", "acdh"):
            server.ip("link", "set", port, "master", "br0")
        server.ip("addr", "add", str(SERVER), "dev", "br0")
        server.ip("link", "set", "br0", "up")
        config = DnsmasqConfig(
            interface="br0",
            network=NETWORK,
            pool=POOL,
            ping_check=False,
            extra_args=(f"--dhcp-host={CLIENT_MAC.hex(':')},{TAKEN}",),
        )
        dnsmasq = Dnsmasq(server, config, workdir=tmp_path / "dnsmasq")
        dnsmasq.start()
        try:
            yield Net(client, server, "acdc", tmp_path)
        finally:
            dnsmasq.stop()


def test_the_command_declines_a_taken_address(net: Net) -> None:
    monitor = subprocess.Popen(
        ["ip", "-4", "-n", net.client.name, "-o", "monitor", "address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert monitor.stdout is not None
    seen: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [seen.put(line) for line in monitor.stdout or ()])
    reader.start()
    lines: list[str] = []
    try:
        # The listener is subscribed once it reports an address added after it started; one
        # added before its subscription is never reported, so add another until one shows.
        deadline = time.monotonic() + 10
        for n in range(2, 250):
            net.client.ip("addr", "add", f"127.0.0.{n}/8", "dev", "lo")
            with contextlib.suppress(queue.Empty):
                lines.append(seen.get(timeout=0.5))
                break
            assert time.monotonic() < deadline, "the address monitor never reported"
        with Capture(net.server, net.server_port) as capture:
            result = subprocess.run(
                net.client.command(
                    [sys.executable, "-m", "dhcp4c", "--once", "--json", "-v", CLIENT_IF]
                ),
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
                cwd=net.tmp,
            )
            assert result.returncode == 0, result.stderr
            declines = capture.dhcp(MessageType.DECLINE)
        # The monitor's last lines: the bound address must have been reported.
        deadline = time.monotonic() + 10
        while not any(
            IPv4Interface(json.loads(result.stdout.splitlines()[0])["address"]).ip.compressed + "/"
            in line
            for line in lines
        ):
            assert time.monotonic() < deadline, lines
            with contextlib.suppress(queue.Empty):
                lines.append(seen.get(timeout=0.5))
    finally:
        monitor.terminate()
        monitor.wait(timeout=5)
        reader.join(timeout=5)
        monitor.stdout.close()
    while not seen.empty():
        lines.append(seen.get_nowait())
    bound = json.loads(result.stdout.splitlines()[0])
    address = IPv4Interface(bound["address"]).ip
    assert address != TAKEN and POOL[0] <= address <= POOL[1], bound
    # Never configured, not for a moment: no RTM_NEWADDR for it on the client.
    assert not [line for line in lines if str(TAKEN) in line], lines
    assert any(str(address) in line for line in lines), lines
    # RFC 2131 §4.4.1: the DECLINE names the taken address, from 0.0.0.0.
    assert [
        (p.message.options.requested_address, str(p.source))
        for p in declines
        if p.outgoing is False
    ] == [(TAKEN, "0.0.0.0")]
    shown = net.client.ip("-j", "addr", "show", "dev", CLIENT_IF)
    assert str(TAKEN) not in shown and str(address) in shown
    assert "in use by" in result.stderr
