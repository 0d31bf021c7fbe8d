"""Stateful property tests (Hypothesis): the client on a hostile network, invariants every step.

Two levels, the same invariants (`support.faults.check_*`):

* `HostileNetworkMachine`: the sans-IO `Machine` and two `ServerCore`s on a `Simulation` wire
  with explicit time. Hypothesis picks the faults (loss, duplication, reordering, delay per
  direction) and interleaves rules: time passes, the host suspends (time jumps past timers
  without firing them), a server dies and comes back with another pool or forgets its
  bindings, NAK storms, a rogue server that answers first, renewals ignored, link down/up,
  DECLINE, stop/start, garbage, mutated and forged replies.
* `test_client_on_hostile_network`: the Trio `Client` on a `MemoryNetwork` under
  `MockClock(autojump_threshold=0)`, driven through a program of the same kinds of steps drawn
  by Hypothesis, with a CLOCK_BOOTTIME stand-in that jumps ahead of the Trio clock (suspend).

Invariants, checked after every step:

1. Lease events are well-formed: bound only without a lease, renewed/changed only with one,
   lost exactly once per lease, no lease handed out already expired.
2. The lease reported as held is unexpired at `now`, while the client runs; for `Client` also on
   the boot-time clock once the client had `suspend_check` seconds to notice a suspend.
3. Every lease has 0 < t1 < t2 < expiry (relative to when it was obtained).
4. Retransmissions follow RFC 2131 §4.1 (4 s doubling to 64 s, ±1 s) and §4.4.5 (renewals from
   T1, rebinding from T2, at least 60 s apart or up to the deadline, never past expiry).
5. At most one accepted reply per request (one OFFER and one ACK/NAK per xid).
6. Traffic is bounded in every hour, however many NAKs, declines or forged replies.
7. The machine always has a future deadline or none (it never asks to be woken in the past).

`pytest --hypothesis-profile=thorough` runs many more examples; the number of steps run is
printed at the end of the module (`pytest -s`).
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dhcp4c.protocol.config import ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import (
    LeaseBound,
    LeaseChanged,
    LeaseLost,
    LeaseRenewed,
    Machine,
    MachineConfig,
    State,
)
from dhcp4c.protocol.message import BOOTREPLY, Message, MessageType
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEvent
from dhcp4c.testing.memory import Faults, MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from support.faults import (
    HostileNetwork,
    LeaseAction,
    Sent,
    SimServer,
    Simulation,
    check_events,
    check_retransmissions,
    check_traffic,
    check_usable,
    classify_send,
    nak_storm,
)
from support.fuzz import Mutator, RandomSource

HW = b"\x02\x00\x00\x00\x00\x01"
MAIN = IPv4Address("192.0.2.1")
SECOND = IPv4Address("192.0.2.2")
ROGUE = IPv4Address("198.51.100.1")
LEASES = (60, 300, 3600)
THEN = st.sampled_from([0.0, 0.0, 1.0, 5.0, 30.0, 120.0, 1000.0])
SHORTEST = min(LEASES)
_RUNNING = frozenset(State) - {State.STOPPED}
_DECLINABLE = frozenset({State.BOUND, State.RENEWING, State.REBINDING})

STEPS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_steps() -> Any:
    yield
    print(f"\nstateful: {dict(STEPS)}")


def server_config(server_id: IPv4Address, lease: int, timers: str, pool: int) -> ServerConfig:
    """A server on 192.0.2.0/24 handing out `pool` (0 or 1: two disjoint ranges)."""
    first = IPv4Address("192.0.2.100") + 50 * pool
    t1, t2 = {
        "default": (None, None),
        "rfc": (lease // 2, lease * 7 // 8),
        "inverted": (lease * 2, lease + 10),  # T1 > T2 > lease
        "equal": (lease, lease),
    }[timers]
    return ServerConfig(
        server_id=server_id,
        pool_start=first,
        pool_end=first + 40,
        lease_time=lease,
        t1=t1,
        t2=t2,
        rapid_commit=True,
    )


faults = st.builds(
    Faults,
    loss=st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9]),
    duplicate=st.sampled_from([0.0, 0.2, 1.0]),
    reorder=st.sampled_from([0.0, 0.3]),
    reorder_delay=st.floats(0.1, 5.0),
    delay=st.sampled_from([0.0, 0.01, 0.5, 3.0]),
    jitter=st.sampled_from([0.0, 0.2, 2.0]),
)


def forged_reply(xid: int, data: st.DataObject) -> bytes:
    """A reply to the client's current xid from a rogue: any lease time, yiaddr and server."""
    kind = data.draw(st.sampled_from([MessageType.OFFER, MessageType.ACK, MessageType.NAK]))
    lease = data.draw(st.sampled_from([0, 1, 2, 59, 3600, 0x7FFFFFFF, 0xFFFFFFFF]))
    options: dict[int, bytes] = {
        53: bytes([kind]),
        54: data.draw(st.sampled_from([ROGUE, MAIN, SECOND, IPv4Address(0)])).packed,
        51: struct.pack("!I", lease),
    }
    for code in data.draw(st.sets(st.sampled_from([58, 59]))):
        options[code] = struct.pack("!I", data.draw(st.integers(0, 0xFFFFFFFF)))
    if data.draw(st.booleans()):
        options[80] = b""
    yiaddr = data.draw(
        st.sampled_from(["192.0.2.150", "198.51.100.10", "0.0.0.0", "255.255.255.255", "10.0.0.5"])
    )
    message = Message(op=BOOTREPLY, xid=xid, yiaddr=IPv4Address(yiaddr), chaddr=HW, options=options)
    return message.build()


