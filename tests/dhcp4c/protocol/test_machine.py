"""Tests for dhcp4c.protocol.machine: the (state, input) table, timings, composition and
validation."""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pytest

from dhcp4c.protocol.clientid import duid_ll, iaid_for_interface, rfc4361_client_id
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import (
    DEFAULT_PARAMETER_REQUEST_LIST,
    MIN_V6ONLY_WAIT,
    SPECS,
    Action,
    Drop,
    InvalidTransition,
    Ipv6OnlyPreferred,
    LeaseBound,
    LeaseChanged,
    LeaseDiscarded,
    LeaseLost,
    LeaseRenewed,
    LossReason,
    Machine,
    MachineConfig,
    Send,
    State,
)
from dhcp4c.protocol.message import BOOTREPLY, BOOTREQUEST, FLAG_BROADCAST, Message, MessageType
from dhcp4c.protocol.options import OptionCode

A = IPv4Address
HW = bytes.fromhex("020000000001")
SERVER = A("192.0.2.1")
OTHER_SERVER = A("192.0.2.2")
ADDR = A("192.0.2.10")
SEED = 42
ZERO = A(0)


def _u32(value: int) -> bytes:
    return struct.pack("!I", value)


def config(**changes: object) -> MachineConfig:
    return MachineConfig(hwaddr=HW, interface="eth0", **changes)  # type: ignore[arg-type]


