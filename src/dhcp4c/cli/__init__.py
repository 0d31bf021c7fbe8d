"""The `dhcp4c` command: one DHCPv4 client per interface under one supervision tree.

    dhcp4c [options] IFACE...      get and keep a lease on each interface (configure the kernel)

This module owns the command line: parsing and validating arguments, checking the interfaces
and privileges before anything starts, logging, lease events as text (stderr) or JSON (stdout),
signals and exit codes. The protocol is the client's (`dhcp4c.shell.client`), the kernel side is
`dhcp4c.consumers.netconfig`'s.

Start-up time is part of the product (a client at boot waits for nothing else), so the module
imports only the standard library at the top, and trio and the client only once the arguments
are known to be good. The command runs the same Trio `Client` as any embedder, one supervisor
node per interface; what it adds is the order of start-up: each client starts with the carrier
an ioctl reports, its first DISCOVER (or INIT-REBOOT REQUEST) goes out before the kernel side
(`dhcp4c.consumers.netconfig`, `dhcp4c.shell.runner` and the netlink library under them) is
imported, and
that import runs in a worker thread while the server answers. The lease callback awaits the
import before configuring; the link watch then takes the running client over.

Exit codes (also in `--help`):
    0  clean exit: a signal (SIGTERM/SIGINT) after a lease, or `--once` bound and configured
    1  a runtime failure (the kernel refused the configuration, an unexpected error)
    2  bad usage or a bad option value
    3  no lease within `--timeout`
    4  an interface does not exist or cannot be used (no hardware address)
    5  missing privileges (CAP_NET_RAW, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE; run as root)
    130/143  interrupted by SIGINT/SIGTERM before `--once` got its lease

Errors are one line on stderr (`dhcp4c: error: ...`), never a traceback (`-vv` shows them).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import argparse
    from types import ModuleType

    import trio

    from dhcp4c.consumers.netconfig import LeaseCallback
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.shell.client import Client

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERFACE",
    "EXIT_OK",
    "EXIT_PRIVILEGES",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CommandError",
    "Settings",
    "event_json",
    "main",
    "parse",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERFACE = 4
EXIT_PRIVILEGES = 5

_EPILOG = """\
exit codes:
  0    clean exit (signal after a lease, or --once bound and configured)
  1    runtime failure (the kernel refused the configuration, unexpected error)
  2    bad usage or option value
  3    no lease within --timeout
  4    no such interface, or not usable (no hardware address)
  5    missing privileges (needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE)
  130  SIGINT, 143 SIGTERM before --once got its lease
"""

# Capability bits (include/uapi/linux/capability.h).
_CAP_NET_BIND_SERVICE = 10
_CAP_NET_ADMIN = 12
_CAP_NET_RAW = 13
_ARPHRD_ETHER = 1
_SIOCGIFHWADDR = 0x8927
_SIOCGIFMTU = 0x8921
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
# IFNAMSIZ is 16 with the NUL; the kernel refuses "/", ":" and whitespace in names.
_IFNAME = re.compile(r"[^/:\s\x00]{1,15}\Z")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]?)+\Z")
_DEFAULT_ONCE_TIMEOUT = 30.0


class CommandError(Exception):
    """A failure to report as one line and an exit code, without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Interface:
    """An interface checked to exist, with what the client needs to know about it."""

    name: str
    index: int
    hwaddr: bytes
    mtu: int | None


@dataclass(frozen=True)
class Settings:
    """The validated command line (everything the run needs, nothing unparsed)."""

    interfaces: tuple[str, ...]
    configure: bool = True
    once: bool = False
    timeout: float | None = None
    json: bool = False
    verbosity: int = 0  # -1 quiet, 0 info, 1 debug, 2 debug with tracebacks
    release: bool = False
    lease_dir: Path | None = None
    client_id: bytes | None = None
    client_id_type: str = "duid"
    hostname: str | None = None
    vendor_class: bytes | None = None
    request_options: tuple[int, ...] = ()
    rapid_commit: bool = True
    broadcast_flag: bool = False
    resolv_conf: Path | None = None
    route_metric: int | None = None
    routes: bool = True
    mtu: bool = True


