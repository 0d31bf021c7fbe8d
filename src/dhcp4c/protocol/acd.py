"""IPv4 address conflict detection (RFC 5227) for one interface, sans-IO.

This module owns the decisions of ACD: when to probe a candidate address, when it is free, when
to announce it, whether a received ARP packet is a conflict, when to defend and when to give the
address up. It does no I/O and reads no clock: inputs carry `now`, jitter comes from an injected
`random.Random`, outputs are drained with `pop_actions()`, and the shell calls `handle_timer(now)`
at `next_deadline()`, as for `dhcp4c.protocol.machine`.

States and transitions (the "rules banner")::

    IDLE, CONFLICT  start(address) ---> PROBING: after 0..PROBE_WAIT, PROBE_NUM probes (SendArp)
                                        PROBE_MIN..PROBE_MAX apart                    §2.1.1
    PROBING     deadline -------------> PROBING (the next probe), or READY (Available)
                                        ANNOUNCE_WAIT after the last probe            §2.1.1
                conflict -------------> CONFLICT (Conflict "probe"): any ARP from another
                                        host with sender IP = candidate, or a probe
                                        from another host for it                      §2.1.1
    READY       announce -------------> ANNOUNCING (SendArp announcement)             §2.3
    ANNOUNCING  deadline -------------> ANNOUNCING, DEFENDING after ANNOUNCE_NUM announcements
    ANNOUNCING, DEFENDING  conflict --> the same state (SendArp announcement, Defended) if no
                                        conflict was seen in the last DEFEND_INTERVAL;
                                        otherwise CONFLICT (Conflict "bound")         §2.4 (b)
    any but IDLE  stop ---------------> IDLE

A conflict after announcing is an ARP packet whose sender IP is the address and whose sender
hardware address is not ours (§2.4); probes for the address are answered by the kernel and are
no conflict then. Packets whose sender hardware address is ours are never conflicts: a packet
socket also sees what this host sends. In READY nothing is a conflict (as in n-acd's
CONFIGURING): the address is being configured, and the announcement that follows makes a
conflicting host defend, which is then seen. Every packet that is not a conflict is dropped and
counted in `drops`. Illegal inputs raise `InvalidTransition` and change nothing.

Timing: RFC 5227 §1.1's constants, with the probe phase (PROBE_WAIT, PROBE_MIN, PROBE_MAX,
ANNOUNCE_WAIT) scaled so that its worst case lasts `AcdConfig.probe_timeout` (see `AcdConfig`).
After MAX_CONFLICTS conflicts without an address proving free, attempts are at least
RATE_LIMIT_INTERVAL apart (§2.1.1), whatever the DHCP client's own decline backoff.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from dhcp4c.protocol.arp import (
    BROADCAST_HWADDR,
    OP_REPLY,
    OP_REQUEST,
    ArpError,
    ArpPacket,
    announcement,
    probe,
)
from dhcp4c.protocol.machine import InvalidTransition

__all__ = [
    "ANNOUNCE_INTERVAL",
    "ANNOUNCE_NUM",
    "ANNOUNCE_WAIT",
    "DEFAULT_PROBE_TIMEOUT",
    "DEFEND_INTERVAL",
    "MAX_CONFLICTS",
    "PROBE_MAX",
    "PROBE_MIN",
    "PROBE_NUM",
    "PROBE_WAIT",
    "RATE_LIMIT_INTERVAL",
    "RFC_PROBE_TIMEOUT",
    "Acd",
    "AcdAction",
    "AcdConfig",
    "AcdDrop",
    "AcdState",
    "Available",
    "Conflict",
    "Defended",
    "InvalidTransition",
    "Phase",
    "SendArp",
]

# RFC 5227 §1.1, in seconds.
PROBE_WAIT = 1.0  # initial random delay
PROBE_NUM = 3  # number of probe packets
PROBE_MIN = 1.0  # minimum delay until repeated probe
PROBE_MAX = 2.0  # maximum delay until repeated probe
ANNOUNCE_WAIT = 2.0  # delay before announcing
ANNOUNCE_NUM = 2  # number of announcement packets
ANNOUNCE_INTERVAL = 2.0  # time between announcement packets
MAX_CONFLICTS = 10  # max conflicts before rate-limiting
RATE_LIMIT_INTERVAL = 60.0  # delay between successive attempts
DEFEND_INTERVAL = 10.0  # minimum interval between defensive ARPs

#: The worst case of the RFC's probe phase, from `start` to `Available`: the longest initial
#: wait, PROBE_NUM - 1 gaps of at most PROBE_MAX, and ANNOUNCE_WAIT (1 + 2 + 2 + 2 = 7 s).
RFC_PROBE_TIMEOUT = PROBE_WAIT + (PROBE_NUM - 1) * PROBE_MAX + ANNOUNCE_WAIT

#: The ACD timeout NetworkManager ships enabled by default since Fedora 40 (n-acd underneath):
#: many round trips on any current LAN, where the RFC's 4-7 s would delay every start and
#: every new lease.
DEFAULT_PROBE_TIMEOUT = 0.2

_UNSPECIFIED = IPv4Address(0)


class AcdState(enum.Enum):
    """Where the conflict detection of one address stands."""

    #: Not running (the initial state, and after `stop`).
    IDLE = "IDLE"
    #: Probing the candidate, until ANNOUNCE_WAIT after the last probe (RFC 5227 §2.1.1).
    PROBING = "PROBING"
    #: The candidate proved free (`Available`); waiting for `announce` once it is configured.
    READY = "READY"
    #: Announcing the address (§2.3) and defending it (§2.4).
    ANNOUNCING = "ANNOUNCING"
    #: Announcements done; watching for conflicts and defending the address (§2.4).
    DEFENDING = "DEFENDING"
    #: Stopped on a conflict (`Conflict`): the address must not be used; `start` probes another.
    CONFLICT = "CONFLICT"


class Phase(str, enum.Enum):
    """When a conflict was found (`Conflict.during`); the values are plain strings."""

    #: While probing: the address was never used; the DHCP client declines it.
    PROBE = "probe"
    #: After announcing, a second conflict within DEFEND_INTERVAL: the address is given up.
    BOUND = "bound"


class AcdDrop(str, enum.Enum):
    """Why a received ARP packet changed nothing (the keys of `Acd.drops`)."""

    MALFORMED = "malformed"
    NOT_RUNNING = "not-running"  # IDLE, CONFLICT
    OWN_PACKET = "own-packet"  # sender hardware address is ours: what this host sent
    NOT_REQUEST_OR_REPLY = "not-request-or-reply"
    UNRELATED = "unrelated"  # about other addresses, or no conflict in this state
    CONFIGURING = "configuring"  # READY: not judged until the address is announced


@dataclass(frozen=True)
class SendArp:
    """Command: broadcast `packet` on the link (Ethernet destination ff:ff:ff:ff:ff:ff)."""

    packet: ArpPacket
    destination: bytes = BROADCAST_HWADDR


@dataclass(frozen=True)
class Available:
    """Event: probing found no other user of `address`; configure it, then call `announce`."""

    address: IPv4Address


@dataclass(frozen=True)
class Defended:
    """Event: `sender` claimed `address` and one announcement defended it (§2.4 (b))."""

    address: IPv4Address
    sender: bytes


@dataclass(frozen=True)
class Conflict:
    """Event: `sender` uses `address`; stop using it (never configure it when `during` is
    "probe", remove it when "bound")."""

    address: IPv4Address
    sender: bytes
    during: Phase


AcdAction = SendArp | Available | Defended | Conflict


@dataclass(frozen=True)
class AcdConfig:
    """The interface and the timing of conflict detection.

    Attributes:
        hwaddr: the interface's Ethernet address (6 bytes, not zero, not broadcast).
        probe_timeout: the longest the probe phase may take, from `start` to `Available`, in
            seconds. PROBE_WAIT, PROBE_MIN, PROBE_MAX and ANNOUNCE_WAIT are scaled by
            `probe_timeout / RFC_PROBE_TIMEOUT`, as n-acd scales them by its timeout; the
            intervals after the first announcement (ANNOUNCE_INTERVAL, DEFEND_INTERVAL,
            RATE_LIMIT_INTERVAL) are not. `RFC_PROBE_TIMEOUT` gives the RFC's timing; 0 skips
            probing (`Available` at `start`) but still announces and defends, as n-acd's 0.
    """

    hwaddr: bytes
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT

    def __post_init__(self) -> None:
        if len(self.hwaddr) != 6 or not any(self.hwaddr) or self.hwaddr == BROADCAST_HWADDR:
            raise ValueError(f"unusable Ethernet address {self.hwaddr.hex(':')!r}")
        if not self.probe_timeout >= 0:
            raise ValueError(f"probe_timeout must be >= 0 s: {self.probe_timeout!r}")

    @property
    def scale(self) -> float:
        """The factor applied to the RFC's probe-phase intervals."""
        # n-acd (src/n-acd-probe.c, n_acd_probe_new and n_acd_probe_handle_timeout) multiplies
        # PROBE_WAIT, PROBE_MIN, PROBE_MAX and ANNOUNCE_WAIT by timeout / N_ACD_TIMEOUT_RFC5227,
        # the sum PROBE_WAIT + 2 * PROBE_MAX + ANNOUNCE_WAIT, and keeps the announcement
        # interval at the RFC's value. n-acd's table has PROBE_MAX 3 s, hence its 9 s; RFC 5227
        # §1.1 says 2 s, hence 7 s here (and in systemd-networkd's scaled timeout).
        return self.probe_timeout / RFC_PROBE_TIMEOUT

    @property
    def probe_wait(self) -> float:
        """The scaled PROBE_WAIT: the first probe goes out after 0..probe_wait."""
        return PROBE_WAIT * self.scale

    @property
    def probe_min(self) -> float:
        """The scaled PROBE_MIN."""
        return PROBE_MIN * self.scale

    @property
    def probe_max(self) -> float:
        """The scaled PROBE_MAX."""
        return PROBE_MAX * self.scale

    @property
    def announce_wait(self) -> float:
        """The scaled ANNOUNCE_WAIT: the wait after the last probe before `Available`."""
        return ANNOUNCE_WAIT * self.scale


