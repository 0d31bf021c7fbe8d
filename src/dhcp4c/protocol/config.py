"""A client's configuration: what its user chooses, apart from the interface it runs on.

This module owns `ClientConfig` (validated when made, frozen) and the one conversion of it into
the machine's configuration, `ClientConfig.for_interface`, which adds the interface's identity
(name, hardware address, MTU) read at run time. It also owns the option lists every client
shares: the default parameter request list and the options the machine composes itself.

Invariants: a `ClientConfig` that exists passes every check that does not need the hardware
address, so a bad choice fails where it is made, not in a running client. The module imports
only the standard library at load time (the command parses its arguments into a `ClientConfig`
before the codec is loaded); the codec is imported to check `extra_options` and to convert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from dhcp4c.protocol.machine import MachineConfig

__all__ = [
    "DEFAULT_PARAMETER_REQUEST_LIST",
    "MACHINE_CHOICES",
    "MANAGED_OPTIONS",
    "ClientConfig",
]

#: Requested in DISCOVER and REQUEST alike (RFC 2131 §4.4.1 wants the same list in both): subnet
#: mask (1), router (3), DNS (6), domain (15), interface MTU (26), broadcast address (28), NTP
#: (42), lease/T1/T2 (51, 58, 59), domain search (119), classless routes (121). Option 108
#: (IPv6-only preferred) is not in it: RFC 8925 §3.2 has it requested only by a host that can do
#: without IPv4, which is the user's choice (`ClientConfig.ipv6_only_preferred` adds it).
DEFAULT_PARAMETER_REQUEST_LIST: tuple[int, ...] = (1, 3, 6, 15, 26, 28, 42, 51, 58, 59, 119, 121)

#: Options the machine composes itself, which `extra_options` may not set: host name (12),
#: requested address (50), lease time (51), overload (52), message type (53), server identifier
#: (54), parameter request list (55), maximum message size (57), vendor class (60), client
#: identifier (61), rapid commit (80).
MANAGED_OPTIONS: frozenset[int] = frozenset({12, 50, 51, 52, 53, 54, 55, 57, 60, 61, 80})


@dataclass(frozen=True)
class ClientConfig:
    """What the user of a client chooses: identification, options, timing, the shell's checks.

    Attributes:
        client_id: an explicit client identifier (option 61, type byte included), used verbatim.
        client_id_type: without `client_id`: "duid" for RFC 4361 (255, IAID, DUID), "mac" for
            the RFC 2132 form (htype, hwaddr).
        duid: the host's DUID for the RFC 4361 form; default: DUID-LL of the hardware address.
        iaid: the IAID for the RFC 4361 form; default: hashed from the interface name.
        hostname: option 12, sent in DISCOVER and REQUEST.
        vendor_class: option 60, sent in DISCOVER and REQUEST.
        parameter_request_list: option 55, the same in DISCOVER and REQUEST.
        extra_options: further options sent in DISCOVER and REQUEST (not `MANAGED_OPTIONS`).
        max_message_size: option 57, 576..65535; None: the interface MTU, clamped to that range.
        broadcast_flag: ask servers to broadcast replies (RFC 2131 §4.1) while ciaddr is 0.
        rapid_commit: send option 80 in DISCOVER and accept a rapid ACK (RFC 4039).
        ipv6_only_preferred: the host can do without IPv4 (RFC 8925): request option 108, and
            when an OFFER (or a rapid or INIT-REBOOT ACK) carries it, configure no address and
            stay quiet for its V6ONLY_WAIT (at least `MIN_V6ONLY_WAIT`) before starting over.
        release_on_stop: send DHCPRELEASE when stopped while holding a lease.
        retransmit_initial, retransmit_cap, retransmit_jitter: the RFC 2131 §4.1 schedule
            (4 s doubling to 64 s, ±1 s); shrink them in tests.
        renew_retransmit_min: the RFC 2131 §4.4.5 floor (60 s) between REQUESTs in
            RENEWING/REBINDING.
        max_request_tries: REQUESTs sent in REQUESTING (and REBOOTING) before giving up.
        reboot_nak_grace: in REBOOTING, how long (seconds) a NAK from a server other than the
            lease's is held back, so that the lease's own server can still ACK (0: taken at
            once); see docs/design.md.
        backoff_initial, backoff_cap: the backoff before rediscovering after a failure.
        decline_wait: the wait after a DECLINE before discovering; RFC 2131 §3.1 says at least
            10 s, and smaller values are refused.
        suspend_check: while a lease is held, the shell compares its clocks at least this often
            (seconds) to notice a host suspend (see `dhcp4c.shell.client`).
        acd_timeout: RFC 5227 address conflict detection: the longest probe of an offered
            address before it is used, in seconds (`dhcp4c.protocol.acd.AcdConfig`); 0.2 by
            default, 7 for the RFC's timing, 0 to announce and defend without probing, None to
            turn conflict detection off (no ARP socket is opened).

    Raises:
        ValueError: a value the client cannot use (`MessageError`, a `ValueError`, for a
            malformed `extra_options` value).

    The interface's identity is not here: one configuration serves any interface, and the
    shell reads the hardware address at each run, so a new address needs no new configuration.
    """

    client_id: bytes | None = None
    client_id_type: Literal["duid", "mac"] = "duid"
    duid: bytes | None = None
    iaid: int | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    parameter_request_list: tuple[int, ...] = DEFAULT_PARAMETER_REQUEST_LIST
    extra_options: Mapping[int, bytes] = field(default_factory=dict, hash=False)
    max_message_size: int | None = None
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
    suspend_check: float = 60.0
    acd_timeout: float | None = 0.2

    def __post_init__(self) -> None:
        size = self.max_message_size
        if size is not None and not 576 <= size <= 0xFFFF:
            raise ValueError(f"max_message_size {size} not in 576..65535")
        if self.client_id is not None and len(self.client_id) < 2:
            raise ValueError("client_id must be at least 2 bytes (RFC 2132 §9.14)")
        if self.client_id_type not in ("duid", "mac"):
            raise ValueError(f"client_id_type must be 'duid' or 'mac': {self.client_id_type!r}")
        if self.hostname is not None and not (
            0 < len(self.hostname) <= 255 and self.hostname.isascii()
        ):
            raise ValueError(f"hostname must be 1..255 ASCII characters: {self.hostname!r}")
        if self.vendor_class is not None and not 0 < len(self.vendor_class) <= 255:
            raise ValueError("vendor_class must be 1..255 bytes")
        prl = self.parameter_request_list
        if not all(1 <= code <= 254 for code in prl) or len(set(prl)) != len(prl):
            raise ValueError(f"parameter_request_list must be distinct codes 1..254: {prl}")
        clash = MANAGED_OPTIONS.intersection(self.extra_options)
        if clash:
            raise ValueError(f"extra_options may not set managed options {sorted(clash)}")
        if self.extra_options:
            from dhcp4c.protocol.options import Options

            Options(self.extra_options)  # raises MessageError on a malformed code or value
        if self.retransmit_initial <= 0 or self.retransmit_cap < self.retransmit_initial:
            raise ValueError("need 0 < retransmit_initial <= retransmit_cap")
        if self.retransmit_jitter < 0 or self.renew_retransmit_min <= 0:
            raise ValueError("need retransmit_jitter >= 0 and renew_retransmit_min > 0")
        if self.max_request_tries < 1:
            raise ValueError("max_request_tries must be at least 1")
        if not self.reboot_nak_grace >= 0:
            raise ValueError("reboot_nak_grace must be at least 0")
        if self.backoff_initial < 0 or self.backoff_cap < self.backoff_initial:
            raise ValueError("need 0 <= backoff_initial <= backoff_cap")
        if self.decline_wait < 10:
            raise ValueError("decline_wait must be at least 10 s (RFC 2131 §3.1)")
        if self.suspend_check <= 0:
            raise ValueError("suspend_check must be positive")
        if self.acd_timeout is not None and not 0 <= self.acd_timeout <= 60:
            raise ValueError(f"acd_timeout must be 0..60 s or None: {self.acd_timeout!r}")

    def for_interface(self, interface: str, hwaddr: bytes, mtu: int = 1500) -> MachineConfig:
        """The machine's configuration for this client on `interface` (the only conversion).

        Args:
            interface: the interface name (the default IAID is hashed from it).
            hwaddr: its hardware address (chaddr, and the default DUID-LL).
            mtu: its MTU, for option 57 unless `max_message_size` is set.

        Raises:
            ValueError: an unusable hardware address (all zeros, or not 1..16 bytes).
        """
        from dhcp4c.protocol.machine import MachineConfig

        choices: dict[str, Any] = {name: getattr(self, name) for name in MACHINE_CHOICES}
        if self.max_message_size is None:
            choices["max_message_size"] = MachineConfig.max_message_size_for_mtu(mtu)
        return MachineConfig(hwaddr=hwaddr, interface=interface, **choices)


#: The fields of `ClientConfig` that configure the machine (`MachineConfig` has them too); the
#: others configure the shell.
_SHELL_CHOICES = frozenset({"suspend_check", "acd_timeout"})
MACHINE_CHOICES: tuple[str, ...] = tuple(
    f.name for f in fields(ClientConfig) if f.name not in _SHELL_CHOICES
)