# -- argument parsing ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="dhcp4c",
        description="A DHCPv4 client (RFC 2131): get and keep a lease on each interface, and "
        "configure the kernel with it. `dhcp4c-demo --help` for the self-contained demo.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("interfaces", nargs="+", metavar="IFACE", help="interfaces to serve")
    run = parser.add_argument_group("running")
    run.add_argument(
        "--once",
        action="store_true",
        help="exit 0 once every interface has a lease, bound and configured "
        "(like udhcpc -q, dhclient -1); exit 3 if not within --timeout",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help=f"give up (exit 3) if no lease within SECONDS (default with --once: "
        f"{_DEFAULT_ONCE_TIMEOUT:g}; otherwise wait forever)",
    )
    run.add_argument(
        "--no-configure",
        dest="configure",
        action="store_false",
        help="only get and keep the lease; do not touch addresses, routes or the MTU",
    )
    run.add_argument("--no-routes", dest="routes", action="store_false", help="install no routes")
    run.add_argument("--no-mtu", dest="mtu", action="store_false", help="ignore option 26")
    run.add_argument(
        "--route-metric",
        type=_int_range(0, 0xFFFFFFFF),
        metavar="N",
        help="metric of the routes (default 1000 + interface index)",
    )
    run.add_argument(
        "--release",
        action="store_true",
        help="on exit, send DHCPRELEASE and remove what was configured",
    )
    run.add_argument(
        "--lease-dir",
        type=Path,
        metavar="DIR",
        help="keep a lease file per interface in DIR and start with INIT-REBOOT from it",
    )
    run.add_argument(
        "--resolv-conf",
        type=Path,
        metavar="PATH",
        help="write the lease's DNS servers and domains to PATH (resolv.conf format); "
        "never /etc/resolv.conf unless given",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="print one JSON object per lease event on stdout"
    )
    out.add_argument("-v", "--verbose", action="count", default=0, help="more log (repeatable)")
    out.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    proto = parser.add_argument_group("protocol")
    proto.add_argument(
        "--client-id",
        metavar="ID",
        help="option 61: 'duid' (RFC 4361, the default), 'mac' (type 1 + MAC address), "
        "or hex bytes including the type byte (01:02:00:00:00:00:01)",
    )
    proto.add_argument("--hostname", metavar="NAME", help="option 12: a host name to send")
    proto.add_argument("--vendor-class", metavar="TEXT", help="option 60: vendor class")
    proto.add_argument(
        "--request-option",
        type=_int_range(1, 254),
        action="append",
        default=[],
        metavar="N",
        help="also request option N in option 55 (repeatable)",
    )
    proto.add_argument(
        "--no-rapid-commit",
        dest="rapid_commit",
        action="store_false",
        help="do not ask for a two-message exchange (RFC 4039)",
    )
    proto.add_argument(
        "--broadcast-flag",
        action="store_true",
        help="ask servers to broadcast their replies (RFC 2131 §4.1)",
    )
    return parser