_RUNNING = frozenset({AcdState.PROBING, AcdState.READY, AcdState.ANNOUNCING, AcdState.DEFENDING})
_ANNOUNCED = frozenset({AcdState.ANNOUNCING, AcdState.DEFENDING})


class _Dropped(Exception):
    def __init__(self, reason: AcdDrop) -> None:
        self.reason = reason


class Acd:
    """Conflict detection for the addresses one interface takes, one at a time, sans-IO.

    Args:
        config: the interface's hardware address and the probe timing.
        rng: the randomness for the probe jitter (RFC 5227 §2.1.1 "randomly and uniformly").

    One instance lives as long as the interface's client: `start` it for each candidate
    address; it counts conflicts across candidates for the rate limit of §2.1.1. Being pure
    keeps every interval testable to the exact instant, at the price of the shell carrying
    actions out in order and telling it (`announce`) once the address is configured.
    """

    def __init__(self, config: AcdConfig, *, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._state = AcdState.IDLE
        self._address: IPv4Address | None = None
        self._actions: list[AcdAction] = []
        self._drops: Counter[str] = Counter()
        self._deadline: float | None = None
        self._sent = 0  # probes (PROBING) or announcements (ANNOUNCING) sent for this address
        self._last_conflict: float | None = None  # after announcing: the last conflict seen
        # Conflicts since an address last proved free, and when the last attempt began: for
        # the MAX_CONFLICTS / RATE_LIMIT_INTERVAL rule (§2.1.1).
        self._conflicts = 0
        self._attempt_at: float | None = None

    # -- observers ----------------------------------------------------------------------------

    @property
    def config(self) -> AcdConfig:
        """The interface's hardware address and the probe timing."""
        return self._config

    @property
    def state(self) -> AcdState:
        """The current state."""
        return self._state

    @property
    def address(self) -> IPv4Address | None:
        """The address being probed, announced or defended (the conflicting one in CONFLICT)."""
        return self._address

    @property
    def conflicts(self) -> int:
        """Conflicts since an address last proved free (rate limited from MAX_CONFLICTS on)."""
        return self._conflicts

    @property
    def drops(self) -> Mapping[str, int]:
        """Received packets that changed nothing, by `AcdDrop` reason."""
        return self._drops

    def pop_actions(self) -> list[AcdAction]:
        """Return and forget the actions produced so far, oldest first."""
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """When `handle_timer` must be called next, or None when no timer is running."""
        return self._deadline

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float, address: IPv4Address) -> None:
        """Begin probing `address` (RFC 5227 §2.1.1).

        The first probe goes out after a random 0..PROBE_WAIT (scaled), or, once MAX_CONFLICTS
        conflicts have been seen, no sooner than RATE_LIMIT_INTERVAL after the previous attempt.
        With `probe_timeout` 0 and no rate limit, `Available` comes at once.

        Raises:
            InvalidTransition: unless IDLE or CONFLICT.
            ValueError: for 0.0.0.0.
        """
        if self._state not in (AcdState.IDLE, AcdState.CONFLICT):
            raise InvalidTransition(f"start in {self._state.name}")
        if address == _UNSPECIFIED:
            raise ValueError("cannot probe 0.0.0.0")
        begin = now
        if self._conflicts >= MAX_CONFLICTS and self._attempt_at is not None:
            # §2.1.1: "no more than one attempted new address per RATE_LIMIT_INTERVAL".
            begin = max(now, self._attempt_at + RATE_LIMIT_INTERVAL)
        self._attempt_at = begin
        self._address = address
        self._state = AcdState.PROBING
        self._last_conflict = None
        config = self._config
        if config.probe_timeout == 0:
            # n-acd: a zero timeout skips the probes, not the announcements.
            self._sent = PROBE_NUM
            self._deadline = begin
        else:
            self._sent = 0
            self._deadline = begin + self._rng.uniform(0.0, config.probe_wait)
        if self._deadline <= now:
            self._on_deadline(now)

    def announce(self, now: float) -> None:
        """Announce the available address, now configured, and start defending it (§2.3).

        Raises:
            InvalidTransition: unless READY.
        """
        if self._state is not AcdState.READY:
            raise InvalidTransition(f"announce in {self._state.name}")
        self._state = AcdState.ANNOUNCING
        self._sent = 0
        self._send_announcement(now)

    def stop(self, now: float) -> None:
        """Stop: no more sends, timers or conflict events; the conflict count is kept.

        Raises:
            InvalidTransition: when IDLE.
        """
        if self._state is AcdState.IDLE:
            raise InvalidTransition("stop in IDLE")
        self._state = AcdState.IDLE
        self._address = None
        self._deadline = None
        self._sent = 0
        self._last_conflict = None

    def handle_timer(self, now: float) -> None:
        """Act on the deadline if `now` has reached it; a call before it does nothing."""
        if self._deadline is None or now < self._deadline:
            return
        self._on_deadline(now)

    def receive(self, packet: ArpPacket, now: float) -> AcdDrop | None:
        """Judge one ARP packet from the link.

        Returns:
            The reason it was dropped (for the shell's counters), or None if it was a conflict.
        """
        try:
            self._receive(packet, now)
        except _Dropped as dropped:
            self._drops[dropped.reason.value] += 1
            return dropped.reason
        return None

    def receive_bytes(self, data: bytes, now: float) -> AcdDrop | None:
        """Parse an ARP packet and `receive` it; undecodable bytes count as `malformed`."""
        try:
            packet = ArpPacket.parse(data)
        except ArpError:
            self._drops[AcdDrop.MALFORMED.value] += 1
            return AcdDrop.MALFORMED
        return self.receive(packet, now)

    # -- transitions --------------------------------------------------------------------------

    def _on_deadline(self, now: float) -> None:
        state, config = self._state, self._config
        address = self._address
        assert address is not None
        if state is AcdState.PROBING:
            if self._sent < PROBE_NUM:
                self._actions.append(SendArp(probe(config.hwaddr, address)))
                self._sent += 1
                if self._sent < PROBE_NUM:
                    wait = self._rng.uniform(config.probe_min, config.probe_max)
                else:
                    wait = config.announce_wait
                self._deadline = now + wait
                return
            # §2.1.1: ANNOUNCE_WAIT after the last probe without a conflict: the address is
            # ours. It is announced only once configured (§2.3), on `announce`.
            self._actions.append(Available(address))
            self._conflicts = 0
            self._deadline = None
            self._state = AcdState.READY
            return
        assert state is AcdState.ANNOUNCING, state
        self._send_announcement(now)

    def _send_announcement(self, now: float) -> None:
        address = self._address
        assert self._state is AcdState.ANNOUNCING and address is not None
        self._actions.append(SendArp(announcement(self._config.hwaddr, address)))
        self._sent += 1
        if self._sent < ANNOUNCE_NUM:
            # §2.3: ANNOUNCE_INTERVAL apart, never scaled: by now the address is in use, and
            # the repeats are for hosts that missed the first one.
            self._deadline = now + ANNOUNCE_INTERVAL
        else:
            self._deadline = None
            self._state = AcdState.DEFENDING

    def _receive(self, packet: ArpPacket, now: float) -> None:
        state = self._state
        if state not in _RUNNING:
            raise _Dropped(AcdDrop.NOT_RUNNING)
        if packet.sha == self._config.hwaddr:
            # A packet socket sees this host's own probes, announcements and the kernel's
            # replies; none of them is another host (§2.1.1 "not the hardware address of any
            # of the host's interfaces").
            raise _Dropped(AcdDrop.OWN_PACKET)
        if packet.op not in (OP_REQUEST, OP_REPLY):
            raise _Dropped(AcdDrop.NOT_REQUEST_OR_REPLY)
        if state is AcdState.READY:
            raise _Dropped(AcdDrop.CONFIGURING)
        address = self._address
        assert address is not None
        if state is AcdState.PROBING:
            # §2.1.1: any ARP packet with the candidate as sender IP, or an ARP Probe for it
            # from another host (both probing at once: neither may take it).
            if packet.spa == address or (packet.is_probe and packet.tpa == address):
                self._conflict(packet, Phase.PROBE)
                return
            raise _Dropped(AcdDrop.UNRELATED)
        # §2.4: once announced, only a packet claiming our address as its sender conflicts.
        if packet.spa != address:
            raise _Dropped(AcdDrop.UNRELATED)
        last = self._last_conflict
        if last is not None and now - last < DEFEND_INTERVAL:
            # §2.4 (b): a second conflict within DEFEND_INTERVAL: cease using the address.
            self._conflict(packet, Phase.BOUND)
            return
        # §2.4 (b): record the time and defend with one single announcement; the announcement
        # schedule (ANNOUNCING) goes on unchanged.
        self._last_conflict = now
        self._actions.append(SendArp(announcement(self._config.hwaddr, address)))
        self._actions.append(Defended(address, packet.sha))

    def _conflict(self, packet: ArpPacket, during: Phase) -> None:
        address = self._address
        assert address is not None
        self._conflicts += 1
        self._actions.append(Conflict(address, packet.sha, during))
        self._state = AcdState.CONFLICT
        self._deadline = None
        self._sent = 0
