"""What the command prints: lease events as JSON lines on stdout, its log on stderr.

This module owns the JSON event format (`event_json`, one object per line, documented for
operators' scripts) and the log's format and levels.

Invariant: the standard library only at load time (trio only to read the clock when printing).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.shell.observe import LeaseEvent

__all__ = ["event_json", "print_event", "setup_logging", "v6only_json"]


# What a hook reads on stdin has these and two more; the command's lines keep their shape.
_HOOK_ONLY = ("seq", "hostname")


def event_json(
    kind: str,
    interface: str,
    lease: Lease,
    *,
    now: float,
    wall: float,
    old: Lease | None = None,
    reason: str | None = None,
    missed: int = 0,
) -> str:
    """One lease event as one line of JSON.

    `t1`, `t2` and `expiry` are seconds from now (the lease's times are on a clock of this
    process only); `time` is the wall clock (Unix seconds). `old_address` for "changed",
    `reason` for "lost", `missed` when earlier events were coalesced into this one (a reader
    slower than the client; see `dhcp4c.shell.observe`). The fields are the hook's
    (`dhcp4c.consumers.hooks.event_document`, without `seq` and `hostname`): `domain` and
    `search` hold only valid DNS names.
    """
    import json

    from dhcp4c.consumers.hooks import event_document
    from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind

    event_kind = LeaseEventKind(kind)
    lost = event_kind is LeaseEventKind.LOST
    event = LeaseEvent(
        event_kind,
        lease=None if lost else lease,
        old=lease if lost else old,
        reason=reason,
        seq=0,
        missed=missed,
    )
    document = event_document(interface, event, now=now, wall=wall)
    assert document is not None  # the event holds a lease
    for name in _HOOK_ONLY:
        del document[name]
    return json.dumps(document, sort_keys=False)


def v6only_json(interface: str, wait: float, *, wall: float, missed: int = 0) -> str:
    """An "ipv6-only" event as one line of JSON: `wait` is how long (seconds) DHCPv4 stays
    quiet before starting over (RFC 8925)."""
    import json

    document: dict[str, Any] = {
        "event": "ipv6-only",
        "interface": interface,
        "time": round(wall, 3),
    }
    document["wait"] = wait
    if missed:
        document["missed"] = missed
    return json.dumps(document, sort_keys=False)


def print_event(interface: str, event: LeaseEvent) -> None:
    """Print `event` as one line of JSON on stdout (nothing for an event without a lease)."""
    import time

    import trio

    kind = event.kind.value
    if event.wait is not None:
        print(v6only_json(interface, event.wait, wall=time.time(), missed=event.missed), flush=True)
        return
    lease = event.lease if event.lease is not None else event.old
    if lease is None:
        return
    line = event_json(
        kind,
        interface,
        lease,
        now=trio.current_time(),
        wall=time.time(),
        old=event.old if kind == "changed" else None,
        reason=event.reason,
        missed=event.missed,
    )
    print(line, flush=True)


def setup_logging(verbosity: int) -> None:
    """Log to stderr as `dhcp4c: ...` lines: warnings only (-1), info (0), debug (1, 2)."""
    import logging

    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if verbosity >= 1:
        form = "dhcp4c: %(relativeCreated)8.1f ms %(name)s: %(message)s"
    else:
        form = "dhcp4c: %(message)s"
    handler.setFormatter(logging.Formatter(form))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbosity < 2:
        # Libraries' debug output only with -vv.
        def quiet_libraries(record: logging.LogRecord) -> bool:
            return record.levelno >= logging.WARNING or not record.name.startswith(
                ("asyncio", "trio")
            )

        handler.addFilter(quiet_libraries)
