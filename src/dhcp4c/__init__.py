"""dhcp4c: a DHCPv4 client (RFC 2131) for Linux, built on a small Trio supervisor.

The tree is the architecture, each layer importing only those below it. `protocol` is the pure
core: the codec (construct declarations taking bytes to an immutable `Message` and back, raising
only `MessageError`), the option registry, the `Lease` value, the client's configuration
(`ClientConfig`) and the state machine, fed `now` and datagrams and answering with `Send`
commands and lease events. `linux` is the plumbing: framing,
the BPF filter, the packet and UDP transports, rtnetlink with pyroute2's messages, the link
watch. `shell` is the thin Trio client that runs one machine per interface as a restartable
supervisor runnable and carries its actions out; `consumers` apply a lease (kernel address and
routes, resolv.conf, the lease file, hooks); `cli` is the `dhcp4c` command; `testing` is the
test kit for embedders. The rationale and every deliberate deviation from the RFCs are in
docs/design.md.
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
