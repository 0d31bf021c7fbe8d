"""The command line: arguments, their validation, exit codes and usage errors.

This module owns what the operator types and what the command answers when it is wrong:
`parse` turns the arguments into `Settings`, which hold one `ClientConfig` (the protocol
choices, the same for every interface) and the command's own choices (what to configure, how
long to wait, the output). It looks at nothing but the arguments (and whether the paths given
are directories).

Invariant: the standard library and `dhcp4c.protocol.config` only: `--help` and a usage error
load neither trio nor the codec.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dhcp4c.protocol.config import DEFAULT_PARAMETER_REQUEST_LIST, ClientConfig

if TYPE_CHECKING:
    import argparse

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERFACE",
    "EXIT_OK",
    "EXIT_PRIVILEGES",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CommandError",
    "Settings",
    "parse",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_INTERFACE = 4
EXIT_PRIVILEGES = 5

_EPILOG = """\
subcommands:
  dhcp4c status [IFACE...]   the leases of a running client, from its --lease-dir
                             (`dhcp4c status --help`); an interface named "status" is
                             served with `dhcp4c -- status`

exit codes:
  0    clean exit (signal after a lease, or --once bound and configured)
  1    runtime failure (the kernel refused the configuration, unexpected error)
  2    bad usage or option value
  3    no lease within --timeout
  4    no such interface, or not usable (no hardware address)
  5    missing privileges (needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_NET_BIND_SERVICE)
  130  SIGINT, 143 SIGTERM before --once got its lease
