"""The DHCPv4 client state machine (RFC 2131 §4.4), sans-IO.

This module owns the protocol decisions of one client on one interface: which message to send,
where, and when; which reply to believe; when a lease is bound, renewed, changed or lost. It does
no I/O and reads no clock: every input carries `now` (the Trio clock, in seconds), randomness comes
from an injected `random.Random`, and outputs are drained with `pop_actions()`. The embedding code
(the Trio shell) feeds datagrams and timers in (`receive`, `handle_timer` at `next_deadline()`)
and carries `Send` commands and lease events out, in order.

States and transitions (the "rules banner", h11 style)::

    STOPPED      start ----------------> SELECTING (DISCOVER), or REBOOTING with an unexpired lease;
                                         INIT / INIT_REBOOT instead while the link is down
    INIT         deadline (backoff) ---> SELECTING (DISCOVER); link_up -> SELECTING now
    SELECTING    OFFER ----------------> REQUESTING (REQUEST, same xid)
                 ACK + option 80 ------> BOUND (LeaseBound)                    RFC 4039
                 deadline -------------> SELECTING (DISCOVER again)             RFC 2131 §4.1
    REQUESTING   ACK ------------------> BOUND (LeaseBound)
                 NAK from that server -> INIT (backoff)
                 deadline -------------> REQUESTING (REQUEST again), or INIT (backoff) after
                                         `max_request_tries`
    BOUND        T1 -------------------> RENEWING (REQUEST unicast to the server)
    RENEWING     ACK from the server --> BOUND (LeaseRenewed / LeaseChanged)
                 NAK from the server --> INIT (LeaseLost "nak", backoff)
                 T2 -------------------> REBINDING (REQUEST broadcast)
                 deadline -------------> RENEWING (REQUEST again)              RFC 2131 §4.4.5
    REBINDING    ACK / NAK, any server > BOUND / INIT (as in RENEWING)
                 expiry ---------------> SELECTING (LeaseLost "expired", DISCOVER)
    INIT_REBOOT  link_up --------------> REBOOTING (REQUEST, option 50, no server id)
                 expiry ---------------> INIT (LeaseLost "expired")
    REBOOTING    ACK, any server ------> BOUND (LeaseRenewed / LeaseChanged)
                 NAK, any server ------> INIT (LeaseLost "nak", backoff)
                 deadline -------------> REBOOTING again; after `max_request_tries`, if the
                                         INIT-REBOOT followed a link-up: SELECTING (LeaseLost
                                         "unconfirmed", DISCOVER asking for the old address);
                                         after a start: back to BOUND / RENEWING / REBINDING by
                                         the lease's own timers (RFC 2131 §3.2: the client MAY
                                         keep the unexpired lease)
    BOUND, RENEWING, REBINDING  decline -> INIT (DECLINE, LeaseLost "declined", wait >= 10 s)
    any but STOPPED             stop ----> STOPPED (RELEASE + LeaseLost "released" if configured)
    lease-holding states        link_down -> INIT_REBOOT; others -> INIT (no sends while down)

`lease` is the lease the client holds, and lease events describe its changes: None -> lease is
`LeaseBound`, lease -> lease with the same configuration is `LeaseRenewed`, with a different one
`LeaseChanged`, lease -> None is `LeaseLost`. A lease passed to the constructor (crash-restart, a
lease file) is held from the start, so verifying it by INIT-REBOOT yields `LeaseRenewed` or
`LeaseChanged`, and refusing it `LeaseLost`.

Replies are validated before they can change anything (BOOTREPLY, our xid and chaddr, our client
identifier if echoed, a message type the state expects, a server identifier, a lease time of at
least 1 s, a usable yiaddr, NAKs only from the server we talk to). A rejected reply leaves the
state untouched and increments `drops[reason]`. Illegal inputs (`start` while running, `stop` while
stopped, `decline` without a bound lease) raise `InvalidTransition` and change nothing.

Deliberate deviations from RFC 2131 (also listed in the package docstring):

- No 1-10 s random wait before the first DISCOVER (§4.4.1): links are fast, and the supervisor
  staggers restarts. The wait before discovering *again* (after a NAK, a DECLINE or a REQUESTING
  phase without answer) is an exponential backoff instead, so a NAK storm stays bounded.
- The first OFFER wins; we do not collect offers for a while (§4.4.1 allows either).
- The lease starts at the *latest* transmission of the exchange that won it, not the first
  (§4.4.1 "the original request"), as systemd-networkd does: a long DISCOVER phase with rapid
  commit would otherwise eat the lease, and a reply slower than one retransmission interval is
  not realistic. The error is bounded by one retransmission interval.
- A DHCPREQUEST in REQUESTING repeats the `secs` of the DISCOVER the OFFER answered (§4.4.1 asks
  for the same `secs` as "the original DHCPDISCOVER" so that relays forward it the same way).
- In REBINDING a NAK from any server counts: the REQUEST went to all of them (§4.4.5).
- Server values for T1/T2 are used only when 0 < T1 < T2 < lease; otherwise the 0.5 / 0.875
  defaults with ±2 % fuzz replace them. Leases over `LEASE_TIME_CAP` (including "infinite") last
  `LEASE_TIME_CAP` seconds.
- A DECLINE waits at least 10 s (§3.1) and, like a NAK, doubles the backoff; declines are
  forgotten only once a lease is renewed (or at start / link up), so a DECLINE storm slows down to
  one attempt per `backoff_cap` (RFC 5227 §2.1.1 rate-limits hosts that keep finding conflicts).
- A link going down while a lease is held moves to INIT_REBOOT and the next link-up verifies the
  lease with an INIT-REBOOT REQUEST (§3.2 "client may have moved to a new subnet"); without an
  answer after `max_request_tries` the lease is dropped ("unconfirmed") and the client
  discovers, asking for the old address (issue #6: the link may now lead elsewhere). After a
  start with a known lease (crash-restart, lease file) silence keeps the lease instead (§3.2).
- The broadcast flag is only ever set when ciaddr is 0 (RENEWING/REBINDING clients can receive
  unicast by definition).
- A NAK in SELECTING is dropped (there is nothing to refuse yet), as is an ACK there without
  option 80; option 108 (RFC 8925) is not requested because IPv6-only mode is not implemented.
- An INIT-REBOOT that gets no answer keeps the held lease (§3.2 allows it), and an expired lease
  handed to the constructor is reported lost at `start` and its address asked for again in the
  DISCOVER (option 50, §4.4.1 "MAY").
- Client identifier: RFC 4361 by default, with a DUID-LL of this interface's own hardware address
  unless the host's DUID is configured (see `dhcp4c.protocol.clientid`).
"""

