"""The machine's outputs: the `Send` command, the lease events, and the reasons behind them.

This module owns the vocabulary the sans-IO core speaks to its shell (`dhcp4c.protocol.machine`):
one command (`Send`), one event per change of the held lease, and `Ipv6OnlyPreferred` (the
network asked the host to do without IPv4, RFC 8925). Each event maps onto exactly one observer
event of the shell (`dhcp4c.shell.observe.LeaseEventKind`), except `LeaseDiscarded`, which only
undoes a lease no observer was told of.

Invariants: `LeaseBound` only when no lease is held, `LeaseRenewed`/`LeaseChanged` only when one
is, `LeaseLost`/`LeaseDiscarded` only for the lease held; every reason is a `LossReason` or a
`Drop`, plain strings by value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address

from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import Message

__all__ = [
    "MIN_V6ONLY_WAIT",
    "Action",
    "Drop",
    "Ipv6OnlyPreferred",
    "LeaseBound",
    "LeaseChanged",
    "LeaseDiscarded",
    "LeaseLost",
    "LeaseRenewed",
    "LossReason",
    "Send",
]


class LossReason(str, enum.Enum):
    """Why a lease was lost (`LeaseLost.reason`, a "lost" event's `reason`); plain strings."""

    #: The lease ran out (RFC 2131 §4.4.5), or had at start.
    EXPIRED = "expired"
    #: A server refused it (DHCPNAK).
    NAK = "nak"
    #: The host found its address in use and sent DHCPDECLINE (RFC 2131 §3.1).
    DECLINED = "declined"
    #: Address conflict detection saw another host defend the bound address (RFC 5227 §2.4):
    #: the address was removed and DHCPDECLINE sent.
    CONFLICT = "conflict"
    #: The client released it on stop (DHCPRELEASE).
    RELEASED = "released"
    #: No server answered the INIT-REBOOT after the link came back (RFC 2131 §3.2).
    UNCONFIRMED = "unconfirmed"
    #: The interface's hardware address changed: a new client to the server (the link watch).
    HWADDR_CHANGED = "hwaddr-changed"
    #: The interface disappeared (the link watch).
    INTERFACE_GONE = "interface-gone"
    #: The INIT-REBOOT's ACK said the network prefers IPv6-only hosts (RFC 8925 §3.2).
    IPV6_ONLY = "ipv6-only"


class Drop(str, enum.Enum):
    """Why a received datagram was dropped (the keys of `Machine.drops`); plain strings."""

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
    #: REBOOTING: another server's NAK while one is already held back (`reboot_nak_grace`).
    NAK_ALREADY_HELD = "nak-already-held"
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
    """Event: the client holds `lease` and held none before (or none it had announced)."""

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
    """Event: the client no longer holds `lease`, for `reason`."""

    lease: Lease
    reason: LossReason


@dataclass(frozen=True)
class LeaseDiscarded:
    """Event: a lease known from before but never announced (a lease file) proved unusable.

    Whatever applied it (the previous process) must undo it; nobody was told it is held, so
    nobody is told it is lost.
    """

    lease: Lease
    reason: LossReason


#: RFC 8925 §3.4: the least V6ONLY_WAIT a client honours (seconds), whatever the option says.
MIN_V6ONLY_WAIT = 300


@dataclass(frozen=True)
class Ipv6OnlyPreferred:
    """Event: the network prefers IPv6-only hosts (RFC 8925 option 108); no address is held,
    and DHCPv4 stays quiet for `wait` seconds (or until the link comes back), then starts over."""

    wait: float


Action = (
    Send | LeaseBound | LeaseRenewed | LeaseChanged | LeaseLost | LeaseDiscarded | Ipv6OnlyPreferred
)
