"""Kernel configuration from leases, against a real kernel inside throw-away network namespaces.

Each real-kernel test gets a namespace holding a veth pair (`dhcp0` is the client's interface) and
a netlink monitor socket subscribed to IPv4 address and route events, so "no flap" is checked on
the kernel's own notifications: a renewal must produce RTM_NEWADDR/RTM_NEWROUTE, never a DEL.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import trio

from dhcp4c.consumers import leasefile, netconfig
from dhcp4c.consumers.netconfig import RTPROT_DHCP, NetconfigError
from dhcp4c.protocol.lease import Lease, Route
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.protocol.options import OptionCode
from dhcp4c.testing.netns import Namespace, Topology, require_netns

IFNAME = "dhcp0"
HWADDR = bytes.fromhex("020000000001")
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x10, 0x40
NETLINK_ROUTE = 0


def make_lease(
    obtained: float,
    *,
    address: str = "192.0.2.10",
    lease_time: int = 3600,
    routers: tuple[str, ...] = ("192.0.2.1",),
    classless: bytes | None = None,
    mtu: int | None = None,
    domain: bytes | None = None,
) -> Lease:
    options: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: b"\x05",
        OptionCode.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        OptionCode.DOMAIN_NAME_SERVER: IPv4Address("192.0.2.53").packed,
        OptionCode.IP_ADDRESS_LEASE_TIME: lease_time.to_bytes(4, "big"),
        OptionCode.SERVER_IDENTIFIER: IPv4Address("192.0.2.1").packed,
    }
    if routers:
        options[OptionCode.ROUTER] = b"".join(IPv4Address(r).packed for r in routers)
    if classless is not None:
        options[OptionCode.CLASSLESS_STATIC_ROUTE] = classless
    if mtu is not None:
        options[OptionCode.INTERFACE_MTU] = mtu.to_bytes(2, "big")
    if domain is not None:
        options[OptionCode.DOMAIN_NAME] = domain
    ack = Message(op=BOOTREPLY, xid=1, yiaddr=IPv4Address(address), options=options)
    return Lease.from_ack(ack, obtained, random.Random(0))


# RFC 3442: 10.1.0.0/16 via 192.0.2.254, 198.51.100.0/24 on-link, default via 192.0.2.1.
CLASSLESS = bytes([16, 10, 1, 192, 0, 2, 254, 24, 198, 51, 100, 0, 0, 0, 0, 0, 192, 0, 2, 1])


# -- pure parts ---------------------------------------------------------------------------------


@dataclass
class Recorder:
    calls: list[tuple[str, Lease | None, Lease | None]] = field(default_factory=list)

    def callback(self, name: str) -> netconfig.LeaseCallback:
        async def record(old: Lease | None, new: Lease | None) -> None:
            self.calls.append((name, old, new))

        return record


async def test_compose_runs_in_order() -> None:
    recorder = Recorder()
    composed = netconfig.compose(recorder.callback("a"), recorder.callback("b"))
    lease = make_lease(0.0)
    await composed(None, lease)
    await composed(lease, None)
    assert recorder.calls == [
        ("a", None, lease),
        ("b", None, lease),
        ("a", lease, None),
        ("b", lease, None),
    ]


async def test_compose_stops_at_the_first_error() -> None:
    recorder = Recorder()

    async def fail(old: Lease | None, new: Lease | None) -> None:
        raise NetconfigError("boom")

    composed = netconfig.compose(recorder.callback("a"), fail, recorder.callback("b"))
    with pytest.raises(NetconfigError):
        await composed(None, make_lease(0.0))
    assert [name for name, _, _ in recorder.calls] == ["a"]


async def test_configure_tears_down_in_reverse() -> None:
    # `configure` composes its steps with `_reversing`: address, MTU, routes, resolv.conf and
    # extras in that order for a new lease, the reverse order for a lost one.
    recorder = Recorder()
    lease = make_lease(0.0)
    steps = [recorder.callback("x"), recorder.callback("y")]
    composed = netconfig._reversing(recorder.callback("address"), *steps)
    await composed(None, lease)
    await composed(lease, lease)
    await composed(lease, None)
    assert [name for name, _, _ in recorder.calls] == [
        "address",
        "x",
        "y",
        "address",
        "x",
        "y",
        "y",
        "x",
        "address",
    ]


def test_only_the_kernel_side_imports_pyroute2() -> None:
    # pyroute2 is a large import: the package, the codec, the machine, the client and the
    # command's module do without it; the kernel side (`dhcp4c.linux.rtnl`, imported by netconfig
    # and
    # linkwatch) loads it, and nothing else happens on import (no thread), so a caller may import
    # it in a worker thread while the first exchange runs.
    code = (
        "import sys, threading;"
        "import dhcp4c, dhcp4c.protocol.message, dhcp4c.protocol.machine;"
        "import dhcp4c.shell.client, dhcp4c.cli;"
        "before = 'pyroute2' in sys.modules;"
        "import dhcp4c.linux.rtnl;"
        "print(before, 'pyroute2' in sys.modules, threading.active_count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "True", "1"]


async def test_refused_mtu_does_not_touch_the_kernel(caplog: pytest.LogCaptureFixture) -> None:
    # No such interface, and yet no error: a refused MTU never reaches netlink.
    callback = netconfig.mtu_callback("no-such-if0")
    with caplog.at_level(logging.WARNING):
        await callback(None, make_lease(0.0, mtu=575))
        await callback(make_lease(0.0, mtu=575), None)
    assert "refusing MTU 575" in caplog.text


async def test_resolv_conf_callback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "resolv.conf"
    callback = netconfig.resolv_conf_callback(path, ifname=IFNAME)
    good = make_lease(0.0, domain=b"example.com")
    await callback(None, good)
    assert path.read_text() == (
        "# Generated by dhcp4c for dhcp0; changes will be overwritten.\n"
        "nameserver 192.0.2.53\n"
        "search example.com\n"
    )
    evil = make_lease(0.0, domain=b"example.com\nnameserver 203.0.113.66")
    with caplog.at_level(logging.WARNING):
        await callback(good, evil)
    assert "203.0.113.66" not in path.read_text()
    assert "search domain" in caplog.text
    await callback(evil, None)
    assert not path.exists()
    await callback(None, None)  # nothing to remove: fine


async def test_resolv_conf_callback_logs_write_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    callback = netconfig.resolv_conf_callback(tmp_path / "missing" / "resolv.conf")
    with caplog.at_level(logging.WARNING):
        await callback(None, make_lease(0.0))
    assert "cannot update" in caplog.text


async def test_lease_file_callback(tmp_path: Path) -> None:
    path = leasefile.lease_path(tmp_path, IFNAME)
    callback = netconfig.lease_file_callback(path, ifname=IFNAME, hwaddr=HWADDR)
    now = trio.current_time()
    lease = make_lease(now)
    await callback(None, lease)
    loaded = leasefile.load(path, IFNAME, HWADDR, trio.current_time())
    assert loaded is not None
    assert loaded.address == lease.address
    assert abs(loaded.expiry - lease.expiry) < 1.0  # two real clocks were read
    await callback(lease, None)
    assert not path.exists()


async def test_lease_file_follows_a_new_hardware_address(tmp_path: Path) -> None:
    # After a MAC change (linkwatch) the lease belongs to the new address and client id.
    path = leasefile.lease_path(tmp_path, IFNAME)
    current = [(HWADDR, b"\x01old")]
    callback = netconfig.lease_file_callback(
        path, ifname=IFNAME, hwaddr=HWADDR, client_id=b"\x01old", owner=lambda: current[0]
    )
    await callback(None, make_lease(trio.current_time()))
    assert leasefile.load(path, IFNAME, HWADDR, trio.current_time(), client_id=b"\x01old")
    new_mac = bytes.fromhex("020000000077")
    current[0] = (new_mac, b"\x01new")
    await callback(None, make_lease(trio.current_time()))
    assert leasefile.load(path, IFNAME, new_mac, trio.current_time(), client_id=b"\x01new")
    assert not leasefile.load(path, IFNAME, HWADDR, trio.current_time(), client_id=b"\x01old")


# -- real kernel --------------------------------------------------------------------------------


class Monitor:
    """A netlink socket in the namespace, subscribed to IPv4 address and route events."""

    def __init__(self, namespace: Namespace) -> None:
        with namespace.entered():
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))

    def events(self) -> list[int]:
        """The message types received since the last call (the kernel queues them at once)."""
        types: list[int] = []
        while True:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return types
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                types.append(kind)
                offset += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


@dataclass
class Net:
    namespace: Namespace
    monitor: Monitor

    @property
    def netns(self) -> str:
        return self.namespace.name

    def addresses(self) -> dict[str, dict[str, Any]]:
        info = json.loads(self.namespace.ip("-j", "-4", "addr", "show", "dev", IFNAME))
        # Without IPv4 addresses `ip -4` prints an empty object (or nothing) for the link.
        found = [a for link in info for a in link.get("addr_info", [])]
        return {f"{a['local']}/{a['prefixlen']}": a for a in found}

    def routes(self) -> list[dict[str, Any]]:
        routes = json.loads(self.namespace.ip("-j", "-4", "route", "show", "table", "main"))
        assert isinstance(routes, list)
        return routes

    def dhcp_routes(self) -> dict[str, dict[str, Any]]:
        return {route["dst"]: route for route in self.routes() if route.get("protocol") == "dhcp"}

    def mtu(self) -> int:
        return int(json.loads(self.namespace.ip("-j", "link", "show", "dev", IFNAME))[0]["mtu"])

    def index(self) -> int:
        return int(json.loads(self.namespace.ip("-j", "link", "show", "dev", IFNAME))[0]["ifindex"])


@pytest.fixture
def net() -> Iterator[Net]:
    require_netns()
    with Topology("netconfig") as topology:
        namespace = topology.namespace("client")
        topology.veth(namespace, namespace, name_a=IFNAME, name_b="peer0")
        monitor = Monitor(namespace)
        try:
            yield Net(namespace, monitor)
        finally:
            monitor.close()


async def test_bound_adds_the_address_with_the_lease_lifetime(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    lease = make_lease(trio.current_time() - 600)  # 3000 s of the lease left
    await configure(None, lease)
    address = net.addresses()["192.0.2.10/24"]
    assert 2998 <= address["valid_life_time"] <= 3000
    assert address["preferred_life_time"] == address["valid_life_time"]
    assert address["dynamic"] is True  # not permanent: the kernel drops it at expiry
    assert address["broadcast"] == "192.0.2.255"
    assert RTM_DELADDR not in net.monitor.events()


async def test_routes_are_added_with_protocol_dhcp(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    await configure(None, make_lease(trio.current_time(), classless=CLASSLESS))
    routes = net.dhcp_routes()
    metric = 1000 + net.index()
    assert routes == {
        "10.1.0.0/16": {
            "dst": "10.1.0.0/16",
            "gateway": "192.0.2.254",
            "dev": IFNAME,
            "protocol": "dhcp",
            "prefsrc": "192.0.2.10",
            "metric": metric,
            "flags": [],
        },
        "198.51.100.0/24": {
            "dst": "198.51.100.0/24",
            "dev": IFNAME,
            "protocol": "dhcp",
            "scope": "link",
            "prefsrc": "192.0.2.10",
            "metric": metric,
            "flags": [],
        },
        "default": {
            "dst": "default",
            "gateway": "192.0.2.1",
            "dev": IFNAME,
            "protocol": "dhcp",
            "prefsrc": "192.0.2.10",
            "metric": metric,
            "flags": [],
        },
    }
    assert RTPROT_DHCP == 16


async def test_default_route_from_routers_without_option_121(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns, route_metric=50)
    await configure(None, make_lease(trio.current_time(), routers=("192.0.2.1", "192.0.2.2")))
    routes = net.dhcp_routes()
    assert list(routes) == ["default"]
    assert routes["default"]["gateway"] == "192.0.2.1"
    assert routes["default"]["metric"] == 50


async def test_renewal_replaces_without_a_flap(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    now = trio.current_time()
    first = make_lease(now - 3000, classless=CLASSLESS)  # 600 s left
    await configure(None, first)
    assert net.addresses()["192.0.2.10/24"]["valid_life_time"] <= 600
    net.monitor.events()
    routes_before = net.dhcp_routes()

    renewed = make_lease(now, classless=CLASSLESS)  # 3600 s left
    assert renewed.same_configuration(first)
    await configure(first, renewed)
    events = net.monitor.events()
    assert RTM_NEWADDR in events  # the lifetimes were updated in place ...
    assert RTM_DELADDR not in events  # ... never deleted and re-added
    assert RTM_DELROUTE not in events
    assert net.addresses()["192.0.2.10/24"]["valid_life_time"] >= 3598
    assert net.dhcp_routes() == routes_before


async def test_loss_removes_address_and_routes(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    lease = make_lease(trio.current_time(), classless=CLASSLESS)
    await configure(None, lease)
    await configure(lease, None)
    assert net.addresses() == {}
    assert net.routes() == []
    await configure(lease, None)  # losing it twice is harmless


async def test_change_moves_address_and_routes(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    now = trio.current_time()
    old = make_lease(now, classless=CLASSLESS)
    await configure(None, old)
    # 10.1.0.0/16 now goes via another gateway, 198.51.100.0/24 is gone.
    new_routes = bytes([16, 10, 1, 192, 0, 2, 253, 0, 192, 0, 2, 1])
    new = make_lease(now, address="192.0.2.20", classless=new_routes)
    await configure(old, new)
    assert list(net.addresses()) == ["192.0.2.20/24"]
    routes = net.dhcp_routes()
    assert sorted(routes) == ["10.1.0.0/16", "default"]
    assert routes["10.1.0.0/16"]["gateway"] == "192.0.2.253"
    assert {route["prefsrc"] for route in routes.values()} == {"192.0.2.20"}


async def test_permanent_addresses_are_never_touched(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    net.namespace.ip("addr", "add", "192.0.2.10/24", "dev", IFNAME)  # the admin's, same address
    net.namespace.ip("addr", "add", "203.0.113.5/24", "dev", IFNAME)  # the admin's, another one
    configure = netconfig.configure(IFNAME, netns=net.netns)
    lease = make_lease(trio.current_time())
    with caplog.at_level(logging.WARNING):
        await configure(None, lease)
        await configure(lease, make_lease(trio.current_time()))
        await configure(lease, None)
    addresses = net.addresses()
    assert sorted(addresses) == ["192.0.2.10/24", "203.0.113.5/24"]
    for address in addresses.values():
        assert address["valid_life_time"] == 0xFFFFFFFF
        assert "dynamic" not in address
    assert "leaving the permanent address 192.0.2.10/24 alone" in caplog.text


async def test_mtu_is_applied_and_restored(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns)
    now = trio.current_time()
    lease = make_lease(now, mtu=1400)
    await configure(None, lease)
    assert net.mtu() == 1400
    with caplog.at_level(logging.WARNING):
        hostile = make_lease(now, mtu=300)
        await configure(lease, hostile)
    assert "refusing MTU 300" in caplog.text
    assert net.mtu() == 1500  # a refused MTU counts as none: back to the original
    await configure(hostile, lease)
    assert net.mtu() == 1400
    await configure(lease, None)
    assert net.mtu() == 1500


async def test_mtu_can_be_left_alone(net: Net) -> None:
    configure = netconfig.configure(IFNAME, netns=net.netns, mtu=False, routes=False)
    await configure(None, make_lease(trio.current_time(), mtu=1400))
    assert net.mtu() == 1500
    assert net.dhcp_routes() == {}


async def test_restart_after_sigkill_continues_without_a_flap(net: Net, tmp_path: Path) -> None:
    # Process 1 binds and saves the lease, then dies without cleaning up.
    path = leasefile.lease_path(tmp_path, IFNAME)
    first = netconfig.configure(
        IFNAME,
        netns=net.netns,
        extra=[netconfig.lease_file_callback(path, ifname=IFNAME, hwaddr=HWADDR)],
    )
    lease = make_lease(trio.current_time(), classless=CLASSLESS)
    await first(None, lease)
    net.monitor.events()
    # Process 2 reads the file, gets the lease confirmed (INIT-REBOOT) and binds it afresh.
    loaded = leasefile.load(path, IFNAME, HWADDR, trio.current_time())
    assert loaded is not None
    second = netconfig.configure(IFNAME, netns=net.namespace.path)  # a path works as well
    await second(None, replace(loaded, expiry=loaded.expiry + 60))
    events = net.monitor.events()
    assert RTM_DELADDR not in events
    assert RTM_DELROUTE not in events
    assert list(net.addresses()) == ["192.0.2.10/24"]
    assert len(net.dhcp_routes()) == 3


async def test_the_kernel_drops_the_address_at_expiry(net: Net) -> None:
    # The lifetimes are the guarantee when we are dead: nobody calls the callback here.
    configure = netconfig.configure(IFNAME, netns=net.netns)
    lease = make_lease(trio.current_time() - 3598)  # 2 s left
    await configure(None, lease)
    assert net.addresses()["192.0.2.10/24"]["valid_life_time"] <= 2
    net.monitor.events()
    with trio.fail_after(10):
        while RTM_DELADDR not in net.monitor.events():
            await trio.sleep(0.05)
    assert net.addresses() == {}
    assert net.dhcp_routes() == {}  # they had the address as source and left with it
    assert trio.current_time() >= lease.expiry - 1


async def test_an_expired_lease_is_not_added(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    configure = netconfig.address_callback(IFNAME, netns=net.netns)
    with caplog.at_level(logging.WARNING):
        await configure(None, make_lease(trio.current_time() - 3600))
    assert net.addresses() == {}
    assert "already expired" in caplog.text


async def test_missing_interface(net: Net) -> None:
    configure = netconfig.configure("nosuch0", netns=net.netns)
    lease = make_lease(trio.current_time())
    with pytest.raises(NetconfigError, match="nosuch0"):
        await configure(None, lease)
    await configure(lease, None)  # nothing to remove: fine


async def test_a_failing_route_is_logged_and_the_rest_applied(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    # Lease.routes is sanitised; a hand-made unreachable gateway stands for a kernel refusal.
    lease = make_lease(trio.current_time())
    unreachable = Route(IPv4Network("10.5.0.0/16"), IPv4Address("203.0.113.1"))
    lease = replace(lease, routes=(unreachable, *lease.routes))
    configure = netconfig.configure(IFNAME, netns=net.netns)
    with caplog.at_level(logging.WARNING):
        await configure(None, lease)
    assert "cannot add route 10.5.0.0/16 via 203.0.113.1" in caplog.text
    assert list(net.dhcp_routes()) == ["default"]
    await configure(lease, None)
    assert net.routes() == []


async def test_missing_namespace() -> None:
    configure = netconfig.configure(IFNAME, netns="dhcp4c-no-such-namespace")
    with pytest.raises(NetconfigError, match="No such file"):
        await configure(None, make_lease(trio.current_time()))
