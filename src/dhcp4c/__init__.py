"""dhcp4c: a DHCPv4 client (RFC 2131) for Linux, built on a small Trio supervisor.

Architecture. `message`/`options` are the codec: the compiled construct declarations of `wire` take
bytes to an immutable `Message` and back, losslessly, raising only `MessageError`; option values
are declared per code in the registry of `options` and decoded when read. `machine` is the client's
protocol as a pure state machine (RFC 2131 §4.4): inputs carry `now`, outputs are `Send` commands
and lease events, its configuration made from a `ClientConfig` (what the user chooses, `config`)
and the interface's identity; `lease` turns an accepted DHCPACK into a sanitised `Lease`. `client`
is the thin Trio shell (one restartable supervisor runnable per interface): it feeds datagrams
from the `transport` package (AF_PACKET with a BPF filter while unconfigured, UDP once bound) and
timers into the machine, carries its actions out, awaits the lease callback (`netconfig`,
rtnetlink), holds the latest lease event and the carrier in trio-util values and fans events out
to observers (`observe`); `linkwatch` follows the link over netlink (carrier, hardware address,
removal) and drives the client accordingly. `leasefile` keeps leases across restarts, `cli` is
the `dhcp4c` command (the same Trio client; its first DISCOVER goes out before the kernel side is
imported, and that import runs in a worker thread while the server answers) and `testing` holds
the in-process server, the in-memory network with fault injection and the network-namespace
helpers used by the tests, the demo and the benchmarks.

Deliberate deviations from the RFCs:

- No 1-10 s random wait before the first DISCOVER (RFC 2131 §4.4.1); rediscovery after a NAK,
  a DECLINE or an unanswered REQUEST waits an exponential backoff instead (a NAK storm stays a
  trickle).
- The first OFFER wins; offers are not collected (§4.4.1 allows either).
- A lease counts from the latest transmission of the exchange that won it, not the first
  (as systemd-networkd does); the error is at most one retransmission interval.
- A REQUEST in REQUESTING repeats the DISCOVER's `secs`; in REBINDING a NAK from any server
  counts.
- Server T1/T2 are used only when 0 < T1 < T2 < lease, otherwise 0.5/0.875 with ±2 % fuzz; leases
  over 2^31-1 s (including "infinite") are capped there.
- Link down while bound → INIT-REBOOT on link up (§3.2); if that INIT-REBOOT goes unanswered
  the lease is dropped (lost, reason `unconfirmed`) and the client discovers, asking for the old
  address: the link may now lead to another network. After a start with a known lease
  (crash-restart, lease file) an unanswered INIT-REBOOT keeps the unexpired lease instead.
- The broadcast flag is set only while ciaddr is 0; a NAK in SELECTING and an ACK there without
  option 80 (RFC 4039) are dropped; option 108 (RFC 8925) is not requested.
- Client identifier: RFC 4361 DUID-LL + IAID by default.
- Repeated DECLINEs back off exponentially (never under 10 s, RFC 2131 §3.1.5), so a decline
  storm slows down instead of repeating every 10 s.
- A lease keeps at most 256 routes and 64 routers/DNS servers (a 64 KiB hostile reply must not
  stall sanitising or flood the routing table).
- A hardware address change drops the lease (lost, reason `hwaddr-changed`) and discovers anew
  from the new address; an interface that disappears ends its client (lost, `interface-gone`).
- Codec: a message without END is accepted (as tshark, scapy, dpkt and real servers do); trailing
  NULs of text options are dropped; option 121 destination bits past the prefix are ignored; a
  wrong-length fixed-size option or broken option 82/124/125 framing rejects the whole message;
  option 52 is read only from the options area (RFC 2131 §4.1); `op` is not validated by the codec
  (the machine drops anything but BOOTREPLY).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dhcp4c._version import __version__

# Public names, imported lazily (PEP 562) so that `import dhcp4c` stays cheap for the command's
# start-up: the codec and the client are only loaded when first used.
_EXPORTS: dict[str, str] = {
    "Message": "dhcp4c.protocol.message",
    "MessageError": "dhcp4c.protocol.message",
    "MessageType": "dhcp4c.protocol.message",
    "OptionCode": "dhcp4c.protocol.options",
    "Options": "dhcp4c.protocol.options",
    "Lease": "dhcp4c.protocol.lease",
    "Route": "dhcp4c.protocol.lease",
    "ClientConfig": "dhcp4c.protocol.config",
    "Machine": "dhcp4c.protocol.machine",
    "MachineConfig": "dhcp4c.protocol.machine",
    "State": "dhcp4c.protocol.machine",
    "Send": "dhcp4c.protocol.machine",
    "LeaseBound": "dhcp4c.protocol.machine",
    "LeaseRenewed": "dhcp4c.protocol.machine",
    "LeaseChanged": "dhcp4c.protocol.machine",
    "LeaseLost": "dhcp4c.protocol.machine",
    "InvalidTransition": "dhcp4c.protocol.machine",
    "Client": "dhcp4c.shell.client",
    "LeaseEvent": "dhcp4c.shell.observe",
    "LeaseEventKind": "dhcp4c.shell.observe",
}

if TYPE_CHECKING:
    from dhcp4c.protocol.config import ClientConfig
    from dhcp4c.protocol.lease import Lease, Route
    from dhcp4c.protocol.machine import (
        InvalidTransition,
        LeaseBound,
        LeaseChanged,
        LeaseLost,
        LeaseRenewed,
        Machine,
        MachineConfig,
        Send,
        State,
    )
    from dhcp4c.protocol.message import Message, MessageError, MessageType
    from dhcp4c.protocol.options import OptionCode, Options
    from dhcp4c.shell.client import Client
    from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind

__all__ = [
    "Client",
    "ClientConfig",
    "InvalidTransition",
    "Lease",
    "LeaseBound",
    "LeaseChanged",
    "LeaseEvent",
    "LeaseEventKind",
    "LeaseLost",
    "LeaseRenewed",
    "Machine",
    "MachineConfig",
    "Message",
    "MessageError",
    "MessageType",
    "OptionCode",
    "Options",
    "Route",
    "Send",
    "State",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dhcp4c' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
