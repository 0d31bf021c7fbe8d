"""Relays, moved networks and several servers: the `dhcp4c` command against real servers.

Each test builds its own namespaces (removed afterwards, whatever happens) and drives the command
as an operator would (`python -m dhcp4c --json ...` inside the client namespace). What it claims
(its JSON events) is checked against what the kernel holds (`ip -j addr`) and what went over the
wire, read with a packet capture (`dhcp4c.testing.capture`) on the server's or client's side.

- Relay: client -- router -- server, three namespaces and two veth pairs; the router forwards
  and runs ISC dhcrelay; the server (dnsmasq, or the in-process server) sits on its own subnet
  with a route back to the client's. Renewals must go straight to the server from the leased
  address; after T2 the broadcast goes through the relay.
- Moved network: the client's link is moved behind another server on another subnet between two
  runs sharing a lease directory.
- Two servers on one link: a bridge in a namespace of its own joins the client and two servers.

The twins on the mock clock, with exact times, are in `test_networks_mock.py`. These need root
and the servers' binaries; CI runs them as root and installs dnsmasq and isc-dhcp-relay, so
nothing here is skipped there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import signal
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

from dhcp4c.protocol.message import MessageType
from dhcp4c.testing import relay as relay_module
from dhcp4c.testing.capture import Capture, CapturedPacket
from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig
from dhcp4c.testing.dnsmasq import which as dnsmasq_binary
from dhcp4c.testing.netns import Namespace, Topology, require_netns
from dhcp4c.testing.relay import Relay, enable_forwarding

pytestmark = pytest.mark.netns

ZERO = IPv4Address(0)
CLIENT_IF = "net0"
SERVERS = ["dnsmasq", "builtin"]
DISCOVER, OFFER, REQUEST, ACK, NAK = (
    MessageType.DISCOVER,
    MessageType.OFFER,
    MessageType.REQUEST,
    MessageType.ACK,
    MessageType.NAK,
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need(binary: str | None, package: str) -> None:
    if binary is None:
        if _in_ci():
            pytest.fail(f"{package} is not installed (CI must install it)")
        pytest.skip(f"{package} is not installed")


@pytest.fixture
def topo() -> Iterator[Topology]:
    require_netns()
    with Topology("dhcp4cnet") as topology:
        yield topology


def _wait_carrier(namespace: Namespace, ifname: str) -> None:
    deadline = time.monotonic() + 5
    while "LOWER_UP" not in namespace.ip("-o", "link", "show", "dev", ifname):
        assert time.monotonic() < deadline, f"{ifname} has no carrier"
        time.sleep(0.01)


def addresses(namespace: Namespace) -> list[str]:
    """The IPv4 addresses on the client interface, as `address/prefix`."""
    info = json.loads(namespace.ip("-j", "-4", "addr", "show", "dev", CLIENT_IF))
    entries = info[0].get("addr_info", []) if info else []
    return [f"{a['local']}/{a['prefixlen']}" for a in entries if a.get("family") == "inet"]


# --- servers -----------------------------------------------------------------------------------


class BuiltinServer:
    """The in-process server (`dhcp4c.testing.server`) on a real socket, its own Trio loop."""

    def __init__(self, namespace: Namespace, ifname: str, **settings: Any) -> None:
        from dhcp4c.testing.server import ServerConfig, ServerCore

        self.core = ServerCore(ServerConfig(**settings))
        self.namespace = namespace
        self.ifname = ifname
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
                            self.core,
                            self.ifname,
                            namespace=self.namespace,
                            task_status=task_status,
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


@contextlib.contextmanager
def server(
    kind: str,
    namespace: Namespace,
    ifname: str,
    *,
    server_id: IPv4Address,
    network: IPv4Network,
    pool: tuple[IPv4Address, IPv4Address],
    router: IPv4Address,
    workdir: Path,
    lease_time: int,
    t1: int | None = None,
    t2: int | None = None,
    rapid_commit: bool = True,
    authoritative: bool = True,
) -> Iterator[Dnsmasq | BuiltinServer]:
    """dnsmasq or the in-process server serving `pool` of `network`."""
    if kind == "dnsmasq":
        _need(dnsmasq_binary(), "dnsmasq")
        config = DnsmasqConfig(
            interface=ifname,
            network=network,
            pool=pool,
            router=router,
            lease_time=lease_time,
            t1=t1,
            t2=t2,
            rapid_commit=rapid_commit,
            authoritative=authoritative,
        )
        with Dnsmasq(namespace, config, workdir=workdir) as dnsmasq:
            yield dnsmasq
    else:
        with BuiltinServer(
            namespace,
            ifname,
            server_id=server_id,
            network=network,
            pool_start=pool[0],
            pool_end=pool[1],
            routers=(router,),
            dns_servers=(),
            lease_time=lease_time,
            t1=t1,
            t2=t2,
            rapid_commit=rapid_commit,
            authoritative=authoritative,
        ) as builtin:
            yield builtin


def server_log(handle: Dnsmasq | BuiltinServer) -> str:
    if isinstance(handle, Dnsmasq):
        return handle.log_text()
    return repr(handle.call(lambda: handle.core.stats))


# --- the command -------------------------------------------------------------------------------


class Command:
    """`dhcp4c --json ARGS net0` running inside the client namespace."""

    def __init__(self, namespace: Namespace, *args: str) -> None:
        argv = [sys.executable, "-m", "dhcp4c", "--json", *args, CLIENT_IF]
        self.process = subprocess.Popen(
            namespace.command(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
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
                event["_at"] = time.monotonic()
                self.events.put(event)

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next event of `kind` (others stay in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                kinds = [e["event"] for e in self.seen]
                log = "\n".join(self.stderr)
                raise AssertionError(
                    f"no {kind} within {timeout} s; seen {kinds}; log:\n{log}"
                ) from None
            self.seen.append(event)
            if event["event"] == kind:
                return event

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(10)
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

    def __enter__(self) -> Command:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a server behind a relay -------------------------------------------------------------------

CLIENT_NET = IPv4Network("10.61.1.0/24")
ROUTER_DOWN = IPv4Interface("10.61.1.1/24")  # the relay's giaddr and the clients' router
ROUTER_UP = IPv4Interface("10.61.2.1/24")
FAR = IPv4Interface("10.61.2.2/24")
RELAY_POOL = (IPv4Address("10.61.1.100"), IPv4Address("10.61.1.199"))


@dataclass
class Routed:
    client: Namespace
    router: Namespace
    server: Namespace
    server_if: str


def routed(topo: Topology) -> Routed:
    """client (net0) -- (r0c) router (r0s) -- (s0) server, forwarding on, a route back."""
    client, router, far = topo.namespace("client"), topo.namespace("router"), topo.namespace("far")
    topo.veth(client, router, name_a=CLIENT_IF, name_b="r0c", address_b=ROUTER_DOWN)
    topo.veth(router, far, name_a="r0s", name_b="s0", address_a=ROUTER_UP, address_b=FAR)
    far.ip("route", "add", str(CLIENT_NET), "via", str(ROUTER_UP.ip))
    enable_forwarding(router)
    for namespace, ifname in ((client, CLIENT_IF), (router, "r0c"), (router, "r0s"), (far, "s0")):
        _wait_carrier(namespace, ifname)
    return Routed(client, router, far, "s0")


def _mine(address: IPv4Address) -> Callable[[CapturedPacket], bool]:
    return lambda p: not p.outgoing and p.message.ciaddr == address


@pytest.mark.parametrize("kind", SERVERS)
def test_relay_renews_unicast_then_rebinds_through_the_relay(
    topo: Topology, tmp_path: Path, kind: str
) -> None:
    _need(relay_module.which(), "isc-dhcp-relay")
    net = routed(topo)
    lease_time = 120 if kind == "dnsmasq" else 30
    with (
        server(
            kind,
            net.server,
            net.server_if,
            server_id=FAR.ip,
            network=CLIENT_NET,
            pool=RELAY_POOL,
            router=ROUTER_DOWN.ip,
            workdir=tmp_path / "server",
            lease_time=lease_time,
            t1=2,
            t2=4,
        ) as handle,
        Relay(
            net.router,
            downstream="r0c",
            upstream="r0s",
            servers=(FAR.ip,),
            workdir=tmp_path / "relay",
        ) as relay,
        Capture(net.server, net.server_if) as at_server,
        Capture(net.client, CLIENT_IF) as at_client,
        Command(net.client) as command,
    ):
        bound = command.wait_for("bound", 20)
        address = IPv4Interface(bound["address"])
        assert address.ip in CLIENT_NET and bound["server_id"] == str(FAR.ip)
        assert bound["routers"] == [str(ROUTER_DOWN.ip)]
        assert str(address) in addresses(net.client)
        # The lease came through the relay: giaddr is its address on the client's link.
        first = at_server.dhcp()[0]
        assert not first.outgoing and first.message.giaddr == ROUTER_DOWN.ip, at_server.packets

        # T1: the REQUEST reaches the server straight from the leased address, not relayed.
        renewed = command.wait_for("renewed", 10)
        assert renewed["address"] == bound["address"]
        renewal = at_server.wait_for(lambda p: _mine(address.ip)(p) and p.message.giaddr == ZERO, 1)
        assert renewal.message.message_type is REQUEST
        assert (renewal.source, renewal.destination) == (address.ip, FAR.ip)
        assert renewal.ttl == 63  # forwarded by the one router on the way
        assert renewal.message.options.server_identifier is None
        # What the client sent: that one unicast, nothing broadcast. (ISC dhcrelay's packet
        # socket sees it pass through the router and relays a copy too, giaddr set: the
        # relay's doing, which the server answers to the relay.)
        (sent,) = [p for p in at_client.dhcp(REQUEST) if p.outgoing]
        assert (sent.source, sent.destination) == (address.ip, FAR.ip)
        assert sent.message.xid == renewal.message.xid and sent.message.giaddr == ZERO

        # The path to the server breaks on the client's side (its next hop for the server is
        # dead), so renewals never reach the router; the broadcast after T2 is relayed.
        broken = time.monotonic()
        net.client.ip("route", "add", f"{FAR.ip}/32", "via", "10.61.1.254", "dev", CLIENT_IF)
        rebound = command.wait_for("renewed", 15)
        assert rebound["address"] == bound["address"]
        rebind = at_server.wait_for(
            lambda p: _mine(address.ip)(p) and p.time > broken and p.message.giaddr != ZERO, 1
        )
        assert rebind.message.message_type is REQUEST
        assert rebind.message.giaddr == ROUTER_DOWN.ip and rebind.source == ROUTER_UP.ip
        assert rebind.message.options.server_identifier is None
        client_side = [p for p in at_client.dhcp(REQUEST, since=broken) if p.outgoing]
        assert client_side[-1].broadcast and client_side[-1].message.xid == rebind.message.xid
        assert str(address) in addresses(net.client)
        assert "Traceback" not in relay.log_text()
        assert command.stop() == 0, server_log(handle)


def test_relay_expiry_removes_the_address(topo: Topology, tmp_path: Path) -> None:
    # dnsmasq gives no lease under 120 s, so only the in-process server (6 s) runs this one.
    _need(relay_module.which(), "isc-dhcp-relay")
    net = routed(topo)
    relay = Relay(net.router, downstream="r0c", upstream="r0s", servers=(FAR.ip,), workdir=tmp_path)
    with (
        server(
            "builtin",
            net.server,
            net.server_if,
            server_id=FAR.ip,
            network=CLIENT_NET,
            pool=RELAY_POOL,
            router=ROUTER_DOWN.ip,
            workdir=tmp_path,
            lease_time=6,
            t1=2,
            t2=4,
        ) as handle,
        Command(net.client) as command,
    ):
        relay.start()
        try:
            bound = command.wait_for("bound", 20)
            assert str(IPv4Interface(bound["address"])) in addresses(net.client)
            assert isinstance(handle, BuiltinServer)
            handle.call(handle.core.stop)  # silent from now on: renewing, rebinding, expiry
            stopped = time.monotonic()
            lost = command.wait_for("lost", 12)
            assert lost["reason"] == "expired"
            assert lost["_at"] - stopped <= 6.5
            assert addresses(net.client) == []
            routes = json.loads(net.client.ip("-j", "-4", "route", "show", "dev", CLIENT_IF))
            assert [r for r in routes if r.get("protocol") == "dhcp"] == []
            assert command.stop() == 0
        finally:
            relay.stop()


# --- moved networks ----------------------------------------------------------------------------

NET_A = IPv4Network("10.62.1.0/24")
NET_B = IPv4Network("10.62.2.0/24")
SERVER_A = IPv4Interface("10.62.1.1/24")
SERVER_B = IPv4Interface("10.62.2.1/24")


@dataclass
class Moved:
    bound_a: dict[str, Any]
    bound_b: dict[str, Any]
    seen: list[dict[str, Any]]
    wire: list[CapturedPacket]
    addresses: list[str]


def move_network(topo: Topology, tmp_path: Path, kind: str) -> Moved:
    """Bind on A, stop (lease file kept), move the link behind B, run again."""
    client, a, b = topo.namespace("client"), topo.namespace("a"), topo.namespace("b")
    topo.veth(client, a, name_a=CLIENT_IF, name_b="m0s", address_b=SERVER_A)
    _wait_carrier(client, CLIENT_IF)
    lease_dir = tmp_path / "leases"
    pool_a = (NET_A.network_address + 100, NET_A.network_address + 199)
    with (
        server(
            kind,
            a,
            "m0s",
            server_id=SERVER_A.ip,
            network=NET_A,
            pool=pool_a,
            router=SERVER_A.ip,
            workdir=tmp_path / "a",
            lease_time=600,
        ),
        Command(client, "--lease-dir", str(lease_dir)) as first,
    ):
        bound_a = first.wait_for("bound", 20)
        assert first.stop() == 0
    assert bound_a["address"] in addresses(client)  # a stopped client keeps its lease
    # The cable moves: the client's peer goes to B's namespace, onto B's subnet.
    a.ip("link", "set", "dev", "m0s", "netns", b.name)
    b.ip("addr", "add", str(SERVER_B), "dev", "m0s")
    b.ip("link", "set", "dev", "m0s", "up")
    _wait_carrier(client, CLIENT_IF)
    pool_b = (NET_B.network_address + 100, NET_B.network_address + 199)
    with (
        server(
            kind,
            b,
            "m0s",
            server_id=SERVER_B.ip,
            network=NET_B,
            pool=pool_b,
            router=SERVER_B.ip,
            workdir=tmp_path / "b",
            lease_time=600,
        ),
        Capture(client, CLIENT_IF) as wire,
        Command(client, "--lease-dir", str(lease_dir)) as second,
    ):
        bound_b = second.wait_for("bound", 20)
        now = addresses(client)
        assert second.stop() == 0
        return Moved(bound_a, bound_b, second.seen, list(wire.packets), now)


@pytest.mark.parametrize("kind", SERVERS)
def test_moved_network_init_reboot_nak_then_bound_on_the_new_one(
    topo: Topology, tmp_path: Path, kind: str
) -> None:
    moved = move_network(topo, tmp_path, kind)
    old = IPv4Interface(moved.bound_a["address"])
    new = IPv4Interface(moved.bound_b["address"])
    assert old.ip in NET_A and new.ip in NET_B
    assert moved.bound_b["server_id"] == str(SERVER_B.ip)
    # INIT-REBOOT: the old address asked for, no ciaddr, no server id (RFC 2131 table 5).
    reboot = next(p for p in moved.wire if p.outgoing)
    assert reboot.message.message_type is REQUEST and reboot.broadcast
    assert reboot.message.options.requested_address == old.ip
    assert reboot.message.ciaddr == ZERO and reboot.message.options.server_identifier is None
    naks = [p for p in moved.wire if not p.outgoing and p.message.message_type is NAK]
    assert naks and naks[0].message.options.server_identifier == SERVER_B.ip
    # The old address is gone; only the new one is on the interface.
    assert moved.addresses == [str(new)]
    kinds = [e["event"] for e in moved.seen]
    assert "bound" in kinds and kinds[-1] == "bound"


@pytest.mark.parametrize("kind", SERVERS)
def test_moved_network_discovers_well_within_the_first_backoff(
    topo: Topology, tmp_path: Path, kind: str
) -> None:
    moved = move_network(topo, tmp_path, kind)
    nak = next(p for p in moved.wire if not p.outgoing and p.message.message_type is NAK)
    discover = next(p for p in moved.wire if p.outgoing and p.message.message_type is DISCOVER)
    # The first backoff is 1 s at least: a DISCOVER this soon did not wait it out.
    assert discover.time - nak.time < 0.5, discover.time - nak.time


# --- two servers on one link -------------------------------------------------------------------

LAN = IPv4Network("10.63.0.0/24")
LAN_1 = IPv4Interface("10.63.0.1/24")
LAN_2 = IPv4Interface("10.63.0.2/24")


@contextlib.contextmanager
def two_servers(
    topo: Topology, tmp_path: Path, kind: str, *, authoritative: bool
) -> Iterator[tuple[Namespace, Capture, dict[str, Any], Path, dict[str, Any]]]:
    """A bridge joining the client and two servers with disjoint pools of one subnet.

    Yields the client namespace, a capture on its interface, the first run's `bound` event
    (after that run stopped, its lease file kept), the lease directory and the two servers by
    their identifiers.
    """
    client, lan = topo.namespace("client"), topo.namespace("lan")
    one, two = topo.namespace("one"), topo.namespace("two")
    lan.ip("link", "add", "br0", "type", "bridge")
    lan.ip("link", "set", "dev", "br0", "up")
    topo.veth(client, lan, name_a=CLIENT_IF, name_b="p0")
    topo.veth(one, lan, name_a="e1", name_b="p1", address_a=LAN_1)
    topo.veth(two, lan, name_a="e2", name_b="p2", address_a=LAN_2)
    for port in ("p0", "p1", "p2"):
        lan.ip("link", "set", "dev", port, "master", "br0")
    for namespace, ifname in ((client, CLIENT_IF), (one, "e1"), (two, "e2")):
        _wait_carrier(namespace, ifname)
    lease_dir = tmp_path / "leases"
    common: dict[str, Any] = {
        "network": LAN,
        "lease_time": 600,
        "rapid_commit": False,
        "authoritative": authoritative,
    }
    with (
        server(
            kind,
            one,
            "e1",
            server_id=LAN_1.ip,
            pool=(IPv4Address("10.63.0.100"), IPv4Address("10.63.0.149")),
            router=LAN_1.ip,
            workdir=tmp_path / "one",
            **common,
        ) as server_1,
        server(
            kind,
            two,
            "e2",
            server_id=LAN_2.ip,
            pool=(IPv4Address("10.63.0.150"), IPv4Address("10.63.0.199")),
            router=LAN_2.ip,
            workdir=tmp_path / "two",
            **common,
        ) as server_2,
        Capture(client, CLIENT_IF) as wire,
    ):
        with Command(client, "--lease-dir", str(lease_dir), "--no-rapid-commit") as first:
            bound = first.wait_for("bound", 20)
            assert first.stop() == 0
        chosen = IPv4Address(bound["server_id"])
        address = IPv4Interface(bound["address"])
        offers = [p for p in wire.dhcp(OFFER) if not p.outgoing]
        assert chosen in {p.message.options.server_identifier for p in offers}
        (request,) = [p for p in wire.dhcp(REQUEST) if p.outgoing]
        # RFC 2131 §4.4.1: the REQUEST names the chosen server (option 54) and its offer.
        assert request.message.options.server_identifier == chosen
        assert request.message.options.requested_address == address.ip
        offered = [p for p in offers if p.message.options.server_identifier == chosen]
        assert offered[0].message.yiaddr == address.ip
        acks = [p for p in wire.dhcp(ACK) if not p.outgoing]
        assert {p.message.options.server_identifier for p in acks} == {chosen}
        yield client, wire, bound, lease_dir, {str(LAN_1.ip): server_1, str(LAN_2.ip): server_2}


def restart(client: Namespace, lease_dir: Path) -> tuple[dict[str, Any], list[str], float]:
    """Run the command again on the lease file: its `bound` event, all its events, the start."""
    started = time.monotonic()
    with Command(client, "--lease-dir", str(lease_dir), "--no-rapid-commit") as second:
        again = second.wait_for("bound", 20)
        time.sleep(0.5)  # a late NAK would show up as `lost`
        assert second.stop() == 0
        return again, [e["event"] for e in second.seen], started


@pytest.mark.parametrize("kind", SERVERS)
def test_two_servers_request_names_the_offer_and_a_restart_gets_the_same(
    topo: Topology, tmp_path: Path, kind: str
) -> None:
    # Servers as RFC 2131 §4.3.2 has them: one without a record of the client stays silent.
    with two_servers(topo, tmp_path, kind, authoritative=False) as (client, wire, bound, leases, _):
        again, kinds, restarted = restart(client, leases)
        assert (again["address"], again["server_id"]) == (bound["address"], bound["server_id"])
        assert kinds == ["bound"]
        (reboot,) = [p for p in wire.dhcp(since=restarted) if p.outgoing]
        assert reboot.message.message_type is REQUEST and reboot.broadcast
        assert reboot.message.options.requested_address == IPv4Interface(bound["address"]).ip
        assert reboot.message.options.server_identifier is None
        answers = [p for p in wire.dhcp(since=restarted) if not p.outgoing]
        assert [
            (p.message.message_type, str(p.message.options.server_identifier)) for p in answers
        ] == [(ACK, bound["server_id"])]
        assert addresses(client) == [bound["address"]]


def test_two_authoritative_dnsmasqs_a_restart_ends_with_one_lease(
    topo: Topology, tmp_path: Path
) -> None:
    # Both authoritative (each claims to be the only server): the other one NAKs the INIT-REBOOT
    # of a client it does not know, the chosen one ACKs it, and which arrives first is a race
    # (without netem here, nothing makes it deterministic). The client holds another server's
    # NAK in INIT-REBOOT for `reboot_nak_grace` and takes it only if no ACK came by then, so it
    # keeps its lease or discovers again; either way it ends with one lease whose address alone
    # is configured. The deterministic version, with the NAK first, is the in-process server's
    # below.
    with two_servers(topo, tmp_path, "dnsmasq", authoritative=True) as (
        client,
        wire,
        bound,
        leases,
        _,
    ):
        again, kinds, restarted = restart(client, leases)
        after = wire.dhcp(since=restarted)
        (reboot, *_) = [p for p in after if p.outgoing]
        first_answers = [p for p in after if not p.outgoing and p.message.xid == reboot.message.xid]
        by = {
            (p.message.message_type, str(p.message.options.server_identifier))
            for p in first_answers
        }
        other = ({str(LAN_1.ip), str(LAN_2.ip)} - {bound["server_id"]}).pop()
        assert by == {(NAK, other), (ACK, bound["server_id"])}, by
        discovered = [p for p in after if p.outgoing and p.message.message_type is DISCOVER]
        if not discovered:  # the ACK won the race
            assert (again["address"], again["server_id"]) == (bound["address"], bound["server_id"])
        assert kinds[-1] == "bound" and "bound" not in kinds[:-1]
        assert addresses(client) == [again["address"]]


def test_two_authoritative_servers_the_other_naks_first_and_the_lease_is_kept(
    topo: Topology, tmp_path: Path
) -> None:
    with two_servers(topo, tmp_path, "builtin", authoritative=True) as (
        client,
        wire,
        bound,
        leases,
        servers,
    ):
        chosen = servers[bound["server_id"]]
        # The lease's server answers 100 ms late: the other one's NAK always comes first.
        config = dataclasses.replace(chosen.core.config, reply_delay=0.1)
        chosen.call(lambda: chosen.core.reconfigure(config))
        again, kinds, restarted = restart(client, leases)
        naks = [p for p in wire.dhcp(NAK, since=restarted) if not p.outgoing]
        assert naks, "the other server did not NAK"
        assert (again["address"], again["server_id"]) == (bound["address"], bound["server_id"])
        assert wire.dhcp(DISCOVER, since=restarted) == []
        assert kinds == ["bound"]
        assert addresses(client) == [bound["address"]]
