"""Client identifiers (option 61): RFC 4361 DUID + IAID by default, or the classic MAC form.

Pure functions; the interface name and hardware address come from the embedding code.

RFC 4361 §6.1 wants one DUID per host and an IAID per interface. The pure core does not know the
host's DUID, so the default is a DUID-LL (RFC 8415 §11.4, no time component, so stable across
reboots without storage) built from this interface's own hardware address, with an IAID hashed
from the interface name; the embedding code can pass the host's DUID instead.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = [
    "DUID_LL",
    "HTYPE_ETHERNET",
    "duid_ll",
    "iaid_for_interface",
    "mac_client_id",
    "rfc4361_client_id",
]

HTYPE_ETHERNET = 1
#: RFC 8415 §11.1 DUID type 3: link-layer address.
DUID_LL = 3
# RFC 4361 §6.1: the type byte 255 marks an IAID + DUID client identifier.
_RFC4361_TYPE = 0xFF


def duid_ll(hwaddr: bytes, htype: int = HTYPE_ETHERNET) -> bytes:
    """A DUID-LL for `hwaddr` (RFC 8415 §11.4)."""
    return struct.pack("!HH", DUID_LL, htype) + hwaddr


def iaid_for_interface(name: str) -> int:
    """A stable 32-bit IAID for the interface called `name`.

    Hashing the name keeps IAIDs distinct between interfaces that share a MAC address (VLANs,
    bonds), which RFC 4361 §6.1 requires; the price is a new IAID when an interface is renamed.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def rfc4361_client_id(iaid: int, duid: bytes) -> bytes:
    """The RFC 4361 §6.1 client identifier: 255, the IAID (4 bytes), the DUID."""
    if not 0 <= iaid <= 0xFFFF_FFFF:
        raise ValueError(f"IAID out of range: {iaid}")
    if not duid:
        raise ValueError("empty DUID")
    return bytes([_RFC4361_TYPE]) + iaid.to_bytes(4, "big") + duid


def mac_client_id(hwaddr: bytes, htype: int = HTYPE_ETHERNET) -> bytes:
    """The RFC 2132 §9.14 client identifier: hardware type then hardware address."""
    return bytes([htype]) + hwaddr
