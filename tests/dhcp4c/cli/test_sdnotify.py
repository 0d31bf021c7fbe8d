"""sd_notify: datagrams a listening AF_UNIX socket receives, and what never blocks or raises."""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio

from dhcp4c.cli.sdnotify import Notifier, lease_status, report
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.protocol.options import OptionCode
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()


def test_disabled_without_the_variable() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.status("x") and not notifier.stopping()


def test_ready_status_stopping(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("eth0: bound 192.0.2.10/24")
    assert sock.recv(4096) == b"READY=1\nSTATUS=eth0: bound 192.0.2.10/24"
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.status("renewed")
    assert sock.recv(4096) == b"STATUS=renewed"
    assert notifier.stopping("SIGTERM")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=SIGTERM"
    notifier.close()
    assert notifier.stopping()  # a send after close opens a new socket
    assert sock.recv(4096) == b"STOPPING=1"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"dhcp4c-test-{os.getpid()}-{random.getrandbits(32):08x}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier("@" + name)
        assert notifier.status("hello")
        assert sock.recv(4096) == b"STATUS=hello"
        notifier.close()


def test_a_value_cannot_inject_assignments(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier(path)
    assert notifier.status("a\nREADY=1\r\nMAINPID=1\x00")
    assert sock.recv(4096) == b"STATUS=a READY=1  MAINPID=1 "
    assert notifier.status("x" * 1000)
    assert sock.recv(4096) == b"STATUS=" + b"x" * 200
    notifier.close()


def test_unusable_addresses_disable_it(caplog: pytest.LogCaptureFixture) -> None:
    for raw in ("relative/path", "vsock:2:1234"):
        assert not Notifier(raw).enabled
    assert "not notifying" in caplog.text


def test_failures_are_logged_once_and_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dhcp4c.cli.sdnotify")
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.ready()
    assert not notifier.status("again")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot notify" in warnings[0].getMessage()
    notifier.close()


def test_a_full_socket_never_blocks(listener: tuple[str, socket.socket]) -> None:
    # Nobody reads the listener: its queue fills, and a send then fails instead of blocking.
    path, _sock = listener
    notifier = Notifier(path)
    sent = 0
    while notifier.status("x" * 100):
        sent += 1
        assert sent < 1_000_000
    assert sent > 0
    notifier.close()


def test_from_environment_can_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    notifier = Notifier.from_environment(unset=True)
    assert notifier.enabled and "NOTIFY_SOCKET" not in os.environ


def make_lease() -> Lease:
    options = {
        OptionCode.DHCP_MESSAGE_TYPE: b"\x05",
        OptionCode.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        OptionCode.IP_ADDRESS_LEASE_TIME: (3600).to_bytes(4, "big"),
        OptionCode.RENEWAL_TIME_VALUE: (1800).to_bytes(4, "big"),
        OptionCode.REBINDING_TIME_VALUE: (3150).to_bytes(4, "big"),
        OptionCode.SERVER_IDENTIFIER: IPv4Address("192.0.2.1").packed,
    }
    ack = Message(op=BOOTREPLY, xid=1, yiaddr=IPv4Address("192.0.2.10"), options=options)
    return Lease.from_ack(ack, 100.0, random.Random(0))


def test_lease_status() -> None:
    lease = make_lease()
    bound = LeaseEvent(LeaseEventKind.BOUND, lease, None, None, 1)
    assert lease_status("eth0", bound, now=160.0) == (
        "eth0: bound 192.0.2.10/24 from 192.0.2.1, renews in 1740 s"
    )
    lost = LeaseEvent(LeaseEventKind.LOST, None, lease, "expired", 2)
    assert lease_status("eth0", lost, now=4000.0) == "eth0: lost 192.0.2.10/24 (expired)"


@asynccontextmanager
async def memory_clients(*names: str) -> AsyncIterator[tuple[list[Client], trio.Nursery]]:
    net = MemoryNetwork(random.Random(0))
    config = ServerConfig(lease_time=1000, t1=500, t2=875)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, ServerCore(config), net.server(config.server_id))
        clients = []
        for n, name in enumerate(names):
            hw = bytes([2, 0, 0, 0, 0, n + 1])
            link = net.attach(hw)

            def factory(interface: str, address: Any, link: Any = link) -> Any:
                return link.open()

            clients.append(Client(name, hwaddr=hw, transport_factory=factory, rng=random.Random(n)))
        yield clients, nursery
        nursery.cancel_scope.cancel()


async def test_report_ready_once_every_interface_is_bound(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(path)
    notifier = Notifier(path)
    async with memory_clients("eth0", "eth1") as (clients, nursery):
        subscriptions = [(client.interface, client.subscribe()) for client in clients]
        nursery.start_soon(report, notifier, subscriptions)
        nursery.start_soon(clients[0].run)
        with trio.fail_after(30):
            first = await sock.recv(4096)
        assert first.startswith(b"STATUS=eth0: bound 192.0.2.")  # not ready: eth1 has none
        nursery.start_soon(clients[1].run)
        with trio.fail_after(30):
            second = await sock.recv(4096)
        assert second.startswith(b"READY=1\nSTATUS=eth1: bound 192.0.2.")
        clients[0].decline()
        with trio.fail_after(30):
            third = await sock.recv(4096)
        assert third.startswith(b"STATUS=eth0: lost 192.0.2.") and b"(declined)" in third
    sock.close()
    notifier.close()


def test_status_for_ipv6_only() -> None:
    from dhcp4c.cli.sdnotify import lease_status
    from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind

    event = LeaseEvent(LeaseEventKind.IPV6_ONLY, None, None, None, 1, wait=300.0)
    assert lease_status("eth0", event, now=0.0) == (
        "eth0: IPv6-only preferred, DHCPv4 quiet for 300 s"
    )