class HostileNetworkMachine(RuleBasedStateMachine):
    """The pure machine and two servers on a faulty simulated wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation
        self.main: SimServer
        self.second: SimServer
        self.rogue: SimServer | None = None
        self.mutator: Mutator
        self.config: MachineConfig

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        lease=st.sampled_from(LEASES),
        timers=st.sampled_from(["default", "rfc", "inverted", "equal"]),
        up=faults,
        down=faults,
        second_alive=st.booleans(),
        rapid_commit=st.booleans(),
    )
    def setup(
        self,
        seed: int,
        lease: int,
        timers: str,
        up: Faults,
        down: Faults,
        second_alive: bool,
        rapid_commit: bool,
    ) -> None:
        rng = random.Random(seed)
        self.config = MachineConfig(hwaddr=HW, interface="eth0", rapid_commit=rapid_commit)
        machine = Machine(self.config, rng=random.Random(rng.getrandbits(64)))
        self.main = SimServer(ServerCore(server_config(MAIN, lease, timers, 0)))
        self.second = SimServer(
            ServerCore(server_config(SECOND, lease, "rfc", 1)), alive=second_alive
        )
        self.sim = Simulation(
            machine,
            [self.main, self.second],
            rng=random.Random(rng.getrandbits(64)),
            to_server=up,
            to_client=down,
        )
        self.mutator = Mutator(RandomSource(random.Random(rng.getrandbits(64))), [])
        self.sim.start()
        STEPS["examples"] += 1

    def _step(self, name: str) -> None:
        STEPS["rules"] += 1
        STEPS[name] += 1

    def _then(self, seconds: float) -> None:
        # Every rule lets some time pass after it, so that whatever it did meets the protocol
        # (retransmissions, renewals, expiry) and not only when `advance` is drawn.
        self.sim.advance(seconds)

    # -- time --

    @rule(seconds=st.one_of(st.floats(0.0, 10.0), st.floats(10.0, 5000.0)))
    def advance(self, seconds: float) -> None:
        self._step("advance")
        self.sim.advance(seconds)

    @rule(seconds=st.floats(1.0, 20_000.0))
    def suspend(self, seconds: float) -> None:
        self._step("suspend")
        self.sim.suspend(seconds)

    # -- the network --

    @rule(up=faults, down=faults, then=THEN)
    def change_faults(self, up: Faults, down: Faults, then: float) -> None:
        self._step("faults")
        self.sim.to_server, self.sim.to_client = up, down
        self._then(then)

    @rule(
        which=st.sampled_from(["main", "second"]),
        forget=st.booleans(),
        pool=st.integers(0, 1),
        then=THEN,
    )
    def server_dies_and_returns(self, which: str, forget: bool, pool: int, then: float) -> None:
        self._step("server-dies")
        server = self.main if which == "main" else self.second
        if server.alive:
            server.alive = False
        else:
            old = server.core.config
            first = IPv4Address("192.0.2.100") + 50 * pool
            server.core.reconfigure(
                replace(old, pool_start=first, pool_end=first + 40), forget=forget
            )
            server.alive = True
        self._then(then)

    @rule(which=st.sampled_from(["main", "second"]), on=st.booleans(), then=THEN)
    def nak_storm(self, which: str, on: bool, then: float) -> None:
        self._step("nak-storm")
        nak_storm((self.main if which == "main" else self.second).core, on)
        self._then(then)

    @rule(on=st.booleans(), then=THEN)
    def renewals_ignored(self, on: bool, then: float) -> None:
        # The main server's endpoint moves away from its server id: unicast renewals go
        # nowhere, broadcasts (rebinding, discovery) still reach it (drives REBINDING).
        self._step("renewals-ignored")
        self.main.address = IPv4Address("192.0.2.9") if on else MAIN
        self._then(then)

    @rule(delay=st.sampled_from([0.0, 0.2, 1.0]), then=THEN)
    def rogue_answers_first(self, delay: float, then: float) -> None:
        self._step("rogue")
        if self.rogue is None:
            rogue = ServerConfig(
                server_id=ROGUE,
                network=IPv4Network("198.51.100.0/24"),
                pool_start=IPv4Address("198.51.100.10"),
                pool_end=IPv4Address("198.51.100.20"),
                lease_time=SHORTEST,
                rapid_commit=False,
            )
            self.rogue = self.sim.add_server(SimServer(ServerCore(rogue)))
            self.main.reply_delay = self.second.reply_delay = delay
        else:
            self.rogue.alive = not self.rogue.alive
        self._then(then)

    # -- the host --

    @precondition(lambda self: self.sim.carrier and self.sim.machine.state is not State.STOPPED)
    @rule(then=THEN)
    def link_down(self, then: float) -> None:
        self._step("link-down")
        self.sim.link_down()
        self._then(then)

    @precondition(lambda self: not self.sim.carrier and self.sim.machine.state is not State.STOPPED)
    @rule(then=THEN)
    def link_up(self, then: float) -> None:
        self._step("link-up")
        self.sim.link_up()
        self._then(then)

    @precondition(lambda self: self.sim.machine.state in _DECLINABLE)
    @rule(then=THEN)
    def decline(self, then: float) -> None:
        self._step("decline")
        self.sim.decline()
        self._then(then)

    @precondition(lambda self: self.sim.machine.state is not State.STOPPED)
    @rule(then=THEN)
    def stop(self, then: float) -> None:
        self._step("stop")
        self.sim.stop()
        self._then(then)

    @precondition(lambda self: self.sim.machine.state is State.STOPPED)
    @rule(then=THEN)
    def start(self, then: float) -> None:
        self._step("start")
        self.sim.start()
        self._then(then)

    # -- hostile bytes --

    @rule(data=st.binary(max_size=600), then=THEN)
    def garbage(self, data: bytes, then: float) -> None:
        self._step("garbage")
        self.sim.inject(data)
        self._then(then)

    @rule(data=st.data(), then=THEN)
    def forged(self, data: st.DataObject, then: float) -> None:
        self._step("forged")
        xid = self.sim.machine.xid
        self.sim.inject(forged_reply(xid if xid is not None else 0, data))
        self._then(then)

    @rule(data=st.data(), then=THEN)
    def mutated_reply(self, data: st.DataObject, then: float) -> None:
        # A real reply from the server's log, readdressed to the current exchange and mutated.
        self._step("mutated")
        log = self.main.core.stats.sent_log
        if log:
            _, message = log[data.draw(st.integers(0, len(log) - 1))]
            xid = self.sim.machine.xid
            if xid is not None:
                message = message.replace(xid=xid)
            self.sim.inject(self.mutator.mutate(message.build()))
        self._then(then)

    # -- invariants --

    @invariant()
    def every_invariant_holds(self) -> None:
        self.sim.check(self.config, shortest_lease=SHORTEST)
        STEPS["invariant-checks"] += 1

    def teardown(self) -> None:
        if hasattr(self, "sim"):
            STEPS["sim-events"] += self.sim.steps
            STEPS["client-datagrams"] += len(self.sim.sent)
            STEPS["accepted-replies"] += len(self.sim.accepted)


# Explicit settings would override `--hypothesis-profile=thorough`: take the larger.
HostileNetworkMachine.TestCase.settings = settings(
    max_examples=max(250, settings().max_examples),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestHostileNetwork = HostileNetworkMachine.TestCase


# -- the Trio client -----------------------------------------------------------------------------

_CLIENT_STEPS = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 2000.0)),
    st.tuples(st.just("suspend"), st.floats(1.0, 5000.0)),
    st.tuples(st.just("link"), st.booleans()),
    st.tuples(st.just("server"), st.integers(0, 1)),
    st.tuples(st.just("nak"), st.booleans()),
    st.tuples(st.just("decline"), st.booleans()),
    st.tuples(st.just("faults"), faults),
)
SUSPEND_CHECK = 5.0


def _on_boot_clock(net: MemoryNetwork, suspends: list[tuple[int, float, float]]) -> list[Sent]:
    """The client's datagrams with their times on the boot clock (the machine's clock).

    `suspends` holds (captures before it, Trio time, seconds) per suspend.
    """
    sent = []
    for index, captured in enumerate(net.capture):
        if captured.direction != "to_server":
            continue
        offset = sum(seconds for before, _at, seconds in suspends if index >= before)
        message = Message.parse(captured.payload)
        sent.append(Sent(captured.time + offset, message, captured.destination))
    return sent


def _as_actions(
    calls: list[tuple[float, Lease | None, Lease | None]],
) -> list[tuple[float, LeaseAction]]:
    """Lease callback calls (old, new) as the machine's lease events."""
    actions: list[tuple[float, LeaseAction]] = []
    for time, old, new in calls:
        if old is None:
            assert new is not None
            actions.append((time, LeaseBound(new)))
        elif new is None:
            actions.append((time, LeaseLost(old, "?")))
        elif old.same_configuration(new):
            actions.append((time, LeaseRenewed(new)))
        else:
            actions.append((time, LeaseChanged(old, new)))
    return actions