def reply(
    request: Message | None,
    mtype: MessageType,
    *,
    server: IPv4Address = SERVER,
    yiaddr: IPv4Address = ADDR,
    lease_time: int | None = 3600,
    t1: int | None = 1800,
    t2: int | None = 3150,
    rapid_commit: bool = False,
    options: dict[int, bytes] | None = None,
    **fields: object,
) -> Message:
    """What a server answers to `request` (None: to nothing, xid 0)."""
    opts: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: bytes([mtype]),
        OptionCode.SERVER_IDENTIFIER: server.packed,
    }
    if mtype is not MessageType.NAK:
        opts[OptionCode.SUBNET_MASK] = A("255.255.255.0").packed
        opts[OptionCode.ROUTER] = SERVER.packed
        if lease_time is not None:
            opts[OptionCode.IP_ADDRESS_LEASE_TIME] = _u32(lease_time)
        if t1 is not None:
            opts[OptionCode.RENEWAL_TIME_VALUE] = _u32(t1)
        if t2 is not None:
            opts[OptionCode.REBINDING_TIME_VALUE] = _u32(t2)
        if rapid_commit:
            opts[OptionCode.RAPID_COMMIT] = b""
    else:
        yiaddr = ZERO
    opts.update(options or {})
    values: dict[str, object] = {
        "op": BOOTREPLY,
        "xid": 0 if request is None else request.xid,
        "chaddr": HW,
        "yiaddr": yiaddr,
        "options": opts,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def sends(actions: list[Action]) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def last_sent(actions: list[Action]) -> Message:
    sent = sends(actions)
    assert sent, actions
    return sent[-1].message


@dataclass
class Harness:
    """A machine plus the last message it sent, driven through the protocol by hand."""

    machine: Machine
    now: float = 0.0
    sent: Message | None = None

    def state(self) -> State:
        # A call, so that mypy does not narrow the state across inputs.
        return self.machine.state

    def take(self) -> list[Action]:
        actions = self.machine.pop_actions()
        if sends(actions):
            self.sent = last_sent(actions)
        return actions

    def start(self, now: float = 0.0) -> list[Action]:
        self.now = now
        self.machine.start(now)
        return self.take()

    def answer(self, mtype: MessageType, now: float | None = None, **kw: Any) -> list[Action]:
        if now is not None:
            self.now = now
        self.machine.receive(reply(self.sent, mtype, **kw), self.now)
        return self.take()

    def fire(self) -> list[Action]:
        deadline = self.machine.next_deadline()
        assert deadline is not None
        self.now = deadline
        self.machine.handle_timer(deadline)
        return self.take()


def harness(cfg: MachineConfig | None = None, **kw: object) -> Harness:
    return Harness(Machine(cfg or config(), rng=random.Random(SEED), **kw))  # type: ignore[arg-type]


def bound(cfg: MachineConfig | None = None) -> Harness:
    """BOUND at t=1: DISCOVER at 0, OFFER, REQUEST at 1, ACK (lease 3600, T1 1800, T2 3150)."""
    h = harness(cfg)
    h.start(0.0)
    h.answer(MessageType.OFFER, 1.0)
    h.answer(MessageType.ACK)
    assert h.state() is State.BOUND
    return h


def known_lease() -> Lease:
    return bound().machine.lease  # type: ignore[return-value]


def in_state(state: State) -> Harness:
    """A harness whose machine is in `state`, with actions drained."""
    if state is State.STOPPED:
        return harness()
    if state is State.INIT:
        h = harness()
        h.start()
        h.answer(MessageType.OFFER, 1.0)
        h.answer(MessageType.NAK)
    elif state is State.SELECTING:
        h = harness()
        h.start()
    elif state is State.REQUESTING:
        h = harness()
        h.start()
        h.answer(MessageType.OFFER, 1.0)
    elif state is State.BOUND:
        h = bound()
    elif state is State.RENEWING:
        h = bound()
        h.fire()
    elif state is State.REBINDING:
        h = bound()
        while h.state() is not State.REBINDING:
            h.fire()
    elif state is State.INIT_REBOOT:
        h = bound()
        h.machine.link_down(h.now)
    else:
        assert state is State.REBOOTING
        h = harness(lease=known_lease())
        h.start(10.0)
    assert h.state() is state
    h.take()
    return h


# -- the (state, input) table --------------------------------------------------------------------


def _receive(mtype: MessageType, **kw: Any) -> Callable[[Harness], list[Action]]:
    def feed(h: Harness) -> list[Action]:
        return h.answer(mtype, **kw)

    return feed


def _call(name: str) -> Callable[[Harness], list[Action]]:
    def call(h: Harness) -> list[Action]:
        getattr(h.machine, name)(h.now)
        return h.take()

    return call


def _timer(h: Harness) -> list[Action]:
    if h.machine.next_deadline() is None:
        h.machine.handle_timer(h.now + 1e6)
        return h.take()
    return h.fire()


def _early_timer(h: Harness) -> list[Action]:
    deadline = h.machine.next_deadline()
    h.machine.handle_timer(h.now if deadline is None else deadline - 0.001)
    return h.take()


INPUTS: dict[str, Callable[[Harness], list[Action]]] = {
    "start": _call("start"),
    "stop": _call("stop"),
    "offer": _receive(MessageType.OFFER),
    "ack": _receive(MessageType.ACK),
    "rapid-ack": _receive(MessageType.ACK, rapid_commit=True),
    "nak": _receive(MessageType.NAK),
    "timer": _timer,
    "early-timer": _early_timer,
    "link-down": _call("link_down"),
    "link-up": _call("link_up"),
    "decline": _call("decline"),
}

S = State
RAISES = None
# (state, input) -> (next state, output kinds, drop reason) or RAISES. "early-timer" always
# changes nothing and is checked for every state separately.
TABLE: dict[tuple[State, str], tuple[State, list[type], str | None] | None] = {
    # STOPPED: only start does anything; replies are dropped, link changes only noted.
    (S.STOPPED, "start"): (S.SELECTING, [Send], None),
    (S.STOPPED, "stop"): RAISES,
    (S.STOPPED, "offer"): (S.STOPPED, [], "stopped"),
    (S.STOPPED, "ack"): (S.STOPPED, [], "stopped"),
    (S.STOPPED, "rapid-ack"): (S.STOPPED, [], "stopped"),
    (S.STOPPED, "nak"): (S.STOPPED, [], "stopped"),
    (S.STOPPED, "timer"): (S.STOPPED, [], None),
    (S.STOPPED, "link-down"): (S.STOPPED, [], None),
    (S.STOPPED, "link-up"): (S.STOPPED, [], None),
    (S.STOPPED, "decline"): RAISES,
    # INIT (backing off after a NAK)
    (S.INIT, "start"): RAISES,
    (S.INIT, "stop"): (S.STOPPED, [], None),
    (S.INIT, "offer"): (S.INIT, [], "no-exchange"),
    (S.INIT, "ack"): (S.INIT, [], "no-exchange"),
    (S.INIT, "rapid-ack"): (S.INIT, [], "no-exchange"),
    (S.INIT, "nak"): (S.INIT, [], "no-exchange"),
    (S.INIT, "timer"): (S.SELECTING, [Send], None),
    (S.INIT, "link-down"): (S.INIT, [], None),
    (S.INIT, "link-up"): (S.INIT, [], None),
    (S.INIT, "decline"): RAISES,
    # SELECTING
    (S.SELECTING, "start"): RAISES,
    (S.SELECTING, "stop"): (S.STOPPED, [], None),
    (S.SELECTING, "offer"): (S.REQUESTING, [Send], None),
    (S.SELECTING, "ack"): (S.SELECTING, [], "ack-without-rapid-commit"),
    (S.SELECTING, "rapid-ack"): (S.BOUND, [LeaseBound], None),
    (S.SELECTING, "nak"): (S.SELECTING, [], "unexpected-type"),
    (S.SELECTING, "timer"): (S.SELECTING, [Send], None),
    (S.SELECTING, "link-down"): (S.INIT, [], None),
    (S.SELECTING, "link-up"): (S.SELECTING, [], None),
    (S.SELECTING, "decline"): RAISES,
    # REQUESTING
    (S.REQUESTING, "start"): RAISES,
    (S.REQUESTING, "stop"): (S.STOPPED, [], None),
    (S.REQUESTING, "offer"): (S.REQUESTING, [], "unexpected-type"),
    (S.REQUESTING, "ack"): (S.BOUND, [LeaseBound], None),
    (S.REQUESTING, "rapid-ack"): (S.BOUND, [LeaseBound], None),
    (S.REQUESTING, "nak"): (S.INIT, [], None),
    (S.REQUESTING, "timer"): (S.REQUESTING, [Send], None),
    (S.REQUESTING, "link-down"): (S.INIT, [], None),
    (S.REQUESTING, "link-up"): (S.REQUESTING, [], None),
    (S.REQUESTING, "decline"): RAISES,
    # BOUND
    (S.BOUND, "start"): RAISES,
    (S.BOUND, "stop"): (S.STOPPED, [], None),
    (S.BOUND, "offer"): (S.BOUND, [], "no-exchange"),
    (S.BOUND, "ack"): (S.BOUND, [], "no-exchange"),
    (S.BOUND, "rapid-ack"): (S.BOUND, [], "no-exchange"),
    (S.BOUND, "nak"): (S.BOUND, [], "no-exchange"),
    (S.BOUND, "timer"): (S.RENEWING, [Send], None),
    (S.BOUND, "link-down"): (S.INIT_REBOOT, [], None),
    (S.BOUND, "link-up"): (S.BOUND, [], None),
    (S.BOUND, "decline"): (S.INIT, [Send, LeaseLost], None),
    # RENEWING
    (S.RENEWING, "start"): RAISES,
    (S.RENEWING, "stop"): (S.STOPPED, [], None),
    (S.RENEWING, "offer"): (S.RENEWING, [], "unexpected-type"),
    (S.RENEWING, "ack"): (S.BOUND, [LeaseRenewed], None),
    (S.RENEWING, "rapid-ack"): (S.BOUND, [LeaseRenewed], None),
    (S.RENEWING, "nak"): (S.INIT, [LeaseLost], None),
    (S.RENEWING, "timer"): (S.RENEWING, [Send], None),
    (S.RENEWING, "link-down"): (S.INIT_REBOOT, [], None),
    (S.RENEWING, "link-up"): (S.RENEWING, [], None),
    (S.RENEWING, "decline"): (S.INIT, [Send, LeaseLost], None),
    # REBINDING
    (S.REBINDING, "start"): RAISES,
    (S.REBINDING, "stop"): (S.STOPPED, [], None),
    (S.REBINDING, "offer"): (S.REBINDING, [], "unexpected-type"),
    (S.REBINDING, "ack"): (S.BOUND, [LeaseRenewed], None),
    (S.REBINDING, "rapid-ack"): (S.BOUND, [LeaseRenewed], None),
    (S.REBINDING, "nak"): (S.INIT, [LeaseLost], None),
    (S.REBINDING, "timer"): (S.REBINDING, [Send], None),
    (S.REBINDING, "link-down"): (S.INIT_REBOOT, [], None),
    (S.REBINDING, "link-up"): (S.REBINDING, [], None),
    (S.REBINDING, "decline"): (S.INIT, [Send, LeaseLost], None),
    # INIT_REBOOT (link down while holding a lease)
    (S.INIT_REBOOT, "start"): RAISES,
    (S.INIT_REBOOT, "stop"): (S.STOPPED, [], None),
    (S.INIT_REBOOT, "offer"): (S.INIT_REBOOT, [], "no-exchange"),
    (S.INIT_REBOOT, "ack"): (S.INIT_REBOOT, [], "no-exchange"),
    (S.INIT_REBOOT, "rapid-ack"): (S.INIT_REBOOT, [], "no-exchange"),
    (S.INIT_REBOOT, "nak"): (S.INIT_REBOOT, [], "no-exchange"),
    (S.INIT_REBOOT, "timer"): (S.INIT, [LeaseLost], None),
    (S.INIT_REBOOT, "link-down"): (S.INIT_REBOOT, [], None),
    (S.INIT_REBOOT, "link-up"): (S.REBOOTING, [Send], None),
    (S.INIT_REBOOT, "decline"): RAISES,
    # REBOOTING
    (S.REBOOTING, "start"): RAISES,
    (S.REBOOTING, "stop"): (S.STOPPED, [], None),
    (S.REBOOTING, "offer"): (S.REBOOTING, [], "unexpected-type"),
    (S.REBOOTING, "ack"): (S.BOUND, [LeaseRenewed], None),
    (S.REBOOTING, "rapid-ack"): (S.BOUND, [LeaseRenewed], None),
    # The lease's server NAKs the INIT-REBOOT: the host moved, and the first NAK since start is
    # no failure to back off from (RFC 2131 §3.2 step 3): discover at once.
    (S.REBOOTING, "nak"): (S.SELECTING, [LeaseLost, Send], None),
    (S.REBOOTING, "timer"): (S.REBOOTING, [Send], None),
    (S.REBOOTING, "link-down"): (S.INIT_REBOOT, [], None),
    (S.REBOOTING, "link-up"): (S.REBOOTING, [], None),
    (S.REBOOTING, "decline"): RAISES,
}


def test_table_is_complete() -> None:
    assert set(TABLE) == {(s, i) for s in State for i in INPUTS if i != "early-timer"}


def snapshot(m: Machine) -> tuple[object, ...]:
    return (m.state, m.lease, m.next_deadline(), m.xid, dict(m.drops), m.link_is_up)


@pytest.mark.parametrize(("state", "event"), list(TABLE), ids=str)
def test_transition_table(state: State, event: str) -> None:
    h = in_state(state)
    expected = TABLE[state, event]
    if expected is RAISES:
        before = snapshot(h.machine)
        with pytest.raises(InvalidTransition):
            INPUTS[event](h)
        assert snapshot(h.machine) == before
        assert h.machine.pop_actions() == []
        return
    next_state, kinds, drop = expected
    drops_before = dict(h.machine.drops)
    actions = INPUTS[event](h)
    assert h.state() is next_state
    assert [type(a) for a in actions] == kinds
    drops = dict(h.machine.drops)
    if drop is None:
        assert drops == drops_before
    else:
        assert drops == {**drops_before, drop: drops_before.get(drop, 0) + 1}
    # Lease invariants after every step.
    if next_state in (S.BOUND, S.RENEWING, S.REBINDING, S.INIT_REBOOT, S.REBOOTING):
        assert h.machine.lease is not None
    elif next_state in (S.SELECTING, S.REQUESTING, S.INIT):
        assert h.machine.lease is None
    if next_state is not S.STOPPED and h.machine.link_is_up:
        assert h.machine.next_deadline() is not None


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_dropped_reply_changes_nothing(state: State) -> None:
    h = in_state(state)
    before = snapshot(h.machine)[:4]
    h.machine.receive(reply(h.sent, MessageType.ACK, xid=0xDEAD), h.now)
    assert snapshot(h.machine)[:4] == before
    assert h.machine.pop_actions() == []


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_early_timer_changes_nothing(state: State) -> None:
    h = in_state(state)
    before = snapshot(h.machine)
    assert _early_timer(h) == []
    assert snapshot(h.machine) == before


# -- discovery and retransmission ---------------------------------------------------------------


def test_discover_retransmission_schedule_is_exact() -> None:
    h = harness()
    h.start(100.0)
    expected = random.Random(SEED)
    xid = expected.getrandbits(32)
    times = [100.0]
    for nominal in (4, 8, 16, 32, 64, 64, 64):
        times.append(times[-1] + (nominal + expected.uniform(-1, 1)))
    seen = [h.now]
    for _ in range(7):
        h.fire()
        seen.append(h.now)
        assert h.sent is not None and h.sent.xid == xid  # same xid for retransmissions
        assert h.sent.secs == int(h.now - 100.0)
    assert seen == times
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    for gap, nominal in zip(gaps, (4, 8, 16, 32, 64, 64, 64), strict=True):
        assert nominal - 1 <= gap <= nominal + 1


def test_shrunk_schedule_keeps_jitter_within_half_the_interval() -> None:
    h = harness(config(retransmit_initial=0.1, retransmit_cap=0.4))
    h.start(0.0)
    gaps = []
    for _ in range(5):
        before = h.now
        h.fire()
        gaps.append(h.now - before)
    for gap, nominal in zip(gaps, (0.1, 0.2, 0.4, 0.4, 0.4), strict=True):
        assert nominal / 2 <= gap <= nominal * 1.5


def test_requesting_gives_up_after_max_tries_and_backs_off() -> None:
    h = harness(config(max_request_tries=3))
    h.start(0.0)
    discover_xid = h.sent.xid if h.sent else None
    h.answer(MessageType.OFFER, 1.0)
    requests = [h.now]
    while h.state() is State.REQUESTING:
        actions = h.fire()
        if sends(actions):
            requests.append(h.now)
    assert len(requests) == 3
    assert h.state() is State.INIT
    gave_up = h.now
    wait = h.machine.next_deadline()
    assert wait is not None and 1.0 <= wait - gave_up <= 1.25  # first backoff step
    actions = h.fire()
    assert h.state() is State.SELECTING
    discover = last_sent(actions)
    assert discover.message_type is MessageType.DISCOVER
    assert discover.xid != discover_xid
    assert discover.secs == 0


def test_request_in_requesting_repeats_xid_and_secs_of_the_discover() -> None:
    h = harness()
    h.start(0.0)
    h.fire()
    h.fire()  # third DISCOVER, secs = int(~12)
    discover = h.sent
    assert discover is not None and discover.secs >= 10
    h.answer(MessageType.OFFER, h.now + 0.5)
    request = h.sent
    assert request is not None
    assert (request.xid, request.secs) == (discover.xid, discover.secs)
    h.fire()
    assert h.sent is not None and (h.sent.xid, h.sent.secs) == (discover.xid, discover.secs)


def test_renewing_and_rebinding_schedule_is_exact() -> None:
    h = bound()  # REQUEST at 1.0: T1 1801, T2 3151, expiry 3601
    lease = h.machine.lease
    assert lease is not None
    assert (lease.obtained, lease.t1, lease.t2, lease.expiry) == (1.0, 1801.0, 3151.0, 3601.0)
    log: list[tuple[float, State, str]] = []
    while True:
        actions = h.fire()
        for action in actions:
            if isinstance(action, Send):
                kind = "unicast" if action.destination == SERVER else "broadcast"
                log.append((h.now, h.state(), kind))
            elif isinstance(action, LeaseLost):
                log.append((h.now, h.state(), "lost"))
        if h.state() is State.SELECTING:
            break
    # RFC 2131 §4.4.5: half the remaining time to T2 / expiry, at least 60 s, never past them.
    assert log == [
        (1801.0, S.RENEWING, "unicast"),
        (2476.0, S.RENEWING, "unicast"),
        (2813.5, S.RENEWING, "unicast"),
        (2982.25, S.RENEWING, "unicast"),
        (3066.625, S.RENEWING, "unicast"),
        (3126.625, S.RENEWING, "unicast"),
        (3151.0, S.REBINDING, "broadcast"),
        (3376.0, S.REBINDING, "broadcast"),
        (3488.5, S.REBINDING, "broadcast"),
        (3548.5, S.REBINDING, "broadcast"),
        (3601.0, S.SELECTING, "lost"),
        (3601.0, S.SELECTING, "broadcast"),
    ]


def test_expiry_rediscovers_asking_for_the_old_address() -> None:
    h = in_state(State.REBINDING)
    old = h.machine.lease
    assert old is not None
    h.now = old.expiry
    h.machine.handle_timer(old.expiry)
    lost, send = h.take()
    assert lost == LeaseLost(old, "expired")
    assert isinstance(send, Send)
    assert send.message.message_type is MessageType.DISCOVER
    assert send.message.options.requested_address == ADDR
    assert h.machine.lease is None


def test_late_timer_in_bound_goes_straight_to_rebinding() -> None:
    h = bound()
    lease = h.machine.lease
    assert lease is not None
    h.machine.handle_timer(lease.t2 + 1)
    assert h.state() is State.REBINDING
    (send,) = h.machine.pop_actions()
    assert isinstance(send, Send) and send.destination is None


def test_late_timer_after_expiry_loses_the_lease() -> None:
    h = bound()
    lease = h.machine.lease
    assert lease is not None
    h.machine.handle_timer(lease.expiry + 100)
    actions = h.machine.pop_actions()
    assert actions[0] == LeaseLost(lease, "expired")
    assert h.state() is State.SELECTING


# -- binding, lease timing ----------------------------------------------------------------------


def test_lease_counts_from_the_latest_request_sent() -> None:
    h = harness()
    h.start(0.0)
    h.answer(MessageType.OFFER, 1.0)
    h.fire()  # REQUEST retransmitted
    sent_at = h.now
    actions = h.answer(MessageType.ACK, sent_at + 0.25)
    (event,) = actions
    assert isinstance(event, LeaseBound)
    assert event.lease.obtained == sent_at
    assert event.lease.expiry == sent_at + 3600
    assert event.lease.t1 == sent_at + 1800


def test_rapid_commit_binds_from_discover() -> None:
    h = harness()
    h.start(5.0)
    (event,) = h.answer(MessageType.ACK, 5.1, rapid_commit=True)
    assert isinstance(event, LeaseBound)
    assert event.lease.obtained == 5.0
    assert h.state() is State.BOUND


def test_offer_with_rapid_commit_is_still_an_offer() -> None:
    h = harness()
    h.start()
    actions = h.answer(MessageType.OFFER, rapid_commit=True)
    assert h.state() is State.REQUESTING
    assert last_sent(actions).message_type is MessageType.REQUEST


def test_rapid_commit_disabled() -> None:
    h = harness(config(rapid_commit=False))
    actions = h.start()
    assert OptionCode.RAPID_COMMIT not in last_sent(actions).options
    assert h.answer(MessageType.ACK, rapid_commit=True) == []
    assert h.machine.drops == {"ack-without-rapid-commit": 1}
    assert h.state() is State.SELECTING


def test_renewal_with_new_address_is_a_change() -> None:
    h = in_state(State.RENEWING)
    old = h.machine.lease
    (event,) = h.answer(MessageType.ACK, yiaddr=A("192.0.2.11"))
    assert isinstance(event, LeaseChanged)
    assert event.old == old and event.new.address.ip == A("192.0.2.11")


def test_renewal_keeps_failures_reset_and_moves_timers() -> None:
    h = in_state(State.RENEWING)
    (event,) = h.answer(MessageType.ACK, h.now + 0.5)
    assert isinstance(event, LeaseRenewed)
    assert event.lease.obtained == 1801.0
    assert h.machine.next_deadline() == 1801.0 + 1800


def test_rebinding_accepts_another_server() -> None:
    h = in_state(State.REBINDING)
    (event,) = h.answer(MessageType.ACK, server=OTHER_SERVER)
    assert isinstance(event, LeaseChanged)
    assert event.new.server_id == OTHER_SERVER


def test_expired_on_arrival_is_dropped() -> None:
    h = harness()
    h.start(0.0)
    h.answer(MessageType.OFFER, 1.0)
    assert h.answer(MessageType.ACK, 4.0, lease_time=2, t1=None, t2=None) == []
    assert h.machine.drops == {"expired-on-arrival": 1}
    assert h.state() is State.REQUESTING


# -- INIT-REBOOT ----------------------------------------------------------------------------------


def test_start_with_known_lease_reboots() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    assert h.state() is State.STOPPED and h.machine.lease == lease
    actions = h.start(100.0)
    assert h.state() is State.REBOOTING
    (send,) = actions
    assert isinstance(send, Send) and send.destination is None
    (event,) = h.answer(MessageType.ACK, 100.1, server=OTHER_SERVER)
    assert isinstance(event, LeaseChanged)  # another server id is another configuration
    assert h.state() is State.BOUND


def test_reboot_nak_from_any_server_loses_the_lease() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    h.start(100.0)
    # Another server's NAK is held for the grace, then taken.
    assert h.answer(MessageType.NAK, server=OTHER_SERVER) == []
    assert h.machine.next_deadline() == 100.25
    event, send = h.fire()
    assert event == LeaseLost(lease, "nak")
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert h.state() is State.SELECTING
    assert h.machine.lease is None


def test_reboot_nak_from_the_lease_server_discovers_at_once() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    h.start(100.0)
    event, send = h.answer(MessageType.NAK, 100.1)
    assert event == LeaseLost(lease, "nak")
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert send.destination is None and send.message.options.requested_address is None
    assert h.state() is State.SELECTING and h.machine.lease is None


def test_second_nak_after_a_reboot_nak_backs_off() -> None:
    # The free NAK still counts: a NAK in the REQUESTING that follows is the second failure.
    h = harness(config(backoff_initial=1.0), lease=known_lease())
    h.start(100.0)
    h.answer(MessageType.NAK, 100.1)
    h.answer(MessageType.OFFER, 100.2)
    assert h.state() is State.REQUESTING
    assert h.answer(MessageType.NAK, 100.3) == []
    assert h.state() is State.INIT
    wait = h.machine.next_deadline()
    assert wait is not None and 100.3 + 2.0 <= wait <= 100.3 + 2.5


def test_reboot_foreign_nak_then_ack_within_the_grace_binds() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    h.start(100.0)
    retransmit = h.machine.next_deadline()
    assert h.answer(MessageType.NAK, 100.05, server=OTHER_SERVER) == []
    assert h.state() is State.REBOOTING and h.machine.lease == lease
    assert h.machine.next_deadline() == pytest.approx(100.3)
    # Another foreign NAK does not extend the grace.
    assert h.answer(MessageType.NAK, 100.1, server=OTHER_SERVER) == []
    assert h.machine.next_deadline() == pytest.approx(100.3)
    assert h.machine.drops == {"nak-already-held": 1}
    h.machine.handle_timer(100.29)
    assert h.take() == [] and h.state() is State.REBOOTING
    (event,) = h.answer(MessageType.ACK, 100.2)
    assert isinstance(event, LeaseRenewed)
    assert h.state() is State.BOUND and h.machine.next_deadline() != retransmit
    assert h.machine.drops == {"nak-already-held": 1}


def test_reboot_own_server_nak_within_the_grace_is_taken_at_once() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    h.start(100.0)
    assert h.answer(MessageType.NAK, 100.05, server=OTHER_SERVER) == []
    event, send = h.answer(MessageType.NAK, 100.1)
    assert event == LeaseLost(lease, "nak")
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert h.state() is State.SELECTING and h.now == 100.1


def test_reboot_nak_grace_exact_times() -> None:
    lease = known_lease()
    h = harness(config(reboot_nak_grace=2.0), lease=lease)
    h.start(100.0)
    retransmit = h.machine.next_deadline()
    assert retransmit is not None and retransmit > 102.5
    h.answer(MessageType.NAK, 100.5, server=OTHER_SERVER)
    assert h.machine.next_deadline() == 102.5
    h.machine.handle_timer(102.499)
    assert h.take() == []
    h.machine.handle_timer(102.5)
    event, send = h.take()
    assert event == LeaseLost(lease, "nak")
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert h.state() is State.SELECTING


def test_reboot_nak_grace_longer_than_the_retransmission() -> None:
    # The retransmission inside a grace goes out; out of tries with a NAK held, the NAK stands.
    lease = known_lease()
    h = harness(config(reboot_nak_grace=100.0, max_request_tries=2), lease=lease)
    h.start(100.0)
    h.answer(MessageType.NAK, 100.5, server=OTHER_SERVER)
    (send,) = h.fire()
    assert send.message.message_type is MessageType.REQUEST  # type: ignore[union-attr]
    assert h.state() is State.REBOOTING
    event, discover = h.fire()
    assert h.now < 200.5
    assert event == LeaseLost(lease, "nak")
    assert discover.message.message_type is MessageType.DISCOVER  # type: ignore[union-attr]


def test_reboot_nak_grace_zero_takes_any_nak_at_once() -> None:
    lease = known_lease()
    h = harness(config(reboot_nak_grace=0.0), lease=lease)
    h.start(100.0)
    event, _ = h.answer(MessageType.NAK, 100.1, server=OTHER_SERVER)
    assert event == LeaseLost(lease, "nak")
    assert h.state() is State.SELECTING


def test_reboot_nak_grace_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="reboot_nak_grace"):
        config(reboot_nak_grace=-0.1)


