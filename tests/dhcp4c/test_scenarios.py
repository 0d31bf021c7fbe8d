"""Scenario tests: `Client` against the in-process server over the in-memory network.

Everything runs on `autojump_clock`, so times are asserted exactly: the server answers at once
unless told otherwise, and the client's schedule (RFC 2131 §4.1 retransmissions, §4.4.5 T1/T2)
is the only source of time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
import trio
import trio.testing

from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import Message, MessageType
from dhcp4c.protocol.options import OptionCode, Options
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind
from dhcp4c.testing.memory import MemoryLink, MemoryNetwork
from dhcp4c.testing.server import (
    Exchange,
    ServerConfig,
    ServerCore,
    drop_replies,
    set_fields,
)
from dhcp4c.testing.server_net import serve_memory
from supervisor import Backoff, NodeState, supervise
from support.clients import split_options

HW = b"\x02\x00\x00\x00\x00\x01"
SERVER = IPv4Address("192.0.2.1")
FIRST = IPv4Interface("192.0.2.100/24")

BOUND, RENEWED, CHANGED, LOST = (
    LeaseEventKind.BOUND,
    LeaseEventKind.RENEWED,
    LeaseEventKind.CHANGED,
    LeaseEventKind.LOST,
)
DISCOVER, REQUEST, DECLINE, RELEASE = (
    MessageType.DISCOVER,
    MessageType.REQUEST,
    MessageType.DECLINE,
    MessageType.RELEASE,
)

# A schedule without jitter, so retransmission times are exact (RFC 2131 §4.1: 4 s doubling).
EXACT: dict[str, Any] = {"retransmit_jitter": 0.0}


@dataclass
class Rig:
    """One client, one server and the network between them, plus what happened."""

    net: MemoryNetwork
    link: MemoryLink
    core: ServerCore
    client: Client
    nursery: trio.Nursery
    events: list[tuple[float, LeaseEvent]] = field(default_factory=list)
    calls: list[tuple[float, Lease | None, Lease | None]] = field(default_factory=list)
    opened: list[IPv4Address | None] = field(default_factory=list)
    run_scope: trio.CancelScope | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    async def until(self, count: int) -> None:
        """Wait until `count` lease events were recorded."""
        while len(self.events) < count:
            await self.changed.wait()

    def start(self) -> None:
        self.nursery.start_soon(self._run)

    async def _run(self) -> None:
        with trio.CancelScope() as scope:
            self.run_scope = scope
            await self.client.run()

    def stop(self) -> None:
        assert self.run_scope is not None
        self.run_scope.cancel()

    def requests(self) -> list[tuple[float, IPv4Address | None, Message]]:
        """(time, destination, message) of everything the client put on the network."""
        return [
            (c.time, c.destination, Message.parse(c.payload))
            for c in self.net.capture
            if c.direction == "to_server"
        ]

    def sent(self, kind: MessageType | None = None) -> list[float]:
        """Times at which the client sent messages (of `kind`)."""
        return [t for t, _, m in self.requests() if kind is None or m.message_type is kind]

    def kinds(self) -> list[LeaseEventKind]:
        return [event.kind for _, event in self.events]


@asynccontextmanager
async def rig(
    config: ServerConfig | None = None,
    *,
    seed: int = 0,
    endpoint: IPv4Address | None = None,
    **client_config: Any,
) -> AsyncIterator[Rig]:
    """A network with one server (at `endpoint`, default its server id) and a client.

    The client is not started: call `rig.start()`.
    """
    net = MemoryNetwork(random.Random(seed))
    link = net.attach(HW)
    core = ServerCore(config or ServerConfig())
    server = net.server(endpoint or core.config.server_id)
    holder: list[Rig] = []

    def factory(interface: str, address: IPv4Address | None) -> Any:
        holder[0].opened.append(address)
        return link.open()

    async def callback(old: Lease | None, new: Lease | None) -> None:
        holder[0].calls.append((trio.current_time(), old, new))

    client_config.setdefault("callback", callback)
    config, options = split_options(client_config)
    client = Client(
        "eth0",
        config,
        hwaddr=HW,
        transport_factory=factory,
        rng=random.Random(seed),
        **options,
    )
    async with trio.open_nursery() as nursery:
        setup = Rig(net, link, core, client, nursery)
        holder.append(setup)
        await nursery.start(serve_memory, core, server)

        async def record() -> None:
            with client.subscribe() as events:
                async for event in events:
                    assert event.missed == 0
                    setup.events.append((trio.current_time(), event))
                    setup.changed.set()
                    setup.changed = trio.Event()

        nursery.start_soon(record)
        yield setup
        nursery.cancel_scope.cancel()
    assert link.open_transports == 0, "the client leaked a transport"


def short(**changes: Any) -> ServerConfig:
    """A server handing out 1000 s leases with T1 500 and T2 875."""
    values: dict[str, Any] = {"lease_time": 1000, "t1": 500, "t2": 875}
    values.update(changes)
    return ServerConfig(**values)


async def test_discover_offer_request_ack(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(ServerConfig(rapid_commit=False)) as r:
        r.start()
        lease = await r.client.wait_bound()
        assert trio.current_time() == 0
        assert lease.address == FIRST and lease.server_id == SERVER
        assert [m.message_type for _, _, m in r.requests()] == [DISCOVER, REQUEST]
        _, destination, request = r.requests()[1]
        assert destination is None  # REQUESTING broadcasts (RFC 2131 §4.4.1)
        assert request.options.server_identifier == SERVER
        assert request.options.requested_address == FIRST.ip
        await r.until(1)
        assert r.kinds() == [BOUND]
        assert r.calls == [(0, None, lease)]
        assert r.client.lease == lease
        assert r.opened == [None]  # one packet socket for the whole exchange


async def test_rapid_commit(autojump_clock: trio.testing.MockClock) -> None:
    async with rig() as r:
        r.start()
        lease = await r.client.wait_bound()
        assert [m.message_type for _, _, m in r.requests()] == [DISCOVER]
        assert r.requests()[0][2].options.rapid_commit
        assert r.core.stats.sent == {MessageType.ACK: 1}
        assert lease.options.rapid_commit


async def test_bound_renewing_bound(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(short()) as r:
        r.start()
        first = await r.client.wait_bound()
        assert (first.t1, first.t2, first.expiry) == (500, 875, 1000)
        await r.until(2)
        (_, bound), (renewed_at, renewed) = r.events
        assert (bound.kind, renewed.kind, renewed_at) == (BOUND, RENEWED, 500)
        assert renewed.lease is not None and renewed.lease.expiry == 1500
        time, destination, request = r.requests()[-1]
        # RENEWING: unicast to the server, ciaddr set, no option 50/54 (RFC 2131 table 5).
        assert (time, destination, request.ciaddr) == (500, SERVER, FIRST.ip)
        assert request.options.requested_address is None
        assert request.options.server_identifier is None
        assert r.opened == [None, FIRST.ip]
        assert r.calls[1] == (500, first, renewed.lease)
        assert r.client.state.name == "BOUND"
        assert r.link.open_transports == 0


async def test_renewing_rebinding_bound(autojump_clock: trio.testing.MockClock) -> None:
    # The server listens at another address than its identifier: unicast renewals reach nobody,
    # the broadcast of REBINDING reaches it.
    async with rig(short(), endpoint=IPv4Address("192.0.2.254")) as r:
        r.start()
        await r.client.wait_bound()
        await r.until(2)
        assert r.events[1][0] == 875 and r.events[1][1].kind is RENEWED
        renewals = [(t, d) for t, d, m in r.requests() if m.ciaddr == FIRST.ip]
        # RFC 2131 §4.4.5: half the time left to T2, at least 60 s; then broadcast at T2.
        assert renewals == [
            (500, SERVER),
            (687.5, SERVER),
            (781.25, SERVER),
            (841.25, SERVER),
            (875, None),
        ]


async def test_rebinding_expiry_discover(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(short(), **EXACT) as r:
        r.start()
        await r.client.wait_bound()
        r.core.stop()
        await r.until(2)
        lost_at, lost = r.events[1]
        assert (lost_at, lost.kind, lost.reason) == (1000, LOST, "expired")
        assert r.client.lease is None
        assert r.calls[-1][0] == 1000 and r.calls[-1][2] is None
        rebinds = [(t, d) for t, d, m in r.requests() if m.ciaddr == FIRST.ip and t >= 875]
        assert rebinds == [(875, None), (937.5, None), (997.5, None)]
        await trio.sleep(1)
        discovers = r.sent(DISCOVER)
        assert discovers[-1] == 1000
        # Asking for the old address again (RFC 2131 §4.4.1, option 50 in DISCOVER).
        assert r.requests()[-1][2].options.requested_address == FIRST.ip
        r.core.start()
        lease = await r.client.wait_bound()
        assert lease.address == FIRST


async def test_retransmission_timings_exact(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(**EXACT) as r:
        r.core.stop()
        r.start()
        await trio.sleep(400)
        # RFC 2131 §4.1: 4 s, doubling, capped at 64 s.
        assert r.sent(DISCOVER) == [0, 4, 12, 28, 60, 124, 188, 252, 316, 380]
        assert r.opened == [None]  # the socket stays open across retransmissions
        assert r.link.open_transports == 1
        r.stop()
        await trio.sleep(1)
        assert r.link.open_transports == 0


async def test_request_retransmissions_then_rediscovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rig(ServerConfig(rapid_commit=False), max_request_tries=3, **EXACT) as r:
        r.core.silent = {Exchange.SELECTING}
        r.start()
        await trio.sleep(30)
        assert r.sent(REQUEST)[:3] == [0, 4, 12]
        # After 3 unanswered REQUESTs (and 16 s more): back to DISCOVER after a backoff.
        assert 28 + 1 <= r.sent(DISCOVER)[1] <= 28 + 1.25
        r.core.silent = set()
        await r.client.wait_bound()


@pytest.mark.parametrize("seed", range(5))
async def test_half_the_packets_lost(autojump_clock: trio.testing.MockClock, seed: int) -> None:
    async with rig(short(rapid_commit=False), seed=seed) as r:
        r.net.to_server.loss = 0.5
        r.net.to_client.loss = 0.5
        r.start()
        await r.client.wait_bound()
        await trio.sleep(3000)
        await r.client.wait_bound()
        # Renewals retry; when every one of them is lost the lease ends exactly at its expiry
        # (never later) and the client starts over; it never floods.
        for at, event in r.events:
            if event.kind is LOST:
                assert event.old is not None and (event.reason, at) == ("expired", event.old.expiry)
        assert len(r.sent()) < 80
        assert r.net.stats["to_server.lost"] > 0


@pytest.mark.parametrize(("duplicate", "reorder"), [(1.0, 0.0), (0.0, 0.5), (1.0, 0.5)])
async def test_duplicated_and_reordered_replies(
    autojump_clock: trio.testing.MockClock, duplicate: float, reorder: float
) -> None:
    async with rig(short(rapid_commit=False)) as r:
        r.net.to_client.duplicate = duplicate
        r.net.to_client.reorder = reorder
        r.net.to_client.reorder_delay = 0.5
        r.net.to_client.jitter = 0.2 if reorder else 0.0
        r.start()
        await r.client.wait_bound()
        await trio.sleep(600)
        # One lease, one renewal: a copy or a late reply changes nothing.
        assert r.kinds() == [BOUND, RENEWED]
        assert len(r.calls) == 2
        assert len(r.sent(REQUEST)) == 2
        if duplicate and not reorder:
            # The OFFER's copy reached the client in REQUESTING and was dropped (the ACK's
            # copy is discarded with the packet socket, closed once BOUND).
            assert r.client.drops["unexpected-type"] >= 1


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"xid": 0x12345678}, "wrong-xid"), ({"chaddr": b"\x02\x00\x00\x00\x00\x99"}, "wrong-chaddr")],
)
async def test_replies_for_someone_else(
    autojump_clock: trio.testing.MockClock, fields: dict[str, Any], reason: str
) -> None:
    async with rig(ServerConfig(misbehaviour=set_fields(**fields)), **EXACT) as r:
        r.start()
        await trio.sleep(30)
        assert r.client.lease is None and r.events == []
        assert r.client.drops[reason] == len(r.sent(DISCOVER)) == 4
        r.core.reconfigure(ServerConfig())
        await r.client.wait_bound()
        assert trio.current_time() == 60


async def test_rogue_second_server(autojump_clock: trio.testing.MockClock) -> None:
    rogue_id = IPv4Address("198.51.100.66")
    async with rig(short(rapid_commit=False, reply_delay=0.1)) as r:
        # A NAK-only rogue, faster than the real server: its NAK to our REQUEST arrives before
        # the real server's ACK.
        rogue = ServerCore(
            ServerConfig(
                server_id=rogue_id,
                network=IPv4Network("198.51.100.0/24"),
                pool_start=IPv4Address("198.51.100.10"),
                pool_end=IPv4Address("198.51.100.20"),
                rapid_commit=False,
                reply_delay=0.05,
                misbehaviour=drop_replies(on={MessageType.OFFER}),
            )
        )
        rogue.force_nak = True  # it NAKs every REQUEST, including those for the real server
        await r.nursery.start(serve_memory, rogue, r.net.server(rogue_id))
        r.start()
        lease = await r.client.wait_bound()
        await trio.sleep(1)
        assert lease.server_id == SERVER
        assert r.kinds() == [BOUND]
        assert rogue.stats.sent[MessageType.NAK] >= 1
        # Its NAK was dropped: in REQUESTING only the selected server's NAK counts.
        assert r.client.drops["foreign-nak"] == 1
        await trio.sleep(600)
        assert r.kinds() == [BOUND, RENEWED]


async def test_nak_in_requesting(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(ServerConfig(rapid_commit=False)) as r:
        r.core.nak = {Exchange.SELECTING}
        r.start()
        await trio.sleep(0.5)
        assert r.sent(REQUEST) == [0] and r.client.lease is None
        r.core.nak = set()
        await r.client.wait_bound()
        # Backoff after the NAK: 1 s stretched by up to 25 % (never a rapid rediscovery).
        assert 1 <= r.sent(DISCOVER)[1] <= 1.25
        assert r.kinds() == [BOUND]


async def test_nak_in_renewing(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(short()) as r:
        r.start()
        first = await r.client.wait_bound()
        r.core.force_nak = True
        await r.until(2)
        lost_at, lost = r.events[1]
        assert (lost_at, lost.kind, lost.reason, lost.old) == (500, LOST, "nak", first)
        assert r.calls[-1] == (500, first, None)
        r.core.force_nak = False
        await r.until(3)
        assert r.events[2][1].kind is BOUND and 501 <= r.events[2][0] <= 501.25


async def test_nak_in_rebinding(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(short(), endpoint=IPv4Address("192.0.2.254")) as r:
        r.start()
        await r.client.wait_bound()
        await trio.sleep(870)
        assert r.client.state.name == "RENEWING"
        r.core.force_nak = True
        await r.until(2)
        assert r.events[1][0] == 875
        assert (r.events[1][1].kind, r.events[1][1].reason) == (LOST, "nak")


def previous_lease(address: str, server: str = "192.0.2.1", *, at: float = -100) -> Lease:
    """A lease obtained before the client started (a lease file, a previous incarnation)."""
    return Lease(
        address=IPv4Interface(address),
        server_id=IPv4Address(server),
        obtained=at,
        t1=at + 500,
        t2=at + 875,
        expiry=at + 1000,
        routers=(),
        dns_servers=(),
        domain=None,
        search=(),
        mtu=None,
        routes=(),
        options=Options(),
    )


async def test_init_reboot_accepted(autojump_clock: trio.testing.MockClock) -> None:
    known = previous_lease("192.0.2.150/24")
    async with rig(lease=known) as r:
        assert r.client.lease is None  # not relied on before it is verified
        r.start()
        lease = await r.client.wait_bound()
        assert trio.current_time() == 0 and lease.address == known.address
        ((_, destination, request),) = r.requests()
        # INIT-REBOOT: option 50, no server id, no ciaddr, broadcast (RFC 2131 table 5).
        assert request.message_type is REQUEST and destination is None
        assert request.options.requested_address == known.address.ip
        assert request.options.server_identifier is None and request.ciaddr == IPv4Address(0)
        await r.until(1)
        assert r.kinds() == [BOUND]
        assert r.calls == [(0, known, lease)]  # the callback replaces what it applied before


async def test_init_reboot_refused(autojump_clock: trio.testing.MockClock) -> None:
    known = previous_lease("10.9.9.9/24", "10.9.9.1")
    async with rig(lease=known) as r:
        r.start()
        lease = await r.client.wait_bound()
        assert lease.address == FIRST
        assert [m.message_type for _, _, m in r.requests()][:2] == [REQUEST, DISCOVER]
        # The callback removes the refused lease; observers never relied on it.
        assert r.calls[0][1:] == (known, None)
        assert r.calls[1][1:] == (None, lease)
        await r.until(1)
        assert r.kinds() == [BOUND]


async def test_init_reboot_unanswered_keeps_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    known = previous_lease("192.0.2.150/24", at=0)
    async with rig(lease=known, max_request_tries=2, **EXACT) as r:
        r.core.silent = {Exchange.INIT_REBOOT, Exchange.RENEWING, Exchange.REBINDING}
        r.start()
        # RFC 2131 §3.2: no answer, the unexpired lease is used until its own timers say so.
        await r.until(1)
        assert r.events[0][0] == 12 and r.kinds() == [BOUND]
        assert r.client.lease is not None and r.client.lease.address == known.address


async def test_nak_storm_traffic_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(ServerConfig(rapid_commit=False)) as r:
        r.core.force_nak = True
        r.start()
        await trio.sleep(3600)
        discovers = r.sent(DISCOVER)
        # Backoff doubling from 1 s to 300 s: about 20 exchanges in an hour, not thousands.
        assert len(r.sent()) <= 2 * len(discovers) + 1
        assert 10 <= len(discovers) <= 25
        gaps = [b - a for a, b in itertools.pairwise(discovers)]
        assert gaps[-1] >= 300 and max(gaps) <= 300 * 1.25 + 1
        assert r.client.lease is None and r.events == []


async def test_crash_and_restart_under_the_supervisor_keeps_the_lease(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failures = [RuntimeError("netlink went away")]

    async def flaky(old: Lease | None, new: Lease | None) -> None:
        if old is not None and new is not None and failures:
            raise failures.pop()  # the first renewal's callback fails: the runnable dies

    async with rig(short(), callback=flaky) as r:
        states: list[tuple[float, NodeState]] = []
        handle = await r.nursery.start(
            lambda task_status: supervise(
                r.client.run,
                backoff=Backoff(initial=1.0, jitter=0.0),
                rng=random.Random(0),
                observers=[lambda change: states.append((change.time, change.new))],
                task_status=task_status,
            )
        )
        first = await r.client.wait_bound()
        await handle.wait_settled()
        assert handle.states() == {"root": NodeState.HEALTHY}
        await trio.sleep(500)  # T1: the renewal's callback raises
        await handle.wait_settled()
        assert [state for _, state in states] == [
            NodeState.NEW,
            NodeState.HEALTHY,
            NodeState.DEAD,
            NodeState.NEW,
            NodeState.HEALTHY,
        ]
        assert handle.states() == {"root": NodeState.HEALTHY}
        # The new incarnation verified the lease it had by INIT-REBOOT, no DISCOVER.
        restart_at = states[3][0]
        after = [(t, m) for t, _, m in r.requests() if t >= restart_at]
        assert [m.message_type for _, m in after] == [REQUEST]
        assert after[0][1].options.requested_address == first.address.ip
        assert after[0][1].options.server_identifier is None
        assert r.kinds() == [BOUND, RENEWED]
        assert r.client.lease is not None and r.client.lease.address == first.address
        assert r.client.stats.runs == 2
        assert r.link.open_transports == 0
        handle_nodes = handle.live()
        assert handle_nodes == ["root"]


async def test_option_values_reach_the_wire(autojump_clock: trio.testing.MockClock) -> None:
    async with rig(
        hostname="box", vendor_class=b"dhcp4c", client_id=b"\x01" + HW, broadcast_flag=True
    ) as r:
        r.start()
        await r.client.wait_bound()
        message = r.requests()[0][2]
        assert message.options.hostname == "box"
        assert message.options[OptionCode.VENDOR_CLASS_IDENTIFIER] == b"dhcp4c"
        assert message.options.client_identifier == b"\x01" + HW
        assert message.flags & 0x8000
        assert message.options.max_message_size == 1500


async def test_renewal_with_new_configuration_is_a_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with rig(short()) as r:
        r.start()
        first = await r.client.wait_bound()
        r.core.reconfigure(short(dns_servers=(IPv4Address("192.0.2.53"),)))
        await r.until(2)
        changed_at, changed = r.events[1]
        assert (changed_at, changed.kind, changed.old) == (500, CHANGED, first)
        assert changed.lease is not None
        assert changed.lease.dns_servers == (IPv4Address("192.0.2.53"),)
        assert r.calls[-1] == (500, first, changed.lease)
