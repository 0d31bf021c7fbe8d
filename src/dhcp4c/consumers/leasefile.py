"""Lease persistence: one versioned JSON file per interface, written atomically, read defensively.

Owns the on-disk format (`<lease_dir>/<ifname>.lease`, mode 0600, ASCII JSON, at most 64 KiB;
the format is in docs/design.md, "The lease file") and the two clock conversions it needs: a
lease lives in memory on the Trio clock, the file records wall-clock times with a CLOCK_BOOTTIME
sample and the boot id, and loading ages the lease by the larger of the wall-clock and (same boot
only) boot-time differences. Only the raw ACK options are stored; the other `Lease` fields are
re-derived by the code that built the lease, so a file cannot carry what the wire could not.

Invariants: a loaded lease never expires later than the saved one would have (RFC 2131 §4.4.5),
on either clock; reading never raises (missing, corrupt, foreign, oversized, non-regular or
expired files are None, all but a missing one with a warning); writing is temp file, fsync,
rename, fsync directory, so a crash leaves the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dhcp4c.protocol.lease import Lease

__all__ = [
    "FORMAT",
    "MAX_SIZE",
    "VERSION",
    "WallClocks",
    "atomic_write",
    "lease_path",
    "load",
    "remove",
    "save",
]

logger = logging.getLogger(__name__)

FORMAT = "dhcp4c-lease"
VERSION = 1
MAX_SIZE = 64 * 1024
_SUFFIX = ".lease"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# IFNAMSIZ is 16 including the NUL; the kernel refuses "/" and whitespace in interface names. We
# also refuse "." and ".." so that an interface name can never leave the lease directory.
_IFNAME = re.compile(r"[^/\s\x00]{1,15}\Z")


@dataclass(frozen=True)
class WallClocks:
    """A sample of the clocks a lease file is anchored to.

    Attributes:
        realtime: CLOCK_REALTIME seconds (Unix time; may jump when the clock is set).
        boottime: CLOCK_BOOTTIME seconds (monotonic, counts suspend, restarts at boot).
        boot_id: the kernel's random boot id: boottime samples are comparable only within one boot.
    """

    realtime: float
    boottime: float
    boot_id: str

    @classmethod
    def read(cls) -> WallClocks:
        """Sample the system's clocks now."""
        try:
            boot_id = _BOOT_ID.read_text(encoding="ascii").strip()
        except OSError:
            boot_id = ""  # never equal to a stored one: boot time is then not used
        return cls(
            realtime=time.clock_gettime(time.CLOCK_REALTIME),
            boottime=time.clock_gettime(time.CLOCK_BOOTTIME),
            boot_id=boot_id,
        )


