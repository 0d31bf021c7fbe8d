"""The `dhcp4c` command: one DHCPv4 client per interface under one supervision tree.

    dhcp4c [options] IFACE...      get and keep a lease on each interface (configure the kernel)
    dhcp4c --all | --match PATTERN  the same for every (matching) interface, as they come and go
    dhcp4c status [IFACE...]       the leases a running client holds (`dhcp4c.cli.status`)

The command is a package: `args` (the command line, `Settings` holding one `ClientConfig`, exit
codes), `run` (checks, the start-up order, the tree, signals) and `output` (JSON events, the
log). The protocol is the client's (`dhcp4c.shell.client`), the kernel side is
`dhcp4c.consumers.netconfig`'s. Start-up time is part of the product: the package loads only
the standard library until the arguments are known to be good.

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

import sys
from collections.abc import Sequence
from typing import NoReturn

from dhcp4c._exceptions import only_interrupts
from dhcp4c.cli.args import (
    EXIT_FAILURE,
    EXIT_INTERFACE,
    EXIT_OK,
    EXIT_PRIVILEGES,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandError,
    Settings,
    parse,
)
from dhcp4c.cli.output import event_json, setup_logging
from dhcp4c.cli.run import check_privileges, inspect_interface, serve

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERFACE",
    "EXIT_OK",
    "EXIT_PRIVILEGES",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CommandError",
    "Settings",
    "check_privileges",
    "event_json",
    "inspect_interface",
    "main",
    "only_interrupts",
    "parse",
]


def _fail(message: str, code: int) -> NoReturn:
    print(f"dhcp4c: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (the console script passes it to `sys.exit`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["status"]:
        # A subcommand; an interface named "status" is served with `dhcp4c -- status`.
        from dhcp4c.cli import status

        return status.main(arguments[1:])
    try:
        settings = parse(arguments)
        check_privileges(settings)
        interfaces = [inspect_interface(name) for name in settings.interfaces]
    except CommandError as error:
        _fail(str(error), error.code)
    setup_logging(settings.verbosity)
    try:
        return serve(settings, interfaces)
    except CommandError as error:
        _fail(str(error), error.code)
    except BaseException as error:  # the last line of defence: one line, no traceback
        if only_interrupts(error):
            return 130
        if settings.verbosity >= 2 or not isinstance(error, Exception):
            raise
        _fail(f"{type(error).__name__}: {error}", EXIT_FAILURE)