def _positive_float(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _int_range(low: int, high: int) -> Any:
    def convert(text: str) -> int:
        import argparse

        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not in {low}..{high}")
        return value

    convert.__name__ = "integer"
    return convert


def _client_id(text: str) -> tuple[bytes | None, str]:
    if text in ("duid", "mac"):
        return None, text
    if not _HEX.match(text):
        raise CommandError(
            f"--client-id: expected 'duid', 'mac' or hex bytes, not {text!r}", EXIT_USAGE
        )
    value = bytes.fromhex(re.sub(r"[:-]", "", text))
    if not 2 <= len(value) <= 255:
        raise CommandError("--client-id: needs 2 to 255 bytes (RFC 2132 §9.14)", EXIT_USAGE)
    return value, "duid"


def parse(argv: Sequence[str]) -> Settings:
    """Parse and validate the command line (without looking at the system).

    Raises:
        CommandError: a bad value (exit code 2). argparse's own usage errors exit with 2 too.
    """
    args = _parser().parse_args(list(argv))
    for name in args.interfaces:
        if not _IFNAME.match(name) or name in (".", ".."):
            raise CommandError(f"{name!r} is not a valid interface name", EXIT_USAGE)
    if len(set(args.interfaces)) != len(args.interfaces):
        raise CommandError("an interface is named twice", EXIT_USAGE)
    client_id, client_id_type = (None, "duid")
    if args.client_id is not None:
        client_id, client_id_type = _client_id(args.client_id)
    hostname = args.hostname
    if hostname is not None:
        from dhcp4c.protocol.dnsname import normalize

        normal = normalize(hostname)
        if normal is None:
            raise CommandError(f"--hostname: {hostname!r} is not a valid host name", EXIT_USAGE)
        hostname = normal
    vendor_class = None
    if args.vendor_class is not None:
        vendor_class = args.vendor_class.encode("utf-8")
        if not 1 <= len(vendor_class) <= 255 or not args.vendor_class.isprintable():
            raise CommandError("--vendor-class: needs 1 to 255 printable bytes", EXIT_USAGE)
    if args.lease_dir is not None and args.lease_dir.exists() and not args.lease_dir.is_dir():
        raise CommandError(f"--lease-dir: {args.lease_dir} is not a directory", EXIT_USAGE)
    if args.resolv_conf is not None and args.resolv_conf.is_dir():
        raise CommandError(f"--resolv-conf: {args.resolv_conf} is a directory", EXIT_USAGE)
    timeout = args.timeout
    if timeout is None and args.once:
        timeout = _DEFAULT_ONCE_TIMEOUT
    verbosity = max(-1, min(args.verbose - args.quiet, 2))
    return Settings(
        interfaces=tuple(args.interfaces),
        configure=args.configure,
        once=args.once,
        timeout=timeout,
        json=args.json,
        verbosity=verbosity,
        release=args.release,
        lease_dir=args.lease_dir,
        client_id=client_id,
        client_id_type=client_id_type,
        hostname=hostname,
        vendor_class=vendor_class,
        request_options=tuple(dict.fromkeys(args.request_option)),
        rapid_commit=args.rapid_commit,
        broadcast_flag=args.broadcast_flag,
        resolv_conf=args.resolv_conf,
        route_metric=args.route_metric,
        routes=args.routes,
        mtu=args.mtu,
    )


# -- checks against the system ------------------------------------------------------------


def _effective_capabilities() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return -1 if os.geteuid() == 0 else 0


def check_privileges(settings: Settings) -> None:
    """Raise CommandError(5) unless we hold the capabilities the run needs."""
    caps = _effective_capabilities()
    needed = {_CAP_NET_RAW: "CAP_NET_RAW", _CAP_NET_BIND_SERVICE: "CAP_NET_BIND_SERVICE"}
    if settings.configure:
        needed[_CAP_NET_ADMIN] = "CAP_NET_ADMIN"
    missing = [name for bit, name in sorted(needed.items()) if not caps & (1 << bit)]
    if missing:
        raise CommandError(
            f"missing privileges ({', '.join(missing)}): run as root", EXIT_PRIVILEGES
        )


def inspect_interface(name: str) -> Interface:
    """Look the interface up in this network namespace.

    Two ioctls (SIOCGIFHWADDR, SIOCGIFMTU) on a throw-away socket, like `dhcp4c.shell.client` does:
    they answer for the calling thread's namespace, whereas /sys/class/net shows the namespace
    sysfs was mounted in (`nsenter --net` does not remount it), and they need no netlink library.

    Raises:
        CommandError: code 4 when it does not exist or has no usable hardware address.
    """
    import fcntl
    import socket
    import struct

    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise CommandError(f"no interface named {name!r}", EXIT_INTERFACE) from None
    ifreq = struct.pack("16s16x", name.encode())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            raw = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, ifreq)
            mtu_raw = fcntl.ioctl(sock.fileno(), _SIOCGIFMTU, ifreq)
    except OSError as error:
        raise CommandError(f"{name}: cannot read it: {error.strerror}", EXIT_INTERFACE) from None
    kind = struct.unpack_from("=H", raw, 16)[0]
    hwaddr = bytes(raw[18:24])
    if kind != _ARPHRD_ETHER or not any(hwaddr):
        raise CommandError(
            f"{name}: not an Ethernet interface (link type {kind}), DHCP cannot run on it",
            EXIT_INTERFACE,
        )
    mtu = int(struct.unpack_from("=i", mtu_raw, 16)[0])
    return Interface(name, index, hwaddr, mtu if mtu > 0 else None)


# -- lease events ------------------------------------------------------------------------------


