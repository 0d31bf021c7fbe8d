"""End-to-end: the `dhcp4c` command against dnsmasq and the in-process server, in namespaces.

Every test builds its own pair of network namespaces joined by a veth pair (removed afterwards,
whatever happens), starts a server on one end and runs `python -m dhcp4c --json ...` inside the
other with `ip netns exec`, exactly as an operator would. What the command claims (its JSON
events) is checked against what the kernel holds (`ip -j`) and what the server saw (dnsmasq's
log and lease file, or the in-process server's counters).

Timers are short (T1/T2 of a few seconds; dnsmasq gives no lease under 120 s but sends the T1/T2
it is told), so the whole module runs in about a minute. These tests need root; CI runs them as
root, and `require_netns` fails them there instead of skipping.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig
from dhcp4c.testing.dnsmasq import which as dnsmasq_binary
from dhcp4c.testing.netns import Interface, Namespace, Topology, require_netns

pytestmark = pytest.mark.netns

NETWORK = IPv4Network("10.77.0.0/24")
SERVER = IPv4Interface("10.77.0.1/24")
CLIENT_IF = "e2e0"
SERVER_IF = "e2e0s"


@dataclass
class Net:
    topo: Topology
    client: Namespace
    server: Namespace
    client_if: Interface
    server_if: Interface
    tmp: Path

    def addresses(self) -> list[dict[str, Any]]:
        """The IPv4 addresses on the client interface (`ip -j addr` entries)."""
        info = json.loads(self.client.ip("-j", "-4", "addr", "show", "dev", CLIENT_IF))
        entries = info[0].get("addr_info", []) if info else []
        return [a for a in entries if a.get("family") == "inet"]

    def routes(self) -> list[dict[str, Any]]:
        return list(json.loads(self.client.ip("-j", "-4", "route", "show", "dev", CLIENT_IF)))


def _wait_carrier(namespace: Namespace, ifname: str) -> None:
    deadline = time.monotonic() + 5
    while "LOWER_UP" not in namespace.ip("-o", "link", "show", "dev", ifname):
        assert time.monotonic() < deadline, f"{ifname} has no carrier"
        time.sleep(0.01)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    require_netns()
    with Topology("dhcp4ce2e") as topo:
        client, server = topo.namespace("client"), topo.namespace("server")
        client_if, server_if = topo.veth(
            client, server, name_a=CLIENT_IF, name_b=SERVER_IF, address_b=SERVER
        )
        _wait_carrier(client, CLIENT_IF)
        _wait_carrier(server, SERVER_IF)
        yield Net(topo, client, server, client_if, server_if, tmp_path)


@pytest.fixture
def needs_dnsmasq() -> None:
    if dnsmasq_binary() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")


def start_dnsmasq(net: Net, **settings: Any) -> Dnsmasq:
    config = DnsmasqConfig(interface=SERVER_IF, network=NETWORK, router=SERVER.ip, **settings)
    server = Dnsmasq(net.server, config, workdir=net.tmp / "dnsmasq")
    server.start()
    return server


@contextlib.contextmanager
def dnsmasq(net: Net, **settings: Any) -> Iterator[Dnsmasq]:
    server = start_dnsmasq(net, **settings)
    try:
        yield server
    finally:
        server.stop()


class BuiltinServer:
    """The in-process test server (`dhcp4c.testing.server`) on its own Trio loop in a thread."""

    def __init__(self, net: Net, **settings: Any) -> None:
        from dhcp4c.testing.server import ServerConfig, ServerCore

        config = ServerConfig(
            server_id=SERVER.ip,
            network=NETWORK,
            pool_start=IPv4Address("10.77.0.100"),
            pool_end=IPv4Address("10.77.0.199"),
            routers=(SERVER.ip,),
            dns_servers=(SERVER.ip,),
            **settings,
        )
        self.core = ServerCore(config)
        self.net = net
        self._ready = threading.Event()
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._token: Any = None
        self._scope: Any = None

    def _run(self) -> None:
        import trio

        from dhcp4c.testing.server_net import serve_udp

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.CancelScope() as self._scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        lambda task_status: serve_udp(
                            self.core, SERVER_IF, namespace=self.net.server, task_status=task_status
                        )
                    )
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as error:  # reported by __enter__/__exit__
            self._error.append(error)
        finally:
            self._ready.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (the core is not thread-safe)."""
        import trio

        return trio.from_thread.run_sync(fn, trio_token=self._token)

    def __enter__(self) -> BuiltinServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._scope is not None and self._thread.is_alive():
            self.call(self._scope.cancel)
        self._thread.join(10)
        if self._error:
            raise self._error[0]


