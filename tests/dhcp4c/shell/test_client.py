"""The Trio shell itself: configuration, sockets, drops, the callback, commands, clocks.

Protocol scenarios live in test_scenarios.py; these tests look at what `Client` adds around the
machine. All on `autojump_clock` over the in-memory network with the in-process server.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dhcp4c.protocol.config import ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import InvalidTransition, State
from dhcp4c.protocol.message import BOOTREQUEST, Message, MessageType
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEventKind
from dhcp4c.testing.memory import MemoryLink, MemoryNetwork, ServerEndpoint
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory
from supervisor import NodeState
from supervisor.testing import harness
from support.clients import split_options

HW = b"\x02\x00\x00\x00\x00\x01"
SERVER = IPv4Address("192.0.2.1")
SHORT = ServerConfig(lease_time=1000, t1=500, t2=875)


@dataclass
class Net:
    net: MemoryNetwork
    link: MemoryLink
    core: ServerCore
    endpoint: ServerEndpoint
    nursery: trio.Nursery
    opened: list[IPv4Address | None] = field(default_factory=list)
    calls: list[tuple[float, Lease | None, Lease | None]] = field(default_factory=list)

    def factory(self, interface: str, address: IPv4Address | None) -> Any:
        self.opened.append(address)
        return self.link.open()

    async def record(self, old: Lease | None, new: Lease | None) -> None:
        self.calls.append((trio.current_time(), old, new))

    def client(self, **config: Any) -> Client:
        config.setdefault("callback", self.record)
        config.setdefault("hwaddr", HW)
        client_config, options = split_options(config)
        return Client(
            "eth0", client_config, transport_factory=self.factory, rng=random.Random(0), **options
        )

    def requests(self, since: float = 0.0) -> list[tuple[float, IPv4Address | None, Message]]:
        return [
            (c.time, c.destination, Message.parse(c.payload))
            for c in self.net.capture
            if c.direction == "to_server" and c.time >= since
        ]

    def types(self, since: float = 0.0) -> list[MessageType | None]:
        return [m.message_type for _, _, m in self.requests(since)]


@asynccontextmanager
async def network(config: ServerConfig = SHORT) -> AsyncIterator[Net]:
    net = MemoryNetwork(random.Random(0))
    link = net.attach(HW)
    core = ServerCore(config)
    endpoint = net.server(config.server_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, endpoint)
        yield Net(net, link, core, endpoint, nursery)
        nursery.cancel_scope.cancel()
    assert link.open_transports == 0


async def start(n: Net, client: Client) -> trio.CancelScope:
    """Run `client` in the background; cancel the returned scope to stop it."""
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await client.run()

    n.nursery.start_soon(run)
    await trio.testing.wait_all_tasks_blocked()
    return scope


# -- configuration ----------------------------------------------------------------------------


def test_configuration_is_checked_up_front() -> None:
    with pytest.raises(TypeError, match="frobnicate"):
        Client("eth0", ClientConfig(frobnicate=True))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="decline_wait"):
        Client("eth0", ClientConfig(decline_wait=5))
    with pytest.raises(ValueError):
        Client("eth0", ClientConfig(suspend_check=0))
    client = Client("eth0", ClientConfig(hostname="box", rapid_commit=False))
    assert client.lease is None and client.state is State.STOPPED


async def test_run_on_a_missing_interface_raises() -> None:
    with pytest.raises(OSError):
        await Client("nonexistent0").run()


async def test_max_message_size_from_the_mtu(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        scope = await start(n, n.client(mtu=9000))
        await trio.sleep(1)
        scope.cancel()
        scope = await start(n, n.client(mtu=9000, max_message_size=1000))
        await trio.sleep(1)
        scope.cancel()
    sizes = [m.options.max_message_size for _, _, m in n.requests()]
    assert sizes == [9000, 1000]


# -- sockets -----------------------------------------------------------------------------------


async def test_sockets_open_per_state_and_close(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        scope = await start(n, client)
        await client.wait_bound()
        await trio.testing.wait_all_tasks_blocked()
        assert (client.state, n.link.open_transports, n.opened) == (State.BOUND, 0, [None])
        await trio.sleep(500)  # RENEWING: the unicast socket, closed again once renewed
        await trio.testing.wait_all_tasks_blocked()
        assert n.opened == [None, IPv4Address("192.0.2.100")]
        assert n.link.open_transports == 0
        scope.cancel()


async def test_no_socket_leaks_when_cancelled_mid_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        n.core.stop()
        client = n.client()
        for _ in range(3):
            scope = await start(n, client)
            await trio.sleep(5)
            assert n.link.open_transports == 1
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert n.link.open_transports == 0
        assert client.stats.runs == 3


async def test_unicast_socket_unavailable_falls_back_to_packet_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:

        def factory(interface: str, address: IPv4Address | None) -> Any:
            if address is not None:
                raise OSError(99, "Cannot assign requested address")
            return n.factory(interface, address)

        client = Client("eth0", hwaddr=HW, transport_factory=factory, rng=random.Random(0))
        events = client.subscribe()
        scope = await start(n, client)
        await client.wait_bound()
        await trio.sleep(501)
        assert events.receive_nowait().kind is LeaseEventKind.RENEWED
        _, destination, renewal = n.requests(since=500)[0]
        assert (destination, renewal.ciaddr) == (SERVER, IPv4Address("192.0.2.100"))
        assert client.stats.errors["unicast-open"] == 1
        assert n.opened == [None, None]
        scope.cancel()


async def test_already_running(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        scope = await start(n, client)
        with pytest.raises(RuntimeError, match="already running"):
            await client.run()
        scope.cancel()


# -- bad datagrams -----------------------------------------------------------------------------


async def test_bad_datagrams_are_dropped_counted_and_logged_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dhcp4c.shell.client")
    async with network() as n:
        n.core.stop()
        rogue = n.net.server(IPv4Address("192.0.2.9"))
        client = n.client()
        scope = await start(n, client)
        request = Message(op=BOOTREQUEST, xid=1, chaddr=HW, options={53: b"\x05"}).build()
        for payload in (b"garbage", b"\x02" * 10, request, request):
            await rogue.send(payload, HW)
        await trio.sleep(1)
        assert client.drops == {"malformed-message": 2, "not-bootreply": 2}
        assert client.stats.received == 4
        assert client.state is State.SELECTING  # nothing raised, nothing changed
        logged = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(logged) == 2
        scope.cancel()
        rogue.close()


# -- the callback ------------------------------------------------------------------------------


async def test_callback_runs_before_anyone_relies_on_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        seen: list[tuple[Lease | None, Lease | None]] = []
        holder: list[Client] = []

        async def callback(old: Lease | None, new: Lease | None) -> None:
            client = holder[0]
            seen.append((client.lease, client.lease if client.lease is None else old))
            assert client.lease is old  # observers still see the old state
            await trio.sleep(2)  # a slow callback delays the event, never skips it

        client = n.client(callback=callback)
        holder.append(client)
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert trio.current_time() == 2
        await trio.sleep(600)
        assert client.lease is not None and client.lease.expiry == 1500
        assert seen[0] == (None, None) and seen[1][0] is lease
        scope.cancel()


async def test_failing_callback_ends_run_and_restart_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        failures = [ValueError("netlink said no")]

        async def broken(old: Lease | None, new: Lease | None) -> None:
            if failures:
                raise failures.pop()
            await n.record(old, new)

        client = n.client(callback=broken)
        with pytest.raises(ValueError, match="netlink said no"):
            await client.run()
        assert client.lease is None and n.link.open_transports == 0
        # The lease the server granted is kept: the next run asks for it by INIT-REBOOT.
        assert n.types() == [MessageType.DISCOVER]
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert n.types() == [MessageType.DISCOVER, MessageType.REQUEST]
        assert n.requests()[1][2].options.requested_address == lease.address.ip
        # The callback never applied the first lease: it is told about this one as new.
        assert n.calls == [(0, None, lease)]
        scope.cancel()


# -- commands ----------------------------------------------------------------------------------


async def test_decline(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        with pytest.raises(InvalidTransition):
            client.decline()  # not running
        events = client.subscribe()
        scope = await start(n, client)
        first = await client.wait_bound()
        assert events.receive_nowait().kind is LeaseEventKind.BOUND
        await trio.sleep(10)
        client.decline()
        await trio.sleep(0)
        lost = await events.receive()
        assert (lost.kind, lost.reason, trio.current_time()) == (
            LeaseEventKind.LOST,
            "declined",
            10,
        )
        assert n.calls[-1] == (10, first, None)
        second = await client.wait_bound()
        assert second.address != first.address
        _, destination, decline = n.requests(since=10)[0]
        assert (decline.message_type, destination) == (MessageType.DECLINE, None)
        # RFC 2131 §3.1: at least 10 s before discovering again.
        assert n.requests(since=10)[1][0] >= 20
        scope.cancel()


async def test_decline_when_not_bound(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        n.core.stop()
        client = n.client()
        scope = await start(n, client)
        with pytest.raises(InvalidTransition):
            client.decline()
        scope.cancel()


async def test_release_on_stop(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client(release_on_stop=True)
        events = client.subscribe()
        scope = await start(n, client)
        lease = await client.wait_bound()
        assert events.receive_nowait().kind is LeaseEventKind.BOUND
        await trio.sleep(100)
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        _, destination, release = n.requests(since=100)[0]
        assert (release.message_type, destination, release.ciaddr) == (
            MessageType.RELEASE,
            SERVER,
            lease.address.ip,
        )
        assert n.calls[-1] == (100, lease, None)
        lost = events.receive_nowait()
        assert (lost.kind, lost.reason) == (LeaseEventKind.LOST, "released")
        assert client.lease is None
        scope = await start(n, client)
        assert n.types(since=100)[1:] == [MessageType.DISCOVER]
        scope.cancel()


async def test_stop_without_release_keeps_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        scope = await start(n, client)
        lease = await client.wait_bound()
        await trio.sleep(100)
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert n.types(since=1) == [] and client.lease == lease
        scope = await start(n, client)
        assert n.types(since=100) == [MessageType.REQUEST]
        assert client.lease is not None and client.lease.address == lease.address
        scope.cancel()


async def test_link_down_and_up(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        scope = await start(n, client)
        await client.wait_bound()
        await trio.sleep(10)
        client.link_down()
        await trio.sleep(600)  # past T1: nothing is sent into a dead link
        assert client.state is State.INIT_REBOOT
        assert n.types(since=1) == []
        client.link_up()
        await trio.sleep(1)
        assert n.types(since=1) == [MessageType.REQUEST]
        assert client.state.name == "BOUND"
        scope.cancel()


async def test_the_carrier_is_an_async_bool(autojump_clock: trio.testing.MockClock) -> None:
    async with network() as n:
        client = n.client()
        assert client.carrier.value is True
        client.set_carrier(False)  # before the run: the run starts with the link down
        scope = await start(n, client)
        await trio.sleep(60)
        assert n.types() == [] and client.state is State.INIT
        woke: list[float] = []

        async def wait_up() -> None:
            await client.carrier.wait_value(True)
            woke.append(trio.current_time())

        n.nursery.start_soon(wait_up)
        await trio.sleep(5)
        client.set_carrier(True)
        await client.wait_bound()
        assert woke == [65] and n.types() == [MessageType.DISCOVER]
        scope.cancel()


async def test_start_returns_once_the_first_message_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            assert client.stats.sent == {"DISCOVER": 1} and trio.current_time() == 0
            await client.wait_bound()
            nursery.cancel_scope.cancel()
        quiet = n.client()
        quiet.set_carrier(False)
        async with trio.open_nursery() as nursery:
            await nursery.start(quiet.run)  # nothing to send while the carrier is down
            assert quiet.stats.sent == {} and quiet.state is State.INIT
            nursery.cancel_scope.cancel()


# -- observers ---------------------------------------------------------------------------------


async def test_latest_is_an_async_value_of_the_lease_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        assert client.latest.value is None
        scope = await start(n, client)
        lease = await client.wait_bound()
        bound = client.latest.value
        assert bound is not None and (bound.kind, bound.lease, bound.seq) == (
            LeaseEventKind.BOUND,
            lease,
            1,
        )
        assert await client.wait_bound() is lease  # at once while held
        await trio.sleep(10)
        client.decline()
        lost = await client.latest.wait_value(lambda e: e is not None and e.lease is None)
        assert lost is not None and (lost.kind, lost.reason) == (LeaseEventKind.LOST, "declined")
        again = await client.wait_bound()  # waits for the next lease
        assert again != lease and trio.current_time() >= 20
        scope.cancel()


async def test_a_subscriber_that_never_reads_does_not_stall_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network(ServerConfig(lease_time=100)) as n:
        client = n.client()
        stuck = client.subscribe()
        scope = await start(n, client)
        await client.wait_bound()
        await trio.sleep(100 * 20)
        event = stuck.receive_nowait()
        assert event.kind is LeaseEventKind.RENEWED and event.missed > 30
        assert event.lease == client.lease
        scope.cancel()


# -- time --------------------------------------------------------------------------------------


async def test_suspend_past_expiry_loses_the_lease_on_wake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    suspended = [0.0]

    def boottime() -> float:
        return trio.current_time() + suspended[0]

    async with network() as n:
        client = n.client(boottime=boottime, suspend_check=60)
        events = client.subscribe()
        scope = await start(n, client)
        first = await client.wait_bound()
        assert events.receive_nowait().kind is LeaseEventKind.BOUND
        await trio.sleep(10)
        n.core.stop()
        # The host sleeps for 2000 s: the Trio (monotonic) clock does not see it.
        suspended[0] = 2000.0
        lost = await events.receive()
        # Noticed at the next periodic check, 60 s after the last wake-up, not at T1 (500).
        assert (lost.kind, lost.reason, trio.current_time()) == (LeaseEventKind.LOST, "expired", 60)
        assert client.stats.suspended == 2000.0
        assert n.calls[-1] == (60, first, None)
        n.core.start()
        second = await client.wait_bound()
        # Leases leave the client on the Trio clock.
        assert second.obtained == pytest.approx(trio.current_time(), abs=1e-9)
        assert second.expiry == pytest.approx(second.obtained + 1000)
        scope.cancel()


async def test_short_suspend_only_moves_the_timers(autojump_clock: trio.testing.MockClock) -> None:
    suspended = [0.0]
    async with network() as n:
        client = n.client(boottime=lambda: trio.current_time() + suspended[0])
        scope = await start(n, client)
        await client.wait_bound()
        await trio.sleep(100)
        suspended[0] = 450.0  # resumed at machine time 550: past T1, so it renews now
        await trio.sleep(60)
        assert n.types(since=1) == [MessageType.REQUEST]
        assert n.requests(since=1)[0][0] == 120
        assert client.lease is not None and client.lease.address == IPv4Interface("192.0.2.100/24")
        scope.cancel()


@given(
    deadline=st.floats(0, 1e9, allow_nan=False),
    skew=st.floats(0, 1e7, allow_nan=False),
)
def test_timers_wake_when_the_machine_clock_has_reached_the_deadline(
    deadline: float, skew: float
) -> None:
    # `deadline - skew` may round so that `wake + skew < deadline`: the timer then fires early,
    # the machine does nothing, and on a mock clock the loop spins forever (found by
    # test_stateful after a 2.00001 s suspend).
    client = Client("eth0")
    client._skew = skew
    wake = client._trio_time_for(deadline)
    assert wake + skew >= deadline
    # ...and not noticeably later.
    assert wake - (deadline - skew) <= 4 * math.ulp(max(deadline, skew))


# -- under a supervisor ------------------------------------------------------------------------


async def test_signals_healthy_under_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with network() as n:
        client = n.client()
        async with harness(client.run) as handle:
            await handle.wait_settled()
            assert handle.states() == {"root": NodeState.HEALTHY}
            assert client.lease is not None
            n.core.force_nak = True
            await trio.sleep(600)  # NAKed at T1: lost, then NAKed over and over
            assert client.lease is None
            n.core.force_nak = False
            await client.wait_bound()  # bound again in the same incarnation: no second signal
            await handle.wait_settled()
            assert handle.states() == {"root": NodeState.HEALTHY}


# -- IPv6-only preferred (RFC 8925) ---------------------------------------------------------------


async def test_ipv6_only_preferred_offer_configures_nothing_and_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    v6only = ServerConfig(
        lease_time=1000, t1=500, t2=875, extra_options={108: (120).to_bytes(4, "big")}
    )
    async with network(v6only) as n:
        client = n.client(ipv6_only_preferred=True, rapid_commit=False)
        with client.subscribe() as events:
            scope = await start(n, client)
            event = await events.receive()
            assert event.kind is LeaseEventKind.IPV6_ONLY and event.kind.value == "ipv6-only"
            assert event.wait == 300.0  # 120 s is below MIN_V6ONLY_WAIT
            assert event.lease is None and event.old is None and event.reason is None
            assert client.lease is None and client.state is State.INIT
            assert trio.current_time() < 1
            # Quiet for exactly the wait, then a DISCOVER: never a REQUEST, never a callback.
            await trio.sleep(301)
            times = [(t, m.message_type) for t, _, m in n.requests()]
            assert times == [(0.0, MessageType.DISCOVER), (300.0, MessageType.DISCOVER)]
            prl = n.requests()[0][2].options.parameter_request_list
            assert prl is not None and 108 in prl
            again = await events.receive()
            assert again.kind is LeaseEventKind.IPV6_ONLY and again.wait == 300.0
            assert n.calls == []
            assert n.core.stats.sent.get(MessageType.ACK, 0) == 0
            scope.cancel()