def lease_path(lease_dir: Path | str, ifname: str) -> Path:
    """Return `<lease_dir>/<ifname>.lease`.

    Raises:
        ValueError: `ifname` is not a possible Linux interface name (and could escape the
            directory).
    """
    if not _IFNAME.match(ifname) or ifname in (".", ".."):
        raise ValueError(f"invalid interface name {ifname!r}")
    return Path(lease_dir) / (ifname + _SUFFIX)


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data` so that readers and crashes see the old or the new file only.

    Writes a temp file in the same directory (same file system, so the rename is atomic), fsyncs
    it, renames it over `path`, then fsyncs the directory so the rename itself is durable. Blocking:
    call it from a worker thread under Trio.

    Raises:
        OSError: on any failure; the temp file is removed and `path` is untouched.
    """
    directory = path.parent
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _wall(t: float, now_trio: float, clocks: WallClocks) -> float | None:
    return clocks.realtime + (t - now_trio) if math.isfinite(t) else None


def _render(
    lease: Lease,
    *,
    ifname: str,
    hwaddr: bytes,
    client_id: bytes | None,
    now_trio: float,
    clocks: WallClocks,
) -> bytes:
    document = {
        "format": FORMAT,
        "version": VERSION,
        "interface": ifname,
        "hardware_address": hwaddr.hex(":"),
        "client_id": None if client_id is None else client_id.hex(),
        "address": str(lease.address),
        "server_id": str(lease.server_id),
        "saved": {
            "realtime": clocks.realtime,
            "boottime": clocks.boottime,
            "boot_id": clocks.boot_id,
        },
        "obtained": _wall(lease.obtained, now_trio, clocks),
        "t1": _wall(lease.t1, now_trio, clocks),
        "t2": _wall(lease.t2, now_trio, clocks),
        "expiry": _wall(lease.expiry, now_trio, clocks),
        "options": [[code, value.hex()] for code, value in lease.options.items()],
    }
    return (json.dumps(document, indent=1, allow_nan=False) + "\n").encode("ascii")


def save(
    path: Path,
    lease: Lease,
    *,
    ifname: str,
    hwaddr: bytes,
    client_id: bytes | None = None,
    now_trio: float,
    clocks: WallClocks | None = None,
) -> None:
    """Write `lease` to `path` atomically (mode 0600), creating the directory if needed.

    Args:
        path: usually `lease_path(lease_dir, ifname)`.
        lease: the lease, its times on the Trio clock.
        ifname, hwaddr, client_id: what the lease belongs to; `load` refuses a file whose owner
            differs, so that a lease is never reused on another interface or with another identity.
        now_trio: the Trio clock now (`trio.current_time()`), paired with `clocks`.
        clocks: the wall clocks now; read from the system when None (tests pass a fixed sample).

    Raises:
        OSError: the file could not be written; the previous file, if any, is intact. Blocking:
            run it in a worker thread under Trio.
    """
    data = _render(
        lease,
        ifname=ifname,
        hwaddr=hwaddr,
        client_id=client_id,
        now_trio=now_trio,
        clocks=WallClocks.read() if clocks is None else clocks,
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, data, mode=0o600)


def remove(path: Path) -> None:
    """Delete the lease file if it exists (the lease was lost or released).

    Raises:
        OSError: other than the file being absent.
    """
    path.unlink(missing_ok=True)


class _Invalid(ValueError):
    """The file is not a usable lease; the message says why (for the warning)."""


def _read_limited(path: Path) -> bytes | None:
    # O_NONBLOCK: opening a FIFO planted at the path must not hang the client.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _Invalid("not a regular file")
        if info.st_size > MAX_SIZE:
            raise _Invalid(f"{info.st_size} bytes, more than {MAX_SIZE}")
        # Read one byte past the limit: the file may have grown since fstat.
        data = file.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise _Invalid(f"more than {MAX_SIZE} bytes")
    return data


def _field(document: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = document.get(key)
    # bool is an int subclass: never accept true/false for a number.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Invalid(f"field {key!r} missing or not {kind}")
    return value


def _number(document: Mapping[str, Any], key: str) -> float:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"field {key!r} missing or not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _Invalid(f"field {key!r} is not finite")
    return number


def _time(document: Mapping[str, Any], key: str) -> float:
    """A saved wall-clock time; null stands for "never" (an infinite lease)."""
    return math.inf if document.get(key, 0) is None else _number(document, key)


def _elapsed(saved: Mapping[str, Any], clocks: WallClocks) -> float:
    """Seconds since the file was saved, erring long; see the module docstring."""
    realtime = _number(saved, "realtime")
    boottime = _number(saved, "boottime")
    boot_id = _field(saved, "boot_id", str)
    elapsed = clocks.realtime - realtime
    if boot_id and boot_id == clocks.boot_id:
        return max(elapsed, clocks.boottime - boottime)
    if elapsed < 0:
        raise _Invalid("the wall clock is earlier than when the lease was saved, after a reboot")
    return elapsed


def _parse(
    data: bytes,
    *,
    ifname: str,
    hwaddr: bytes,
    client_id: bytes | None,
    now_trio: float,
    clocks: WallClocks,
) -> Lease:
    # Imported here: finding that there is no file must not cost loading the codec.
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.protocol.message import BOOTREPLY, Message
    from dhcp4c.protocol.options import Options

    try:
        document = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _Invalid(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise _Invalid("not a JSON object")
    if document.get("format") != FORMAT:
        raise _Invalid(f"format {document.get('format')!r}, not {FORMAT!r}")
    if document.get("version") != VERSION or isinstance(document.get("version"), bool):
        raise _Invalid(f"version {document.get('version')!r}, not {VERSION}")
    if document.get("interface") != ifname:
        raise _Invalid(f"for interface {document.get('interface')!r}")
    if document.get("hardware_address") != hwaddr.hex(":"):
        raise _Invalid(f"for hardware address {document.get('hardware_address')!r}")
    stored_client_id = document.get("client_id")
    if client_id is not None and stored_client_id != client_id.hex():
        raise _Invalid(f"for client id {stored_client_id!r}")

    address = IPv4Interface(_field(document, "address", str))
    server_id = IPv4Address(_field(document, "server_id", str))
    raw_options = _field(document, "options", list)
    items: list[tuple[int, bytes]] = []
    for item in raw_options:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], int)
            or isinstance(item[0], bool)
            or not 0 < item[0] < 255
            or not isinstance(item[1], str)
        ):
            raise _Invalid(f"bad option entry {item!r:.60}")
        items.append((item[0], bytes.fromhex(item[1])))
    options = Options(items)

    saved = _field(document, "saved", dict)
    offset = now_trio - _number(saved, "realtime") - _elapsed(saved, clocks)
    obtained, t1, t2, expiry = (
        _time(document, key) + offset for key in ("obtained", "t1", "t2", "expiry")
    )
    if expiry <= now_trio:
        raise _Invalid(f"expired {now_trio - expiry:.0f} s ago")
    # Re-derive routes, DNS and MTU from the raw options with the code that built the original
    # lease, then put back the saved times (from_ack's own timers would restart the lease now).
    ack = Message(op=BOOTREPLY, xid=0, yiaddr=address.ip, options=options)
    lease = Lease.from_ack(ack, obtained, random.Random(0))
    if lease.address != address or lease.server_id != server_id:
        raise _Invalid("address or server id disagree with the saved options")
    return dataclasses.replace(lease, obtained=obtained, t1=t1, t2=t2, expiry=expiry)


def load(
    path: Path,
    ifname: str,
    hwaddr: bytes,
    now_trio: float,
    *,
    client_id: bytes | None = None,
    clocks: WallClocks | None = None,
) -> Lease | None:
    """Read the lease saved at `path` for this interface, its times moved to the Trio clock.

    Args:
        path: usually `lease_path(lease_dir, ifname)`.
        ifname, hwaddr: the file must have been written for this interface and hardware address.
        now_trio: the Trio clock now (`trio.current_time()`).
        client_id: when given, the file must have been written with this client identifier.
        clocks: the wall clocks now; read from the system when None (tests pass a fixed sample).

    Returns:
        The lease to try with INIT-REBOOT (RFC 2131 §3.2), or None: no file (silently), or a
        corrupt, foreign, oversized or expired one (with a warning). Never raises: a bad lease file
        must cost a full DISCOVER, never the client.
    """
    try:
        data = _read_limited(path)
        if data is None:
            logger.debug("no lease file at %s", path)
            return None
        return _parse(
            data,
            ifname=ifname,
            hwaddr=hwaddr,
            client_id=client_id,
            now_trio=now_trio,
            clocks=WallClocks.read() if clocks is None else clocks,
        )
    except _Invalid as error:
        logger.warning("ignoring lease file %s: %s", path, error)
    except OSError as error:
        logger.warning("cannot read lease file %s: %s", path, error)
    except Exception as error:  # the Lease/Options constructors may refuse values in many ways
        logger.warning("ignoring lease file %s: %s: %s", path, type(error).__name__, error)
    return None