from __future__ import annotations

import enum
import random
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from dhcp4c.protocol.clientid import (
    HTYPE_ETHERNET,
    duid_ll,
    iaid_for_interface,
    mac_client_id,
    rfc4361_client_id,
)
from dhcp4c.protocol.config import (
    DEFAULT_PARAMETER_REQUEST_LIST,
    MACHINE_CHOICES,
    ClientConfig,
)
from dhcp4c.protocol.lease import Lease, is_usable_address, offered_interface
from dhcp4c.protocol.message import (
    BOOTREPLY,
    BOOTREQUEST,
    FLAG_BROADCAST,
    Message,
    MessageError,
    MessageType,
)
from dhcp4c.protocol.options import OptionCode
from dhcp4c.protocol.retransmit import backoff_delay, exchange_interval, lease_retransmit_at

__all__ = [
    "DEFAULT_PARAMETER_REQUEST_LIST",
    "Action",
    "Drop",
    "InvalidTransition",
    "LeaseBound",
    "LeaseChanged",
    "LeaseLost",
    "LeaseRenewed",
    "LossReason",
    "Machine",
    "MachineConfig",
    "Send",
    "State",
]

_UNSPECIFIED = IPv4Address(0)


class InvalidTransition(RuntimeError):
    """An input that is illegal in the current state; the machine did not change."""


class State(enum.Enum):
    """The client states of RFC 2131 §4.4 (figure 5), plus STOPPED."""

    #: Not running: no sends, no timers. The initial state, and the state after `stop`.
    STOPPED = "STOPPED"
    #: Running without a lease, waiting (backoff, decline wait, or a link that is down) before
    #: discovering.
    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    #: Holding a lease that must be verified, waiting for the link to come up.
    INIT_REBOOT = "INIT_REBOOT"
    REBOOTING = "REBOOTING"


class LossReason(str, enum.Enum):
    """Why a lease was lost (`LeaseLost.reason`); the values are plain strings."""

    EXPIRED = "expired"
    NAK = "nak"
    DECLINED = "declined"
    RELEASED = "released"
    UNCONFIRMED = "unconfirmed"


class Drop(str, enum.Enum):
    """Why a received message was dropped (the keys of `Machine.drops`)."""

    MALFORMED_MESSAGE = "malformed-message"
    STOPPED = "stopped"
    NO_EXCHANGE = "no-exchange"
    NOT_BOOTREPLY = "not-bootreply"
    WRONG_XID = "wrong-xid"
    WRONG_CHADDR = "wrong-chaddr"
    WRONG_CLIENT_ID = "wrong-client-id"
    MALFORMED_OPTION = "malformed-option"
    NO_MESSAGE_TYPE = "no-message-type"
    UNEXPECTED_TYPE = "unexpected-type"
    NO_SERVER_ID = "no-server-id"
    FOREIGN_NAK = "foreign-nak"
    WRONG_SERVER = "wrong-server"
    BAD_LEASE_TIME = "bad-lease-time"
    UNUSABLE_YIADDR = "unusable-yiaddr"
    ACK_WITHOUT_RAPID_COMMIT = "ack-without-rapid-commit"
    EXPIRED_ON_ARRIVAL = "expired-on-arrival"