def test_start_with_expired_lease_discovers_with_hint() -> None:
    lease = known_lease()
    h = harness(lease=lease)
    lost, send = h.start(lease.expiry)
    assert lost == LeaseLost(lease, "expired")
    assert isinstance(send, Send)
    assert send.message.message_type is MessageType.DISCOVER
    assert send.message.options.requested_address == ADDR
    assert h.state() is State.SELECTING


def test_reboot_without_answer_keeps_the_lease_by_its_timers() -> None:
    lease = known_lease()
    h = harness(config(max_request_tries=2), lease=lease)
    h.start(2000.0)  # past T1 (1801)
    h.fire()
    assert h.state() is State.REBOOTING
    actions = h.fire()  # gives up: resumes in RENEWING and sends a unicast REQUEST
    assert h.state() is State.RENEWING
    (send,) = actions
    assert isinstance(send, Send) and send.destination == SERVER
    assert h.machine.lease == lease


def test_reboot_without_answer_before_t1_is_bound() -> None:
    lease = known_lease()
    h = harness(config(max_request_tries=1), lease=lease)
    h.start(100.0)
    assert h.fire() == []
    assert h.state() is State.BOUND
    assert h.machine.next_deadline() == lease.t1


# -- a lease nobody was told of (a lease file) -----------------------------------------------------


