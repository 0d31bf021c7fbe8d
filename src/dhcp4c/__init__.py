"""dhcp4c: a DHCPv4 client (RFC 2131) for Linux, built on a small Trio supervisor.

Architecture (filled in as the parts land).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names, imported lazily (PEP 562) so that `import dhcp4c` stays cheap for the command's
# start-up: the codec, the client and pyroute2 are only loaded when first used.
_EXPORTS: dict[str, str] = {
    "Message": "dhcp4c.message",
    "MessageError": "dhcp4c.message",
    "MessageType": "dhcp4c.message",
    "OptionCode": "dhcp4c.options",
    "Options": "dhcp4c.options",
    "Lease": "dhcp4c.lease",
    "Route": "dhcp4c.lease",
    "Machine": "dhcp4c.machine",
    "MachineConfig": "dhcp4c.machine",
    "State": "dhcp4c.machine",
    "Send": "dhcp4c.machine",
    "LeaseBound": "dhcp4c.machine",
    "LeaseRenewed": "dhcp4c.machine",
    "LeaseChanged": "dhcp4c.machine",
    "LeaseLost": "dhcp4c.machine",
    "InvalidTransition": "dhcp4c.machine",
    "Client": "dhcp4c.client",
}

if TYPE_CHECKING:
    from dhcp4c.message import Message, MessageError, MessageType
    from dhcp4c.client import Client
    from dhcp4c.lease import Lease, Route
    from dhcp4c.machine import (
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
    from dhcp4c.options import OptionCode, Options

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dhcp4c' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