@dataclass(frozen=True)
class Send:
    """Command: transmit `message`; `destination` None means broadcast on the link."""

    message: Message
    destination: IPv4Address | None


@dataclass(frozen=True)
class LeaseBound:
    """Event: the client holds `lease` and held none before."""

    lease: Lease


@dataclass(frozen=True)
class LeaseRenewed:
    """Event: `lease` replaces the held lease with the same configuration (new timers)."""

    lease: Lease


@dataclass(frozen=True)
class LeaseChanged:
    """Event: `new` replaces `old` and configures the host differently (address, routes, ...)."""

    old: Lease
    new: Lease


@dataclass(frozen=True)
class LeaseLost:
    """Event: the client no longer holds `lease`; `reason` is a `LossReason` value."""

    lease: Lease
    reason: str


Action = Send | LeaseBound | LeaseRenewed | LeaseChanged | LeaseLost


@dataclass(frozen=True)
class MachineConfig:
    """Everything that shapes the client's messages and timing.

    Attributes:
        hwaddr: the interface's hardware address (chaddr); not all zeros.
        interface: the interface name; the default client identifier's IAID is hashed from it.
        htype: ARP hardware type (1, Ethernet).
        client_id: an explicit client identifier (option 61, type byte included), used verbatim.
        client_id_type: without `client_id`: "duid" for RFC 4361 (255, IAID, DUID), "mac" for
            the RFC 2132 form (htype, hwaddr).
        duid: the host's DUID for the RFC 4361 form; default: DUID-LL of `hwaddr`.
        iaid: the IAID for the RFC 4361 form; default: hashed from `interface`.
        hostname: option 12, sent in DISCOVER and REQUEST.
        vendor_class: option 60, sent in DISCOVER and REQUEST.
        parameter_request_list: option 55, the same in DISCOVER and REQUEST.
        extra_options: further options sent in DISCOVER and REQUEST (not the managed ones).
        max_message_size: option 57, 576..65535; see `max_message_size_for_mtu`.
        broadcast_flag: ask servers to broadcast replies (RFC 2131 §4.1) while ciaddr is 0.
        rapid_commit: send option 80 in DISCOVER and accept a rapid ACK (RFC 4039).
        release_on_stop: send DHCPRELEASE when stopped while holding a lease.
        retransmit_initial, retransmit_cap, retransmit_jitter: the RFC 2131 §4.1 schedule
            (4 s doubling to 64 s, ±1 s); shrink them in tests.
        renew_retransmit_min: the RFC 2131 §4.4.5 floor (60 s) between REQUESTs in
            RENEWING/REBINDING.
        max_request_tries: REQUESTs sent in REQUESTING (and REBOOTING) before giving up.
        backoff_initial, backoff_cap: the backoff before rediscovering after a failure.
        decline_wait: the wait after a DECLINE before discovering; RFC 2131 §3.1 says at least
            10 s, and smaller values are refused.
    """

    hwaddr: bytes
    interface: str = ""
    htype: int = HTYPE_ETHERNET
    client_id: bytes | None = None
    client_id_type: Literal["duid", "mac"] = "duid"
    duid: bytes | None = None
    iaid: int | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    parameter_request_list: tuple[int, ...] = DEFAULT_PARAMETER_REQUEST_LIST
    extra_options: Mapping[int, bytes] = field(default_factory=dict, hash=False)
    max_message_size: int = 1500
    broadcast_flag: bool = False
    rapid_commit: bool = True
    release_on_stop: bool = False
    retransmit_initial: float = 4.0
    retransmit_cap: float = 64.0
    retransmit_jitter: float = 1.0
    renew_retransmit_min: float = 60.0
    max_request_tries: int = 4
    backoff_initial: float = 1.0
    backoff_cap: float = 300.0
    decline_wait: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= len(self.hwaddr) <= 16 or not any(self.hwaddr):
            raise ValueError(f"unusable hardware address {self.hwaddr.hex(':')!r}")
        # The user's choices are checked once, where they are defined, with the same errors.
        ClientConfig(**{name: getattr(self, name) for name in MACHINE_CHOICES})

    @property
    def client_identifier(self) -> bytes:
        """The option 61 value this client sends (and expects echoed, RFC 6842)."""
        if self.client_id is not None:
            return self.client_id
        if self.client_id_type == "mac":
            return mac_client_id(self.hwaddr, self.htype)
        iaid = self.iaid if self.iaid is not None else iaid_for_interface(self.interface)
        duid = self.duid if self.duid is not None else duid_ll(self.hwaddr, self.htype)
        return rfc4361_client_id(iaid, duid)

    @staticmethod
    def max_message_size_for_mtu(mtu: int) -> int:
        """Option 57 for an interface MTU: the MTU, clamped to 576..65535 (RFC 2132 §9.10)."""
        return max(576, min(mtu, 0xFFFF))


