"""End-to-end: the command's operator features, driven as systemd and an operator would.

`dhcp4c --once --hook HOOK --lease-dir DIR IFACE` in a namespace against dnsmasq, with
`NOTIFY_SOCKET` naming a datagram socket this test listens on; then `dhcp4c status` and
`dhcp4c --version`. dnsmasq sends a hostile domain name (option 15), which the hook must not
receive. The modules (`hooks`, `sdnotify`, `status`) have their own tests; these check the
command's wiring.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

import dhcp4c
from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig
from dhcp4c.testing.dnsmasq import which as dnsmasq_binary
from dhcp4c.testing.netns import Namespace, Topology, require_netns

pytestmark = pytest.mark.netns

NETWORK = IPv4Network("10.78.0.0/24")
SERVER = IPv4Interface("10.78.0.1/24")
CLIENT_IF = "ops0"
SERVER_IF = "ops0s"
HOSTILE_DOMAIN = "ops.example; touch PWNED"


@dataclass
class Net:
    client: Namespace
    tmp: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_netns()
    if dnsmasq_binary() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    with Topology("dhcp4cops") as topo:
        client, server = topo.namespace("client"), topo.namespace("server")
        topo.veth(client, server, name_a=CLIENT_IF, name_b=SERVER_IF, address_b=SERVER)
        config = DnsmasqConfig(
            interface=SERVER_IF, network=NETWORK, router=SERVER.ip, domain=HOSTILE_DOMAIN
        )
        dnsmasq = Dnsmasq(server, config, workdir=tmp_path / "dnsmasq")
        dnsmasq.start()
        try:
            yield Net(client, tmp_path)
        finally:
            dnsmasq.stop()


def command(net: Net, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        net.client.command([sys.executable, "-m", "dhcp4c", *args]),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=net.tmp,
    )


def test_once_with_hook_and_notify_socket(net: Net) -> None:
    hook = net.tmp / "hook"
    hook.write_text(
        f"#!/bin/sh\nenv | grep '^DHCP4C_' | sort > {net.tmp}/hook-$DHCP4C_SEQ.env\n"
        f"cat > {net.tmp}/hook-$DHCP4C_SEQ.json\n"
    )
    hook.chmod(0o755)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(net.tmp / "notify"))
    listener.setblocking(False)
    try:
        env = {**os.environ, "NOTIFY_SOCKET": str(net.tmp / "notify")}
        result = command(
            net,
            "--once",
            "--json",
            "--lease-dir",
            str(net.tmp / "leases"),
            "--hook",
            str(hook),
            CLIENT_IF,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        messages = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                messages.append(listener.recv(4096).decode())
            except BlockingIOError:
                if any("STOPPING=1" in m for m in messages):
                    break
                time.sleep(0.05)
    finally:
        listener.close()
    bound = json.loads(result.stdout.splitlines()[0])
    # The server did send it (the lease file keeps the ACK's raw options); like the hook, the
    # command's own JSON leaves out a name that is not a valid DNS name.
    saved = json.loads((net.tmp / "leases" / f"{CLIENT_IF}.lease").read_text())
    raw = {code: bytes.fromhex(value) for code, value in saved["options"]}
    assert raw[15].rstrip(b"\0") == HOSTILE_DOMAIN.encode()
    assert bound["domain"] is None
    ready = [m for m in messages if "READY=1" in m.split("\n")]
    assert len(ready) == 1 and f"{CLIENT_IF}: bound {bound['address']}" in ready[0]
    assert "STOPPING=1" in messages[-1].split("\n")
    env_lines = (net.tmp / "hook-1.env").read_text().splitlines()
    assert f"DHCP4C_ADDRESS={bound['address'].split('/')[0]}" in env_lines
    assert "DHCP4C_REASON=bound" in env_lines
    assert not any(line.startswith("DHCP4C_DOMAIN=") for line in env_lines)
    assert json.loads((net.tmp / "hook-1.json").read_text())["domain"] is None
    assert not (net.tmp / "PWNED").exists()

    status = command(net, "status", "--lease-dir", str(net.tmp / "leases"), "--json", CLIENT_IF)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["address"] == bound["address"]


def test_version(net: Net) -> None:
    result = command(net, "--version")
    assert result.returncode == 0 and dhcp4c.__version__ in result.stdout


def receive(listener: socket.socket, process: subprocess.Popen[str]) -> str:
    """The next datagram; an AssertionError once the command has exited without one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return listener.recv(4096).decode()
        except TimeoutError:
            if process.poll() is not None:
                break
    raise AssertionError(f"no notification (the command exited with {process.poll()})")


def test_service_stop_notifies_and_runs_the_hook_for_the_release(net: Net) -> None:
    # As under systemd: READY=1 once bound, then SIGTERM; with --release the hook gets "lost".
    hook = net.tmp / "hook"
    hook.write_text(f'#!/bin/sh\necho "$DHCP4C_SEQ $1 $DHCP4C_LOST_REASON" >> {net.tmp}/log\n')
    hook.chmod(0o755)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(net.tmp / "notify"))
    listener.settimeout(0.2)
    argv = [sys.executable, "-m", "dhcp4c", "--release", "--hook", str(hook), CLIENT_IF]
    with (
        subprocess.Popen(
            net.client.command(argv),
            env={**os.environ, "NOTIFY_SOCKET": str(net.tmp / "notify")},
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as process,
        listener,
    ):
        try:
            ready = receive(listener, process)
            assert ready.startswith("READY=1\nSTATUS=ops0: bound 10.78.0."), ready
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=30)
            assert process.returncode == 0, log
            stopping = receive(listener, process)
            assert "STOPPING=1" in stopping.split("\n"), stopping
        finally:
            if process.poll() is None:
                process.kill()  # Popen's __exit__ then closes the pipes and waits
    assert (net.tmp / "log").read_text().splitlines() == ["1 bound ", "2 lost released"]
