"""Tests for dhcp4c.protocol.acd: the (state, input) table, the exact probe, announce and defend
timings on explicit `now`, scaling, and the rate limit."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhcp4c.protocol.acd import (
    ANNOUNCE_INTERVAL,
    ANNOUNCE_NUM,
    DEFAULT_PROBE_TIMEOUT,
    DEFEND_INTERVAL,
    MAX_CONFLICTS,
    PROBE_NUM,
    RATE_LIMIT_INTERVAL,
    RFC_PROBE_TIMEOUT,
    Acd,
    AcdAction,
    AcdConfig,
    AcdState,
    Available,
    Conflict,
    Defended,
    InvalidTransition,
    Phase,
    SendArp,
)
from dhcp4c.protocol.arp import OP_REPLY, OP_REQUEST, ArpPacket, announcement, probe
from dhcp4c.protocol.machine import InvalidTransition as MachineInvalidTransition

A = IPv4Address
HW = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("020000000002")
ADDR = A("192.0.2.10")
SEED = 7
S = AcdState


def config(**changes: object) -> AcdConfig:
    # Scale 1 (the RFC's own timing) unless a test says otherwise: the numbers read like §1.1.
    values: dict[str, object] = {"hwaddr": HW, "probe_timeout": RFC_PROBE_TIMEOUT}
    values.update(changes)
    return AcdConfig(**values)  # type: ignore[arg-type]


@dataclass
class Harness:
    acd: Acd
    now: float = 0.0

    def state(self) -> AcdState:
        # A call, so that mypy does not narrow the state across inputs.
        return self.acd.state

    def take(self) -> list[AcdAction]:
        return self.acd.pop_actions()

    def start(self, now: float = 0.0, address: IPv4Address = ADDR) -> list[AcdAction]:
        self.now = now
        self.acd.start(now, address)
        return self.take()

    def fire(self) -> list[AcdAction]:
        deadline = self.acd.next_deadline()
        assert deadline is not None
        self.now = deadline
        self.acd.handle_timer(deadline)
        return self.take()

    def feed(self, packet: ArpPacket, now: float | None = None) -> list[AcdAction]:
        if now is not None:
            self.now = now
        self.acd.receive(packet, self.now)
        return self.take()

    def announce(self, now: float | None = None) -> list[AcdAction]:
        if now is not None:
            self.now = now
        self.acd.announce(self.now)
        return self.take()


def harness(cfg: AcdConfig | None = None, seed: int = SEED) -> Harness:
    return Harness(Acd(cfg or config(), rng=random.Random(seed)))


def ready(cfg: AcdConfig | None = None) -> Harness:
    h = harness(cfg)
    h.start()
    while h.state() is S.PROBING:
        h.fire()
    assert h.state() is S.READY
    return h


def defending(cfg: AcdConfig | None = None) -> Harness:
    h = ready(cfg)
    h.announce()
    while h.state() is S.ANNOUNCING:
        h.fire()
    assert h.state() is S.DEFENDING
    return h


def in_state(state: AcdState) -> Harness:
    """A harness in `state`, actions drained."""
    if state is S.IDLE:
        h = harness()
    elif state is S.PROBING:
        h = harness()
        h.start()
        h.fire()  # one probe out
    elif state is S.READY:
        h = ready()
    elif state is S.ANNOUNCING:
        h = ready()
        h.announce()
    elif state is S.DEFENDING:
        h = defending()
    else:
        assert state is S.CONFLICT
        h = harness()
        h.start()
        h.feed(REPLY)
    assert h.state() is state
    h.take()
    return h


# -- packets from the link ------------------------------------------------------------------------

#: The owner of ADDR answering our probe (sender IP = the address).
REPLY = ArpPacket(OP_REPLY, OTHER, ADDR, HW, A(0))
#: Another host announcing (or defending) ADDR.
OTHER_ANNOUNCEMENT = announcement(OTHER, ADDR)
#: Another host probing for ADDR at the same time.
OTHER_PROBE = probe(OTHER, ADDR)
#: What a packet socket sees of our own sends (and the kernel's replies for our address).
OWN_PROBE = probe(HW, ADDR)
OWN_ANNOUNCEMENT = announcement(HW, ADDR)
OWN_REPLY = ArpPacket(OP_REPLY, HW, ADDR, OTHER, A("192.0.2.1"))
#: Ordinary traffic about other addresses.
UNRELATED = ArpPacket(OP_REQUEST, OTHER, A("192.0.2.1"), bytes(6), A("192.0.2.2"))
OTHER_PROBE_ELSEWHERE = probe(OTHER, A("192.0.2.11"))
#: Neither request nor reply (RFC 5494 reserves other codes), claiming ADDR.
ODD_OP = ArpPacket(9, OTHER, ADDR, bytes(6), ADDR)


def _packet(packet: ArpPacket) -> Callable[[Harness], list[AcdAction]]:
    def feed(h: Harness) -> list[AcdAction]:
        return h.feed(packet)

    return feed


def _garbage(h: Harness) -> list[AcdAction]:
    h.acd.receive_bytes(b"\x00\x01junk", h.now)
    return h.take()


def _start(h: Harness) -> list[AcdAction]:
    return h.start(h.now)


def _stop(h: Harness) -> list[AcdAction]:
    h.acd.stop(h.now)
    return h.take()


def _announce(h: Harness) -> list[AcdAction]:
    return h.announce()


def _timer(h: Harness) -> list[AcdAction]:
    if h.acd.next_deadline() is None:
        h.acd.handle_timer(h.now + 1e6)
        return h.take()
    return h.fire()


def _early_timer(h: Harness) -> list[AcdAction]:
    deadline = h.acd.next_deadline()
    h.acd.handle_timer(h.now if deadline is None else deadline - 0.001)
    return h.take()


INPUTS: dict[str, Callable[[Harness], list[AcdAction]]] = {
    "start": _start,
    "stop": _stop,
    "announce": _announce,
    "timer": _timer,
    "reply": _packet(REPLY),
    "other-announcement": _packet(OTHER_ANNOUNCEMENT),
    "other-probe": _packet(OTHER_PROBE),
    "own-probe": _packet(OWN_PROBE),
    "own-announcement": _packet(OWN_ANNOUNCEMENT),
    "own-reply": _packet(OWN_REPLY),
    "unrelated": _packet(UNRELATED),
    "other-probe-elsewhere": _packet(OTHER_PROBE_ELSEWHERE),
    "odd-op": _packet(ODD_OP),
    "garbage": _garbage,
}

RAISES = None
_NOT_RUNNING: dict[str, tuple[list[type], str | None]] = {
    name: ([], "not-running") for name in INPUTS if name not in ("start", "stop", "announce")
}
_NOT_RUNNING["timer"] = ([], None)
_NOT_RUNNING["garbage"] = ([], "malformed")
_OWN: dict[str, tuple[list[type], str | None]] = {
    "own-probe": ([], "own-packet"),
    "own-announcement": ([], "own-packet"),
    "own-reply": ([], "own-packet"),
    "odd-op": ([], "not-request-or-reply"),
    "garbage": ([], "malformed"),
}

# (state, input) -> (next state, action types, drop reason) or RAISES.
TABLE: dict[tuple[AcdState, str], tuple[AcdState, list[type], str | None] | None] = {
    (S.IDLE, "start"): (S.PROBING, [], None),
    (S.IDLE, "stop"): RAISES,
    (S.IDLE, "announce"): RAISES,
    **{(S.IDLE, name): (S.IDLE, *outcome) for name, outcome in _NOT_RUNNING.items()},
    # PROBING: §2.1.1's two rules; our own packets never count.
    (S.PROBING, "start"): RAISES,
    (S.PROBING, "stop"): (S.IDLE, [], None),
    (S.PROBING, "announce"): RAISES,
    (S.PROBING, "timer"): (S.PROBING, [SendArp], None),
    (S.PROBING, "reply"): (S.CONFLICT, [Conflict], None),
    (S.PROBING, "other-announcement"): (S.CONFLICT, [Conflict], None),
    (S.PROBING, "other-probe"): (S.CONFLICT, [Conflict], None),
    **{(S.PROBING, name): (S.PROBING, *outcome) for name, outcome in _OWN.items()},
    (S.PROBING, "unrelated"): (S.PROBING, [], "unrelated"),
    (S.PROBING, "other-probe-elsewhere"): (S.PROBING, [], "unrelated"),
    # READY: the address is being configured; nothing is judged until it is announced.
    (S.READY, "start"): RAISES,
    (S.READY, "stop"): (S.IDLE, [], None),
    (S.READY, "announce"): (S.ANNOUNCING, [SendArp], None),
    (S.READY, "timer"): (S.READY, [], None),
    (S.READY, "reply"): (S.READY, [], "configuring"),
    (S.READY, "other-announcement"): (S.READY, [], "configuring"),
    (S.READY, "other-probe"): (S.READY, [], "configuring"),
    **{(S.READY, name): (S.READY, *outcome) for name, outcome in _OWN.items()},
    (S.READY, "unrelated"): (S.READY, [], "configuring"),
    (S.READY, "other-probe-elsewhere"): (S.READY, [], "configuring"),
    # ANNOUNCING: §2.3's schedule; §2.4's conflicts (sender IP ours) are defended once.
    (S.ANNOUNCING, "start"): RAISES,
    (S.ANNOUNCING, "stop"): (S.IDLE, [], None),
    (S.ANNOUNCING, "announce"): RAISES,
    (S.ANNOUNCING, "timer"): (S.DEFENDING, [SendArp], None),
    (S.ANNOUNCING, "reply"): (S.ANNOUNCING, [SendArp, Defended], None),
    (S.ANNOUNCING, "other-announcement"): (S.ANNOUNCING, [SendArp, Defended], None),
    (S.ANNOUNCING, "other-probe"): (S.ANNOUNCING, [], "unrelated"),
    **{(S.ANNOUNCING, name): (S.ANNOUNCING, *outcome) for name, outcome in _OWN.items()},
    (S.ANNOUNCING, "unrelated"): (S.ANNOUNCING, [], "unrelated"),
    (S.ANNOUNCING, "other-probe-elsewhere"): (S.ANNOUNCING, [], "unrelated"),
    # DEFENDING
    (S.DEFENDING, "start"): RAISES,
    (S.DEFENDING, "stop"): (S.IDLE, [], None),
    (S.DEFENDING, "announce"): RAISES,
    (S.DEFENDING, "timer"): (S.DEFENDING, [], None),
    (S.DEFENDING, "reply"): (S.DEFENDING, [SendArp, Defended], None),
    (S.DEFENDING, "other-announcement"): (S.DEFENDING, [SendArp, Defended], None),
    (S.DEFENDING, "other-probe"): (S.DEFENDING, [], "unrelated"),
    **{(S.DEFENDING, name): (S.DEFENDING, *outcome) for name, outcome in _OWN.items()},
    (S.DEFENDING, "unrelated"): (S.DEFENDING, [], "unrelated"),
    (S.DEFENDING, "other-probe-elsewhere"): (S.DEFENDING, [], "unrelated"),
    # CONFLICT: stopped; `start` probes again (the shell passes the next candidate).
    (S.CONFLICT, "start"): (S.PROBING, [], None),
    (S.CONFLICT, "stop"): (S.IDLE, [], None),
    (S.CONFLICT, "announce"): RAISES,
    **{(S.CONFLICT, name): (S.CONFLICT, *outcome) for name, outcome in _NOT_RUNNING.items()},
}


def test_table_is_complete() -> None:
    assert set(TABLE) == {(s, i) for s in AcdState for i in INPUTS}


def snapshot(acd: Acd) -> tuple[object, ...]:
    return (acd.state, acd.address, acd.next_deadline(), dict(acd.drops), acd.conflicts)


@pytest.mark.parametrize(("state", "event"), list(TABLE), ids=str)
def test_transition_table(state: AcdState, event: str) -> None:
    h = in_state(state)
    expected = TABLE[state, event]
    if expected is RAISES:
        before = snapshot(h.acd)
        with pytest.raises(InvalidTransition):
            INPUTS[event](h)
        assert snapshot(h.acd) == before
        assert h.acd.pop_actions() == []
        return
    next_state, kinds, drop = expected
    drops_before = dict(h.acd.drops)
    actions = INPUTS[event](h)
    assert h.state() is next_state
    assert [type(a) for a in actions] == kinds
    drops = dict(h.acd.drops)
    if drop is None:
        assert drops == drops_before
    else:
        assert drops == {**drops_before, drop: drops_before.get(drop, 0) + 1}
    # Invariants after every step: timers run exactly in PROBING and ANNOUNCING; every send is
    # a broadcast probe or announcement of the address from our hardware address.
    assert (h.acd.next_deadline() is not None) == (next_state in (S.PROBING, S.ANNOUNCING))
    assert (h.acd.address is None) == (next_state is S.IDLE)
    for action in actions:
        if isinstance(action, SendArp):
            assert action.destination == b"\xff" * 6
            assert action.packet.sha == HW
            assert action.packet in (probe(HW, ADDR), announcement(HW, ADDR))
            assert action.packet == (
                probe(HW, ADDR) if next_state is S.PROBING else announcement(HW, ADDR)
            )
        elif isinstance(action, (Conflict, Defended)):
            assert action.address == ADDR and action.sender == OTHER


@pytest.mark.parametrize("state", list(AcdState), ids=lambda s: s.name)
def test_early_timer_changes_nothing(state: AcdState) -> None:
    h = in_state(state)
    before = snapshot(h.acd)
    assert _early_timer(h) == []
    assert snapshot(h.acd) == before


def test_invalid_transition_is_the_machines() -> None:
    # One exception type for the shell to know, whichever machine refused.
    assert InvalidTransition is MachineInvalidTransition


# -- probing --------------------------------------------------------------------------------------


def probe_times(h: Harness) -> tuple[list[float], float]:
    """Run the probe phase: the times of the probes sent and of `Available`."""
    sent: list[float] = []
    while True:
        actions = h.fire()
        if actions == [SendArp(probe(HW, ADDR))]:
            sent.append(h.now)
            continue
        assert actions == [Available(ADDR)]
        return sent, h.now


def test_probe_schedule_is_exact() -> None:
    h = harness()
    assert h.start(100.0) == []
    expected = random.Random(SEED)
    first = 100.0 + expected.uniform(0.0, 1.0)
    second = first + expected.uniform(1.0, 2.0)
    third = second + expected.uniform(1.0, 2.0)
    assert h.acd.next_deadline() == first
    sent, available = probe_times(h)
    # §2.1.1: the first probe after 0..PROBE_WAIT, PROBE_NUM probes PROBE_MIN..PROBE_MAX apart,
    # the address free ANNOUNCE_WAIT after the last one.
    assert sent == [first, second, third]
    assert available == third + 2.0
    assert h.state() is S.READY and h.acd.next_deadline() is None


@given(st.integers(0, 2**32 - 1))
def test_probe_gaps_stay_within_the_rfc_bounds(seed: int) -> None:
    h = harness(seed=seed)
    h.start(0.0)
    sent, available = probe_times(h)
    assert len(sent) == PROBE_NUM
    assert 0.0 <= sent[0] <= 1.0
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(1.0 - 1e-9 <= gap <= 2.0 + 1e-9 for gap in gaps)
    assert available - sent[-1] == pytest.approx(2.0)
    assert 4.0 - 1e-9 <= available <= RFC_PROBE_TIMEOUT + 1e-9
    assert RFC_PROBE_TIMEOUT == 7.0


@given(st.integers(0, 2**32 - 1), st.floats(0.001, 30.0))
def test_scaled_probe_phase_never_exceeds_the_timeout(seed: int, timeout: float) -> None:
    h = harness(config(probe_timeout=timeout), seed=seed)
    h.start(50.0)
    sent, available = probe_times(h)
    scale = timeout / 7.0
    assert len(sent) == PROBE_NUM
    assert 50.0 <= sent[0] <= 50.0 + 1.0 * scale
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(1.0 * scale * (1 - 1e-9) <= gap <= 2.0 * scale * (1 + 1e-9) for gap in gaps)
    assert available - sent[-1] == pytest.approx(2.0 * scale)
    assert available - 50.0 <= timeout * (1 + 1e-9)


def test_scaled_schedule_is_exact() -> None:
    h = harness(config(probe_timeout=0.7))  # a tenth of the RFC's
    h.start(10.0)
    expected = random.Random(SEED)
    first = 10.0 + expected.uniform(0.0, 0.1)
    second = first + expected.uniform(0.1, 0.2)
    third = second + expected.uniform(0.1, 0.2)
    sent, available = probe_times(h)
    assert sent == [first, second, third]
    assert available == pytest.approx(third + 0.2)


def test_default_timing_is_200_ms_scaled_from_the_rfc() -> None:
    cfg = AcdConfig(hwaddr=HW)
    assert cfg.probe_timeout == DEFAULT_PROBE_TIMEOUT == 0.2
    assert cfg.scale == pytest.approx(0.2 / 7.0)
    assert (cfg.probe_wait, cfg.probe_min, cfg.probe_max, cfg.announce_wait) == pytest.approx(
        (0.2 / 7, 0.2 / 7, 0.4 / 7, 0.4 / 7)
    )
    assert cfg.probe_wait + 2 * cfg.probe_max + cfg.announce_wait == pytest.approx(0.2)


def test_rfc_timing_is_scale_one() -> None:
    cfg = config()
    assert (cfg.scale, cfg.probe_wait, cfg.probe_min, cfg.probe_max, cfg.announce_wait) == (
        1.0,
        1.0,
        1.0,
        2.0,
        2.0,
    )


def test_zero_timeout_skips_probing_but_still_announces() -> None:
    h = harness(config(probe_timeout=0.0))
    assert h.start(5.0) == [Available(ADDR)]
    assert h.state() is S.READY
    assert h.announce() == [SendArp(announcement(HW, ADDR))]
    assert h.acd.next_deadline() == 5.0 + ANNOUNCE_INTERVAL


def test_conflicting_reply_during_probing_is_reported_with_the_sender() -> None:
    h = harness()
    h.start(0.0)
    h.fire()
    assert h.feed(REPLY, 1.5) == [Conflict(ADDR, OTHER, Phase.PROBE)]
    assert h.state() is S.CONFLICT and h.acd.address == ADDR
    assert h.acd.conflicts == 1
    assert Phase.PROBE.value == "probe"


def test_conflict_window_lasts_until_announce_wait_after_the_last_probe() -> None:
    h = harness()
    h.start(0.0)
    for _ in range(PROBE_NUM):
        h.fire()
    deadline = h.acd.next_deadline()
    assert deadline is not None
    # Just before the end of ANNOUNCE_WAIT a reply still wins the address for its owner.
    assert h.feed(REPLY, deadline - 0.001) == [Conflict(ADDR, OTHER, Phase.PROBE)]


def test_any_packet_with_the_candidate_as_sender_conflicts() -> None:
    # §2.1.1: "any ARP packet (Request *or* Reply) ... where the packet's 'sender IP address' is
    # the address being probed for", whatever its target.
    h = harness()
    h.start(0.0)
    request = ArpPacket(OP_REQUEST, OTHER, ADDR, bytes(6), A("192.0.2.1"))
    assert h.feed(request) == [Conflict(ADDR, OTHER, Phase.PROBE)]


def test_a_conflict_stops_the_probes() -> None:
    h = harness()
    h.start(0.0)
    h.feed(OTHER_PROBE)
    assert h.acd.next_deadline() is None
    h.acd.handle_timer(1e6)
    assert h.take() == []


def test_start_again_after_a_conflict_probes_the_new_address_afresh() -> None:
    h = harness()
    h.start(0.0)
    h.feed(REPLY)
    other = A("192.0.2.11")
    h.start(20.0, other)
    assert h.acd.address == other
    assert 20.0 <= (h.acd.next_deadline() or 0) <= 21.0
    assert h.fire() == [SendArp(probe(HW, other))]


def test_stop_during_probing_forgets_the_address() -> None:
    h = harness()
    h.start(0.0)
    h.fire()
    h.acd.stop(0.5)
    assert snapshot(h.acd)[:3] == (S.IDLE, None, None)
    h.start(3.0)
    assert h.state() is S.PROBING


def test_probing_zero_address_is_refused() -> None:
    h = harness()
    with pytest.raises(ValueError):
        h.acd.start(0.0, A(0))
    assert h.state() is S.IDLE


# -- announcing and defending ---------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [RFC_PROBE_TIMEOUT, DEFAULT_PROBE_TIMEOUT])
def test_announce_schedule_is_the_rfcs_unscaled(timeout: float) -> None:
    h = ready(config(probe_timeout=timeout))
    t = h.now + 0.05  # the shell configured the address meanwhile
    assert h.announce(t) == [SendArp(announcement(HW, ADDR))]
    assert h.state() is S.ANNOUNCING
    # §2.3: ANNOUNCE_NUM announcements ANNOUNCE_INTERVAL apart, never scaled.
    assert h.acd.next_deadline() == t + ANNOUNCE_INTERVAL
    assert h.fire() == [SendArp(announcement(HW, ADDR))]
    assert h.now == t + 2.0
    assert ANNOUNCE_NUM == 2
    assert h.state() is S.DEFENDING and h.acd.next_deadline() is None


def test_available_resets_the_conflict_count() -> None:
    h = harness()
    h.start(0.0)
    h.feed(REPLY)
    assert h.acd.conflicts == 1
    h.start(1.0)
    while h.state() is S.PROBING:
        h.fire()
    assert h.acd.conflicts == 0


def test_defend_once_then_give_up_within_defend_interval() -> None:
    h = defending()
    t = h.now + 100.0
    # §2.4 (b): the first conflict is defended with one announcement.
    assert h.feed(REPLY, t) == [SendArp(announcement(HW, ADDR)), Defended(ADDR, OTHER)]
    assert h.state() is S.DEFENDING
    # A second one within DEFEND_INTERVAL: give the address up.
    assert h.feed(OTHER_ANNOUNCEMENT, t + DEFEND_INTERVAL - 0.001) == [
        Conflict(ADDR, OTHER, Phase.BOUND)
    ]
    assert h.state() is S.CONFLICT and h.acd.next_deadline() is None
    assert h.acd.conflicts == 1
    assert Phase.BOUND.value == "bound"


def test_conflicts_defend_interval_apart_are_each_defended() -> None:
    h = defending()
    t = h.now + 100.0
    assert h.feed(REPLY, t)[-1] == Defended(ADDR, OTHER)
    assert h.feed(REPLY, t + DEFEND_INTERVAL)[-1] == Defended(ADDR, OTHER)
    assert h.feed(REPLY, t + 2 * DEFEND_INTERVAL + 5)[-1] == Defended(ADDR, OTHER)
    assert h.state() is S.DEFENDING
    # ... and the window counts from the last defended conflict.
    assert h.feed(REPLY, t + 2 * DEFEND_INTERVAL + 14)[-1] == Conflict(ADDR, OTHER, Phase.BOUND)


def test_defending_while_announcing_keeps_the_announce_schedule() -> None:
    h = ready()
    h.announce(10.0)
    assert h.feed(REPLY, 11.0) == [SendArp(announcement(HW, ADDR)), Defended(ADDR, OTHER)]
    assert h.acd.next_deadline() == 12.0
    assert h.fire() == [SendArp(announcement(HW, ADDR))]
    assert h.state() is S.DEFENDING
    # The conflict at 11 s still counts: another at 20.9 s gives the address up.
    assert h.feed(REPLY, 20.9) == [Conflict(ADDR, OTHER, Phase.BOUND)]


def test_own_packets_never_conflict() -> None:
    # A packet socket sees our probes, announcements and the kernel's replies for the address.
    for h in (in_state(S.PROBING), in_state(S.ANNOUNCING), in_state(S.DEFENDING)):
        state = h.state()
        for packet in (OWN_PROBE, OWN_ANNOUNCEMENT, OWN_REPLY):
            for _ in range(3):
                assert h.feed(packet) == []
        assert h.state() is state
        assert h.acd.drops["own-packet"] == 9


def test_probes_for_a_bound_address_are_no_conflict() -> None:
    # §2.4 only counts packets with our address as sender; the kernel answers probes.
    h = defending()
    for _ in range(5):
        assert h.feed(OTHER_PROBE) == []
    assert h.state() is S.DEFENDING


def test_stop_after_giving_up_keeps_the_count() -> None:
    h = defending()
    h.feed(REPLY, 100.0)
    h.feed(REPLY, 101.0)
    h.acd.stop(102.0)
    assert h.state() is S.IDLE and h.acd.conflicts == 1


# -- rate limiting --------------------------------------------------------------------------------


def conflict_at(h: Harness, now: float, address: IPv4Address = ADDR) -> None:
    h.start(now, address)
    h.feed(ArpPacket(OP_REPLY, OTHER, address, HW, A(0)), now)
    assert h.state() is S.CONFLICT


def test_rate_limit_after_max_conflicts() -> None:
    h = harness()
    for i in range(MAX_CONFLICTS):
        conflict_at(h, float(i))
    assert h.acd.conflicts == MAX_CONFLICTS == 10
    # §2.1.1: from MAX_CONFLICTS on, no more than one attempt per RATE_LIMIT_INTERVAL: the
    # previous attempt began at 9 s, so the next may not probe before 69 s.
    h.start(12.0)
    expected = random.Random(SEED)
    for _ in range(MAX_CONFLICTS):
        expected.uniform(0.0, 1.0)
    first = 9.0 + RATE_LIMIT_INTERVAL + expected.uniform(0.0, 1.0)
    assert h.acd.next_deadline() == first
    h.acd.handle_timer(68.9)
    assert h.take() == []
    # A conflict found then keeps the pace: the next attempt waits for 69 + 60 s.
    h.feed(REPLY, 70.0)
    h.start(71.0)
    deadline = h.acd.next_deadline()
    assert deadline is not None and 129.0 <= deadline <= 130.0


def test_rate_limit_does_not_hold_back_a_late_attempt() -> None:
    h = harness()
    for i in range(MAX_CONFLICTS):
        conflict_at(h, float(i))
    h.start(500.0)
    deadline = h.acd.next_deadline()
    assert deadline is not None and 500.0 <= deadline <= 501.0


def test_below_max_conflicts_there_is_no_rate_limit() -> None:
    h = harness()
    for i in range(MAX_CONFLICTS - 1):
        conflict_at(h, float(i))
    h.start(9.0)
    deadline = h.acd.next_deadline()
    assert deadline is not None and 9.0 <= deadline <= 10.0


def test_zero_timeout_conflicts_after_available_do_not_accumulate() -> None:
    h = harness(config(probe_timeout=0.0))
    for i in range(MAX_CONFLICTS):
        h.start(float(i))
        h.take()  # Available at once
        h.announce()
        h.feed(REPLY)
        h.feed(REPLY)  # given up at once
        assert h.state() is S.CONFLICT
    # Available resets the count each time: losing bound addresses is paced by the DHCP
    # client's decline backoff, not by this rate limit.
    assert h.acd.conflicts == 1


# -- the drop counters ----------------------------------------------------------------------------


def test_receive_returns_the_drop_reason() -> None:
    h = in_state(S.PROBING)
    assert h.acd.receive(UNRELATED, 1.0) == "unrelated"
    assert h.acd.receive(OWN_PROBE, 1.0) == "own-packet"
    assert h.acd.receive(REPLY, 1.0) is None
    assert h.acd.receive_bytes(b"", 1.0) == "malformed"
    assert h.acd.receive_bytes(REPLY.build(), 1.0) == "not-running"
    assert dict(h.acd.drops) == {
        "unrelated": 1,
        "own-packet": 1,
        "malformed": 1,
        "not-running": 1,
    }


def test_receive_bytes_parses_padded_frames() -> None:
    h = in_state(S.PROBING)
    assert h.acd.receive_bytes(REPLY.build() + bytes(18), 1.0) is None
    assert h.state() is S.CONFLICT


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"hwaddr": bytes(6)},
        {"hwaddr": b"\xff" * 6},
        {"hwaddr": HW[:5]},
        {"hwaddr": HW + b"\x00"},
        {"probe_timeout": -0.1},
        {"probe_timeout": float("nan")},
    ],
    ids=str,
)
def test_config_validation(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        config(**changes)
