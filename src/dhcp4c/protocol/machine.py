"""The DHCPv4 client state machine (RFC 2131 §4.4), sans-IO.

This module owns the protocol decisions of one client on one interface: which message to send,
where and when, which reply to believe, when a lease is bound, renewed, changed or lost. It does
no I/O and reads no clock: every input carries `now`, randomness is an injected `random.Random`,
and outputs (`Send` and the lease events of `dhcp4c.protocol.events`) are drained in order with
`pop_actions()`. The shell feeds datagrams and timers in (`receive_datagram`, `handle_timer` at
`next_deadline()`) and carries the outputs out.

The transition table is `dhcp4c.protocol.states.SPECS`: per state its transport, its message and
fields, the replies it accepts and from whom, its deadline and what passing it does. The methods
here are generic over it; `tests/dhcp4c/protocol/test_machine.py` asserts every (state, input).

Invariants: replies are validated before they change anything (a rejected one only counts in
`drops[reason]`); illegal inputs raise `InvalidTransition` and change nothing; lease events
describe the held lease exactly (see `dhcp4c.protocol.events`). The deliberate deviations from
RFC 2131 are listed, with their reasons, in docs/design.md.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable, Mapping
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
from dhcp4c.protocol.events import (
    MIN_V6ONLY_WAIT,
    Action,
    Drop,
    Ipv6OnlyPreferred,
    LeaseBound,
    LeaseChanged,
    LeaseDiscarded,
    LeaseLost,
    LeaseRenewed,
    LossReason,
    Send,
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
from dhcp4c.protocol.states import SPECS, Deadline, OnDeadline, State, StateSpec

__all__ = [
    "DEFAULT_PARAMETER_REQUEST_LIST",
    "MIN_V6ONLY_WAIT",
    "SPECS",
    "Action",
    "Drop",
    "InvalidTransition",
    "Ipv6OnlyPreferred",
    "LeaseBound",
    "LeaseChanged",
    "LeaseDiscarded",
    "LeaseLost",
    "LeaseRenewed",
    "LossReason",
    "Machine",
    "MachineConfig",
    "Send",
    "State",
    "StateSpec",
]

_UNSPECIFIED = IPv4Address(0)


class InvalidTransition(RuntimeError):
    """An input that is illegal in the current state; the machine did not change."""


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
        ipv6_only_preferred: request option 108 and honour it (RFC 8925).
        release_on_stop: send DHCPRELEASE when stopped while holding a lease.
        retransmit_initial, retransmit_cap, retransmit_jitter: the RFC 2131 §4.1 schedule
            (4 s doubling to 64 s, ±1 s); shrink them in tests.
        renew_retransmit_min: the RFC 2131 §4.4.5 floor (60 s) between REQUESTs in
            RENEWING/REBINDING.
        max_request_tries: REQUESTs sent in REQUESTING (and REBOOTING) before giving up.
        reboot_nak_grace: in REBOOTING, how long a NAK from a server other than the lease's is
            held back for the lease's own server to ACK.
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
    ipv6_only_preferred: bool = False
    release_on_stop: bool = False
    retransmit_initial: float = 4.0
    retransmit_cap: float = 64.0
    retransmit_jitter: float = 1.0
    renew_retransmit_min: float = 60.0
    max_request_tries: int = 4
    reboot_nak_grace: float = 0.25
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


class _Dropped(Exception):
    def __init__(self, reason: Drop) -> None:
        self.reason = reason


class Machine:
    """One DHCPv4 client, sans-IO.

    Args:
        config: the client's configuration.
        rng: the randomness for xids, retransmission jitter, backoff and T1/T2 fuzz.
        lease: a lease known from before (crash-restart, a lease file); `start` verifies it by
            INIT-REBOOT if it has not expired. It is held from the start.
        announced: whether `lease` was announced to whoever consumes the events (a restart of
            the same client). A lease from elsewhere (a lease file) is not: confirming it, or
            keeping it after an unanswered INIT-REBOOT, is a `LeaseBound`, and refusing it a
            `LeaseDiscarded`, where an announced one gives `LeaseRenewed`/`LeaseChanged`,
            nothing, and `LeaseLost`.
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
        announced: bool = True,
        link_up: bool = True,
    ) -> None:
        self._config = config
        self._client_id = config.client_identifier
        self._rng = rng
        self._state = State.STOPPED
        self._lease = lease
        # Whether the held lease's events reached the consumer (False: a lease file's lease).
        self._announced = announced or lease is None
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
        # REBOOTING: the end of the grace of a held NAK from another server (`nak_grace`).
        self._nak_held_until: float | None = None
        # INIT: when to discover (None while the link is down).
        self._wait_until: float | None = None
        self._failures = 0  # consecutive failures feeding the backoff
        # DECLINEs since a lease last proved usable (renewed), or since start / link up: a bind
        # resets `_failures`, so a DECLINE storm needs its own count to back off.
        self._declines = 0
        self._hint: IPv4Address | None = None  # option 50 for the next DISCOVER
        # The INIT-REBOOT in progress follows a link coming back (not a start): the client may
        # have been moved to another network, so silence means discovery.
        self._reboot_after_link = False

    # -- observers ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def spec(self) -> StateSpec:
        """What the current state does (`SPECS[state]`): its transport, whether it may decline."""
        return SPECS[self._state]

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
        deadline, lease = SPECS[self._state].deadline, self._lease
        if deadline is Deadline.NONE:
            return None
        if deadline is Deadline.WAIT:
            return self._wait_until
        if deadline is Deadline.RETRANSMIT:
            return self._retransmit_at
        assert lease is not None
        if deadline is Deadline.T1:
            return lease.t1
        if deadline is Deadline.EXPIRY:
            return lease.expiry
        assert deadline is Deadline.RETRANSMIT_OR_EXPIRY and self._retransmit_at is not None
        if self._nak_held_until is not None:
            return min(self._retransmit_at, lease.expiry, self._nak_held_until)
        return min(self._retransmit_at, lease.expiry)

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

    def decline(self, now: float, *, reason: LossReason = LossReason.DECLINED) -> None:
        """Report that the bound address is in use by another host (RFC 2131 §3.1 step 5).

        Sends DHCPDECLINE, loses the lease (`LeaseLost` with `reason`: DECLINED, or CONFLICT
        when conflict detection took a used address back) and waits at least `decline_wait`
        before discovering.

        Raises:
            InvalidTransition: unless the state `may_decline` (BOUND, RENEWING, REBINDING).
        """
        if not SPECS[self._state].may_decline:
            raise InvalidTransition(f"decline in {self._state.name}")
        lease = self._lease
        assert lease is not None
        self._send_decline(lease)
        self._lose(reason)
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
        if SPECS[state].holds_lease:
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
        lease = self._lease
        if SPECS[self._state].holds_lease and lease is not None and now >= lease.expiry:
            # RFC 2131 §4.4.5: at expiry the client MUST stop using the address. INIT_REBOOT
            # (link down) then waits in INIT for the link; the others discover at once.
            self._lose(LossReason.EXPIRED)
            self._enter_init(now, 0.0)
            return
        if self._nak_held_until is not None and now >= self._nak_held_until:
            # The lease's own server did not answer within the grace: the held NAK stands.
            self._on_nak(now)
            return
        _ON_DEADLINE[SPECS[self._state].on_deadline](self, now)

    def receive(self, message: Message, now: float) -> Drop | None:
        """Process a parsed message from the link.

        Anything that is not a valid reply to the exchange in progress is dropped, counted in
        `drops`, and changes nothing else.

        Returns:
            The reason the message was dropped (for the shell's counters and log), or None if
            it was used.
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

    # -- deadlines (`StateSpec.on_deadline`, dispatched by `_ON_DEADLINE`) ----------------------

    def _nothing(self, now: float) -> None:  # pragma: no cover - the expiry comes first
        raise AssertionError(f"deadline without a transition in {self._state.name}")

    def _retransmit_or_give_up(self, now: float) -> None:
        if self._tries < self._config.max_request_tries:
            self._send(now)
            return
        # Repeated failure: count it, back off, rediscover (RFC 2131 §4.4.1 leaves this to the
        # client; Monogon gives up after 30 s the same way).
        self._offer = None
        self._failures += 1
        self._enter_init(now, self._backoff())

    def _follow_lease(self, now: float) -> None:
        """Continue with the held, unexpired lease in the state its timers call for."""
        lease = self._lease
        assert lease is not None and now < lease.expiry
        if now >= lease.t2:
            self._start_rebinding(now)
        elif now >= lease.t1:
            self._start_renewing(now)
        else:
            self._state = State.BOUND

    def _retransmit_or_rebind(self, now: float) -> None:
        assert self._lease is not None
        if now >= self._lease.t2:
            self._start_rebinding(now)
        else:
            self._send(now)

    def _retransmit_or_unverified(self, now: float) -> None:
        if self._tries < self._config.max_request_tries:
            self._send(now)
            return
        if self._nak_held_until is not None:
            # Out of tries inside a NAK's grace: a server did answer, and said no.
            self._on_nak(now)
            return
        self._end_exchange()
        if self._reboot_after_link:
            # After the link came back the client may sit on another network (RFC 2131 §3.2
            # "may have moved"): a silent network gets no benefit of the doubt, so it falls
            # back to discovery, asking for the old address again (§4.4.1).
            self._lose(LossReason.UNCONFIRMED)
            self._start_selecting(now)
            return
        # RFC 2131 §3.2: without an answer the client MAY keep using the unexpired lease; its
        # own timers take over. A lease nobody was told of is now relied on: it is bound.
        lease = self._lease
        assert lease is not None
        if not self._announced:
            self._announced = True
            self._actions.append(LeaseBound(lease))
        self._follow_lease(now)

    # -- receiving ----------------------------------------------------------------------------

    def _receive(self, message: Message, now: float) -> None:
        state = self._state
        if state is State.STOPPED:
            raise _Dropped(Drop.STOPPED)
        spec = SPECS[state]
        if not spec.accepts:
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
        if mtype not in spec.accepts:
            raise _Dropped(Drop.UNEXPECTED_TYPE)
        server_id = options.server_identifier
        if server_id is None:
            # RFC 2131 table 3: OFFER, ACK and NAK all MUST carry a server identifier.
            raise _Dropped(Drop.NO_SERVER_ID)
        if mtype is MessageType.NAK:
            # A NAK only counts from the server we asked; in REBINDING and REBOOTING we asked
            # all of them (RFC 2131 §4.4.5 / §3.2). Anyone can forge a NAK, but believing only
            # the selected server keeps a rogue second server from resetting us at will.
            if not self._from_our_server(spec, server_id):
                raise _Dropped(Drop.FOREIGN_NAK)
            grace, lease = self._config.reboot_nak_grace, self._lease
            if spec.nak_grace and grace > 0 and lease is not None and server_id != lease.server_id:
                # Another server's NAK may only mean it has no record of us (an authoritative
                # server that RFC 2131 §4.3.2 would keep silent): give the lease's own server
                # the grace to ACK. Later NAKs from others do not extend it.
                if self._nak_held_until is not None:
                    raise _Dropped(Drop.NAK_ALREADY_HELD)
                self._nak_held_until = now + grace
                return
            self._on_nak(now)
            return
        if spec.v6only and self._config.ipv6_only_preferred:
            v6only_wait = options.ipv6_only_preferred
            rapid = self._config.rapid_commit and options.rapid_commit
            if v6only_wait is not None and (
                not spec.rapid_ack_only or mtype is not MessageType.ACK or rapid
            ):
                self._on_v6only(v6only_wait, now)
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
        if spec.rapid_ack_only and not (self._config.rapid_commit and options.rapid_commit):
            # RFC 4039 §4: in SELECTING only a rapid-commit ACK binds.
            raise _Dropped(Drop.ACK_WITHOUT_RAPID_COMMIT)
        if not self._from_our_server(spec, server_id):
            raise _Dropped(Drop.WRONG_SERVER)
        lease = Lease.from_ack(message, self._sent_at, self._rng)
        if lease.expiry <= now:
            raise _Dropped(Drop.EXPIRED_ON_ARRIVAL)
        self._bind(lease)

    def _from_our_server(self, spec: StateSpec, server_id: IPv4Address) -> bool:
        if spec.replies_from == "offer":
            assert self._offer is not None
            return server_id == self._offer.options.server_identifier
        if spec.replies_from == "lease":
            assert self._lease is not None
            return server_id == self._lease.server_id
        return True

    def _on_nak(self, now: float) -> None:
        # RFC 2131 §4.4.1/§4.4.5: a NAK sends the client back to INIT; the backoff keeps a server
        # that NAKs everything from turning us into a packet storm. The first NAK to an
        # INIT-REBOOT is no failure to wait out but the answer to "am I still here?" (the host
        # moved, §3.2 step 3: restart the configuration): it still counts, so a NAK storm that
        # follows backs off from the second failure on.
        first_reboot_nak = self._state is State.REBOOTING and self._failures == 0
        if self._lease is not None:
            self._lose(LossReason.NAK)
        self._offer = None
        self._hint = None
        self._failures += 1
        self._enter_init(now, 0.0 if first_reboot_nak else self._backoff())

    def _on_v6only(self, value: int, now: float) -> None:
        # RFC 8925 §3.2: do not request (or keep) the address; stop DHCPv4 for V6ONLY_WAIT, at
        # least MIN_V6ONLY_WAIT, or until the link comes back (`link_up`), then start over. Not
        # a failure: the network answered, and its answer is "use IPv6".
        if self._lease is not None:
            self._lose(LossReason.IPV6_ONLY)
        self._hint = None
        wait = float(max(value, MIN_V6ONLY_WAIT))
        self._actions.append(Ipv6OnlyPreferred(wait))
        self._enter_init(now, wait)

    def _on_offer(self, offer: Message, now: float) -> None:
        assert self._state is State.SELECTING
        self._offer = offer
        self._state = State.REQUESTING
        # §4.4.1: the REQUEST keeps the DISCOVER's xid and repeats the `secs` it carried.
        self._secs = self._secs_at(self._sent_at)
        self._tries = 0
        self._send(now)

    def _bind(self, lease: Lease) -> None:
        old = self._lease
        if old is None or not self._announced:
            self._actions.append(LeaseBound(lease))
        elif old.same_configuration(lease):
            self._actions.append(LeaseRenewed(lease))
        else:
            self._actions.append(LeaseChanged(old, lease))
        if old is not None:
            # The held lease survived until a server extended it: it is usable, so earlier
            # DECLINEs no longer count.
            self._declines = 0
        self._lease = lease
        self._announced = True
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
        self._nak_held_until = None

    def _new_exchange(self, now: float) -> None:
        self._end_exchange()
        self._xid = self._rng.getrandbits(32)
        self._exchange_start = now

    def _lose(self, reason: LossReason) -> None:
        lease = self._lease
        assert lease is not None
        if self._announced:
            self._actions.append(LeaseLost(lease, reason))
        else:
            self._actions.append(LeaseDiscarded(lease, reason))
        if reason in (LossReason.EXPIRED, LossReason.UNCONFIRMED):
            # Asking for the old address again is allowed (RFC 2131 §4.4.1, option 50 in
            # DISCOVER) and often gets it back.
            self._hint = lease.address.ip
        self._lease = None
        self._announced = True

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
        self._send(now)

    def _start_rebooting(self, now: float) -> None:
        self._reboot_after_link = False
        self._new_exchange(now)
        self._state = State.REBOOTING
        self._send(now)

    def _start_renewing(self, now: float) -> None:
        self._new_exchange(now)
        self._state = State.RENEWING
        self._send(now)

    def _start_rebinding(self, now: float) -> None:
        # A new xid: the destination changes, but it is the same renewal process, so `secs`
        # keeps counting from T1 when we come from RENEWING.
        start = self._exchange_start if self._state is State.RENEWING else now
        self._new_exchange(start)
        self._state = State.REBINDING
        self._send(now)

    # -- sending ------------------------------------------------------------------------------

    def _secs_at(self, now: float) -> int:
        return max(0, min(0xFFFF, int(now - self._exchange_start)))

    def _send(self, now: float) -> None:
        """Send (again) the message of the current state, as its spec composes it."""
        spec = SPECS[self._state]
        outgoing, lease, offer = spec.sends, self._lease, self._offer
        assert outgoing is not None and self._xid is not None
        ciaddr = _UNSPECIFIED
        if outgoing.ciaddr:
            assert lease is not None
            ciaddr = lease.address.ip
        requested: IPv4Address | None = None
        if outgoing.requested == "offer":
            assert offer is not None
            requested = offer.yiaddr
        elif outgoing.requested == "lease":
            assert lease is not None
            requested = lease.address.ip
        elif outgoing.requested == "hint":
            requested = self._hint
        server_id: IPv4Address | None = None
        if outgoing.server_id:
            assert offer is not None
            server_id = offer.options.server_identifier
        destination: IPv4Address | None = None
        if outgoing.to_server:
            assert lease is not None
            destination = lease.server_id
        message = self._compose(
            outgoing.mtype,
            now,
            ciaddr=ciaddr,
            requested=requested,
            server_id=server_id,
            rapid_commit=outgoing.rapid_commit and self._config.rapid_commit,
        )
        self._actions.append(Send(message, destination))
        self._sent_at = now
        self._tries += 1
        config = self._config
        if spec.retransmit == "exchange":
            self._retransmit_at = now + exchange_interval(
                self._tries - 1,
                self._rng,
                initial=config.retransmit_initial,
                cap=config.retransmit_cap,
                jitter=config.retransmit_jitter,
            )
        else:
            assert lease is not None and spec.retransmit is not None
            until = lease.t2 if spec.retransmit == "until-t2" else lease.expiry
            self._retransmit_at = lease_retransmit_at(now, until, config.renew_retransmit_min)

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
        prl = config.parameter_request_list
        if config.ipv6_only_preferred and OptionCode.IPV6_ONLY_PREFERRED not in prl:
            prl = (*prl, OptionCode.IPV6_ONLY_PREFERRED)  # RFC 8925 §3.2
        if prl:
            options[OptionCode.PARAMETER_REQUEST_LIST] = bytes(prl)
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


_ON_DEADLINE: dict[OnDeadline, Callable[[Machine, float], None]] = {
    OnDeadline.NOTHING: Machine._nothing,
    OnDeadline.DISCOVER: Machine._start_selecting,
    OnDeadline.RETRANSMIT: Machine._send,
    OnDeadline.RETRANSMIT_OR_GIVE_UP: Machine._retransmit_or_give_up,
    OnDeadline.FOLLOW_LEASE: Machine._follow_lease,
    OnDeadline.RETRANSMIT_OR_REBIND: Machine._retransmit_or_rebind,
    OnDeadline.RETRANSMIT_OR_UNVERIFIED: Machine._retransmit_or_unverified,
}


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