class Command:
    """`dhcp4c --json ARGS IFACE` running inside the client namespace."""

    def __init__(self, net: Net, *args: str, json_events: bool = True) -> None:
        argv = [sys.executable, "-m", "dhcp4c", *(["--json"] if json_events else []), *args]
        self.process = subprocess.Popen(
            net.client.command([*argv, CLIENT_IF]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.started = time.monotonic()
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_log, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                event["_at"] = time.monotonic() - self.started
                self.events.put(event)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.stderr)

    def next_event(self, timeout: float) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no lease event within {timeout} s; seen {self.kinds()}; log:\n{self.log()}"
            ) from None
        self.seen.append(event)
        return event

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next event of `kind` (skipping others, which stay in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.01, deadline - time.monotonic()))
            if event["event"] == kind:
                return event

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.seen]

    def signal(self, signum: int, timeout: float = 10) -> int:
        self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        with contextlib.suppress(queue.Empty):
            while True:
                self.seen.append(self.events.get_nowait())
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

    def __enter__(self) -> Command:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_command(net: Net, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        net.client.command([sys.executable, "-m", "dhcp4c", *args]),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_configured(net: Net, address: str) -> dict[str, Any]:
    """The lease's address is on the interface with a finite lifetime; the default route is ours."""
    ours = [a for a in net.addresses() if f"{a['local']}/{a['prefixlen']}" == address]
    assert ours, f"{address} not in {net.addresses()}"
    assert ours[0]["valid_life_time"] < 0xFFFFFFFF  # dynamic, so the kernel expires it
    default = [r for r in net.routes() if r["dst"] == "default"]
    assert default and default[0]["gateway"] == str(SERVER.ip), net.routes()
    assert default[0]["protocol"] == "dhcp"
    assert default[0].get("prefsrc") == address.split("/")[0]
    return ours[0]


class AddressMonitor:
    """Records netlink address events (RTM_NEWADDR 20 / RTM_DELADDR 21) on the client link."""

    def __init__(self, net: Net) -> None:
        with net.client.entered():
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, 0x10))  # RTMGRP_IPV4_IFADDR
        self.sock.settimeout(0.05)
        self.index = net.client_if.index
        self.events: list[int] = []

    def collect(self) -> list[int]:
        with contextlib.suppress(TimeoutError):
            while True:
                data = self.sock.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    index = struct.unpack_from("=I", data, offset + 20)[0]
                    if kind in (20, 21) and index == self.index:
                        self.events.append(kind)
                    offset += max(16, (length + 3) & ~3)
        return self.events

    def close(self) -> None:
        self.sock.close()


# --- against dnsmasq -------------------------------------------------------------------------


def test_once_binds_and_configures_address_and_routes(net: Net, needs_dnsmasq: None) -> None:
    with dnsmasq(net) as server:
        result = run_command(net, "--once", "--json", "--timeout", "20", CLIENT_IF)
        assert result.returncode == 0, result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert [e["event"] for e in events] == ["bound"]
        bound = events[0]
        assert IPv4Interface(bound["address"]) in [
            IPv4Interface(f"{lease.address}/24") for lease in server.leases()
        ]
        assert bound["server_id"] == str(SERVER.ip)
        assert bound["routers"] == [str(SERVER.ip)]
        assert 0 < bound["expiry"] <= 120
        entry = assert_configured(net, bound["address"])
        assert 100 < entry["valid_life_time"] <= 120
        # --once leaves the lease in place: the address outlives the process, with lifetimes.
        assert "Traceback" not in result.stderr


