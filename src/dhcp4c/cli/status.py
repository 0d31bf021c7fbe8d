"""`dhcp4c status [IFACE...]`: the lease each interface holds, from the running client's files.

This module owns reading the lease files a client keeps (`--lease-dir`,
`dhcp4c.consumers.leasefile`)
back for an operator: address, server, state and timers remaining, routes, DNS, as text or one
JSON object per interface. Invariants:

- Leases are loaded by `leasefile.load`, so they pass the same checks and sanitising as a lease
  the client would reuse (a corrupt or expired file is no lease), and names are shown only when
  valid DNS names (`dhcp4c.protocol.dnsname`).
- Times remaining are computed from the wall clock (and the boot clock within one boot) the way
  the client computes them on a restart: never later than the client itself would expire.
- The state shown (bound, renewing, rebinding) is inferred from the timers: the client rewrites
  the file on every renewal, so a file past T1 means the renewal has not succeeded yet.
- Read-only; one line on stderr and a non-zero exit (`EXIT_*`) when an interface has no lease.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dhcp4c.consumers import leasefile
from dhcp4c.protocol.dnsname import normalize

if TYPE_CHECKING:
    import argparse

    from dhcp4c.protocol.lease import Lease

__all__ = [
    "DEFAULT_LEASE_DIR",
    "EXIT_FAILURE",
    "EXIT_NO_LEASE",
    "EXIT_OK",
    "EXIT_PRIVILEGES",
    "EXIT_USAGE",
    "InterfaceStatus",
    "collect",
    "main",
    "render_json",
    "render_text",
]

#: Where the systemd unit keeps its lease files (`StateDirectory=dhcp4c`).
DEFAULT_LEASE_DIR = Path("/var/lib/dhcp4c")

# The command's exit codes (`dhcp4c.cli`); "no lease" is the code of "no lease within --timeout".
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_LEASE = 3
EXIT_PRIVILEGES = 5

_SUFFIX = ".lease"


@dataclass(frozen=True)
class InterfaceStatus:
    """What one interface's lease file says now.

    Attributes:
        interface: the interface name.
        path: its lease file.
        lease: the lease, its times in seconds relative to now (now is 0.0); None when none.
        saved_ago: seconds since the client wrote the file (None without a lease).
        wall: the wall clock now (Unix seconds).
        reason: why there is no lease (one line), else None.
        code: the exit code this interface calls for.
    """

    interface: str
    path: Path
    lease: Lease | None
    saved_ago: float | None
    wall: float
    reason: str | None = None
    code: int = EXIT_OK


class _Warnings(logging.Handler):
    """Collects what `leasefile.load` says about a file it ignores."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _collecting() -> Iterator[_Warnings]:
    log = logging.getLogger(leasefile.__name__)
    handler = _Warnings()
    propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _owner(path: Path) -> dict[str, Any]:
    """The file's JSON document, read with the limits `leasefile` applies (FIFO-safe, bounded).

    Raises:
        FileNotFoundError, PermissionError, OSError: as reading does.
        ValueError: not a regular file, too large, not a JSON object.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        data = file.read(leasefile.MAX_SIZE + 1)
    if len(data) > leasefile.MAX_SIZE:
        raise ValueError(f"more than {leasefile.MAX_SIZE} bytes")
    try:
        document = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _one(interface: str, path: Path, clocks: leasefile.WallClocks) -> InterfaceStatus:
    def none(reason: str, code: int = EXIT_NO_LEASE) -> InterfaceStatus:
        return InterfaceStatus(interface, path, None, None, clocks.realtime, reason, code)

    try:
        document = _owner(path)
    except FileNotFoundError:
        return none(f"no lease file {path}")
    except PermissionError:
        return none(f"cannot read {path}: permission denied (run as root)", EXIT_PRIVILEGES)
    except OSError as error:
        return none(f"cannot read {path}: {error.strerror or error}", EXIT_FAILURE)
    except ValueError as error:
        return none(f"ignoring lease file {path}: {error}")
    hwaddr_text = document.get("hardware_address")
    client_id = document.get("client_id")
    try:
        hwaddr = bytes.fromhex(str(hwaddr_text).replace(":", ""))
        cid = None if client_id is None else bytes.fromhex(str(client_id))
    except ValueError:
        return none(f"ignoring lease file {path}: bad hardware address or client id")
    with _collecting() as warnings:
        # Trio time 0.0 stands for now: the loaded lease's times are then seconds from now.
        lease = leasefile.load(path, interface, hwaddr, 0.0, client_id=cid, clocks=clocks)
    if lease is None:
        return none(warnings.messages[-1] if warnings.messages else f"no lease in {path}")
    saved = document.get("saved")
    realtime = saved.get("realtime") if isinstance(saved, dict) else None
    ago = clocks.realtime - realtime if isinstance(realtime, (int, float)) else None
    return InterfaceStatus(interface, path, lease, ago, clocks.realtime)


def collect(
    lease_dir: Path,
    interfaces: Sequence[str] = (),
    *,
    clocks: leasefile.WallClocks | None = None,
) -> list[InterfaceStatus]:
    """The status of `interfaces` (default: every lease file in `lease_dir`).

    Args:
        lease_dir: the client's `--lease-dir`.
        interfaces: the interfaces to show; empty for all that have a file.
        clocks: the wall clocks now (tests pass a fixed sample).

    Returns:
        One entry per interface, in the order given (sorted by name for all). An empty list
        when `interfaces` is empty and the directory holds no lease file.

    Raises:
        ValueError: a name is not a possible interface name.
        OSError: the directory cannot be listed (only when `interfaces` is empty).
    """
    now = leasefile.WallClocks.read() if clocks is None else clocks
    names = list(dict.fromkeys(interfaces))
    if not names:
        names = sorted(
            entry.name[: -len(_SUFFIX)]
            for entry in os.scandir(lease_dir)
            if entry.name.endswith(_SUFFIX) and not entry.name.startswith(".")
        )
    return [_one(name, leasefile.lease_path(lease_dir, name), now) for name in names]


def _state(lease: Lease) -> str:
    # Times are relative to now (0.0); see `_one`.
    if lease.t1 > 0:
        return "bound"
    return "renewing" if lease.t2 > 0 else "rebinding"


def _names(lease: Lease) -> tuple[str | None, list[str]]:
    # Quietly: the client warned about invalid names when it got the lease.
    domain = None if lease.domain is None else normalize(lease.domain)
    search = (normalize(name) for name in lease.search)
    return domain, list(dict.fromkeys(name for name in search if name is not None))


def _document(entry: InterfaceStatus) -> dict[str, Any]:
    lease = entry.lease
    if lease is None:
        return {"interface": entry.interface, "address": None, "reason": entry.reason}
    domain, search = _names(lease)
    return {
        "interface": entry.interface,
        "address": str(lease.address),
        "server_id": str(lease.server_id),
        "state": _state(lease),
        "routers": [str(router) for router in lease.routers],
        "dns_servers": [str(server) for server in lease.dns_servers],
        "domain": domain,
        "search": search,
        "mtu": lease.mtu,
        "routes": [
            {
                "destination": str(route.destination),
                "gateway": None if route.gateway is None else str(route.gateway),
            }
            for route in lease.routes
        ],
        "t1": round(max(0.0, lease.t1), 3),
        "t2": round(max(0.0, lease.t2), 3),
        "expiry": round(max(0.0, lease.expiry), 3),
        "expires_at": round(entry.wall + lease.expiry, 3),
        "saved_ago": None if entry.saved_ago is None else round(entry.saved_ago, 3),
        "lease_file": str(entry.path),
    }


def render_json(entry: InterfaceStatus) -> str:
    """One interface's status as one line of JSON (`address` null and a `reason` without one).

    Times: `t1`, `t2`, `expiry` in seconds from now (as `dhcp4c --json`), `expires_at` Unix
    time, `saved_ago` seconds since the client wrote the file.
    """
    return json.dumps(_document(entry))


def _duration(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


def render_text(entry: InterfaceStatus) -> str:
    """One interface's status as a few lines of text (without a lease: one line)."""
    lease = entry.lease
    if lease is None:
        return f"{entry.interface}: no lease ({entry.reason})"
    import time

    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.wall + lease.expiry))
    lines = [
        f"{entry.interface}: {lease.address} from {lease.server_id}, {_state(lease)}",
        f"  renew in {_duration(lease.t1)}, rebind in {_duration(lease.t2)}, "
        f"expires in {_duration(lease.expiry)} ({expires})",
    ]
    routes = ", ".join(
        f"{route.destination} via {route.gateway}"
        if route.gateway is not None
        else f"{route.destination} on-link"
        for route in lease.routes
    )
    lines.append(f"  routes: {routes or 'none'}")
    lines.append(f"  dns: {' '.join(map(str, lease.dns_servers)) or 'none'}")
    domain, search = _names(lease)
    if domain is not None or search:
        lines.append(f"  domain: {domain or 'none'}; search: {' '.join(search) or 'none'}")
    if lease.mtu is not None:
        lines.append(f"  mtu: {lease.mtu}")
    saved = "" if entry.saved_ago is None else f" {_duration(entry.saved_ago)} ago"
    lines.append(f"  saved{saved} in {entry.path}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="dhcp4c status",
        description="Show the lease each interface holds, from the lease files of the running "
        "client (dhcp4c --lease-dir). A client that was stopped without --release leaves its "
        "lease there, still valid (and on the interface) until it expires.",
        epilog="exit codes: 0 every interface shown has a lease; 1 a lease file cannot be read; "
        "2 bad usage; 3 an interface has no lease (or there is no lease file at all); "
        "5 permission denied (lease files are readable by root only)",
    )
    parser.add_argument(
        "interfaces", nargs="*", metavar="IFACE", help="interfaces to show (default: all)"
    )
    parser.add_argument(
        "--lease-dir",
        type=Path,
        default=DEFAULT_LEASE_DIR,
        metavar="DIR",
        help=f"the client's --lease-dir (default {DEFAULT_LEASE_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per interface")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    clocks: leasefile.WallClocks | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run `dhcp4c status`; return its exit code.

    Args:
        argv: the arguments after `status` (default: `sys.argv[2:]`).
        clocks: the wall clocks now (tests pass a fixed sample).
        out, err: where the status and the error lines go (default stdout, stderr).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args = _parser().parse_args(list(sys.argv[2:] if argv is None else argv))

    def fail(message: str, code: int) -> int:
        print(f"dhcp4c status: error: {message}", file=err)
        return code

    lease_dir: Path = args.lease_dir
    if not args.interfaces and not lease_dir.is_dir():
        return fail(f"no lease: {lease_dir} does not exist (is dhcp4c running?)", EXIT_NO_LEASE)
    try:
        entries = collect(lease_dir, args.interfaces, clocks=clocks)
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    except PermissionError:
        return fail(f"cannot list {lease_dir}: permission denied", EXIT_PRIVILEGES)
    except OSError as error:
        return fail(f"cannot list {lease_dir}: {error.strerror or error}", EXIT_FAILURE)
    if not entries:
        return fail(f"no lease: no lease file in {lease_dir}", EXIT_NO_LEASE)
    code = EXIT_OK
    for entry in entries:
        if entry.lease is None:
            print(f"dhcp4c status: {render_text(entry)}", file=err)
            code = max(code, entry.code)
        if args.json:
            print(render_json(entry), file=out)
        elif entry.lease is not None:
            print(render_text(entry), file=out)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