def test_unannounced_lease_confirmed_is_bound() -> None:
    lease = known_lease()
    h = harness(lease=lease, announced=False)
    h.start(100.0)
    (event,) = h.answer(MessageType.ACK, 100.1)
    assert isinstance(event, LeaseBound) and event.lease.address == lease.address
    # From then on the lease is announced: the next renewal is a renewal.
    h.fire()
    (renewed,) = h.answer(MessageType.ACK)
    assert isinstance(renewed, LeaseRenewed)


def test_unannounced_lease_refused_is_discarded() -> None:
    lease = known_lease()
    h = harness(lease=lease, announced=False)
    h.start(100.0)
    (event, _) = h.answer(MessageType.NAK)
    assert event == LeaseDiscarded(lease, LossReason.NAK)
    assert h.state() is State.SELECTING and h.machine.lease is None


def test_unannounced_lease_expired_at_start_is_discarded() -> None:
    lease = known_lease()
    h = harness(lease=lease, announced=False)
    discarded, send = h.start(lease.expiry)
    assert discarded == LeaseDiscarded(lease, LossReason.EXPIRED)
    assert isinstance(send, Send) and send.message.options.requested_address == ADDR


def test_unannounced_lease_kept_after_silence_is_bound() -> None:
    lease = known_lease()
    h = harness(config(max_request_tries=1), lease=lease, announced=False)
    h.start(100.0)
    assert h.fire() == [LeaseBound(lease)]  # RFC 2131 §3.2: relied on from now on
    assert h.state() is State.BOUND
    assert h.machine.next_deadline() == lease.t1