def test_rapid_commit_is_two_messages(net: Net, needs_dnsmasq: None) -> None:
    with dnsmasq(net) as server:
        result = run_command(net, "--once", "--timeout", "20", CLIENT_IF)
        assert result.returncode == 0, result.stderr
        log = server.log_text()
        assert "DHCPDISCOVER" in log and "DHCPACK" in log
        assert "DHCPOFFER" not in log and "DHCPREQUEST" not in log


def test_without_rapid_commit_four_messages(net: Net, needs_dnsmasq: None) -> None:
    with dnsmasq(net) as server:
        result = run_command(net, "--once", "--no-rapid-commit", "--timeout", "20", CLIENT_IF)
        assert result.returncode == 0, result.stderr
        log = server.log_text()
        for step in ("DHCPDISCOVER", "DHCPOFFER", "DHCPREQUEST", "DHCPACK"):
            assert step in log, log


def test_options_reach_the_server(net: Net, needs_dnsmasq: None) -> None:
    with dnsmasq(net) as server:
        result = run_command(
            net,
            "--once",
            "--no-configure",
            "--hostname",
            "e2e-host",
            "--vendor-class",
            "dhcp4c-e2e",
            "--client-id",
            "01:02:03:04:05:06:07",
            "--request-option",
            "42",
            "--broadcast-flag",
            CLIENT_IF,
        )
        assert result.returncode == 0, result.stderr
        log = server.log_text()
        assert "vendor class: dhcp4c-e2e" in log
        assert "42:ntp-server" in log
        assert "broadcast response" in log
        (lease,) = server.leases()
        assert lease.hostname == "e2e-host"
        assert lease.client_id == "01:02:03:04:05:06:07"
        assert net.addresses() == []  # --no-configure


def test_renewal_at_t1(net: Net, needs_dnsmasq: None) -> None:
    with dnsmasq(net, t1=2, t2=4), Command(net) as command:
        bound = command.wait_for("bound", 20)
        renewed = command.wait_for("renewed", 10)
        assert renewed["address"] == bound["address"]
        assert 1.5 <= renewed["_at"] - bound["_at"] <= 4
        assert_configured(net, renewed["address"])
        renewed_again = command.wait_for("renewed", 10)
        assert renewed_again["address"] == bound["address"]
        assert command.signal(signal.SIGTERM) == 0


def test_restart_after_a_nak_rediscovers(net: Net, needs_dnsmasq: None) -> None:
    lease_dir = net.tmp / "leases"
    server = start_dnsmasq(net)
    try:
        with Command(net, "--lease-dir", str(lease_dir)) as first:
            bound = first.wait_for("bound", 20)
            assert first.signal(signal.SIGTERM) == 0
        # The server comes back with another pool: it NAKs the INIT-REBOOT (authoritative).
        server.reconfigure(
            DnsmasqConfig(
                interface=SERVER_IF,
                network=NETWORK,
                router=SERVER.ip,
                pool=(IPv4Address("10.77.0.50"), IPv4Address("10.77.0.59")),
            )
        )
        with Command(net, "--lease-dir", str(lease_dir)) as second:
            again = second.wait_for("bound", 20)
            assert IPv4Interface(again["address"]).ip in IPv4Network("10.77.0.48/28")
            assert "DHCPNAK" in server.log_text()
            assert_configured(net, again["address"])
            old = [a for a in net.addresses() if f"{a['local']}/24" == bound["address"]]
            assert old == [], "the NAKed address is still configured"
            assert second.signal(signal.SIGTERM) == 0
    finally:
        server.stop()