async def _client_program(seed: int, lease_time: int, program: list[tuple[Any, ...]]) -> None:
    net = MemoryNetwork(random.Random(seed))
    link = net.attach(HW)
    suspended = 0.0
    suspends: list[tuple[int, float, float]] = []
    calls: list[tuple[float, Lease | None, Lease | None]] = []
    events: list[LeaseEvent] = []
    # Per lease handed to the callback: (boot time then, seconds it had left then).
    validity: list[tuple[float, float]] = []

    def boottime() -> float:
        return trio.current_time() + suspended

    async def callback(old: Lease | None, new: Lease | None) -> None:
        now = trio.current_time()
        calls.append((now, old, new))
        if new is not None:
            validity.append((boottime(), new.expiry - now))

    def check_boot_clock(held: Lease | None) -> None:
        if held is None or not validity:
            return
        now = trio.current_time()
        boot_then, left = validity[-1]
        # The client compares its clocks at least every `suspend_check` seconds: right after a
        # suspend the lease may be past its expiry on the boot clock for that long, never more.
        noticing = any(0 <= now - at <= SUSPEND_CHECK + 1e-6 for _i, at, _s in suspends)
        assert noticing or boottime() < boot_then + left + 1.0, (now, boottime(), validity[-1])

    client = Client(
        "eth0",
        ClientConfig(suspend_check=SUSPEND_CHECK),
        hwaddr=HW,
        callback=callback,
        transport_factory=lambda _interface, _address: link.open(),
        rng=random.Random(seed),
        boottime=boottime,
    )
    async with trio.open_nursery() as nursery:
        hostile = HostileNetwork(net, nursery)
        servers = [
            await hostile.add(ServerCore(server_config(MAIN, lease_time, "rfc", 0))),
            await hostile.add(ServerCore(server_config(SECOND, lease_time, "default", 1))),
        ]
        hostile.kill(servers[1])

        async def record() -> None:
            with client.subscribe() as channel:
                async for event in channel:
                    # A "latest value" subscriber may skip events (`missed`) but never the last.
                    events.append(event)

        nursery.start_soon(record)
        scope = trio.CancelScope()

        async def run() -> None:
            with scope:
                await client.run()

        nursery.start_soon(run)
        await trio.sleep(0)
        carrier = True
        inputs: list[tuple[float, str]] = []  # on the boot clock, as `sent`
        for step in program:
            kind = step[0]
            if kind not in ("advance", "faults"):
                inputs.append((boottime(), kind))
            if kind == "advance":
                await trio.sleep(step[1])
            elif kind == "suspend":
                suspends.append((len(net.capture), trio.current_time(), step[1]))
                suspended += step[1]
            elif kind == "link":
                if step[1] != carrier:
                    carrier = step[1]
                    link.carrier = carrier
                    (client.link_up if carrier else client.link_down)()
            elif kind == "server":
                served = servers[step[1]]
                if served.alive:
                    hostile.kill(served)
                else:
                    await hostile.revive(served)
            elif kind == "nak":
                nak_storm(servers[0].core, step[1])
            elif kind == "decline":
                if client.state in _DECLINABLE:
                    client.decline()
            else:
                net.to_server = net.to_client = step[1]
            for _ in range(100):
                # Let the client and the recorder run; no time passes.
                if [e.lease for e in events[-1:]] == [c[2] for c in calls[-1:]]:
                    break
                await trio.sleep(0)
            STEPS["client-steps"] += 1
            held = check_events(_as_actions(calls))
            assert held == client.lease
            assert [e.lease for e in events[-1:]] == ([held] if calls else [])
            check_usable(held, trio.current_time())
            check_boot_clock(held)
            sent = _on_boot_clock(net, suspends)
            pauses = [(at + before_s, 0.0) for _i, at, before_s in _boot_starts(suspends)]
            check_retransmissions(
                [s for s in sent if classify_send(s) in ("discover", "request", "reboot")],
                suspends=pauses,
            )
            check_traffic(sent, inputs, shortest_lease=lease_time)
        scope.cancel()
        nursery.cancel_scope.cancel()
    STEPS["client-datagrams"] += len(net.capture)


def _boot_starts(suspends: list[tuple[int, float, float]]) -> list[tuple[int, float, float]]:
    """(index, Trio time, boot-clock offset before it) of every suspend."""
    starts = []
    total = 0.0
    for index, at, seconds in suspends:
        starts.append((index, at, total))
        total += seconds
    return starts


@settings(
    max_examples=max(150, settings().max_examples // 4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    lease_time=st.sampled_from(LEASES),
    program=st.lists(_CLIENT_STEPS, min_size=5, max_size=40),
)
def test_client_on_hostile_network(seed: int, lease_time: int, program: list[Any]) -> None:
    """The Trio `Client` under a drawn program of hostile steps, invariants after each."""
    STEPS["client-examples"] += 1
    trio.run(
        _client_program,
        seed,
        lease_time,
        program,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
