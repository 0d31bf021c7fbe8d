"""`dhcp4c.faststart`: the command's synchronous first exchange and its hand-over to `Client`.

Real sockets in namespaces the tests create (real time, never autojump), against the in-process
server on a UDP socket; the exchange runs in a worker thread entered into the client namespace,
as the command runs it on its main thread before trio exists. Plus the machine's `verified`
start with explicit `now`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
import trio

from dhcp4c import faststart, rtnl
from dhcp4c.client import Client, _shift, default_transport
from dhcp4c.lease import Lease
from dhcp4c.machine import Machine, MachineConfig, State
from dhcp4c.message import MessageType
from dhcp4c.observe import LeaseEventKind
from dhcp4c.testing import netns
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_udp
from dhcp4c.transport import Transport

SERVER = IPv4Address("10.77.0.1")
LEASED = IPv4Interface("10.77.0.100/24")


@pytest.fixture
def link() -> Iterator[tuple[netns.Interface, netns.Interface]]:
    netns.require_netns()
    with netns.Topology("dhcp4cfast") as topo:
        client, server = topo.namespace("client"), topo.namespace("server")
        yield topo.veth(client, server, address_b=IPv4Interface(f"{SERVER}/24"))


def server_core(**changes: Any) -> ServerCore:
    values: dict[str, Any] = {
        "server_id": SERVER,
        "network": IPv4Network("10.77.0.0/24"),
        "pool_start": LEASED.ip,
        "pool_end": IPv4Address("10.77.0.110"),
        "routers": (SERVER,),
        "dns_servers": (),
        "lease_time": 60,
        "t1": 30,
        "t2": 50,
    }
    values.update(changes)
    return ServerCore(ServerConfig(**values))


def machine_config(end: netns.Interface) -> MachineConfig:
    return MachineConfig(hwaddr=end.hwaddr, interface=end.name)


def addr_info(end: netns.Interface) -> list[dict[str, Any]]:
    info = json.loads(end.namespace.ip("-j", "-4", "addr", "show", "dev", end.name))
    return [a for link in info for a in link.get("addr_info", ())]


async def fast_exchange(end: netns.Interface, budget: float, *, configure: bool) -> Lease | None:
    config = machine_config(end)
    index = end.index

    def apply(lease: Lease) -> None:
        rtnl.replace_address(lease.address, index, lease.remaining(faststart.clock()))

    def run() -> Lease | None:
        with end.namespace.entered():
            return faststart.exchange(
                end.name, config, budget=budget, apply=apply if configure else None
            )

    return await trio.to_thread.run_sync(run)


@pytest.mark.netns
@pytest.mark.parametrize("rapid_commit", [True, False])
async def test_exchange_binds_and_adds_the_address(
    link: tuple[netns.Interface, netns.Interface], rapid_commit: bool
) -> None:
    client_end, server_end = link
    core = server_core(rapid_commit=rapid_commit)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        before = time.perf_counter()
        lease = await fast_exchange(client_end, 2.0, configure=True)
        after = time.perf_counter()
        nursery.cancel_scope.cancel()
    assert lease is not None
    assert lease.address == LEASED
    # The lease's times are on perf_counter (the documented `faststart.clock`).
    assert before <= lease.obtained <= after
    assert lease.expiry == pytest.approx(lease.obtained + 60)
    (info,) = addr_info(client_end)
    assert (info["local"], info["prefixlen"]) == ("10.77.0.100", 24)
    assert 58 <= info["valid_life_time"] == info["preferred_life_time"] <= 60
    expected = {MessageType.DISCOVER: 1}
    if not rapid_commit:
        expected[MessageType.REQUEST] = 1
    assert dict(core.stats.received) == expected


@pytest.mark.netns
async def test_no_server_falls_back_within_the_budget(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, _ = link
    start = time.perf_counter()
    assert await fast_exchange(client_end, 0.3, configure=True) is None
    assert 0.3 <= time.perf_counter() - start < 1.5
    assert addr_info(client_end) == []


def test_missing_interface_falls_back() -> None:
    config = MachineConfig(hwaddr=b"\x02\x00\x00\x00\x00\x01", interface="nosuchif0")
    assert faststart.exchange("nosuchif0", config, budget=0.1) is None


@pytest.mark.netns
async def test_hand_over_keeps_the_lease_without_a_new_discover(
    link: tuple[netns.Interface, netns.Interface],
) -> None:
    client_end, server_end = link
    core = server_core(lease_time=6, t1=2, t2=4)
    calls: list[tuple[Lease | None, Lease | None]] = []

    async def callback(old: Lease | None, new: Lease | None) -> None:
        calls.append((old, new))

    def factory(interface: str, address: IPv4Address | None) -> Transport:
        with client_end.namespace.entered():
            return default_transport(interface, address)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_udp(
                core, server_end.name, namespace=server_end.namespace, task_status=task_status
            )
        )
        fast = await fast_exchange(client_end, 2.0, configure=True)
        assert fast is not None
        # The command's conversion, measured once inside trio.
        bound = _shift(fast, trio.current_time() - time.perf_counter())
        assert bound is not None
        client = Client(
            client_end.name,
            hwaddr=client_end.hwaddr,
            mtu=1500,
            bound_lease=bound,
            callback=callback,
            transport_factory=factory,
        )
        events = client.subscribe()
        nursery.start_soon(client.run)
        with trio.fail_after(10):
            assert await client.wait_bound() == bound
            first = await events.receive()
            # T1 = 2 s after the fast exchange: renewed over unicast from the leased address.
            renewed = await events.receive()
        nursery.cancel_scope.cancel()
    assert first.kind is LeaseEventKind.BOUND and first.lease == bound
    assert calls[0] == (None, bound)
    assert renewed.kind is LeaseEventKind.RENEWED
    assert renewed.lease is not None and renewed.lease.address == LEASED
    assert renewed.lease.t1 == pytest.approx(bound.t1 + 2, abs=0.5)
    assert core.stats.received[MessageType.DISCOVER] == 1  # the fast exchange's only
    assert client.stats.sent["DISCOVER"] == 0
    assert client.stats.sent["REQUEST"] >= 1


def test_client_refuses_lease_and_bound_lease() -> None:
    lease = _lease(0.0)
    with pytest.raises(ValueError, match="exclusive"):
        Client("eth0", lease=lease, bound_lease=lease)


# -- Machine(verified=True), explicit `now` -----------------------------------------------------


def _lease(now: float) -> Lease:
    from dhcp4c.options import Options

    return Lease(
        address=LEASED,
        server_id=SERVER,
        obtained=now,
        t1=now + 30,
        t2=now + 50,
        expiry=now + 60,
        routers=(SERVER,),
        dns_servers=(),
        domain=None,
        search=(),
        mtu=None,
        routes=(),
        options=Options(),
    )


def _machine(lease: Lease, **kwargs: Any) -> Machine:
    config = MachineConfig(hwaddr=b"\x02\x00\x00\x00\x00\x01", interface="eth0")
    return Machine(config, rng=random.Random(1), lease=lease, **kwargs)


def _state(machine: Machine) -> State:
    return machine.state  # read again: mypy keeps the narrowing of an earlier `is` check


def test_verified_lease_starts_bound_silently() -> None:
    lease = _lease(100.0)
    machine = _machine(lease, verified=True)
    machine.start(101.0)
    assert machine.state is State.BOUND
    assert machine.lease == lease
    assert machine.pop_actions() == []
    assert machine.next_deadline() == 130.0
    # Only the first start: a restart verifies the lease by INIT-REBOOT as usual.
    machine.stop(102.0)
    machine.start(103.0)
    assert _state(machine) is State.REBOOTING


def test_verified_lease_past_t1_renews_and_expired_is_lost() -> None:
    machine = _machine(_lease(100.0), verified=True)
    machine.start(135.0)
    assert machine.state is State.RENEWING
    machine = _machine(_lease(100.0), verified=True)
    machine.start(160.0)
    assert machine.state is State.SELECTING
    assert [type(action).__name__ for action in machine.pop_actions()] == ["LeaseLost", "Send"]


def test_unverified_lease_still_reboots() -> None:
    machine = _machine(_lease(100.0))
    machine.start(101.0)
    assert machine.state is State.REBOOTING


# -- the command ----------------------------------------------------------------------------------


@pytest.mark.netns
@pytest.mark.parametrize("fast", [True, False])
def test_command_once(link: tuple[netns.Interface, netns.Interface], fast: bool) -> None:
    """`dhcp4c --once` binds and configures with and without the fast start (in-process server
    in a separate process, so that the command owns its main thread as in production)."""
    client_end, server_end = link
    with subprocess.Popen(
        server_end.namespace.command([sys.executable, "-c", _SERVER_SCRIPT, server_end.name]),
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            assert server.stdout.readline().strip() == "ready"
            argv = [sys.executable, "-m", "dhcp4c", "--once", "--json", "-vv", "--timeout", "10"]
            if not fast:
                argv.append("--no-fast-start")
            result = subprocess.run(
                client_end.namespace.command([*argv, client_end.name]),
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.terminate()
    assert result.returncode == 0, result.stderr
    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (event["event"], event["address"]) == ("bound", str(LEASED))
    assert ("fast start" in result.stderr) is fast
    routes = json.loads(client_end.namespace.ip("-j", "-4", "route", "show", "default"))
    assert [route["gateway"] for route in routes] == [str(SERVER)]
    (info,) = addr_info(client_end)
    assert info["local"] == str(LEASED.ip)


_SERVER_SCRIPT = """
import sys, trio
from ipaddress import IPv4Address, IPv4Network
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_udp