def test_nak_on_renewal_rediscovers(net: Net, needs_dnsmasq: None) -> None:
    server = start_dnsmasq(net, t1=2, t2=4)
    try:
        with Command(net) as command:
            bound = command.wait_for("bound", 20)
            # The server comes back with another pool: it NAKs the renewal (authoritative).
            server.reconfigure(
                DnsmasqConfig(
                    interface=SERVER_IF,
                    network=NETWORK,
                    router=SERVER.ip,
                    pool=(IPv4Address("10.77.0.50"), IPv4Address("10.77.0.59")),
                    t1=30,
                    t2=60,
                )
            )
            lost = command.wait_for("lost", 15)
            assert lost["reason"] == "nak" and lost["address"] == bound["address"]
            again = command.wait_for("bound", 15)
            assert IPv4Interface(again["address"]).ip in IPv4Network("10.77.0.48/28")
            assert_configured(net, again["address"])
            old = [a for a in net.addresses() if f"{a['local']}/24" == bound["address"]]
            assert old == [], "the NAKed address is still configured"
            assert command.signal(signal.SIGTERM) == 0
    finally:
        server.stop()


def test_release_on_exit(net: Net, needs_dnsmasq: None) -> None:
    lease_dir = net.tmp / "leases"
    resolv = net.tmp / "resolv.conf"
    with dnsmasq(net, dns_servers=(SERVER.ip,), domain="e2e.example") as server:
        with Command(
            net, "--release", "--lease-dir", str(lease_dir), "--resolv-conf", str(resolv)
        ) as command:
            bound = command.wait_for("bound", 20)
            assert_configured(net, bound["address"])
            assert (lease_dir / f"{CLIENT_IF}.lease").exists()
            text = resolv.read_text()
            assert f"nameserver {SERVER.ip}" in text and "e2e.example" in text
            assert command.signal(signal.SIGTERM) == 0
            assert command.kinds()[-1] == "lost"
            assert command.seen[-1]["reason"] == "released"
        assert "DHCPRELEASE" in server.log_text()
        assert net.addresses() == []
        assert [r for r in net.routes() if r.get("protocol") == "dhcp"] == []
        assert not (lease_dir / f"{CLIENT_IF}.lease").exists()
        assert not resolv.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_keeps_the_lease(
    net: Net, needs_dnsmasq: None, signum: int
) -> None:
    lease_dir = net.tmp / "leases"
    with dnsmasq(net) as server, Command(net, "--lease-dir", str(lease_dir)) as command:
        bound = command.wait_for("bound", 20)
        start = time.monotonic()
        assert command.signal(signum) == 0
        assert time.monotonic() - start < 3
        assert "Traceback" not in command.log()
        assert "lost" not in command.kinds()
        # Without --release the address stays, with its lifetime, for the next start.
        assert_configured(net, bound["address"])
        assert (lease_dir / f"{CLIENT_IF}.lease").exists()
        assert "DHCPRELEASE" not in server.log_text()


def test_restart_reuses_the_lease_file_without_a_flap(net: Net, needs_dnsmasq: None) -> None:
    lease_dir = net.tmp / "leases"
    with dnsmasq(net) as server:
        with Command(net, "--lease-dir", str(lease_dir)) as first:
            bound = first.wait_for("bound", 20)
            assert first.signal(signal.SIGTERM) == 0
        log_offset = len(server.log_text())
        monitor = AddressMonitor(net)
        try:
            with Command(net, "--lease-dir", str(lease_dir)) as second:
                # INIT-REBOOT: the lease from the file is verified, not discovered again.
                event = second.next_event(20)
                assert event["event"] in ("bound", "renewed"), second.log()
                assert event["address"] == bound["address"]
                assert second.signal(signal.SIGTERM) == 0
            assert 21 not in monitor.collect(), "the address was deleted during the restart"
        finally:
            monitor.close()
        log = server.log_text()[log_offset:]
        assert "DHCPREQUEST" in log and "DHCPDISCOVER" not in log
        assert_configured(net, bound["address"])


