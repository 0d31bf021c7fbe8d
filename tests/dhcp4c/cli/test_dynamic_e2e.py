"""End-to-end: `dhcp4c --match 'dyn*'` follows interfaces as they come and go, in namespaces.

The command starts with no matching interface; the test adds a veth pair `dyn0` with dnsmasq on
its peer (a client is started, binds and configures it), asks for the tree with SIGUSR1, then
deletes the pair (the client stops: a "lost" event, reason `interface-gone`, and its node leaves
the tree). `other0`, present from the start, does not match and never gets a client.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig
from dhcp4c.testing.dnsmasq import which as dnsmasq_binary
from dhcp4c.testing.netns import Namespace, Topology, require_netns

pytestmark = pytest.mark.netns

NETWORK = IPv4Network("10.79.0.0/24")
SERVER = IPv4Interface("10.79.0.1/24")
#: A guard only: every wait below ends on what it waits for.
GUARD = 30.0


class Command:
    """The command in a namespace: its JSON events and its log lines, read as they come."""

    def __init__(self, namespace: Namespace, *args: str) -> None:
        argv = [sys.executable, "-m", "dhcp4c", "--json", *args]
        self.process = subprocess.Popen(
            namespace.command(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_log, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def _line(self, deadline: float) -> str:
        try:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("timed out; log:\n" + "\n".join(self.log)) from None
        self.log.append(line)
        return line

    def wait_log(self, text: str) -> None:
        deadline = time.monotonic() + GUARD
        while text not in self._line(deadline):
            pass

    def tree(self) -> list[str]:
        """Send SIGUSR1 and return the tree it logs, one line per node."""
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + GUARD
        while self._line(deadline) != "dhcp4c: supervision tree:":
            pass
        nodes = [self._line(deadline)]
        assert nodes[0].startswith("root "), nodes
        # The record's lines are the nodes (indented below root); the next record is not.
        while True:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                return nodes
            self.log.append(line)
            if not line.startswith(" "):
                return nodes
            nodes.append(line)

    def wait_event(self, kind: str, interface: str) -> dict[str, Any]:
        deadline = time.monotonic() + GUARD
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {kind} event on {interface}") from None
            assert event["interface"] == interface, event
            if event["event"] == kind:
                return event

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(GUARD)
        for reader in self._readers:
            reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def topology() -> Iterator[Topology]:
    require_netns()
    if dnsmasq_binary() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    with Topology("dhcp4cdyn") as topo:
        yield topo


def node_names(tree: list[str]) -> list[str]:
    return [line.split()[0] for line in tree]


def test_match_follows_interfaces_as_they_come_and_go(topology: Topology, tmp_path: Path) -> None:
    client, server = topology.namespace("client"), topology.namespace("server")
    topology.veth(client, server, name_a="other0", name_b="other0s")
    command = Command(client, "--match", "dyn*")
    dnsmasq = None
    try:
        command.wait_log("following the interfaces matching dyn*: none yet")
        assert node_names(command.tree()) == ["root", "net", "debug"]

        topology.veth(client, server, name_a="dyn0", name_b="dyn0s", address_b=SERVER)
        config = DnsmasqConfig(interface="dyn0s", network=NETWORK, router=SERVER.ip)
        dnsmasq = Dnsmasq(server, config, workdir=tmp_path / "dnsmasq")
        dnsmasq.start()
        bound = command.wait_event("bound", "dyn0")
        assert IPv4Interface(bound["address"]) in NETWORK
        addresses = json.loads(client.ip("-j", "-4", "addr", "show", "dev", "dyn0"))
        assert bound["address"].split("/")[0] in [a["local"] for a in addresses[0]["addr_info"]]
        tree = command.tree()
        assert node_names(tree) == ["root", "net", "dyn0", "debug"]
        assert tree[2].startswith("    dyn0 HEALTHY"), tree  # root.net.dyn0, bound

        client.ip("link", "del", "dyn0")
        lost = command.wait_event("lost", "dyn0")
        assert lost["reason"] == "interface-gone"
        command.wait_log("dyn0: interface gone; its client stopped")
        assert node_names(command.tree()) == ["root", "net", "debug"]

        assert command.stop() == 0
        assert not any("other0" in line for line in command.log), command.log
        assert command.events.empty()
    finally:
        command.close()
        if dnsmasq is not None:
            dnsmasq.stop()