def _lease_fields(lease: Lease, now: float) -> dict[str, Any]:
    return {
        "address": str(lease.address),
        "server_id": str(lease.server_id),
        "routers": [str(router) for router in lease.routers],
        "dns_servers": [str(server) for server in lease.dns_servers],
        "domain": lease.domain,
        "search": list(lease.search),
        "mtu": lease.mtu,
        "routes": [
            {
                "destination": str(route.destination),
                "gateway": None if route.gateway is None else str(route.gateway),
            }
            for route in lease.routes
        ],
        "t1": round(max(0.0, lease.t1 - now), 3),
        "t2": round(max(0.0, lease.t2 - now), 3),
        "expiry": round(max(0.0, lease.expiry - now), 3),
    }


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
    slower than the client; see `dhcp4c.shell.observe`).
    """
    import json

    document: dict[str, Any] = {"event": kind, "interface": interface, "time": round(wall, 3)}
    document.update(_lease_fields(lease, now))
    if old is not None:
        document["old_address"] = str(old.address)
    if reason is not None:
        document["reason"] = reason
    if missed:
        document["missed"] = missed
    return json.dumps(document, sort_keys=False)


# -- the run -------------------------------------------------------------------------------


def _node_name(ifname: str, taken: set[str]) -> str:
    """A supervisor node name (`[a-z0-9_]{1,64}`) for an interface, unique among `taken`."""
    base = re.sub(r"[^a-z0-9_]", "_", ifname.lower()) or "if"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _machine_settings(settings: Settings) -> dict[str, Any]:
    """The `MachineConfig` fields (`Client` keyword arguments) the command line sets."""
    from dhcp4c.protocol.machine import DEFAULT_PARAMETER_REQUEST_LIST

    config: dict[str, Any] = {
        "client_id_type": settings.client_id_type,
        "rapid_commit": settings.rapid_commit,
        "broadcast_flag": settings.broadcast_flag,
        "release_on_stop": settings.release,
        "parameter_request_list": tuple(
            dict.fromkeys((*DEFAULT_PARAMETER_REQUEST_LIST, *settings.request_options))
        ),
    }
    if settings.client_id is not None:
        config["client_id"] = settings.client_id
    if settings.hostname is not None:
        config["hostname"] = settings.hostname
    if settings.vendor_class is not None:
        config["vendor_class"] = settings.vendor_class
    return config


class _KernelSide:
    """`dhcp4c.consumers.netconfig` and `dhcp4c.shell.runner`, imported once in a worker thread.

    The import starts when `request()` is first called (after a client's first send) and runs
    in `run()`, a task of the command's nursery; `netconfig()` and `linkwatch()` wait for it.
    A failed import (a broken installation) ends the command with its error.
    """

    _MODULES = ("dhcp4c.consumers.netconfig", "dhcp4c.shell.runner")

    def __init__(self) -> None:
        import trio

        self._requested = trio.Event()
        self._done = trio.Event()
        self._modules: dict[str, ModuleType] = {}

    def request(self) -> None:
        self._requested.set()

    async def run(self) -> None:
        import importlib

        import trio

        await self._requested.wait()

        def load() -> dict[str, ModuleType]:
            return {name: importlib.import_module(name) for name in self._MODULES}

        self._modules = await trio.to_thread.run_sync(load)
        self._done.set()

    async def _module(self, name: str) -> ModuleType:
        self.request()
        await self._done.wait()
        return self._modules[name]

    async def netconfig(self) -> ModuleType:
        return await self._module("dhcp4c.consumers.netconfig")

    async def runner(self) -> ModuleType:
        return await self._module("dhcp4c.shell.runner")

    @property
    def loaded(self) -> ModuleType | None:
        """The link watch module once imported, else None."""
        return self._modules.get("dhcp4c.shell.runner")


def _client(settings: Settings, interface: Interface, kernel: _KernelSide) -> Client:
    """The client for one interface: its configuration, callback and lease file.

    The callback is made on its first call, once `kernel` has imported `dhcp4c.consumers.netconfig`.
    """
    import trio

    from dhcp4c.consumers import leasefile
    from dhcp4c.protocol.machine import MachineConfig
    from dhcp4c.shell.client import Client

    config = _machine_settings(settings)
    name, hwaddr = interface.name, interface.hwaddr

    def identity(mac: bytes) -> bytes:
        return MachineConfig(hwaddr=mac, interface=name, **config).client_identifier

    try:
        client_id = identity(hwaddr)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
    lease = None
    made: list[Client] = []

    def owner() -> tuple[bytes, bytes | None]:
        # The hardware address may have changed since the start (linkwatch): save the lease
        # under the one it was got with, and the client identifier that follows from it.
        current = (made[0].hwaddr if made else None) or hwaddr
        return current, identity(current)

    path = None
    if settings.lease_dir is not None:
        path = leasefile.lease_path(settings.lease_dir, name)
        lease = leasefile.load(path, name, hwaddr, trio.current_time(), client_id=client_id)
        if lease is not None:
            _logger().info("%s: trying %s from %s again", name, lease.address, path)

    def make(netconfig: ModuleType) -> LeaseCallback:
        extra: list[LeaseCallback] = []
        if path is not None:
            extra.append(
                netconfig.lease_file_callback(
                    path, ifname=name, hwaddr=hwaddr, client_id=client_id, owner=owner
                )
            )
        if settings.configure:
            configure: LeaseCallback = netconfig.configure(
                name,
                routes=settings.routes,
                mtu=settings.mtu,
                resolv_conf=settings.resolv_conf,
                route_metric=settings.route_metric,
                extra=extra,
            )
            return configure
        if settings.resolv_conf is not None:
            extra.insert(0, netconfig.resolv_conf_callback(settings.resolv_conf, ifname=name))
        composed: LeaseCallback = netconfig.compose(*extra)
        return composed

    made_callback: list[LeaseCallback] = []

    async def callback(old: Lease | None, new: Lease | None) -> None:
        if not made_callback:
            made_callback.append(make(await kernel.netconfig()))
        await made_callback[0](old, new)

    client = Client(
        name,
        hwaddr=hwaddr,
        mtu=interface.mtu,
        lease=lease,
        callback=callback,
        **config,
    )
    made.append(client)
    return client


def _running(interface: Interface) -> bool:
    """Whether the interface is up with a carrier (IFF_UP and IFF_RUNNING, SIOCGIFFLAGS)."""
    import fcntl
    import socket
    import struct

    ifreq = struct.pack("16s16x", interface.name.encode())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            raw = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, ifreq)
    except OSError:
        return False
    flags = int(struct.unpack_from("=H", raw, 16)[0])
    return flags & (_IFF_UP | _IFF_RUNNING) == _IFF_UP | _IFF_RUNNING


async def _run_node(client: Client, kernel: _KernelSide) -> None:
    """One interface's supervisor node: its client and the watch of its link.

    The first run in the process starts the client at once and imports the kernel side while
    the server answers; `runner.run_interface` then takes the running client over. Once
    imported (a restart of the node), it is `runner.run_interface` alone.
    """
    import trio

    runner = kernel.loaded
    if runner is not None:
        await runner.run_interface(client)
        return
    scope = trio.CancelScope()
    ended = trio.Event()

    async def run_client(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with scope:
                await client.run(task_status=task_status)
        finally:
            ended.set()

    async def stop() -> None:
        scope.cancel()
        await ended.wait()

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_client)  # the first DISCOVER is out
            kernel.request()
            runner = await kernel.runner()
            await runner.run_interface(client, running=stop)
            nursery.cancel_scope.cancel()
    except BaseException as error:
        # A nursery wraps the client's error in a group: the supervisor's log deserves the
        # error itself (as `runner.run_interface` gives it).
        inner = getattr(error, "exceptions", None)
        if inner is not None and len(inner) == 1 and isinstance(inner[0], Exception):
            raise inner[0] from None
        raise


def _logger() -> Any:
    import logging

    return logging.getLogger("dhcp4c")


def run(settings: Settings, interfaces: Sequence[Interface]) -> int:
    """Run the clients under one supervision tree until a signal (or `--once`); the exit code."""
    import trio

    try:
        return trio.run(_serve, settings, tuple(interfaces))
    except BaseException as error:
        # A task of `_serve` failed (not a client: the supervisor keeps those): its error, not
        # the nursery's group, is the one line to print.
        inner = getattr(error, "exceptions", None)
        if inner is not None and len(inner) == 1 and isinstance(inner[0], Exception):
            raise inner[0] from None
        raise


async def _serve(settings: Settings, interfaces: tuple[Interface, ...]) -> int:
    import contextlib
    import functools
    import math
    import signal

    import trio
    from trio_util import compose_values

    import supervisor
    from dhcp4c.shell.observe import holds_lease

    kernel = _KernelSide()
    clients = {}
    taken: set[str] = set()
    timeout = settings.timeout
    for interface in interfaces:
        client = _client(settings, interface, kernel)
        client.set_carrier(_running(interface))  # until the link watch reads the link
        clients[_node_name(interface.name, taken)] = client

    async def root() -> None:
        for node, client in clients.items():
            # The client and the watch of its link in one node: carrier changes pause and
            # resume it, a new MAC address starts it over, a vanished interface ends it (DONE)
            # while the others go on.
            supervisor.run(node, functools.partial(_run_node, client, kernel))
        supervisor.signal(supervisor.Signal.HEALTHY)
        supervisor.signal(supervisor.Signal.DONE)

    outcome: list[int] = []
    subscriptions = [(client, client.subscribe()) for client in clients.values()]

    async def print_events(client: Client, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            _print_event(client.interface, event)

    async def watch_signals(scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                _logger().info("%s: shutting down", signal.Signals(signum).name)
                outcome.append(128 + signum)
                scope.cancel()
                return

    async def wait_all_bound(scope: trio.CancelScope) -> None:
        # "Every interface holds a lease" is derived from each client's latest event, at the
        # same moment: an earlier lease lost while waiting for a later one does not count.
        latest = {f"c{n}": client.latest for n, client in enumerate(clients.values())}
        with (
            trio.move_on_after(timeout if timeout is not None else math.inf) as timer,
            compose_values(**latest) as every,
        ):
            await every.wait_value(lambda events: all(map(holds_lease, events)))
        if timer.cancelled_caught:
            missing = [c.interface for c in clients.values() if c.lease is None]
            _logger().error("no lease within %g s on %s", settings.timeout, ", ".join(missing))
            outcome.append(EXIT_TIMEOUT)
            scope.cancel()
        elif settings.once:
            outcome.append(EXIT_OK)
            scope.cancel()

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kernel.run)
            nursery.start_soon(watch_signals, scope)
            nursery.start_soon(wait_all_bound, scope)
            if settings.json:
                for client, events in subscriptions:
                    nursery.start_soon(print_events, client, events)
            async with trio.open_nursery() as tree:
                tree.start_soon(supervisor.supervise, root)
    # The tree has stopped: each client sent its DHCPRELEASE (with --release) and ran its
    # callback. Print what the printers had no time to print.
    if settings.json:
        for client, events in subscriptions:
            with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                while True:
                    _print_event(client.interface, events.receive_nowait())
    code = outcome[0] if outcome else EXIT_OK
    if code > 128 and not settings.once:
        code = EXIT_OK  # a signal is the normal way to stop a running client
    return code


def _print_event(interface: str, event: Any) -> None:
    import time

    import trio

    kind = event.kind.value
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


# -- main ----------------------------------------------------------------------------------


def _setup_logging(verbosity: int) -> None:
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


def only_interrupts(error: BaseException) -> bool:
    """Whether `error` is a KeyboardInterrupt, or a (nested) exception group of nothing else.

    Trio wraps what its tasks raise in exception groups, so a Ctrl-C may arrive wrapped.
    """
    inner = getattr(error, "exceptions", None)
    if inner is not None:
        return all(only_interrupts(exception) for exception in inner)
    return isinstance(error, KeyboardInterrupt)


def _fail(message: str, code: int) -> NoReturn:
    print(f"dhcp4c: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (the console script passes it to `sys.exit`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = parse(arguments)
        check_privileges(settings)
        interfaces = [inspect_interface(name) for name in settings.interfaces]
    except CommandError as error:
        _fail(str(error), error.code)
    _setup_logging(settings.verbosity)
    try:
        return run(settings, interfaces)
    except CommandError as error:
        _fail(str(error), error.code)
    except BaseException as error:  # the last line of defence: one line, no traceback
        if only_interrupts(error):
            return 130
        if settings.verbosity >= 2 or not isinstance(error, Exception):
            raise
        _fail(f"{type(error).__name__}: {error}", EXIT_FAILURE)