class LossyBridge:
    """Forwards Ethernet frames between two interfaces of one namespace, dropping some at random.

    Frames from `b` to `a` are dropped with probability `loss`; frames from `a` to `b` pass.

    The fallback for kernels without `sch_netem` (`tc ... netem loss` answers "Specified qdisc
    kind is unknown"): the same loss, made in user space, seeded so that a run can be repeated.
    """

    def __init__(self, namespace: Namespace, a: str, b: str, loss: float, seed: int) -> None:
        import random

        with namespace.entered():
            self.socks = [socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))]
            self.socks.append(socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
        for sock, ifname in zip(self.socks, (a, b), strict=True):
            sock.bind((ifname, 3))  # ETH_P_ALL
        self.loss = loss
        self.rng = random.Random(seed)
        self.dropped = self.forwarded = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        peer = {self.socks[0]: self.socks[1], self.socks[1]: self.socks[0]}
        while True:
            ready, _, _ = select.select([*self.socks, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for sock in ready:
                frame, address = sock.recvfrom(65536)
                if address[2] == socket.PACKET_OUTGOING:
                    continue  # our own transmission, seen on the way out
                if sock is self.socks[1] and self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                self.forwarded += 1
                peer[sock].send(frame)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        for sock in self.socks:
            sock.close()


def _disable_tx_checksum(namespace: Namespace, ifname: str) -> None:
    """`ethtool -K IFNAME tx off`, by ioctl (ethtool may not be installed).

    A veth leaves UDP checksums to be completed later (CHECKSUM_PARTIAL); a frame copied by the
    bridge through a packet socket would then reach the client with a wrong checksum.
    """
    import ctypes
    import fcntl

    value = ctypes.create_string_buffer(struct.pack("=II", 0x17, 0), 8)  # ETHTOOL_STXCSUM, off
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    with namespace.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        fcntl.ioctl(sock.fileno(), 0x8946, ifreq)  # SIOCETHTOOL


def _has_netem(namespace: Namespace, ifname: str) -> bool:
    result = subprocess.run(
        namespace.command(["tc", "qdisc", "add", "dev", ifname, "root", "netem", "loss", "30%"]),
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0


def test_packet_loss_still_binds(tmp_path: Path, needs_dnsmasq: None) -> None:
    # 30 % of the server's replies are lost; the client retransmits (RFC 2131 §4.1: 4, 8, 16,
    # 32 s) and still binds. Loss on the replies only keeps the chance of five lost exchanges
    # in a row (no lease within the 90 s timeout) at 0.3 ** 5 = 0.24 %; loss both ways would
    # make it 3.5 %, too flaky for CI.
    # Topology: client e2e0 <-> m1 (middle) m2 <-> e2e0s server, so the loss sits on the path.
    require_netns()
    with Topology("dhcp4ce2e") as topo:
        client, middle, server_ns = (topo.namespace(n) for n in ("client", "middle", "server"))
        client_if, _m1 = topo.veth(client, middle, name_a=CLIENT_IF, name_b="m1")
        _m2, server_if = topo.veth(middle, server_ns, name_a="m2", name_b=SERVER_IF)
        server_ns.ip("addr", "add", str(SERVER), "dev", SERVER_IF)
        for ns, ifname in ((client, CLIENT_IF), (middle, "m1"), (middle, "m2")):
            _wait_carrier(ns, ifname)
        net = Net(topo, client, server_ns, client_if, server_if, tmp_path)
        bridge: LossyBridge | None = None
        if _has_netem(middle, "m1"):
            # netem on the egress queue towards the client, and a loss-free bridge.
            bridge = LossyBridge(middle, "m1", "m2", loss=0.0, seed=0)
        else:
            _disable_tx_checksum(server_ns, SERVER_IF)
            bridge = LossyBridge(middle, "m1", "m2", loss=0.3, seed=int(time.time()))
        try:
            with dnsmasq(net):
                result = run_command(
                    net, "--once", "--json", "--timeout", "90", CLIENT_IF, timeout=120
                )
                assert result.returncode == 0, result.stderr
                (event,) = [json.loads(line) for line in result.stdout.splitlines()]
                assert_configured(net, event["address"])
        finally:
            bridge.close()


def test_once_times_out_without_a_server(net: Net) -> None:
    start = time.monotonic()
    result = run_command(net, "--once", "--timeout", "1.5", CLIENT_IF)
    assert result.returncode == 3
    assert time.monotonic() - start < 10
    lines = [line for line in result.stderr.splitlines() if line]
    assert any("no lease within 1.5 s" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


# --- against the in-process server -----------------------------------------------------------


def test_builtin_server_lease_and_routes(net: Net) -> None:
    with BuiltinServer(net, lease_time=60, t1=20, t2=40):
        result = run_command(net, "--once", "--json", "--timeout", "20", CLIENT_IF)
        assert result.returncode == 0, result.stderr
        (event,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert event["address"] == "10.77.0.100/24"
        entry = assert_configured(net, event["address"])
        assert 50 < entry["valid_life_time"] <= 60


def test_builtin_server_expiry_removes_the_address(net: Net) -> None:
    with BuiltinServer(net, lease_time=5, t1=2, t2=3) as server, Command(net) as command:
        bound = command.wait_for("bound", 20)
        assert_configured(net, bound["address"])
        server.call(server.core.stop)  # silent from now on: renewing, rebinding, expiry
        lost = command.wait_for("lost", 10)
        assert lost["reason"] == "expired"
        assert 4 <= lost["_at"] - bound["_at"] <= 6.5
        assert net.addresses() == []
        assert [r for r in net.routes() if r.get("protocol") == "dhcp"] == []
        server.call(server.core.start)
        again = command.wait_for("bound", 15)  # rediscovered
        assert_configured(net, again["address"])
        assert command.signal(signal.SIGTERM) == 0


def test_builtin_server_rebinding_at_t2(net: Net) -> None:
    from dhcp4c.testing.server import Exchange

    with BuiltinServer(net, lease_time=30, t1=2, t2=4) as server, Command(net) as command:
        bound = command.wait_for("bound", 20)
        server.call(lambda: server.core.silent.add(Exchange.RENEWING))
        renewed = command.wait_for("renewed", 10)
        assert renewed["address"] == bound["address"]
        assert 3.5 <= renewed["_at"] - bound["_at"] <= 6, "not renewed by rebinding at T2"
        stats = server.call(lambda: dict(server.core.stats.exchanges))
        assert stats[Exchange.REBINDING] >= 1, stats
        assert_configured(net, renewed["address"])
        assert command.signal(signal.SIGTERM) == 0


def test_builtin_server_nak_rediscovers(net: Net) -> None:
    with BuiltinServer(net, lease_time=30, t1=2, t2=20) as server, Command(net) as command:
        command.wait_for("bound", 20)

        def nak(value: bool) -> None:
            server.core.force_nak = value

        server.call(lambda: nak(True))
        lost = command.wait_for("lost", 10)
        assert lost["reason"] == "nak"
        server.call(lambda: nak(False))
        again = command.wait_for("bound", 15)
        assert_configured(net, again["address"])
        assert command.signal(signal.SIGTERM) == 0


def test_hostile_names_never_reach_resolv_conf(net: Net) -> None:
    # CVE-2018-1111 / CVE-2011-0997: option 15 with a newline or a `;` must not add lines to a
    # resolv.conf (nor run anything); the JSON output stays one object per line.
    resolv = net.tmp / "resolv.conf"
    evil = "evil.example\nnameserver 6.6.6.6; touch /tmp/pwned"
    with BuiltinServer(net, lease_time=60, domain_name=evil, search=("good.example",)):
        result = run_command(
            net, "--once", "--json", "--resolv-conf", str(resolv), "--timeout", "20", CLIENT_IF
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    json.loads(lines[0])
    text = resolv.read_text()
    assert "6.6.6.6" not in text and "evil" not in text and "pwned" not in text
    assert f"nameserver {SERVER.ip}" in text
    assert "good.example" in text
    assert not Path("/tmp/pwned").exists()


def test_two_interfaces_under_one_process(net: Net, needs_dnsmasq: None) -> None:
    second_client, _second_server = net.topo.veth(
        net.client,
        net.server,
        name_a="e2e1",
        name_b="e2e1s",
        address_b=IPv4Interface("10.78.0.1/24"),
    )
    _wait_carrier(net.client, "e2e1")
    extra = (
        "--interface=e2e1s",
        "--dhcp-range=set:second,10.78.0.100,10.78.0.199,255.255.255.0,120",
        "--dhcp-option=tag:second,option:router,10.78.0.1",
    )
    with dnsmasq(net, extra_args=extra):
        result = run_command(net, "--once", "--json", "--timeout", "20", CLIENT_IF, "e2e1")
        assert result.returncode == 0, result.stderr
        events = {e["interface"]: e for e in map(json.loads, result.stdout.splitlines())}
        assert set(events) == {CLIENT_IF, "e2e1"}
        assert IPv4Interface(events["e2e1"]["address"]) in IPv4Network("10.78.0.0/24")
        assert_configured(net, events[CLIENT_IF]["address"])
        routes = json.loads(net.client.ip("-j", "-4", "route", "show", "proto", "dhcp"))
        metrics = {r["dev"]: r.get("metric") for r in routes if r["dst"] == "default"}
        # Both default routes, each with its own metric (1000 + ifindex): neither replaced.
        assert set(metrics) == {CLIENT_IF, "e2e1"}, (routes, result.stderr)
        assert len(set(metrics.values())) == 2
    assert second_client.name == "e2e1"


def test_link_changes_under_the_command(net: Net, needs_dnsmasq: None) -> None:
    # Carrier down and up: the lease is verified by INIT-REBOOT, not lost. An interface that
    # disappears ends its client (its lease dropped) while the other interface's client goes on.
    net.topo.veth(
        net.client,
        net.server,
        name_a="e2e1",
        name_b="e2e1s",
        address_b=IPv4Interface("10.78.0.1/24"),
    )
    _wait_carrier(net.client, "e2e1")
    extra = (
        "--interface=e2e1s",
        "--dhcp-range=set:second,10.78.0.100,10.78.0.199,255.255.255.0,120",
        "--dhcp-option=tag:second,option:router,10.78.0.1",
    )
    with dnsmasq(net, extra_args=extra, t1=30, t2=60), Command(net, "-v", "e2e1") as command:
        bound = {command.wait_for("bound", 20)["interface"] for _ in range(2)}
        assert bound == {CLIENT_IF, "e2e1"}
        net.server.ip("link", "set", "dev", SERVER_IF, "down")  # the client's carrier drops
        # The kernel reports carrier changes with up to a second of delay (and folds a short
        # down-up into nothing): wait until the client has seen it before restoring it.
        deadline = time.monotonic() + 5
        while "e2e0: carrier down" not in command.log():
            assert time.monotonic() < deadline, command.log()
            time.sleep(0.05)
        net.server.ip("link", "set", "dev", SERVER_IF, "up")
        verified = command.next_event(10)
        assert (verified["event"], verified["interface"]) == ("renewed", CLIENT_IF), command.log()
        net.client.ip("link", "del", "dev", "e2e1")
        gone = command.next_event(10)
        assert (gone["event"], gone["interface"]) == ("lost", "e2e1")
        assert gone["reason"] == "interface-gone"
        assert command.process.poll() is None, "the command must go on with the other interface"
        assert_configured(net, verified["address"])
        assert command.signal(signal.SIGTERM) == 0
        assert "Traceback" not in command.log()


def test_started_without_a_carrier_binds_once_it_comes(net: Net, needs_dnsmasq: None) -> None:
    # The client starts before the link watch exists, with the carrier an ioctl reports; the
    # watch's first snapshot confirms the dead link, and its carrier-up starts the exchange.
    net.server.ip("link", "set", "dev", SERVER_IF, "down")
    deadline = time.monotonic() + 5
    while "LOWER_UP" in net.client.ip("-o", "link", "show", "dev", CLIENT_IF):
        assert time.monotonic() < deadline, "the carrier did not drop"
        time.sleep(0.05)
    with dnsmasq(net) as server, Command(net, "-v") as command:
        deadline = time.monotonic() + 10
        while "e2e0: carrier down" not in command.log():
            assert time.monotonic() < deadline, command.log()
            time.sleep(0.05)
        assert "DHCPDISCOVER" not in server.log_text()
        net.server.ip("link", "set", "dev", SERVER_IF, "up")
        bound = command.next_event(20)
        assert bound["event"] == "bound", command.log()
        assert_configured(net, bound["address"])
        assert command.signal(signal.SIGTERM) == 0


def test_a_new_mac_starts_over_and_its_lease_file_follows(net: Net, needs_dnsmasq: None) -> None:
    lease_dir = net.tmp / "leases"
    new_mac = "02:00:00:00:4e:77"
    with dnsmasq(net) as server:
        with Command(net, "--lease-dir", str(lease_dir)) as command:
            command.wait_for("bound", 20)
            net.client.ip("link", "set", "dev", CLIENT_IF, "address", new_mac)
            lost = command.next_event(10)
            assert (lost["event"], lost["reason"]) == ("lost", "hwaddr-changed"), command.log()
            again = command.next_event(20)
            assert again["event"] == "bound", command.log()
            saved = json.loads((lease_dir / f"{CLIENT_IF}.lease").read_text())
            assert saved["hardware_address"] == new_mac  # the lease belongs to the new MAC
            assert command.signal(signal.SIGTERM) == 0
        # A restart with the new MAC trusts the file: INIT-REBOOT, no discovery.
        log_offset = len(server.log_text())
        with Command(net, "--lease-dir", str(lease_dir)) as second:
            event = second.next_event(20)
            assert (event["event"], event["address"]) == ("bound", again["address"]), second.log()
            assert "trying" in second.log()
            assert second.signal(signal.SIGTERM) == 0
        log = server.log_text()[log_offset:]
        assert "DHCPREQUEST" in log and "DHCPDISCOVER" not in log


# --- error paths ------------------------------------------------------------------------------


def test_missing_interface(net: Net) -> None:
    result = run_command(net, "--once", "nosuch0")
    assert result.returncode == 4
    assert result.stderr.strip() == "dhcp4c: error: no interface named 'nosuch0'"


def test_loopback_is_refused(net: Net) -> None:
    result = run_command(net, "--once", "lo")
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not an Ethernet interface" in result.stderr


def test_bad_option_value(net: Net) -> None:
    result = run_command(net, "--request-option", "300", CLIENT_IF)
    assert result.returncode == 2
    assert "300 is not in 1..254" in result.stderr
    assert "Traceback" not in result.stderr


NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")


def test_missing_privileges(net: Net) -> None:
    result = subprocess.run(
        net.client.command([*NOBODY, sys.executable, "-m", "dhcp4c", "--once", CLIENT_IF]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert result.stderr.strip().splitlines() == [
        "dhcp4c: error: missing privileges "
        "(CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW): run as root"
    ]


def test_ipv6_only_preferred_takes_no_address(net: Net, needs_dnsmasq: None) -> None:
    # RFC 8925: dnsmasq offers option 108 to a client that asks for it; the client requests
    # nothing, configures nothing and tells its observers how long it stays quiet.
    with (
        dnsmasq(net, rapid_commit=False, extra_args=("--dhcp-option=108,1800",)) as server,
        Command(net, "--ipv6-only-preferred") as command,
    ):
        event = command.wait_for("ipv6-only", 20)
        assert event["interface"] == CLIENT_IF and event["wait"] == 1800
        assert "address" not in event
        assert command.kinds() == ["ipv6-only"]
        assert net.addresses() == []
        assert not [r for r in net.routes() if r["dst"] == "default"]
        log = server.log_text()
        assert "DHCPOFFER" in log and "DHCPREQUEST" not in log and "DHCPACK" not in log
        assert server.leases() == []
        assert command.signal(signal.SIGTERM) == 0
    assert command.kinds() == ["ipv6-only"]


def test_ipv6_only_preferred_is_ignored_unless_asked_for(net: Net, needs_dnsmasq: None) -> None:
    with (
        dnsmasq(net, rapid_commit=False, extra_args=("--dhcp-option=108,1800",)),
        Command(net) as command,
    ):
        bound = command.wait_for("bound", 20)
        assert_configured(net, bound["address"])
        assert command.signal(signal.SIGTERM) == 0