# -- the state specs -------------------------------------------------------------------------------


def test_every_state_has_a_consistent_spec() -> None:
    assert set(SPECS) == set(State)
    for state, spec in SPECS.items():
        assert (spec.sends is not None) == bool(spec.accepts) == (spec.transport is not None), state
        assert (spec.sends is not None) == (spec.retransmit is not None), state
        assert not spec.uses_address or spec.holds_lease, state
    assert {s for s, spec in SPECS.items() if spec.may_decline} == {
        State.BOUND,
        State.RENEWING,
        State.REBINDING,
    }
    assert {s for s, spec in SPECS.items() if spec.holds_lease} == {
        State.BOUND,
        State.RENEWING,
        State.REBINDING,
        State.INIT_REBOOT,
        State.REBOOTING,
    }


@pytest.mark.parametrize("state", list(State), ids=str)
def test_the_state_sends_what_its_spec_says(state: State) -> None:
    h = in_state(state)
    spec = h.machine.spec
    assert spec is SPECS[state]
    if spec.sends is None:
        return
    assert h.sent is not None
    message = h.sent
    assert message.message_type is spec.sends.mtype
    lease = h.machine.lease
    assert (message.ciaddr != ZERO) == spec.sends.ciaddr
    if spec.sends.ciaddr:
        assert lease is not None and message.ciaddr == lease.address.ip
    assert (OptionCode.SERVER_IDENTIFIER in message.options) == spec.sends.server_id
    if spec.sends.requested in ("offer", "lease"):
        assert message.options.requested_address == ADDR


def test_link_flap_while_bound_verifies_the_lease() -> None:
    h = bound()
    h.machine.link_down(10.0)
    assert h.state() is State.INIT_REBOOT
    assert h.machine.pop_actions() == []
    lease = h.machine.lease
    assert lease is not None
    assert h.machine.next_deadline() == lease.expiry
    h.now = 20.0
    h.machine.link_up(20.0)
    request = last_sent(h.take())
    assert h.state() is State.REBOOTING
    assert request.options.requested_address == ADDR
    assert OptionCode.SERVER_IDENTIFIER not in request.options


def test_link_up_during_backoff_discovers_at_once() -> None:
    h = in_state(State.INIT)
    h.machine.link_down(h.now)
    assert h.machine.next_deadline() is None
    h.machine.link_up(h.now + 1)
    assert h.state() is State.SELECTING
    assert last_sent(h.take()).message_type is MessageType.DISCOVER


def test_start_while_link_down_waits() -> None:
    h = harness(link_up=False)
    assert h.start() == []
    assert h.state() is State.INIT and h.machine.next_deadline() is None
    h.machine.link_up(3.0)
    assert h.state() is State.SELECTING
    h2 = harness(lease=known_lease(), link_up=False)
    assert h2.start(5.0) == []
    assert h2.state() is State.INIT_REBOOT


def test_lease_expiry_while_link_down() -> None:
    h = in_state(State.INIT_REBOOT)
    lease = h.machine.lease
    assert h.fire() == [LeaseLost(lease, "expired")]  # type: ignore[arg-type]
    assert h.state() is State.INIT and h.machine.next_deadline() is None
    h.machine.link_up(h.now + 1)
    discover = last_sent(h.take())
    assert discover.options.requested_address == ADDR