# The reply types each exchanging state listens for.
_EXPECTED: dict[State, frozenset[MessageType]] = {
    State.SELECTING: frozenset({MessageType.OFFER, MessageType.ACK}),
    State.REQUESTING: frozenset({MessageType.ACK, MessageType.NAK}),
    State.RENEWING: frozenset({MessageType.ACK, MessageType.NAK}),
    State.REBINDING: frozenset({MessageType.ACK, MessageType.NAK}),
    State.REBOOTING: frozenset({MessageType.ACK, MessageType.NAK}),
}
_LEASE_STATES = frozenset(
    {State.BOUND, State.RENEWING, State.REBINDING, State.INIT_REBOOT, State.REBOOTING}
)
_DECLINABLE = frozenset({State.BOUND, State.RENEWING, State.REBINDING})


class _Dropped(Exception):
    def __init__(self, reason: Drop) -> None:
        self.reason = reason


class Machine:
    """One DHCPv4 client, sans-IO.

    Args:
        config: the client's configuration.
        rng: the randomness for xids, retransmission jitter, backoff and T1/T2 fuzz.
        lease: a lease known from before (crash-restart, a lease file); `start` verifies it by
            INIT-REBOOT if it has not expired.
        link_up: whether the link is up now; later changes come through `link_up`/`link_down`.

    Inputs are method calls carrying `now`; outputs are read with `pop_actions()`, and the shell
    calls `handle_timer(now)` once `now >= next_deadline()`. Keeping the machine free of I/O
    makes every timing decision testable to the exact second, at the price of the shell having
    to carry actions out in order.
    """

    def __init__(
        self,
        config: MachineConfig,
        *,
        rng: random.Random,
        lease: Lease | None = None,
        link_up: bool = True,
    ) -> None:
        self._config = config
        self._client_id = config.client_identifier
        self._rng = rng
        self._state = State.STOPPED
        self._lease = lease
        self._link = link_up
        self._actions: list[Action] = []
        self._drops: Counter[str] = Counter()
        # The exchange in progress (SELECTING, REQUESTING, RENEWING, REBINDING, REBOOTING).
        self._xid: int | None = None
        self._exchange_start = 0.0  # `secs` counts from here
        self._secs: int | None = None  # a fixed `secs` (REQUESTING repeats the DISCOVER's)
        self._sent_at = 0.0  # latest transmission of this exchange
        self._tries = 0  # transmissions in this exchange
        self._retransmit_at: float | None = None
        self._offer: Message | None = None  # REQUESTING: the OFFER we answer
        # INIT: when to discover (None while the link is down).
        self._wait_until: float | None = None
        self._failures = 0  # consecutive failures feeding the backoff
        # DECLINEs since a lease last proved usable (renewed), or since start / link up: a bind
        # resets `_failures`, so a DECLINE storm needs its own count to back off (issue #6).
        self._declines = 0
        self._hint: IPv4Address | None = None  # option 50 for the next DISCOVER
        # The INIT-REBOOT in progress follows a link coming back (not a start): the client may
        # have been moved to another network, so silence means discovery (issue #6).
        self._reboot_after_link = False

    # -- observers ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def lease(self) -> Lease | None:
        """The lease the client holds (possibly not yet verified in INIT_REBOOT/REBOOTING)."""
        return self._lease

    @property
    def drops(self) -> Mapping[str, int]:
        """Received messages dropped so far, by `Drop` reason."""
        return self._drops

    @property
    def link_is_up(self) -> bool:
        """Whether the machine believes the link is up."""
        return self._link

    @property
    def xid(self) -> int | None:
        """The xid of the exchange in progress, if any."""
        return self._xid

    def pop_actions(self) -> list[Action]:
        """Return and forget the actions produced so far, oldest first."""
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        """When `handle_timer` must be called next, or None when no timer is running."""
        state, lease = self._state, self._lease
        if state is State.INIT:
            return self._wait_until
        if state in (State.SELECTING, State.REQUESTING):
            return self._retransmit_at
        if state is State.BOUND:
            assert lease is not None
            return lease.t1
        if state is State.INIT_REBOOT:
            assert lease is not None
            return lease.expiry
        if state in (State.RENEWING, State.REBINDING, State.REBOOTING):
            assert lease is not None and self._retransmit_at is not None
            return min(self._retransmit_at, lease.expiry)
        assert state is State.STOPPED
        return None

    # -- inputs -------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Start the client: verify a known lease (INIT-REBOOT), or discover.

        Raises:
            InvalidTransition: unless STOPPED.
        """
        if self._state is not State.STOPPED:
            raise InvalidTransition(f"start in {self._state.name}")
        self._failures = 0
        self._declines = 0
        if self._lease is not None and self._lease.expiry <= now:
            self._lose(LossReason.EXPIRED)
        if self._lease is not None:
            if self._link:
                self._start_rebooting(now)
            else:
                self._state = State.INIT_REBOOT
        else:
            self._enter_init(now, 0.0)

    def stop(self, now: float) -> None:
        """Stop the client, releasing the lease if `release_on_stop` is set.

        Without a release (not configured, or the link is down so RELEASE could not leave) the
        lease stays in `lease`: the server still holds it for us, and a later `start` verifies it.
        With one, the `Send` of the DHCPRELEASE comes before the `LeaseLost`, so the shell can
        still send it from the leased address.

        Raises:
            InvalidTransition: when already STOPPED.
        """
        if self._state is State.STOPPED:
            raise InvalidTransition("stop in STOPPED")
        lease = self._lease
        if self._config.release_on_stop and lease is not None and self._link:
            self._send_release(lease)
            self._lose(LossReason.RELEASED)
        self._end_exchange()
        self._wait_until = None
        self._state = State.STOPPED

    def decline(self, now: float) -> None:
        """Report that the bound address is in use by another host (RFC 2131 §3.1 step 5).

        Sends DHCPDECLINE, loses the lease and waits at least `decline_wait` before discovering.

        Raises:
            InvalidTransition: unless BOUND, RENEWING or REBINDING.
        """
        if self._state not in _DECLINABLE:
            raise InvalidTransition(f"decline in {self._state.name}")
        lease = self._lease
        assert lease is not None
        self._send_decline(lease)
        self._lose(LossReason.DECLINED)
        self._hint = None
        self._failures += 1
        self._declines += 1
        # RFC 2131 §3.1: at least `decline_wait` (10 s). Every DECLINE since the last lease that
        # proved usable doubles the backoff, as NAKs do: a host whose every address is in use
        # slows down (RFC 5227 §2.1.1 rate-limits such hosts) instead of taking and declining
        # a lease every 10 s forever.
        wait = backoff_delay(
            max(self._failures, self._declines),
            self._rng,
            initial=self._config.backoff_initial,
            cap=self._config.backoff_cap,
        )
        self._enter_init(now, max(self._config.decline_wait, wait))

    def link_down(self, now: float) -> None:
        """Report that the link went down: stop sending; keep the lease until it expires.

        Idempotent: a second `link_down` changes nothing.
        """
        if not self._link:
            return
        self._link = False
        state = self._state
        if state is State.STOPPED:
            return
        self._end_exchange()
        if state in _LEASE_STATES:
            self._state = State.INIT_REBOOT
        else:
            self._state = State.INIT
            self._wait_until = None

    def link_up(self, now: float) -> None:
        """Report that the link came up: verify the held lease, or discover right away.

        A new link is a new network, so the failure backoff starts over. Idempotent: `link_up`
        while the link is up changes nothing.
        """
        if self._link:
            return
        self._link = True
        if self._state is State.STOPPED:
            return
        assert self._state in (State.INIT, State.INIT_REBOOT)
        self._failures = 0
        self._declines = 0
        if self._state is State.INIT_REBOOT:
            assert self._lease is not None
            if now < self._lease.expiry:
                self._start_rebooting(now)
                self._reboot_after_link = True
                return
            self._lose(LossReason.EXPIRED)
        self._start_selecting(now)

    def handle_timer(self, now: float) -> None:
        """Act on the deadline if `now` has reached it; a call before it does nothing."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return
        state, lease = self._state, self._lease
        if state is State.INIT:
            self._start_selecting(now)
            return
        if state is State.SELECTING:
            self._send_discover(now)
            return
        if state is State.REQUESTING:
            if self._tries >= self._config.max_request_tries:
                # Repeated failure: count it, back off, rediscover (RFC 2131 §4.4.1 leaves this
                # to the client; Monogon gives up after 30 s the same way).
                self._offer = None
                self._failures += 1
                self._enter_init(now, self._backoff())
            else:
                self._send_request(now)
            return
        assert lease is not None
        if now >= lease.expiry:
            # RFC 2131 §4.4.5: at expiry the client MUST stop using the address.
            self._lose(LossReason.EXPIRED)
            if state is State.INIT_REBOOT:
                self._state = State.INIT
                self._wait_until = None
            else:
                self._start_selecting(now)
            return
        if state is State.BOUND:
            self._resume_lease(now)
        elif state is State.RENEWING:
            if now >= lease.t2:
                self._start_rebinding(now)
            else:
                self._send_request(now)
        elif state is State.REBINDING:
            self._send_request(now)
        elif state is State.REBOOTING:
            if self._tries >= self._config.max_request_tries and self._reboot_after_link:
                # After the link came back the client may sit on another network (RFC 2131
                # §3.2 "may have moved"): a silent network gets no benefit of the doubt, so it
                # falls back to discovery, asking for the old address again (§4.4.1).
                self._end_exchange()
                self._lose(LossReason.UNCONFIRMED)
                self._start_selecting(now)
            elif self._tries >= self._config.max_request_tries:
                # RFC 2131 §3.2: without an answer the client MAY keep using the unexpired
                # lease; its own timers take over.
                self._end_exchange()
                self._resume_lease(now)
            else:
                self._send_request(now)
        else:  # pragma: no cover - INIT_REBOOT's only deadline is the expiry handled above
            raise AssertionError(state)

    def receive(self, message: Message, now: float) -> Drop | None:
        """Process a parsed message from the link.

        Anything that is not a valid reply to the exchange in progress is dropped, counted in
        `drops`, and changes nothing else.

        Returns:
            The reason the message was dropped (for the shell's log line), or None if it was used.
        """
        try:
            self._receive(message, now)
        except _Dropped as dropped:
            reason = dropped.reason
        except MessageError:
            reason = Drop.MALFORMED_OPTION
        else:
            return None
        self._drops[reason.value] += 1
        return reason

    def receive_datagram(self, data: bytes, now: float) -> Drop | None:
        """Parse a UDP payload and `receive` it; undecodable bytes count as `malformed-message`."""
        try:
            message = Message.parse(data)
        except MessageError:
            self._drops[Drop.MALFORMED_MESSAGE.value] += 1
            return Drop.MALFORMED_MESSAGE
        return self.receive(message, now)

    # -- receiving ----------------------------------------------------------------------------

    def _receive(self, message: Message, now: float) -> None:
        state = self._state
        if state is State.STOPPED:
            raise _Dropped(Drop.STOPPED)
        expected = _EXPECTED.get(state)
        if expected is None:
            raise _Dropped(Drop.NO_EXCHANGE)
        if message.op != BOOTREPLY:
            raise _Dropped(Drop.NOT_BOOTREPLY)
        if message.xid != self._xid:
            raise _Dropped(Drop.WRONG_XID)
        hwaddr = self._config.hwaddr
        if message.chaddr[: len(hwaddr)] != hwaddr:
            raise _Dropped(Drop.WRONG_CHADDR)
        options = message.options
        echoed = options.client_identifier
        if echoed is not None and echoed != self._client_id:
            # RFC 6842 §3: a client MUST discard a reply whose echoed client id is not its own.
            raise _Dropped(Drop.WRONG_CLIENT_ID)
        mtype = message.message_type
        if mtype is None:
            raise _Dropped(Drop.NO_MESSAGE_TYPE)
        if mtype not in expected:
            raise _Dropped(Drop.UNEXPECTED_TYPE)
        server_id = options.server_identifier
        if server_id is None:
            # RFC 2131 table 3: OFFER, ACK and NAK all MUST carry a server identifier.
            raise _Dropped(Drop.NO_SERVER_ID)
        if mtype is MessageType.NAK:
            self._check_nak_source(server_id)
            self._on_nak(now)
            return
        lease_time = options.lease_time
        if lease_time is None or lease_time < 1:
            # RFC 2131 table 3 and §1.1: a lease time MUST be sent, and 1 s is the least.
            raise _Dropped(Drop.BAD_LEASE_TIME)
        if not _usable_yiaddr(message):
            raise _Dropped(Drop.UNUSABLE_YIADDR)
        if mtype is MessageType.OFFER:
            # RFC 4039 §4: an OFFER that carries option 80 is still just an OFFER.
            self._on_offer(message, now)
            return
        assert mtype is MessageType.ACK
        if state is State.SELECTING and not (self._config.rapid_commit and options.rapid_commit):
            # RFC 4039 §4: in SELECTING only a rapid-commit ACK binds.
            raise _Dropped(Drop.ACK_WITHOUT_RAPID_COMMIT)
        if state is State.REQUESTING:
            assert self._offer is not None
            if server_id != self._offer.options.server_identifier:
                raise _Dropped(Drop.WRONG_SERVER)
        elif state is State.RENEWING:
            assert self._lease is not None
            if server_id != self._lease.server_id:
                raise _Dropped(Drop.WRONG_SERVER)
        lease = Lease.from_ack(message, self._sent_at, self._rng)
        if lease.expiry <= now:
            raise _Dropped(Drop.EXPIRED_ON_ARRIVAL)
        self._bind(lease)

    def _check_nak_source(self, server_id: IPv4Address) -> None:
        # A NAK only counts from the server we asked; in REBINDING and REBOOTING we asked all
        # of them (RFC 2131 §4.4.5 / §3.2). Anyone can forge a NAK, but believing only the
        # selected server keeps a rogue second server from resetting us at will.
        state = self._state
        if state is State.REQUESTING:
            assert self._offer is not None
            if server_id != self._offer.options.server_identifier:
                raise _Dropped(Drop.FOREIGN_NAK)
        elif state is State.RENEWING:
            assert self._lease is not None
            if server_id != self._lease.server_id:
                raise _Dropped(Drop.FOREIGN_NAK)

    def _on_nak(self, now: float) -> None:
        # RFC 2131 §4.4.1/§4.4.5: a NAK sends the client back to INIT; the backoff keeps a server
        # that NAKs everything from turning us into a packet storm.
        if self._lease is not None:
            self._lose(LossReason.NAK)
        self._offer = None
        self._hint = None
        self._failures += 1
        self._enter_init(now, self._backoff())

    def _on_offer(self, offer: Message, now: float) -> None:
        assert self._state is State.SELECTING
        self._offer = offer
        self._state = State.REQUESTING
        # §4.4.1: the REQUEST keeps the DISCOVER's xid and repeats the `secs` it carried.
        self._secs = self._secs_at(self._sent_at)
        self._tries = 0
        self._send_request(now)

    def _bind(self, lease: Lease) -> None:
        old = self._lease
        if old is None:
            self._actions.append(LeaseBound(lease))
        else:
            # The held lease survived until the server extended it: it is usable, so earlier
            # DECLINEs no longer count.
            self._declines = 0
            if old.same_configuration(lease):
                self._actions.append(LeaseRenewed(lease))
            else:
                self._actions.append(LeaseChanged(old, lease))
        self._lease = lease
        self._failures = 0
        self._hint = None
        self._end_exchange()
        self._state = State.BOUND

    # -- transitions --------------------------------------------------------------------------

    def _end_exchange(self) -> None:
        self._xid = None
        self._secs = None
        self._tries = 0
        self._retransmit_at = None
        self._offer = None

    def _new_exchange(self, now: float) -> None:
        self._end_exchange()
        self._xid = self._rng.getrandbits(32)
        self._exchange_start = now

    def _lose(self, reason: LossReason) -> None:
        lease = self._lease
        assert lease is not None
        self._actions.append(LeaseLost(lease, reason.value))
        if reason in (LossReason.EXPIRED, LossReason.UNCONFIRMED):
            # Asking for the old address again is allowed (RFC 2131 §4.4.1, option 50 in
            # DISCOVER) and often gets it back.
            self._hint = lease.address.ip
        self._lease = None

    def _backoff(self) -> float:
        return backoff_delay(
            self._failures,
            self._rng,
            initial=self._config.backoff_initial,
            cap=self._config.backoff_cap,
        )

    def _enter_init(self, now: float, wait: float) -> None:
        """Go to INIT and discover after `wait` (right away when 0 and the link is up)."""
        self._end_exchange()
        self._state = State.INIT
        if not self._link:
            self._wait_until = None
        elif wait <= 0:
            self._start_selecting(now)
        else:
            self._wait_until = now + wait

    def _start_selecting(self, now: float) -> None:
        self._wait_until = None
        self._new_exchange(now)
        self._state = State.SELECTING
        self._send_discover(now)

    def _start_rebooting(self, now: float) -> None:
        self._reboot_after_link = False
        self._new_exchange(now)
        self._state = State.REBOOTING
        self._send_request(now)

    def _start_renewing(self, now: float) -> None:
        self._new_exchange(now)
        self._state = State.RENEWING
        self._send_request(now)

    def _start_rebinding(self, now: float) -> None:
        # A new xid: the destination changes, but it is the same renewal process, so `secs`
        # keeps counting from T1 when we come from RENEWING.
        start = self._exchange_start if self._state is State.RENEWING else now
        self._new_exchange(start)
        self._state = State.REBINDING
        self._send_request(now)

    def _resume_lease(self, now: float) -> None:
        """Continue with the held, unexpired lease in the state its timers call for."""
        lease = self._lease
        assert lease is not None and now < lease.expiry
        if now >= lease.t2:
            self._start_rebinding(now)
        elif now >= lease.t1:
            self._start_renewing(now)
        else:
            self._state = State.BOUND

    # -- sending ------------------------------------------------------------------------------

    def _secs_at(self, now: float) -> int:
        return max(0, min(0xFFFF, int(now - self._exchange_start)))

    def _transmitted(self, message: Message, destination: IPv4Address | None, now: float) -> None:
        self._actions.append(Send(message, destination))
        self._sent_at = now
        self._tries += 1
        config = self._config
        if self._state in (State.RENEWING, State.REBINDING):
            lease = self._lease
            assert lease is not None
            deadline = lease.t2 if self._state is State.RENEWING else lease.expiry
            self._retransmit_at = lease_retransmit_at(now, deadline, config.renew_retransmit_min)
        else:
            self._retransmit_at = now + exchange_interval(
                self._tries - 1,
                self._rng,
                initial=config.retransmit_initial,
                cap=config.retransmit_cap,
                jitter=config.retransmit_jitter,
            )

    def _send_discover(self, now: float) -> None:
        assert self._state is State.SELECTING and self._xid is not None
        message = self._compose(
            MessageType.DISCOVER, now, requested=self._hint, rapid_commit=self._config.rapid_commit
        )
        self._transmitted(message, None, now)

    def _send_request(self, now: float) -> None:
        """The DHCPREQUEST of the current state, per RFC 2131 table 5 and §4.3.2."""
        state, lease = self._state, self._lease
        if state is State.REQUESTING:
            offer = self._offer
            assert offer is not None
            message = self._compose(
                MessageType.REQUEST,
                now,
                requested=offer.yiaddr,
                server_id=offer.options.server_identifier,
            )
            self._transmitted(message, None, now)
        elif state is State.REBOOTING:
            assert lease is not None
            message = self._compose(MessageType.REQUEST, now, requested=lease.address.ip)
            self._transmitted(message, None, now)
        elif state is State.RENEWING:
            assert lease is not None
            message = self._compose(MessageType.REQUEST, now, ciaddr=lease.address.ip)
            self._transmitted(message, lease.server_id, now)
        else:
            assert state is State.REBINDING and lease is not None
            message = self._compose(MessageType.REQUEST, now, ciaddr=lease.address.ip)
            self._transmitted(message, None, now)

    def _send_decline(self, lease: Lease) -> None:
        # RFC 2131 table 5: DECLINE carries 50 and 54, ciaddr 0, a new xid, no parameters; it is
        # broadcast because the address is unusable.
        options: dict[int, bytes] = {
            OptionCode.DHCP_MESSAGE_TYPE: bytes([MessageType.DECLINE]),
            OptionCode.CLIENT_IDENTIFIER: self._client_id,
            OptionCode.REQUESTED_IP_ADDRESS: lease.address.ip.packed,
            OptionCode.SERVER_IDENTIFIER: lease.server_id.packed,
            OptionCode.MESSAGE: b"address in use",
        }
        message = self._message(self._rng.getrandbits(32), options)
        self._actions.append(Send(message, None))

    def _send_release(self, lease: Lease) -> None:
        # RFC 2131 table 5: RELEASE carries ciaddr and 54, no 50, a new xid; unicast to the
        # server (§4.4.6).
        options: dict[int, bytes] = {
            OptionCode.DHCP_MESSAGE_TYPE: bytes([MessageType.RELEASE]),
            OptionCode.CLIENT_IDENTIFIER: self._client_id,
            OptionCode.SERVER_IDENTIFIER: lease.server_id.packed,
        }
        message = self._message(self._rng.getrandbits(32), options, ciaddr=lease.address.ip)
        self._actions.append(Send(message, lease.server_id))

    def _compose(
        self,
        mtype: MessageType,
        now: float,
        *,
        ciaddr: IPv4Address = _UNSPECIFIED,
        requested: IPv4Address | None = None,
        server_id: IPv4Address | None = None,
        rapid_commit: bool = False,
    ) -> Message:
        """A DISCOVER or REQUEST of the current exchange with the common options."""
        assert self._xid is not None
        config = self._config
        options: dict[int, bytes] = {
            OptionCode.DHCP_MESSAGE_TYPE: bytes([mtype]),
            OptionCode.CLIENT_IDENTIFIER: self._client_id,
        }
        if requested is not None:
            options[OptionCode.REQUESTED_IP_ADDRESS] = requested.packed
        if server_id is not None:
            options[OptionCode.SERVER_IDENTIFIER] = server_id.packed
        options[OptionCode.MAXIMUM_DHCP_MESSAGE_SIZE] = struct.pack("!H", config.max_message_size)
        if config.parameter_request_list:
            options[OptionCode.PARAMETER_REQUEST_LIST] = bytes(config.parameter_request_list)
        if config.hostname is not None:
            options[OptionCode.HOST_NAME] = config.hostname.encode("ascii")
        if config.vendor_class is not None:
            options[OptionCode.VENDOR_CLASS_IDENTIFIER] = config.vendor_class
        if rapid_commit:
            options[OptionCode.RAPID_COMMIT] = b""
        options.update(config.extra_options)
        secs = self._secs if self._secs is not None else self._secs_at(now)
        flags = FLAG_BROADCAST if config.broadcast_flag and ciaddr == _UNSPECIFIED else 0
        return self._message(self._xid, options, ciaddr=ciaddr, secs=secs, flags=flags)

    def _message(
        self,
        xid: int,
        options: dict[int, bytes],
        *,
        ciaddr: IPv4Address = _UNSPECIFIED,
        secs: int = 0,
        flags: int = 0,
    ) -> Message:
        config = self._config
        return Message(
            op=BOOTREQUEST,
            xid=xid,
            htype=config.htype,
            hlen=len(config.hwaddr),
            secs=secs,
            flags=flags,
            ciaddr=ciaddr,
            chaddr=config.hwaddr,
            options=options,
        )


def _usable_yiaddr(message: Message) -> bool:
    """Whether an OFFER/ACK assigns an address a host can use (not 0.0.0.0, broadcast,
    multicast, loopback, class E, or the network/broadcast address of its own subnet)."""
    interface = offered_interface(message)
    address, network = interface.ip, interface.network
    if not is_usable_address(address):
        return False
    return network.prefixlen > 30 or address not in (
        network.network_address,
        network.broadcast_address,
    )
