"""Lease hooks: an operator's executable run on every lease event (`dhcp4c --hook PATH`).

Owns what a hook receives and how it is run (docs/hooks.md): the event as `DHCP4C_*` environment
variables (`VARIABLES`) and one JSON object on stdin (`event_document`), the reason as its only
argument, like udhcpc's script (`hook bound`). Invariants:
- Every value comes from the sanitised `Lease`; names that are not valid DNS names are left out,
  and no value holds a control character: option values reach a hook as data, never shell text.
- The hook is executed directly (absolute path, no shell, no PATH lookup) in its own process
  group, with cwd `/` and a time limit; on timeout the whole group is killed.
- A hook never stops or delays the client: it is an observer (after the lease callback), one run
  at a time per interface; a slow hook sees the latest event, `DHCP4C_MISSED` counting what it
  skipped. Failures and timeouts are logged; nothing here raises into the client.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from dhcp4c.protocol.dnsname import normalize
from dhcp4c.protocol.message import MessageError

if TYPE_CHECKING:
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.shell.observe import LeaseEvent

__all__ = [
    "DEFAULT_TIMEOUT",
    "PREFIX",
    "VARIABLES",
    "HookResult",
    "HookRunner",
    "check_hook",
    "event_document",
    "hook_environment",
]

logger = logging.getLogger(__name__)

#: Seconds a hook may run before its process group is killed.
DEFAULT_TIMEOUT = 10.0
#: Seconds between SIGTERM and SIGKILL to the hook's process group once its time is up.
KILL_GRACE = 1.0

#: One prefix for every name: a hook inherits the client's environment, and plain udhcpc names
#: (`ip`, `domain`, `interface`) could collide with what is already there.
PREFIX = "DHCP4C_"

#: Every variable a hook may receive, and what it holds. Lists are space-separated; a variable
#: whose value is absent or invalid is not set at all. For "lost" the lease variables describe
#: the lease that was lost.
VARIABLES: Mapping[str, str] = {
    "DHCP4C_REASON": "what happened: bound, renewed, changed or lost (also the hook's argument)",
    "DHCP4C_INTERFACE": "the interface name",
    "DHCP4C_ADDRESS": "the leased address (192.0.2.10)",
    "DHCP4C_PREFIX": "its prefix length (24)",
    "DHCP4C_NETMASK": "its netmask (255.255.255.0)",
    "DHCP4C_BROADCAST": "the subnet's broadcast address",
    "DHCP4C_SERVER_ID": "the server identifier (option 54)",
    "DHCP4C_ROUTERS": "usable routers of option 3",
    "DHCP4C_ROUTES": "sanitised routes as DEST/LEN,GATEWAY (gateway 0.0.0.0: on-link), "
    "default route included",
    "DHCP4C_DNS": "usable DNS servers of option 6",
    "DHCP4C_DOMAIN": "the domain name (option 15), when a valid DNS name",
    "DHCP4C_SEARCH": "the valid names of the search list (option 119)",
    "DHCP4C_HOSTNAME": "the host name the server assigned (option 12), when a valid DNS name",
    "DHCP4C_MTU": "the interface MTU (option 26)",
    "DHCP4C_LEASE_TIME": "seconds the lease was granted for",
    "DHCP4C_T1": "seconds from the event until renewal",
    "DHCP4C_T2": "seconds from the event until rebinding",
    "DHCP4C_EXPIRY": "seconds from the event until the lease expires",
    "DHCP4C_TIME": "the event's wall-clock time (Unix seconds)",
    "DHCP4C_OLD_ADDRESS": "changed: the previous lease's address",
    "DHCP4C_OLD_PREFIX": "changed: the previous lease's prefix length",
    "DHCP4C_LOST_REASON": "lost: expired, nak, declined, released, unconfirmed, ...",
    "DHCP4C_SEQ": "the event's number in the client's history, from 1",
    "DHCP4C_MISSED": "how many events the hook did not see just before this one (when > 0)",
}

_REASON = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")
# Environment variables a hook must not inherit: the service manager's notification socket
# (the hook is not the service) and any stale variable of ours.
_NOT_INHERITED = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")


def _names(names: tuple[str, ...]) -> list[str]:
    # `dnsname.valid_names` without its warnings: the client warned when it got the lease.
    kept: dict[str, str] = {}
    for name in names:
        normal = normalize(name)
        if normal is not None:
            kept.setdefault(normal.lower(), normal)
    return list(kept.values())


def _described(lease: Lease) -> dict[str, Any]:
    """The validated facts of `lease`, as JSON-ready values."""
    domain = lease.domain
    hostname = None
    with contextlib.suppress(MessageError):
        hostname = lease.options.hostname
    return {
        "address": str(lease.address),
        "server_id": str(lease.server_id),
        "routers": [str(router) for router in lease.routers],
        "dns_servers": [str(server) for server in lease.dns_servers],
        "domain": None if domain is None else normalize(domain),
        "search": _names(lease.search),
        "hostname": None if hostname is None else normalize(hostname),
        "mtu": lease.mtu,
        "routes": [
            {
                "destination": str(route.destination),
                "gateway": None if route.gateway is None else str(route.gateway),
            }
            for route in lease.routes
        ],
    }


def _reason(event: LeaseEvent) -> str | None:
    reason = event.reason
    return reason if reason is not None and _REASON.match(reason) else None


def event_document(
    interface: str, event: LeaseEvent, *, now: float, wall: float
) -> dict[str, Any] | None:
    """The event as the JSON object a hook reads on stdin.

    The shape of the command's `--json` lines (`event`, `interface`, `time`, the lease fields,
    `t1`/`t2`/`expiry` in seconds from now, `old_address`, `reason`, `missed`) plus `seq` and
    `hostname`; unlike raw lease fields, `domain`, `search` and `hostname` hold only valid names.

    Args:
        interface: the interface name.
        event: the lease event.
        now: the clock the lease's times are on (Trio's), now.
        wall: the wall clock now (Unix seconds).

    Returns:
        The document, or None for an event without a lease (none is ever published).
    """
    lease = event.lease if event.lease is not None else event.old
    if lease is None:
        return None
    document: dict[str, Any] = {
        "event": event.kind.value,
        "interface": interface,
        "time": round(wall, 3),
    }
    document.update(_described(lease))
    document.update(
        t1=round(max(0.0, lease.t1 - now), 3),
        t2=round(max(0.0, lease.t2 - now), 3),
        expiry=round(max(0.0, lease.expiry - now), 3),
        seq=event.seq,
    )
    if event.kind.value == "changed" and event.old is not None:
        document["old_address"] = str(event.old.address)
    reason = _reason(event)
    if reason is not None:
        document["reason"] = reason
    if event.missed:
        document["missed"] = event.missed
    return document


def _seconds(value: float) -> str:
    # Whole seconds, rounded down (a hook that acts on them errs early); "infinite" stays finite.
    return str(int(min(max(value, 0.0), 2**53))) if math.isfinite(value) else str(2**31 - 1)


def hook_environment(
    interface: str, event: LeaseEvent, *, now: float, wall: float
) -> dict[str, str]:
    """The `DHCP4C_*` variables for `event` (see `VARIABLES`); pure.

    Args: as for `event_document`.

    Returns:
        Only the variables that have a value; every value is printable ASCII without newlines
        (a value that is not is left out with a warning: it can only come from a bug).
    """
    lease = event.lease if event.lease is not None else event.old
    if lease is None:
        return {}
    facts = _described(lease)
    env = {
        "REASON": event.kind.value,
        "INTERFACE": interface,
        "ADDRESS": str(lease.address.ip),
        "PREFIX": str(lease.address.network.prefixlen),
        "NETMASK": str(lease.address.netmask),
        "BROADCAST": str(lease.address.network.broadcast_address),
        "SERVER_ID": str(lease.server_id),
        "ROUTERS": " ".join(facts["routers"]),
        "ROUTES": " ".join(
            f"{route.destination},{'0.0.0.0' if route.gateway is None else route.gateway}"
            for route in lease.routes
        ),
        "DNS": " ".join(facts["dns_servers"]),
        "DOMAIN": facts["domain"] or "",
        "SEARCH": " ".join(facts["search"]),
        "HOSTNAME": facts["hostname"] or "",
        "MTU": "" if lease.mtu is None else str(lease.mtu),
        "LEASE_TIME": _seconds(lease.expiry - lease.obtained),
        "T1": _seconds(lease.t1 - now),
        "T2": _seconds(lease.t2 - now),
        "EXPIRY": _seconds(lease.expiry - now),
        "TIME": str(int(wall)),
        "SEQ": str(event.seq),
    }
    if event.kind.value == "changed" and event.old is not None:
        env["OLD_ADDRESS"] = str(event.old.address.ip)
        env["OLD_PREFIX"] = str(event.old.address.network.prefixlen)
    reason = _reason(event)
    if event.kind.value == "lost" and reason is not None:
        env["LOST_REASON"] = reason
    if event.missed:
        env["MISSED"] = str(event.missed)
    result: dict[str, str] = {}
    for name, value in env.items():
        if not value:
            continue
        if not (value.isascii() and value.isprintable()):
            logger.warning("hook: leaving out %s%s=%r", PREFIX, name, value[:100])
            continue
        result[PREFIX + name] = value
    return result


def check_hook(path: Path | str) -> Path:
    """Resolve a `--hook` argument to the absolute path of an executable regular file.

    Raises:
        ValueError: it does not exist, is not a regular file or is not executable (the message
            is one line for the command's error output).

    The path is made absolute here so that the hook is never looked up in PATH.
    """
    hook = Path(path).absolute()
    if not hook.is_file():
        raise ValueError(f"{hook} is not a file")
    if not os.access(hook, os.X_OK):
        raise ValueError(f"{hook} is not executable")
    return hook


@dataclass(frozen=True)
class HookResult:
    """How one hook run ended.

    Attributes:
        returncode: the exit status (negative: killed by that signal), None if it never ran.
        timed_out: its time ran out and its process group was killed.
        error: why it could not be started, else None.
    """

    returncode: int | None
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the hook ran and exited 0 in time."""
        return self.returncode == 0 and not self.timed_out


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class HookRunner:
    """Runs one hook for one interface's lease events, one at a time.

    Args:
        path: the hook (made absolute; see `check_hook`).
        interface: the interface whose events it gets.
        timeout: seconds before the hook's process group is sent SIGTERM, then SIGKILL after
            `KILL_GRACE`.
        clock: the clock the leases' times are on (Trio's).
        wall: the wall clock (for `DHCP4C_TIME`).
        environ: the environment the hook inherits (default: this process's).
    """

    def __init__(
        self,
        path: Path | str,
        interface: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"hook timeout must be positive, not {timeout!r}")
        self.path = Path(path).absolute()
        self.interface = interface
        self.timeout = timeout
        self._clock = clock
        self._wall = wall
        self._environ = environ
        self._stopping = False
        self._waiting: trio.CancelScope | None = None

    def _base_environment(self) -> dict[str, str]:
        source = os.environ if self._environ is None else self._environ
        return {
            name: value
            for name, value in source.items()
            if not name.startswith(PREFIX) and name not in _NOT_INHERITED
        }

    async def run(self, event: LeaseEvent) -> HookResult:
        """Run the hook for `event` and wait for it (at most `timeout` plus the kill grace).

        Returns:
            How it ended. Never raises, except Trio's Cancelled (the hook's group is then
            killed before it propagates).
        """
        now, wall = self._clock(), self._wall()
        document = event_document(self.interface, event, now=now, wall=wall)
        if document is None:
            return HookResult(None, error="no lease in the event")
        env = self._base_environment()
        env.update(hook_environment(self.interface, event, now=now, wall=wall))
        stdin = (json.dumps(document) + "\n").encode("ascii")
        argv = [os.fspath(self.path), event.kind.value]

        killed: list[int] = []

        async def kill_group(process: trio.Process) -> None:
            killed.append(process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            await trio.sleep(KILL_GRACE)
            _signal_group(process.pid, signal.SIGKILL)

        label = f"hook {self.path} ({event.kind.value} on {self.interface})"
        try:
            with trio.move_on_after(self.timeout) as timer:
                process = await trio.run_process(
                    argv,
                    stdin=stdin,
                    # The hook's output goes to our log stream, never to stdout (which may carry
                    # the command's --json events).
                    stdout=2,
                    check=False,
                    env=env,
                    cwd="/",
                    start_new_session=True,
                    deliver_cancel=kill_group,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            # ENOENT, EACCES, ENOEXEC (no #! line); ValueError for an argument Popen refuses.
            text = (error.strerror if isinstance(error, OSError) else None) or str(error)
            logger.warning("%s: cannot run it: %s", label, text)
            return HookResult(None, error=text)
        finally:
            # The leader may have exited on SIGTERM while others in its group ignored it.
            for pid in killed:
                _signal_group(pid, signal.SIGKILL)
        if timer.cancelled_caught:
            logger.warning("%s: killed after %g s", label, self.timeout)
            return HookResult(None, timed_out=True)
        code = process.returncode
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
            logger.warning("%s: %s", label, how)
        else:
            logger.debug("%s: done", label)
        return HookResult(code)

    async def serve(self, events: trio.MemoryReceiveChannel[LeaseEvent]) -> None:
        """Run the hook for each event of `events` until `stop()` (or the channel ends).

        `events` is a subscription (`Client.subscribe()`): while a run lasts, later events are
        coalesced into the latest (see `dhcp4c.shell.observe`), so the hook always catches up.
        Cancelling `serve` kills a running hook; `stop()` lets it finish instead.
        """
        while True:
            event: LeaseEvent | None = None
            if self._stopping:
                try:
                    event = events.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    return
            else:
                with trio.CancelScope() as scope:
                    self._waiting = scope
                    try:
                        event = await events.receive()
                    except (trio.EndOfChannel, trio.ClosedResourceError):
                        return
                    finally:
                        self._waiting = None
                if event is None:
                    continue  # stop() ended the wait: run what is pending, then return
            await self.run(event)

    def stop(self) -> None:
        """Make `serve` return once the run in progress and the events waiting are done.

        For shutdown: after the client stopped, the events it published last (the lease of
        `--once`, the "lost" of `--release`) still get their run, within the time limit.
        """
        self._stopping = True
        if self._waiting is not None:
            self._waiting.cancel()