# -- NAK, decline, stop ---------------------------------------------------------------------------


def test_nak_storm_stays_bounded() -> None:
    """A server that NAKs every REQUEST: backoff doubles up to the cap, traffic stays small."""
    h = harness()
    h.start(0.0)
    waits = []
    packets = 1
    while h.now < 3600:
        if h.state() is State.SELECTING:
            h.answer(MessageType.OFFER)
            packets += 1
        h.answer(MessageType.NAK)
        assert h.state() is State.INIT
        deadline = h.machine.next_deadline()
        assert deadline is not None
        waits.append(deadline - h.now)
        h.fire()
        packets += 1
    for n, wait in enumerate(waits[:10]):
        nominal = min(300.0, 2.0**n)
        assert nominal <= wait <= nominal * 1.25
    assert packets < 50


def test_failure_count_resets_after_binding() -> None:
    h = in_state(State.INIT)
    h.fire()
    h.answer(MessageType.OFFER)
    h.answer(MessageType.NAK)  # second failure: 2 s
    deadline = h.machine.next_deadline()
    assert deadline is not None and 2.0 <= deadline - h.now <= 2.5
    h.fire()
    h.answer(MessageType.OFFER)
    h.answer(MessageType.ACK)
    h.fire()  # RENEWING
    h.answer(MessageType.NAK)
    deadline = h.machine.next_deadline()
    assert deadline is not None and 1.0 <= deadline - h.now <= 1.25


def test_foreign_nak_is_dropped_in_requesting_and_renewing() -> None:
    for state in (State.REQUESTING, State.RENEWING):
        h = in_state(state)
        assert h.answer(MessageType.NAK, server=OTHER_SERVER) == []
        assert h.state() is state
        assert h.machine.drops == {"foreign-nak": 1}


def test_ack_from_another_server_is_dropped_in_requesting_and_renewing() -> None:
    for state in (State.REQUESTING, State.RENEWING):
        h = in_state(state)
        assert h.answer(MessageType.ACK, server=OTHER_SERVER) == []
        assert h.state() is state
        assert h.machine.drops == {"wrong-server": 1}


def test_rebinding_nak_from_any_server_counts() -> None:
    h = in_state(State.REBINDING)
    (event,) = h.answer(MessageType.NAK, server=OTHER_SERVER)
    assert isinstance(event, LeaseLost) and event.reason == "nak"


def test_decline_sends_decline_and_waits_at_least_ten_seconds() -> None:
    h = bound()
    lease = h.machine.lease
    assert lease is not None
    h.now = 2.0
    send, lost = INPUTS["decline"](h)
    assert lost == LeaseLost(lease, "declined")
    assert isinstance(send, Send) and send.destination is None
    decline = send.message
    assert decline.message_type is MessageType.DECLINE
    assert decline.options.requested_address == ADDR
    assert decline.options.server_identifier == SERVER
    assert decline.ciaddr == ZERO
    for code in (
        OptionCode.PARAMETER_REQUEST_LIST,
        OptionCode.MAXIMUM_DHCP_MESSAGE_SIZE,
        OptionCode.IP_ADDRESS_LEASE_TIME,
        OptionCode.VENDOR_CLASS_IDENTIFIER,
    ):
        assert code not in decline.options
    deadline = h.machine.next_deadline()
    assert deadline is not None and deadline - 2.0 >= 10.0
    discover = last_sent(h.fire())
    assert discover.message_type is MessageType.DISCOVER
    assert OptionCode.REQUESTED_IP_ADDRESS not in discover.options


def test_stop_without_release_keeps_the_lease_for_a_restart() -> None:
    h = bound()
    lease = h.machine.lease
    h.machine.stop(5.0)
    assert h.machine.pop_actions() == []
    assert h.state() is State.STOPPED and h.machine.lease == lease
    assert h.machine.next_deadline() is None
    h.machine.start(6.0)
    assert h.state() is State.REBOOTING


def test_stop_with_release() -> None:
    h = bound(config(release_on_stop=True))
    lease = h.machine.lease
    assert lease is not None
    h.machine.stop(5.0)
    send, lost = h.machine.pop_actions()
    assert lost == LeaseLost(lease, "released")
    assert isinstance(send, Send) and send.destination == SERVER
    release = send.message
    assert release.message_type is MessageType.RELEASE
    assert release.ciaddr == ADDR
    assert release.options.server_identifier == SERVER
    assert OptionCode.REQUESTED_IP_ADDRESS not in release.options
    assert OptionCode.PARAMETER_REQUEST_LIST not in release.options
    assert h.machine.lease is None
    h.machine.start(6.0)
    assert h.state() is State.SELECTING


def test_stop_with_release_but_no_lease_sends_nothing() -> None:
    h = harness(config(release_on_stop=True))
    h.start()
    h.machine.stop(1.0)
    assert h.machine.pop_actions() == []


# -- composition (RFC 2131 table 5) ---------------------------------------------------------------


def _common(message: Message, cfg: MachineConfig) -> None:
    assert message.op == BOOTREQUEST
    assert (message.htype, message.hlen) == (1, 6)
    assert message.chaddr[:6] == HW
    assert message.options.client_identifier == cfg.client_identifier


def _request_params(message: Message, cfg: MachineConfig) -> None:
    assert message.options.parameter_request_list == cfg.parameter_request_list
    assert message.options.max_message_size == cfg.max_message_size
    assert message.options.hostname == cfg.hostname
    assert message.options.get(OptionCode.VENDOR_CLASS_IDENTIFIER) == cfg.vendor_class
    assert message.options[224] == b"extra"
    assert OptionCode.IP_ADDRESS_LEASE_TIME not in message.options


COMPOSITION_CONFIG = config(
    hostname="node1",
    vendor_class=b"dhcp4c",
    extra_options={224: b"extra"},
    max_message_size=1400,
    broadcast_flag=True,
)


