"""The client's states and, per state, one spec of what it does: the transition table as data.

This module owns `State` (RFC 2131 §4.4, figure 5, plus STOPPED) and `SPECS`, one `StateSpec`
per state: the socket the shell keeps open, the message the state sends and how its fields are
set (RFC 2131 table 5), the replies it accepts and from which server, whether it holds or uses
a lease, what its deadline is and what happens when it passes. `dhcp4c.protocol.machine` reads
the specs in its generic methods; the shell reads `transport` and `may_decline` from them.
What does not fit in data (the order of checks, the lease arithmetic) stays in the machine.

Invariants: every `State` has a spec; a state that sends accepts replies and has a transport;
a state that uses its lease's address also holds one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from dhcp4c.protocol.message import MessageType

__all__ = ["SPECS", "Deadline", "OnDeadline", "Outgoing", "State", "StateSpec"]


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


@dataclass(frozen=True)
class Outgoing:
    """The message a state sends, and how its fields are set (RFC 2131 table 5, §4.3.2).

    Attributes:
        mtype: DISCOVER or REQUEST.
        ciaddr: ciaddr is the held lease's address (else 0.0.0.0, and the broadcast flag may be
            set, RFC 2131 §4.1).
        requested: option 50: the OFFER's yiaddr, the held lease's address, or the address of a
            lost lease to ask for again (the "hint", RFC 2131 §4.4.1 "MAY"); None: never.
        server_id: option 54 is the OFFER's server identifier.
        to_server: unicast to the held lease's server; else broadcast.
        rapid_commit: option 80 when configured (RFC 4039, DISCOVER only).
    """

    mtype: MessageType
    ciaddr: bool = False
    requested: Literal["offer", "lease", "hint"] | None = None
    server_id: bool = False
    to_server: bool = False
    rapid_commit: bool = False


class Deadline(enum.Enum):
    """What `Machine.next_deadline()` returns in a state."""

    NONE = "none"
    #: INIT: the end of the backoff (none while the link is down).
    WAIT = "wait"
    #: The next retransmission of the exchange.
    RETRANSMIT = "retransmit"
    #: The held lease's T1.
    T1 = "t1"
    #: The held lease's expiry.
    EXPIRY = "expiry"
    #: The next retransmission, or the lease's expiry when that comes first (or the end of
    #: a held NAK's grace, `StateSpec.nak_grace`).
    RETRANSMIT_OR_EXPIRY = "retransmit-or-expiry"


class OnDeadline(enum.Enum):
    """What happens when a state's deadline passes (after the held lease's expiry, if any:
    at expiry a lease is lost first, RFC 2131 §4.4.5)."""

    #: No transition: the state has no deadline, or only the lease's expiry (INIT_REBOOT).
    NOTHING = "nothing"
    #: Start an exchange: SELECTING, DISCOVER.
    DISCOVER = "discover"
    #: Send the state's message again.
    RETRANSMIT = "retransmit"
    #: Send again, or after `max_request_tries` back off and discover.
    RETRANSMIT_OR_GIVE_UP = "retransmit-or-give-up"
    #: Follow the lease's timers: RENEWING at T1, REBINDING at T2.
    FOLLOW_LEASE = "follow-lease"
    #: Send again, or at T2 rebind.
    RETRANSMIT_OR_REBIND = "retransmit-or-rebind"
    #: Send again, or after `max_request_tries` keep the lease (after a start) or discover
    #: (after a link-up).
    RETRANSMIT_OR_UNVERIFIED = "retransmit-or-unverified"


@dataclass(frozen=True)
class StateSpec:
    """What one state does.

    Attributes:
        transport: the socket the shell keeps open in the state: "broadcast" (a packet socket,
            sending from 0.0.0.0), "unicast" (a UDP socket sending from the leased address),
            or None.
        sends: the message of the state's exchange, None when it has none.
        accepts: the reply types it listens for; anything else is `unexpected-type` (and every
            reply is `no-exchange` in a state without an exchange).
        rapid_ack_only: an ACK counts only with option 80 (SELECTING, RFC 4039 §4).
        replies_from: whose ACK and NAK count: the OFFER's server, the lease's server, or any
            (None: the request went to all of them).
        v6only: with `ipv6_only_preferred`, a reply carrying option 108 (an OFFER, a rapid ACK,
            the INIT-REBOOT's ACK) stops DHCPv4 for its V6ONLY_WAIT (RFC 8925 §3.2).
        nak_grace: a NAK from a server other than the held lease's is held back for
            `reboot_nak_grace`, during which an ACK or the lease's own server's NAK still
            decides; when the grace passes the held NAK is taken (REBOOTING, where any server
            may answer and a second authoritative one NAKs what it has no record of).
        holds_lease: a lease is held, possibly not verified yet (INIT_REBOOT, REBOOTING).
        uses_address: the held lease is verified and its address in use; only then may the
            host decline it (RFC 2131 §3.1).
        deadline: what the deadline is.
        on_deadline: what happens when it passes.
        retransmit: the schedule of the state's retransmissions: the exchange's (RFC 2131
            §4.1), or half the time left until T2 / the expiry (§4.4.5).
    """

    transport: Literal["broadcast", "unicast"] | None = None
    sends: Outgoing | None = None
    accepts: frozenset[MessageType] = frozenset()
    rapid_ack_only: bool = False
    replies_from: Literal["offer", "lease"] | None = None
    nak_grace: bool = False
    v6only: bool = False
    holds_lease: bool = False
    uses_address: bool = False
    deadline: Deadline = Deadline.NONE
    on_deadline: OnDeadline = OnDeadline.NOTHING
    retransmit: Literal["exchange", "until-t2", "until-expiry"] | None = None

    @property
    def may_decline(self) -> bool:
        """Whether `decline` is legal: only an address in use can be found in use."""
        return self.uses_address


_ACK_NAK = frozenset({MessageType.ACK, MessageType.NAK})

#: The transition table, one spec per state. The comments give the transitions the generic
#: methods of `dhcp4c.protocol.machine.Machine` make from them (h11 style); in every state but
#: STOPPED, `stop` goes to STOPPED (RELEASE first when configured), and `link_down` goes to
#: INIT_REBOOT from a lease-holding state, else to INIT (nothing is sent while the link is down).
SPECS: dict[State, StateSpec] = {
    # start -> REBOOTING with an unexpired lease (INIT_REBOOT if the link is down), else
    # SELECTING (INIT if the link is down).
    State.STOPPED: StateSpec(),
    # deadline (backoff, decline wait) or link_up -> SELECTING.
    State.INIT: StateSpec(deadline=Deadline.WAIT, on_deadline=OnDeadline.DISCOVER),
    # OFFER -> REQUESTING (same xid); ACK with option 80 -> BOUND (RFC 4039); either with
    # option 108 (`ipv6_only_preferred`) -> INIT for V6ONLY_WAIT (RFC 8925); deadline ->
    # DISCOVER again (RFC 2131 §4.1).
    State.SELECTING: StateSpec(
        transport="broadcast",
        sends=Outgoing(MessageType.DISCOVER, requested="hint", rapid_commit=True),
        accepts=frozenset({MessageType.OFFER, MessageType.ACK}),
        rapid_ack_only=True,
        v6only=True,
        deadline=Deadline.RETRANSMIT,
        on_deadline=OnDeadline.RETRANSMIT,
        retransmit="exchange",
    ),
    # ACK -> BOUND; NAK -> INIT (backoff); deadline -> REQUEST again, after
    # `max_request_tries` INIT (backoff).
    State.REQUESTING: StateSpec(
        transport="broadcast",
        sends=Outgoing(MessageType.REQUEST, requested="offer", server_id=True),
        accepts=_ACK_NAK,
        replies_from="offer",
        deadline=Deadline.RETRANSMIT,
        on_deadline=OnDeadline.RETRANSMIT_OR_GIVE_UP,
        retransmit="exchange",
    ),
    # T1 -> RENEWING (T2 -> REBINDING, expiry -> SELECTING when the timer fires late);
    # decline -> INIT (DECLINE, wait >= 10 s).
    State.BOUND: StateSpec(
        holds_lease=True,
        uses_address=True,
        deadline=Deadline.T1,
        on_deadline=OnDeadline.FOLLOW_LEASE,
    ),
    # ACK -> BOUND; NAK -> INIT (lost "nak"); deadline -> REQUEST again (§4.4.5), T2 ->
    # REBINDING, expiry -> SELECTING (lost "expired"); decline as BOUND.
    State.RENEWING: StateSpec(
        transport="unicast",
        sends=Outgoing(MessageType.REQUEST, ciaddr=True, to_server=True),
        accepts=_ACK_NAK,
        replies_from="lease",
        holds_lease=True,
        uses_address=True,
        deadline=Deadline.RETRANSMIT_OR_EXPIRY,
        on_deadline=OnDeadline.RETRANSMIT_OR_REBIND,
        retransmit="until-t2",
    ),
    # As RENEWING, with any server's reply; no T2 step.
    State.REBINDING: StateSpec(
        transport="unicast",
        sends=Outgoing(MessageType.REQUEST, ciaddr=True),
        accepts=_ACK_NAK,
        holds_lease=True,
        uses_address=True,
        deadline=Deadline.RETRANSMIT_OR_EXPIRY,
        on_deadline=OnDeadline.RETRANSMIT,
        retransmit="until-expiry",
    ),
    # link_up -> REBOOTING (or SELECTING, lost "expired"); expiry -> INIT (lost "expired").
    State.INIT_REBOOT: StateSpec(holds_lease=True, deadline=Deadline.EXPIRY),
    # ACK (any server) -> BOUND, with option 108 (`ipv6_only_preferred`) INIT for V6ONLY_WAIT
    # (lost "ipv6-only"); NAK from the lease's server -> SELECTING (lost "nak"; the
    # first NAK since start / link-up without a backoff, RFC 2131 §3.2 step 3, later ones via
    # INIT with one); NAK from another server -> held for `reboot_nak_grace`, taken as the
    # lease's server's when the grace passes; deadline -> REQUEST again, after
    # `max_request_tries` the held NAK if any, else SELECTING (lost "unconfirmed") after a
    # link-up, the lease's own timers (BOUND / RENEWING / REBINDING, RFC 2131 §3.2) after a
    # start; expiry -> SELECTING.
    State.REBOOTING: StateSpec(
        transport="broadcast",
        sends=Outgoing(MessageType.REQUEST, requested="lease"),
        accepts=_ACK_NAK,
        nak_grace=True,
        v6only=True,
        holds_lease=True,
        deadline=Deadline.RETRANSMIT_OR_EXPIRY,
        on_deadline=OnDeadline.RETRANSMIT_OR_UNVERIFIED,
        retransmit="exchange",
    ),
}
