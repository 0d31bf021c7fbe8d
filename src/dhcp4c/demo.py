"""`dhcp4c-demo` (`python -m dhcp4c.demo`): a real lease, renewed and released, in namespaces.

It creates two network namespaces (`dhcp4cdemo-<pid>-<n>-server` and `...-client`) joined by a
veth pair, the server end on 192.0.2.1/24 (TEST-NET-1, RFC 5737); starts dnsmasq there when it is
installed (with T1/T2 sent as options 58/59: it refuses leases under 120 s), else the in-process
`dhcp4c.testing.server`; runs the `dhcp4c` command in the client namespace (`--json --release`)
and prints each lease event with the address and routes the kernel then holds. After `--duration`
seconds it stops the client with SIGTERM (which releases the lease). Invariant: everything it made
(client, server, namespaces, temporary directory) is removed on every exit, Ctrl-C and errors too.

Exit codes: 0 when a lease was bound (and renewed, if the duration allowed a renewal), 1 when not,
2 on bad usage, 5 without root, 130 on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    from dhcp4c.testing.netns import Namespace

__all__ = ["DemoSettings", "main"]

_NETWORK = "192.0.2.0/24"
_SERVER = "192.0.2.1"
_CLIENT_IF = "demo0"
_SERVER_IF = "demo0s"


@dataclass(frozen=True)
class DemoSettings:
    duration: float
    server: str  # "dnsmasq" or "builtin"
    t1: int
    verbose: bool
    json: bool


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="dhcp4c-demo",
        description="Get, renew and release a real lease in a private pair of network namespaces "
        "(needs root). Everything it creates is removed on exit, also on Ctrl-C.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=35.0,
        metavar="SECONDS",
        help="how long to keep the lease before stopping (default 35)",
    )
    parser.add_argument(
        "--server",
        choices=("auto", "dnsmasq", "builtin"),
        default="auto",
        help="the DHCP server: dnsmasq, the in-process test server, or dnsmasq when installed "
        "(default)",
    )
    parser.add_argument(
        "--renew",
        type=int,
        default=10,
        metavar="SECONDS",
        help="T1, the renewal time the server sends (default 10; T2 is twice that)",
    )
    parser.add_argument("--json", action="store_true", help="print the client's JSON events")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the client's log")
    return parser


def _settings(argv: Sequence[str]) -> DemoSettings:
    args = _parser().parse_args(list(argv))
    if not 0 < args.duration <= 86400:
        _parser().error("--duration must be between 0 and 86400 seconds")
    if not 1 <= args.renew <= 3600:
        _parser().error("--renew must be between 1 and 3600 seconds")
    server = args.server
    if server == "auto":
        from dhcp4c.testing import dnsmasq

        server = "dnsmasq" if dnsmasq.which() is not None else "builtin"
    return DemoSettings(args.duration, server, args.renew, args.verbose, args.json)


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return its exit code (the console script passes it to `sys.exit`)."""
    settings = _settings(sys.argv[1:] if argv is None else argv)
    from dhcp4c.testing.netns import netns_available

    reason = netns_available()
    if reason is not None:
        print(f"dhcp4c-demo: error: cannot create network namespaces: {reason}", file=sys.stderr)
        return 5
    import tempfile

    import trio

    from dhcp4c.testing.netns import NetnsError, Topology

    try:
        with Topology("dhcp4cdemo") as topo, tempfile.TemporaryDirectory(prefix="dhcp4c-") as tmp:
            try:
                return trio.run(_demo, settings, topo, Path(tmp))
            finally:
                _say("cleaning up: stopping the server, removing the namespaces")
    except BaseException as error:
        from dhcp4c._exceptions import innermost, only_interrupts

        if only_interrupts(error):
            _say("interrupted; everything was removed")
            return 130
        leaf = innermost(error)  # through Trio's single-error groups
        if isinstance(leaf, (NetnsError, OSError, RuntimeError)):
            print(f"dhcp4c-demo: error: {leaf}", file=sys.stderr)
            return 1
        raise