"""

# IFNAMSIZ is 16 with the NUL; the kernel refuses "/", ":" and whitespace in names.
_IFNAME = re.compile(r"[^/:\s\x00]{1,15}\Z")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}[:-]?)+\Z")
_PATTERN_CHARACTERS = frozenset("*?[")
_DEFAULT_ONCE_TIMEOUT = 30.0
# `dhcp4c.consumers.hooks.DEFAULT_TIMEOUT` (that module loads trio; a test keeps them equal).
_DEFAULT_HOOK_TIMEOUT = 10.0


class CommandError(Exception):
    """A failure to report as one line and an exit code, without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Settings:
    """The validated command line: the clients' configuration and the command's own choices."""

    interfaces: tuple[str, ...]
    client: ClientConfig = field(default_factory=ClientConfig)
    configure: bool = True
    once: bool = False
    timeout: float | None = None
    json: bool = False
    verbosity: int = 0  # -1 quiet, 0 info, 1 debug, 2 debug with tracebacks
    lease_dir: Path | None = None
    resolv_conf: Path | None = None
    route_metric: int | None = None
    routes: bool = True
    mtu: bool = True
    hook: Path | None = None
    hook_timeout: float = _DEFAULT_HOOK_TIMEOUT
    every: bool = False  # --all
    match: tuple[str, ...] = ()
    debug_tree: bool = False

    @property
    def dynamic(self) -> bool:
        """Whether clients follow the links that exist or appear (`--all`, `--match`)."""
        return self.every or bool(self.match)


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
    from dhcp4c._version import __version__

    parser.add_argument(
        "interfaces",
        nargs="*",
        metavar="IFACE",
        help="interfaces to serve (at least one, unless --all or --match)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    links = parser.add_argument_group("interfaces that come and go")
    links.add_argument(
        "--all",
        dest="every",
        action="store_true",
        help="also serve every Ethernet interface that exists or appears (not loopback, "
        "not a bridge port or bond slave), and stop its client when it is removed",
    )
    links.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="PATTERN",
        help="like --all, for the interfaces whose name matches PATTERN (shell-style: "
        "'eth*', 'enp?s[0-9]'; quote it; repeatable)",
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--once",
        action="store_true",
        help="exit 0 once every interface has a lease, bound and configured "
        "(like udhcpc -q, dhclient -1); exit 3 if not within --timeout. With --all or "
        "--match: once at least one matching interface exists and every one present then "
        "is bound",
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
    run.add_argument(
        "--hook",
        type=Path,
        metavar="PATH",
        help="run the executable PATH on every lease event, with the event in DHCP4C_* "
        "variables and as JSON on stdin (see dhcp4c's docs/hooks.md)",
    )
    run.add_argument(
        "--hook-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help=f"kill a hook still running after SECONDS (default {_DEFAULT_HOOK_TIMEOUT:g})",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--json", action="store_true", help="print one JSON object per lease event on stdout"
    )
    out.add_argument(
        "--debug-tree",
        action="store_true",
        help="log the supervision tree at every lease event (SIGUSR1 logs it at any time)",
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
        "--ipv6-only-preferred",
        action="store_true",
        help="this host can do without IPv4: honour a network's option 108 (RFC 8925)",
    )
    proto.add_argument(
        "--broadcast-flag",
        action="store_true",
        help="ask servers to broadcast their replies (RFC 2131 §4.1)",
    )
    acd = proto.add_mutually_exclusive_group()
    acd.add_argument(
        "--acd-timeout",
        type=_acd_timeout,
        default=ClientConfig().acd_timeout,
        metavar="SECONDS",
        help="probe an offered address with ARP for up to SECONDS before using it "
        "(RFC 5227; default %(default)s, 7 for the RFC's timing, 0 to only announce and defend)",
    )
    acd.add_argument(
        "--no-acd",
        dest="acd_timeout",
        action="store_const",
        const=None,
        help="no address conflict detection (no ARP socket)",
    )
    return parser


def _acd_timeout(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 <= value <= 60):
        raise argparse.ArgumentTypeError(f"must be 0 to 60 seconds: {text!r}")
    return value


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


def _client_id(text: str) -> tuple[bytes | None, Literal["duid", "mac"]]:
    if text == "duid":
        return None, "duid"
    if text == "mac":
        return None, "mac"
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
    parser = _parser()
    args = parser.parse_args(list(argv))
    if not (args.interfaces or args.every or args.match):
        parser.error("give an interface (IFACE), --all or --match PATTERN")
    if args.every and args.match:
        raise CommandError("--all and --match exclude each other", EXIT_USAGE)
    for pattern in args.match:
        if not pattern or not pattern.isprintable() or "/" in pattern or " " in pattern:
            raise CommandError(f"--match: {pattern!r} is not an interface name pattern", EXIT_USAGE)
    for name in args.interfaces:
        if not _PATTERN_CHARACTERS.isdisjoint(name):
            raise CommandError(f"{name!r} is a pattern: use --match {name!r}", EXIT_USAGE)
        if not _IFNAME.match(name) or name in (".", ".."):
            raise CommandError(f"{name!r} is not a valid interface name", EXIT_USAGE)
    if len(set(args.interfaces)) != len(args.interfaces):
        raise CommandError("an interface is named twice", EXIT_USAGE)
    client = _client_config(args)
    if args.lease_dir is not None and args.lease_dir.exists() and not args.lease_dir.is_dir():
        raise CommandError(f"--lease-dir: {args.lease_dir} is not a directory", EXIT_USAGE)
    if args.resolv_conf is not None and args.resolv_conf.is_dir():
        raise CommandError(f"--resolv-conf: {args.resolv_conf} is a directory", EXIT_USAGE)
    hook = None
    if args.hook is not None:
        from dhcp4c.consumers.hooks import check_hook  # loads trio: only with --hook

        try:
            hook = check_hook(args.hook)
        except ValueError as error:
            raise CommandError(f"--hook: {error}", EXIT_USAGE) from None
    elif args.hook_timeout is not None:
        raise CommandError("--hook-timeout needs --hook", EXIT_USAGE)
    timeout = args.timeout
    if timeout is None and args.once:
        timeout = _DEFAULT_ONCE_TIMEOUT
    verbosity = max(-1, min(args.verbose - args.quiet, 2))
    return Settings(
        interfaces=tuple(args.interfaces),
        client=client,
        configure=args.configure,
        once=args.once,
        timeout=timeout,
        json=args.json,
        verbosity=verbosity,
        lease_dir=args.lease_dir,
        resolv_conf=args.resolv_conf,
        route_metric=args.route_metric,
        routes=args.routes,
        mtu=args.mtu,
        hook=hook,
        hook_timeout=_DEFAULT_HOOK_TIMEOUT if args.hook_timeout is None else args.hook_timeout,
        every=args.every,
        match=tuple(dict.fromkeys(args.match)),
        debug_tree=args.debug_tree,
    )


def _client_config(args: argparse.Namespace) -> ClientConfig:
    """The clients' configuration from the protocol options (the same for every interface)."""
    client_id: bytes | None = None
    client_id_type: Literal["duid", "mac"] = "duid"
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
    requested = (*DEFAULT_PARAMETER_REQUEST_LIST, *args.request_option)
    try:
        return ClientConfig(
            client_id=client_id,
            client_id_type=client_id_type,
            hostname=hostname,
            vendor_class=vendor_class,
            parameter_request_list=tuple(dict.fromkeys(requested)),
            rapid_commit=args.rapid_commit,
            ipv6_only_preferred=args.ipv6_only_preferred,
            broadcast_flag=args.broadcast_flag,
            release_on_stop=args.release,
            acd_timeout=args.acd_timeout,
        )
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from None
