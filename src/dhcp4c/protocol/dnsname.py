"""DNS name validation for values that come from the wire (pure).

Owns the one rule every name from a DHCP server passes before it is written anywhere (a
resolv.conf, a hook's environment, a log line): RFC 1035 §2.3.1's preferred name syntax as
relaxed by RFC 1123 §2.1. Labels of 1..63 letters, digits or hyphens, neither starting nor ending
with a hyphen, joined by dots; at most 253 characters (RFC 1035 §3.1); one trailing dot is
accepted and removed. Whitespace, `;`, quotes, control characters, underscores and non-ASCII are
never valid, and nothing is escaped: a name that fails is dropped, never repaired. Why so strict:
docs/design.md, "Values from the wire".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["MAX_LABEL_LENGTH", "MAX_NAME_LENGTH", "is_valid_name", "normalize", "valid_names"]

logger = logging.getLogger(__name__)

MAX_LABEL_LENGTH = 63  # RFC 1035 §2.3.4
MAX_NAME_LENGTH = 253  # RFC 1035 §3.1: 255 octets on the wire, without the length octets and root

# One LDH label: a letter or digit, then optionally up to 61 LDH characters and a letter or digit.
# `\Z`, not `$`: `$` would also match before a trailing newline, the very thing we keep out.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z", re.ASCII)


def normalize(name: str) -> str | None:
    """Return `name` without its trailing dot if it is a valid DNS name, else None.

    Args:
        name: the candidate, as decoded from an option (any string).

    Returns:
        The name without a trailing root dot (case preserved), or None when it is not a host
        name in the RFC 1123 sense. Never raises: the caller decides whether to log and drop.
    """
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME_LENGTH:
        return None
    labels = name.split(".")
    if any(_LABEL.match(label) is None for label in labels):
        return None
    return name


def is_valid_name(name: str) -> bool:
    """Tell whether `name` is a valid DNS (host) name; see the module docstring for the rules."""
    return normalize(name) is not None


def valid_names(names: Iterable[str], *, what: str) -> tuple[str, ...]:
    """Keep the valid names (normalized, first occurrence wins), dropping others with a warning.

    Args:
        names: candidates from the wire, in order of preference.
        what: what the names are, for the warning ("domain name", "search domain").

    Returns:
        The valid names without duplicates (compared case-insensitively, RFC 4343), in order.
        Invalid ones are logged with `repr()` so that control characters are visible, not
        interpreted, in the log.
    """
    kept: list[str] = []
    seen: set[str] = set()
    for name in names:
        normalized = normalize(name)
        if normalized is None:
            logger.warning("dropping invalid %s from the server: %r", what, name[:300])
            continue
        if normalized.lower() in seen:
            continue
        seen.add(normalized.lower())
        kept.append(normalized)
    return tuple(kept)