async def main():
    core = ServerCore(ServerConfig(
        server_id=IPv4Address("10.77.0.1"), network=IPv4Network("10.77.0.0/24"),
        pool_start=IPv4Address("10.77.0.100"), pool_end=IPv4Address("10.77.0.110"),
        routers=(IPv4Address("10.77.0.1"),), dns_servers=(), lease_time=60, t1=30, t2=50))
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_udp, core, sys.argv[1])
        print("ready", flush=True)

trio.run(main)
"""


def test_no_fast_start_flag() -> None:
    from dhcp4c import cli

    assert cli.parse(["eth0"]).fast_start
    assert not cli.parse(["--no-fast-start", "eth0"]).fast_start


@pytest.mark.netns
def test_no_fast_start_without_carrier(link: tuple[netns.Interface, netns.Interface]) -> None:
    from dhcp4c import cli

    client_end, server_end = link
    settings = cli.parse(["--once", client_end.name])
    with client_end.namespace.entered():
        interface = cli.inspect_interface(client_end.name)
        assert cli._running(interface)
    server_end.set_up(False)  # the veth peer down: no carrier here, once the kernel's
    deadline = time.monotonic() + 5  # link watch (asynchronous) has seen it
    with client_end.namespace.entered():
        while cli._running(interface) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not cli._running(interface)
        assert cli._fast_start(settings, [interface]) is None