async def _demo(settings: DemoSettings, topo: Any, tmp: Path) -> int:
    import contextlib
    from ipaddress import IPv4Address, IPv4Interface, IPv4Network

    import trio

    server_ns = topo.namespace("server")
    client_ns = topo.namespace("client")
    topo.veth(
        client_ns,
        server_ns,
        name_a=_CLIENT_IF,
        name_b=_SERVER_IF,
        address_b=IPv4Interface(f"{_SERVER}/24"),
    )
    _say(
        f"namespaces {client_ns.name} and {server_ns.name}, "
        f"joined by a veth pair ({_CLIENT_IF} <-> {_SERVER_IF} {_SERVER}/24)"
    )
    t1, t2 = settings.t1, 2 * settings.t1
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        if settings.server == "dnsmasq":
            from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig

            config = DnsmasqConfig(
                interface=_SERVER_IF,
                network=IPv4Network(_NETWORK),
                t1=t1,
                t2=t2,
                router=IPv4Address(_SERVER),
                dns_servers=(IPv4Address(_SERVER),),
                domain="demo.example",
            )
            server = Dnsmasq(server_ns, config, workdir=tmp / "dnsmasq")
            await trio.to_thread.run_sync(server.start)
            stack.callback(server.stop)
            first, last = config.pool_range()
            _say(
                f"server: dnsmasq (pid {server.pid}), pool {first}-{last}, "
                f"lease {config.lease_time} s, T1 {t1} s, T2 {t2} s"
            )
        else:
            from dhcp4c.testing.server import ServerConfig, ServerCore
            from dhcp4c.testing.server_net import serve_udp

            lease_time = max(4 * t1, 30)
            core = ServerCore(
                ServerConfig(
                    server_id=IPv4Address(_SERVER),
                    network=IPv4Network(_NETWORK),
                    routers=(IPv4Address(_SERVER),),
                    dns_servers=(IPv4Address(_SERVER),),
                    domain_name="demo.example",
                    lease_time=lease_time,
                    t1=t1,
                    t2=t2,
                )
            )
            await nursery.start(
                lambda task_status: serve_udp(
                    core, _SERVER_IF, namespace=server_ns, task_status=task_status
                )
            )
            _say(
                f"server: the in-process test server, pool 192.0.2.100-192.0.2.199, "
                f"lease {lease_time} s, T1 {t1} s, T2 {t2} s"
            )
        code = await _run_client(settings, client_ns, tmp)
        nursery.cancel_scope.cancel()
    return code


def _child_env() -> dict[str, str]:
    # The child runs the same interpreter; give it our module path, so that it works from a
    # virtualenv, an editable install, or `python -S` with PYTHONPATH alike.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    return env


async def _run_client(settings: DemoSettings, client_ns: Namespace, tmp: Path) -> int:
    import json
    import signal
    import subprocess

    import trio

    argv = [
        sys.executable,
        "-m",
        "dhcp4c",
        "--json",
        "--release",
        "--lease-dir",
        str(tmp / "leases"),
        "--resolv-conf",
        str(tmp / "resolv.conf"),
        _CLIENT_IF,
    ]
    if settings.verbose:
        argv.insert(3, "-v")
    process = await trio.lowlevel.open_process(
        client_ns.command(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None if settings.verbose else subprocess.PIPE,
        env=_child_env(),
    )
    _say(f"client: dhcp4c {_CLIENT_IF} in {client_ns.name} (pid {process.pid})")
    start = trio.current_time()
    counts: dict[str, int] = {}
    errors: list[str] = []

    def show(event: dict[str, Any]) -> None:
        kind = str(event.get("event"))
        counts[kind] = counts.get(kind, 0) + 1
        if settings.json:
            _say(json.dumps(event))
            return
        at = f"{trio.current_time() - start:7.2f} s"
        if kind == "lost":
            _say(f"{at}  {kind:<8} {event.get('address')} ({event.get('reason')})")
            return
        routers = ", ".join(event.get("routers", [])) or "none"
        _say(
            f"{at}  {kind:<8} {event.get('address')} from {event.get('server_id')}, "
            f"router {routers}, renew in {event.get('t1'):.0f} s, "
            f"expires in {event.get('expiry'):.0f} s"
        )

    async def read_events() -> None:
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                first_bound = event.get("event") == "bound" and "bound" not in counts
                show(event)
                if first_bound:
                    await trio.to_thread.run_sync(_show_kernel, client_ns, tmp)

    async def read_log() -> None:
        if process.stderr is None:
            return
        async for chunk in process.stderr:
            errors.extend(chunk.decode(errors="replace").splitlines())
            del errors[:-20]

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_events)
            nursery.start_soon(read_log)
            with trio.move_on_after(settings.duration):
                await process.wait()
            if process.returncode is None:
                _say(f"{trio.current_time() - start:7.2f} s  stopping the client (SIGTERM)")
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    if process.returncode not in (0, -signal.SIGTERM):
        _say(f"the client exited with {process.returncode}:")
        for line in errors:
            _say(f"    {line}")
    renewals = counts.get("renewed", 0)
    _say(
        f"seen: {counts.get('bound', 0)} bound, {renewals} renewed, "
        f"{counts.get('changed', 0)} changed, {counts.get('lost', 0)} lost"
    )
    if not counts.get("bound"):
        return 1
    if settings.duration > settings.t1 + 5 and not renewals:
        return 1
    return 0


def _show_kernel(namespace: Namespace, tmp: Path) -> None:
    """Print what the kernel holds in the client namespace, and the resolv.conf written."""
    for line in namespace.ip("-4", "-o", "addr", "show", "dev", _CLIENT_IF).splitlines():
        fields = line.split()
        if "inet" in fields:
            rest = " ".join(fields[fields.index("inet") + 1 :]).replace("\\", "").split()
            _say(f"           kernel: address {' '.join(rest)}")
    for line in namespace.ip("-4", "route", "show", "dev", _CLIENT_IF).splitlines():
        _say(f"           kernel: route {line.strip()}")
    resolv = tmp / "resolv.conf"
    if resolv.exists():
        text = "; ".join(
            line for line in resolv.read_text().splitlines() if line and not line.startswith("#")
        )
        _say(f"           resolv.conf: {text}")


if __name__ == "__main__":
    raise SystemExit(main())