@pytest.mark.parametrize(
    ("state", "mtype", "requested", "server_id", "ciaddr", "destination", "flags"),
    [
        (S.SELECTING, MessageType.DISCOVER, None, None, ZERO, None, FLAG_BROADCAST),
        (S.REQUESTING, MessageType.REQUEST, ADDR, SERVER, ZERO, None, FLAG_BROADCAST),
        (S.REBOOTING, MessageType.REQUEST, ADDR, None, ZERO, None, FLAG_BROADCAST),
        (S.RENEWING, MessageType.REQUEST, None, None, ADDR, SERVER, 0),
        (S.REBINDING, MessageType.REQUEST, None, None, ADDR, None, 0),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_composition(
    state: State,
    mtype: MessageType,
    requested: IPv4Address | None,
    server_id: IPv4Address | None,
    ciaddr: IPv4Address,
    destination: IPv4Address | None,
    flags: int,
) -> None:
    cfg = COMPOSITION_CONFIG
    h = harness(cfg)
    actions = h.start(0.0)
    if state is not S.SELECTING:
        if state is S.REBOOTING:
            h = harness(cfg, lease=known_lease())
            actions = h.start(10.0)
        else:
            actions = h.answer(MessageType.OFFER, 1.0)
            if state is not S.REQUESTING:
                h.answer(MessageType.ACK)
                actions = h.fire()
                if state is S.REBINDING:
                    while h.state() is not S.REBINDING:
                        actions = h.fire()
    assert h.state() is state
    (send,) = sends(actions)
    message = send.message
    assert send.destination == destination
    assert message.message_type is mtype
    _common(message, cfg)
    _request_params(message, cfg)
    assert message.options.requested_address == requested
    assert message.options.server_identifier == server_id
    assert message.ciaddr == ciaddr
    assert message.yiaddr == ZERO and message.siaddr == ZERO and message.giaddr == ZERO
    assert message.flags == flags
    assert message.options.rapid_commit is (mtype is MessageType.DISCOVER)
    # The message survives the wire.
    assert Message.parse(message.build()) == message


def test_xid_is_new_per_exchange() -> None:
    h = harness()
    h.start(0.0)
    discover = h.sent
    h.answer(MessageType.OFFER, 1.0)
    h.answer(MessageType.ACK)
    h.fire()
    renew = h.sent
    while h.state() is not State.REBINDING:
        h.fire()
    rebind = h.sent
    assert discover is not None and renew is not None and rebind is not None
    assert len({discover.xid, renew.xid, rebind.xid}) == 3
    # secs keeps counting from T1 across RENEWING -> REBINDING (one renewal process).
    assert rebind.secs == int(3151.0 - 1801.0)


def test_default_parameter_request_list() -> None:
    assert DEFAULT_PARAMETER_REQUEST_LIST == (1, 3, 6, 15, 26, 28, 42, 51, 58, 59, 119, 121)
    h = harness()
    discover = last_sent(h.start())
    assert discover.options.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    assert discover.options.max_message_size == 1500
    assert discover.flags == 0
    assert OptionCode.HOST_NAME not in discover.options


# -- validation -----------------------------------------------------------------------------------


VALIDATION = {
    "bootrequest": ({"op": BOOTREQUEST}, "not-bootreply"),
    "wrong-xid": ({"xid": 1234}, "wrong-xid"),
    "wrong-chaddr": ({"chaddr": bytes.fromhex("020000000002")}, "wrong-chaddr"),
    "wrong-client-id": ({"options": {OptionCode.CLIENT_IDENTIFIER: b"\x01abc"}}, "wrong-client-id"),
    "malformed-client-id": (
        {"options": {OptionCode.CLIENT_IDENTIFIER: b"\x01"}},
        "malformed-option",
    ),
    "no-lease-time": ({"lease_time": None}, "bad-lease-time"),
    "zero-lease-time": ({"lease_time": 0}, "bad-lease-time"),
    "yiaddr-zero": ({"yiaddr": ZERO}, "unusable-yiaddr"),
    "yiaddr-broadcast": ({"yiaddr": A("255.255.255.255")}, "unusable-yiaddr"),
    "yiaddr-multicast": ({"yiaddr": A("224.0.0.5")}, "unusable-yiaddr"),
    "yiaddr-loopback": ({"yiaddr": A("127.0.0.1")}, "unusable-yiaddr"),
    "yiaddr-class-e": ({"yiaddr": A("240.0.0.1")}, "unusable-yiaddr"),
    "yiaddr-network": ({"yiaddr": A("192.0.2.0")}, "unusable-yiaddr"),
    "yiaddr-subnet-broadcast": ({"yiaddr": A("192.0.2.255")}, "unusable-yiaddr"),
}


@pytest.mark.parametrize("case", VALIDATION.values(), ids=VALIDATION.keys())
@pytest.mark.parametrize("mtype", [MessageType.OFFER, MessageType.ACK], ids=lambda m: m.name)
def test_validation_drops(case: tuple[dict[str, Any], str], mtype: MessageType) -> None:
    changes, reason = case
    h = in_state(State.SELECTING if mtype is MessageType.OFFER else State.REQUESTING)
    before = snapshot(h.machine)[:4]
    assert h.answer(mtype, **changes) == []
    assert snapshot(h.machine)[:4] == before
    assert h.machine.drops == {reason: 1}


def test_reply_without_server_id_is_dropped() -> None:
    h = in_state(State.SELECTING)
    offer = reply(h.sent, MessageType.OFFER)
    options = {k: v for k, v in offer.options.items() if k != OptionCode.SERVER_IDENTIFIER}
    h.machine.receive(offer.replace(options=options), h.now)
    assert h.machine.drops == {"no-server-id": 1}


def test_reply_without_message_type_is_dropped() -> None:
    h = in_state(State.SELECTING)
    offer = reply(h.sent, MessageType.OFFER)
    options = {k: v for k, v in offer.options.items() if k != OptionCode.DHCP_MESSAGE_TYPE}
    h.machine.receive(offer.replace(options=options), h.now)
    h.machine.receive(reply(h.sent, MessageType(99)), h.now)
    assert h.machine.drops == {"no-message-type": 1, "unexpected-type": 1}


def test_echoed_client_id_is_accepted() -> None:
    cfg = config()
    h = harness(cfg)
    h.start()
    h.answer(MessageType.OFFER, options={OptionCode.CLIENT_IDENTIFIER: cfg.client_identifier})
    assert h.state() is State.REQUESTING


def test_chaddr_padding_is_ignored() -> None:
    h = in_state(State.SELECTING)
    h.answer(MessageType.OFFER, chaddr=HW + b"\xff" * 10)
    assert h.state() is State.REQUESTING


def test_point_to_point_yiaddr_is_usable() -> None:
    h = in_state(State.SELECTING)
    mask = {OptionCode.SUBNET_MASK: A("255.255.255.255").packed}
    h.answer(MessageType.OFFER, yiaddr=A("10.0.0.0"), options=mask)
    assert h.state() is State.REQUESTING


# -- configuration --------------------------------------------------------------------------------


def test_default_client_identifier_is_rfc4361() -> None:
    cfg = config()
    assert cfg.client_identifier == rfc4361_client_id(iaid_for_interface("eth0"), duid_ll(HW))
    assert cfg.client_identifier[:1] == b"\xff"
    assert config(client_id_type="mac").client_identifier == b"\x01" + HW
    assert config(client_id=b"\x00node1").client_identifier == b"\x00node1"
    assert (
        config(iaid=7, duid=b"\x00\x04abcd").client_identifier
        == b"\xff\x00\x00\x00\x07\x00\x04abcd"
    )


def test_max_message_size_for_mtu() -> None:
    assert MachineConfig.max_message_size_for_mtu(1500) == 1500
    assert MachineConfig.max_message_size_for_mtu(300) == 576
    assert MachineConfig.max_message_size_for_mtu(100_000) == 65535


@pytest.mark.parametrize(
    "changes",
    [
        {"hwaddr": bytes(6)},
        {"hwaddr": b""},
        {"max_message_size": 575},
        {"client_id": b"\x01"},
        {"hostname": ""},
        {"hostname": "héllo"},
        {"parameter_request_list": (1, 1)},
        {"parameter_request_list": (0,)},
        {"extra_options": {OptionCode.SERVER_IDENTIFIER: bytes(4)}},
        {"retransmit_initial": 0},
        {"retransmit_cap": 1.0},
        {"max_request_tries": 0},
        {"backoff_cap": 0.5},
        {"decline_wait": 9.9},
        {"client_id_type": "uuid"},
        {"vendor_class": b""},
        {"retransmit_jitter": -1.0},
        {"renew_retransmit_min": 0.0},
    ],
    ids=repr,
)
def test_config_validation(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MachineConfig(**{"hwaddr": HW, **changes})  # type: ignore[arg-type]


def test_receive_returns_the_drop_reason() -> None:
    h = in_state(State.SELECTING)
    assert h.machine.receive(reply(h.sent, MessageType.NAK), h.now) == Drop.UNEXPECTED_TYPE
    assert h.machine.receive(reply(h.sent, MessageType.OFFER), h.now) is None
    assert h.state() is State.REQUESTING


def test_receive_datagram_parses_and_counts_garbage() -> None:
    h = in_state(State.SELECTING)
    assert h.machine.receive_datagram(b"\x02\x01", h.now) == Drop.MALFORMED_MESSAGE
    assert h.machine.drops == {"malformed-message": 1}
    assert h.machine.receive_datagram(reply(h.sent, MessageType.OFFER).build(), h.now) is None
    assert h.state() is State.REQUESTING


def test_link_up_after_unnoticed_expiry_rediscovers() -> None:
    h = in_state(State.INIT_REBOOT)
    lease = h.machine.lease
    assert lease is not None
    h.machine.link_up(lease.expiry + 5)
    lost, send = h.machine.pop_actions()
    assert lost == LeaseLost(lease, "expired")
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert h.state() is State.SELECTING


def test_stop_with_release_while_link_down_keeps_the_lease() -> None:
    h = bound(config(release_on_stop=True))
    lease = h.machine.lease
    h.machine.link_down(2.0)
    h.machine.stop(3.0)
    assert h.machine.pop_actions() == []
    assert h.machine.lease == lease


def test_link_changes_while_stopped_are_remembered() -> None:
    h = harness()
    h.machine.link_down(0.0)
    h.machine.link_up(1.0)
    assert h.state() is State.STOPPED and h.machine.link_is_up
    h.machine.link_down(2.0)
    h.start(3.0)
    assert h.state() is State.INIT and h.machine.next_deadline() is None


# -- IPv6-only preferred (RFC 8925) ------------------------------------------------------------


def _v6only(seconds: int) -> dict[int, bytes]:
    return {OptionCode.IPV6_ONLY_PREFERRED: _u32(seconds)}


def test_ipv6_only_preferred_is_requested_only_when_enabled() -> None:
    off = harness()
    off.start()
    assert off.sent is not None
    assert OptionCode.IPV6_ONLY_PREFERRED not in off.sent.options.parameter_request_list  # type: ignore[operator]
    on = harness(config(ipv6_only_preferred=True))
    on.start()
    assert on.sent is not None and on.sent.options.parameter_request_list == (
        *DEFAULT_PARAMETER_REQUEST_LIST,
        OptionCode.IPV6_ONLY_PREFERRED,
    )
    on.answer(MessageType.OFFER, 1.0)
    assert on.sent.message_type is MessageType.REQUEST
    assert OptionCode.IPV6_ONLY_PREFERRED in on.sent.options.parameter_request_list  # type: ignore[operator]


def test_offer_with_option_108_is_not_requested_and_discovery_waits_it_out() -> None:
    h = harness(config(ipv6_only_preferred=True))
    h.start(0.0)
    actions = h.answer(MessageType.OFFER, 1.0, options=_v6only(1800))
    assert actions == [Ipv6OnlyPreferred(1800.0)]
    assert h.state() is State.INIT and h.machine.lease is None
    assert h.machine.next_deadline() == 1801.0
    h.machine.handle_timer(1800.999)
    assert h.take() == []
    (send,) = h.fire()
    assert h.now == 1801.0
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert send.message.options.requested_address is None
    assert h.state() is State.SELECTING and h.machine.drops == {}


def test_option_108_below_the_minimum_waits_min_v6only_wait() -> None:
    assert MIN_V6ONLY_WAIT == 300
    for value in (0, 1, 299):
        h = harness(config(ipv6_only_preferred=True))
        h.start(0.0)
        assert h.answer(MessageType.OFFER, 2.0, options=_v6only(value)) == [
            Ipv6OnlyPreferred(300.0)
        ]
        assert h.machine.next_deadline() == 302.0


def test_option_108_is_ignored_unless_enabled() -> None:
    h = harness()
    h.start(0.0)
    (send,) = h.answer(MessageType.OFFER, 1.0, options=_v6only(1800))
    assert isinstance(send, Send) and send.message.message_type is MessageType.REQUEST
    (event,) = h.answer(MessageType.ACK, options=_v6only(1800))
    assert isinstance(event, LeaseBound)


def test_rapid_ack_with_option_108_binds_nothing() -> None:
    h = harness(config(ipv6_only_preferred=True))
    h.start(0.0)
    assert h.answer(MessageType.ACK, 0.5, rapid_commit=True, options=_v6only(600)) == [
        Ipv6OnlyPreferred(600.0)
    ]
    assert h.state() is State.INIT and h.machine.next_deadline() == 600.5
    # A plain ACK in SELECTING is still dropped, option 108 or not (RFC 4039 §4).
    h2 = harness(config(ipv6_only_preferred=True))
    h2.start(0.0)
    assert h2.answer(MessageType.ACK, 0.5, options=_v6only(600)) == []
    assert h2.machine.drops == {"ack-without-rapid-commit": 1}


def test_reboot_ack_with_option_108_drops_the_lease() -> None:
    lease = known_lease()
    h = harness(config(ipv6_only_preferred=True), lease=lease)
    h.start(100.0)
    lost, v6only = h.answer(MessageType.ACK, 100.1, options=_v6only(900))
    assert lost == LeaseLost(lease, LossReason.IPV6_ONLY)
    assert v6only == Ipv6OnlyPreferred(900.0)
    assert h.state() is State.INIT and h.machine.lease is None
    (send,) = h.fire()
    assert h.now == pytest.approx(1000.1)
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert send.message.options.requested_address is None


def test_option_108_wait_ends_early_when_the_link_comes_back() -> None:
    # RFC 8925 §3.2: quiet for V6ONLY_WAIT "or until a network attachment event".
    h = harness(config(ipv6_only_preferred=True))
    h.start(0.0)
    h.answer(MessageType.OFFER, 1.0, options=_v6only(1800))
    h.machine.link_down(5.0)
    assert h.machine.next_deadline() is None
    h.machine.link_up(6.0)
    (send,) = h.take()
    assert isinstance(send, Send) and send.message.message_type is MessageType.DISCOVER
    assert h.state() is State.SELECTING


def test_option_108_is_not_a_failure() -> None:
    # After the wait, a NAK is the first failure again: the backoff is not stretched.
    h = harness(config(ipv6_only_preferred=True, backoff_initial=1.0))
    h.start(0.0)
    h.answer(MessageType.OFFER, 1.0, options=_v6only(300))
    h.fire()
    h.answer(MessageType.OFFER, 302.0)
    h.answer(MessageType.NAK, 303.0)
    wait = h.machine.next_deadline()
    assert wait is not None and 304.0 <= wait <= 304.25
