"""Time to lease against dnsmasq on a veth pair, dhcp4c side by side with its peers.

    sudo python -S bench/lease.py [--reps 7] [--parts abc]

All in network namespaces this script creates and removes (`dhcp4c.testing.netns`); dnsmasq serves
on one end of a veth pair (rapid commit on, no ping check), the clients run on the other end.

(a) in-process: from `client.run()` to the first bound lease (socket, exchange, lease built;
    no kernel configuration), against the wire floor: one raw DISCOVER (rapid commit) -> ACK
    exchange on an already open packet socket, timed on its own. Each sample is the first
    exchange of a fresh process (`python -S`, timed after its imports), as an embedder's first
    lease is; the same measured again in one warm process is shown beside it. Target: floor + 2 ms.
(b) the command: from process start to the address appearing on the interface (seen by a
    netlink RTM_NEWADDR listener opened before the start), for `dhcp4c --once`, udhcpc,
    dhclient, dhcpcd and pyroute2's client. Every Python program is started the same way,
    `python -S -m MODULE` with the same PYTHONPATH (site-packages and src), through
    `ip netns exec`, like every other peer. Target: dhcp4c <= 1.0x pyroute2's client. The
    floors (start to exit of `python -S -c "import ..."`) break the command's time down.
    The shell peers get a minimal hook script (add the address, nothing else) so that none of
    them touches the host's /etc/resolv.conf; dhcpcd runs with `nodelay`, `-A` (no ARP probe)
    and rapid commit, dhcp4c with `--no-acd` (no ARP probe either; so does (a)), so each peer runs
    as fast as it can be configured to.
(c) peak RSS (VmHWM) of the command while bound, against pyroute2's client (reported).

Each measurement is repeated `--reps` times; the table shows medians and ratios.
"""

from __future__ import annotations

import os
import sys

# `python -S` skips site-packages: `_paths` puts the environment's and the repository's source
# on the path. A test may load this file by path: find `_paths` next to it, without leaving
# bench/ on the path (bench/supervisor.py would shadow the package).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _paths

del sys.path[0]
_paths.extend_path()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from ipaddress import IPv4Interface, IPv4Network  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig  # noqa: E402
from dhcp4c.testing.netns import Interface, Namespace, Topology, netns_available  # noqa: E402

NETWORK = IPv4Network("10.66.0.0/24")
SERVER = IPv4Interface("10.66.0.1/24")
CLIENT_IF = "lbench0"
SERVER_IF = "lbench0s"
PYTHONPATH = os.pathsep.join((_paths.SRC, _paths.purelib()))

# --- netlink: the moment an IPv4 address appears -------------------------------------------------

_NETLINK_ROUTE = 0
_RTMGRP_IPV4_IFADDR = 0x10
_RTM_NEWADDR = 20
_NLMSG = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")


class AddressWatch:
    """A netlink socket, opened inside a namespace, that reports new IPv4 addresses on a link."""

    def __init__(self, namespace: Namespace, index: int) -> None:
        with namespace.entered():
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, _RTMGRP_IPV4_IFADDR))
        self.index = index

    def drain(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(65536)
        self.sock.setblocking(True)

    def wait(self, timeout: float) -> float | None:
        """Return the monotonic time a new IPv4 address appeared on the link, or None."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            seen = time.monotonic()
            offset = 0
            while offset + _NLMSG.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, offset)
                if length < _NLMSG.size:
                    break
                if kind == _RTM_NEWADDR:
                    family, _plen, _fl, _scope, index = _IFADDRMSG.unpack_from(
                        data, offset + _NLMSG.size
                    )
                    if family == socket.AF_INET and index == self.index:
                        return seen
                offset += (length + 3) & ~3

    def close(self) -> None:
        self.sock.close()


# --- the peers ---------------------------------------------------------------------------------


@dataclass
class Peer:
    name: str
    argv: Callable[[Path], list[str]]  # given a fresh temp dir for this run
    python: bool = False
    available: bool = True


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-S", "-m", module, *args]


def _script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def peers() -> list[Peer]:
    ip = shutil.which("ip") or "ip"

    def udhcpc(tmp: Path) -> list[str]:
        hook = _script(
            tmp / "udhcpc.sh",
            f'case "$1" in bound|renew) {ip} addr add "$ip/$subnet" dev "$interface";; esac\n',
        )
        return ["udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "2", "-i", CLIENT_IF, "-s", str(hook)]

    def dhclient(tmp: Path) -> list[str]:
        hook = _script(
            tmp / "dhclient.sh",
            'case "$reason" in BOUND|REBOOT|RENEW|REBIND) '
            f'{ip} addr add "$new_ip_address/$new_subnet_mask" dev "$interface";; esac\n',
        )
        conf = tmp / "dhclient.conf"
        conf.write_text("request subnet-mask, routers;\n")
        return [
            "dhclient", "-1", "-d", "-4", "-cf", str(conf), "-sf", str(hook),
            "-lf", str(tmp / "dhclient.leases"), "-pf", str(tmp / "dhclient.pid"), CLIENT_IF,
        ]  # fmt: skip

    def dhcpcd(tmp: Path) -> list[str]:
        conf = tmp / "dhcpcd.conf"
        conf.write_text(
            "nodelay\nipv4only\nnoipv4ll\noption rapid_commit\n"
            "option subnet_mask, routers\nreboot 0\n"
        )
        return ["dhcpcd", "-f", str(conf), "-c", "/bin/true", "-1", "-4", "-A", "-B", CLIENT_IF]

    def dhcp4c(tmp: Path) -> list[str]:
        # No ARP probe, as dhcpcd runs with -A and pyroute2's client has none: the probe is a
        # deliberate wait (docs/design.md), not the client's cost.
        return _python(
            "dhcp4c", "--once", "-q", "--no-routes", "--no-acd", "--timeout", "20", CLIENT_IF
        )

    def pyroute2(tmp: Path) -> list[str]:
        return _python(
            "pyroute2.dhcp.cli", "--log-level", "WARNING", "-R", "-x", "20",
            "--hook", "pyroute2.dhcp.hooks.configure_ip", CLIENT_IF,
        )  # fmt: skip

    found = [
        Peer("dhcp4c", dhcp4c, python=True),
        Peer("pyroute2", pyroute2, python=True),
        Peer("udhcpc", udhcpc, available=shutil.which("udhcpc") is not None),
        Peer("dhclient", dhclient, available=shutil.which("dhclient") is not None),
        Peer("dhcpcd", dhcpcd, available=shutil.which("dhcpcd") is not None),
    ]
    return [peer for peer in found if peer.available]


# --- the bench rig -----------------------------------------------------------------------------


@dataclass
class Rig:
    topo: Topology
    client: Namespace
    server: Namespace
    client_if: Interface
    dnsmasq: Dnsmasq
    tmp: Path

    def reset(self) -> None:
        """Remove whatever the last client configured, so every run starts from scratch."""
        self.client.ip("-4", "addr", "flush", "dev", CLIENT_IF)
        with contextlib.suppress(Exception):
            self.client.ip("-4", "route", "flush", "dev", CLIENT_IF)
        for leftover in Path("/var/lib/dhcpcd").glob(f"{CLIENT_IF}*.lease*"):
            leftover.unlink()  # dhcpcd's lease of our own bench interface: it would INIT-REBOOT


def _wait_carrier(namespace: Namespace, ifname: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = namespace.ip("-o", "link", "show", "dev", ifname)
        if "LOWER_UP" in out and "state UP" in out:
            return
        time.sleep(0.01)
    raise RuntimeError(f"{ifname} has no carrier")


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    with Topology("dhcp4cbench") as topo, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        client, server = topo.namespace("client"), topo.namespace("server")
        client_if, _server_if = topo.veth(
            client, server, name_a=CLIENT_IF, name_b=SERVER_IF, address_b=SERVER
        )
        config = DnsmasqConfig(
            interface=SERVER_IF,
            network=NETWORK,
            router=SERVER.ip,
            lease_time=3600,
        )
        with Dnsmasq(server, config, workdir=Path(tmp) / "dnsmasq") as dnsmasq:
            _wait_carrier(client, CLIENT_IF)
            _wait_carrier(server, SERVER_IF)
            time.sleep(0.2)  # let IPv6 autoconfiguration noise pass
            yield Rig(topo, client, server, client_if, dnsmasq, Path(tmp))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = PYTHONPATH
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def time_to_address(the_rig: Rig, peer: Peer) -> float | None:
    """One run of `peer`: seconds from its start to an address on the interface."""
    the_rig.reset()
    watch = AddressWatch(the_rig.client, the_rig.client_if.index)
    run_dir = Path(tempfile.mkdtemp(dir=the_rig.tmp, prefix=peer.name))
    try:
        argv = the_rig.client.command(peer.argv(run_dir))
        watch.drain()
        start = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=run_dir,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        seen = watch.wait(20)
        _stop(process)
        if seen is None:
            assert process.stderr is not None
            tail = process.stderr.read().decode(errors="replace").strip().splitlines()[-3:]
            print(f"  {peer.name}: no address within 20 s: {' | '.join(tail)}", file=sys.stderr)
            return None
        return seen - start
    finally:
        watch.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def time_to_exit(the_rig: Rig, argv: list[str]) -> float:
    """Seconds from the start of `argv` (in the client namespace) to its exit: a cost floor."""
    start = time.monotonic()
    subprocess.run(the_rig.client.command(argv), env=_env(), check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


#: Floors for (b): what starting Python and importing the big dependencies cost on their own.
FLOORS = {
    "python -S": "pass",
    "+ import trio": "import trio",
    "+ import pyroute2": "import pyroute2.iproute.linux",
    "+ import trio, supervisor, client": "import trio, supervisor, dhcp4c.shell.client",
    "+ the command's imports (all)": "import dhcp4c.cli, trio, trio_util, supervisor,"
    " dhcp4c.shell.client, dhcp4c.consumers.netconfig, dhcp4c.linux.linkwatch, pyroute2",
}


def peak_rss_while_bound(the_rig: Rig, peer: Peer, hold: float = 1.0) -> int | None:
    """Peak RSS (VmHWM, KiB) of a Python peer's process while it holds its lease."""
    the_rig.reset()
    watch = AddressWatch(the_rig.client, the_rig.client_if.index)
    run_dir = Path(tempfile.mkdtemp(dir=the_rig.tmp, prefix=peer.name))
    argv = peer.argv(run_dir)
    # Keep running while bound: no --once / no exit-on-timeout.
    argv = [a for a in argv if a != "--once"]
    if "-x" in argv:
        del argv[argv.index("-x") : argv.index("-x") + 2]
    try:
        watch.drain()
        process = subprocess.Popen(
            the_rig.client.command(argv),
            cwd=run_dir,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            if watch.wait(20) is None:
                return None
            time.sleep(hold)
            status = Path(f"/proc/{process.pid}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
            return None
        finally:
            _stop(process)
    finally:
        watch.close()
        shutil.rmtree(run_dir, ignore_errors=True)


# --- (a) in process ----------------------------------------------------------------------------


async def _raw_exchange(transport: Any, hwaddr: bytes) -> float:
    """Seconds from a raw DISCOVER (rapid commit) on `transport` to its ACK."""
    import random

    from dhcp4c.protocol.message import BOOTREQUEST, Message, MessageType
    from dhcp4c.protocol.options import OptionCode

    xid = random.getrandbits(32)
    discover = Message(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=hwaddr,
        options={
            OptionCode.DHCP_MESSAGE_TYPE: bytes([MessageType.DISCOVER]),
            OptionCode.RAPID_COMMIT: b"",
            OptionCode.PARAMETER_REQUEST_LIST: bytes([1, 3, 6, 51]),
        },
    ).build()
    start = time.perf_counter()
    await transport.send(discover, None)
    while True:
        reply = Message.parse(await transport.receive())
        if reply.xid == xid and reply.message_type == MessageType.ACK:
            return time.perf_counter() - start


def wire_floor(the_rig: Rig, reps: int) -> list[float]:
    """Raw DISCOVER (rapid commit) -> ACK on an open packet socket, timed alone (warm)."""
    import trio

    from dhcp4c.linux.packet import BroadcastTransport

    hwaddr = the_rig.client_if.hwaddr
    samples: list[float] = []

    async def run() -> None:
        with the_rig.client.entered():
            transport = BroadcastTransport(CLIENT_IF)
        try:
            for _ in range(reps):
                with trio.fail_after(5):
                    samples.append(await _raw_exchange(transport, hwaddr))
        finally:
            transport.close()

    trio.run(run)
    return samples


def in_process(the_rig: Rig, reps: int) -> list[float]:
    """`client.run()` to the first bound lease, in this process (no kernel configuration)."""
    import trio

    from dhcp4c.protocol.config import ClientConfig
    from dhcp4c.shell.client import Client

    samples: list[float] = []

    async def once() -> float:
        with the_rig.client.entered():
            # Sockets it opens later are created by its own code. No ARP probe: its wait is
            # deliberate (docs/design.md), not the client's cost.
            client = Client(CLIENT_IF, ClientConfig(acd_timeout=None))
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await client.wait_bound()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
        return elapsed

    for _ in range(reps):
        the_rig.reset()
        with the_rig.client.entered():
            # The whole Trio run inside the client namespace: sockets opened by the client's
            # tasks then belong to it (Trio runs every task on this one thread).
            samples.append(trio.run(once))
    return samples


def _child(kind: str) -> float:
    """One first exchange in this fresh process (already in the client namespace), timed
    after the imports: "floor" or "client"."""
    import trio

    from dhcp4c.linux.packet import BroadcastTransport
    from dhcp4c.protocol.config import ClientConfig
    from dhcp4c.shell.client import Client  # the same imports for both kinds (the codec included)

    if kind == "client":

        async def once() -> float:
            client = Client(CLIENT_IF, ClientConfig(acd_timeout=None))  # no probe, as above
            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.run)
                await client.wait_bound()
                elapsed = time.perf_counter() - start
                nursery.cancel_scope.cancel()
            return elapsed

        return trio.run(once)
    assert kind == "floor"
    samples = []

    async def floor() -> None:
        transport = BroadcastTransport(CLIENT_IF)
        try:
            samples.append(await _raw_exchange(transport, _hwaddr(CLIENT_IF)))
        finally:
            transport.close()

    trio.run(floor)
    return samples[0]


def _hwaddr(ifname: str) -> bytes:
    from dhcp4c.linux.interface import read_ethernet

    return read_ethernet(ifname).hwaddr


def fresh_process(the_rig: Rig, kind: str, reps: int) -> list[float]:
    """`reps` samples of `_child(kind)`, each in a fresh `python -S` process."""
    samples = []
    argv = [sys.executable, "-S", os.path.abspath(__file__), "--child", kind]
    for _ in range(reps):
        the_rig.reset()
        out = subprocess.run(
            the_rig.client.command(argv), env=_env(), check=True, capture_output=True, text=True
        )
        samples.append(float(out.stdout.strip()))
    return samples


# --- the report --------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms" if values else "     n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions per measurement")
    parser.add_argument("--parts", default="abc", help="which parts to run (a, b, c)")
    parser.add_argument("--child", choices=("floor", "client"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(repr(_child(args.child)))
        return 0
    reason = netns_available()
    if reason is not None:
        print(f"bench/lease.py: {reason}", file=sys.stderr)
        return 1
    if shutil.which("dnsmasq") is None:
        print("bench/lease.py: dnsmasq is not installed", file=sys.stderr)
        return 1
    all_peers = peers()
    with rig() as the_rig:
        print(f"time to lease against dnsmasq on a veth pair, median of {args.reps}")
        if "a" in args.parts:
            fresh_floor, fresh_client = [], []
            for _round in range(args.reps):  # interleaved, so drifts hit both alike
                fresh_floor += fresh_process(the_rig, "floor", 1)
                fresh_client += fresh_process(the_rig, "client", 1)
            floor = wire_floor(the_rig, args.reps)
            inproc = in_process(the_rig, args.reps)
            print("\n(a) in process, first exchange of a fresh process (after imports)")
            print(f"    {'':<34} {'fresh':>11} {'vs floor':>10}   {'warm':>11} {'vs floor':>10}")
            label = "wire floor (DISCOVER->ACK, raw)"
            print(f"    {label:<34} {_ms(fresh_floor)} {'':>10}   {_ms(floor)}")
            extra = (statistics.median(fresh_client) - statistics.median(fresh_floor)) * 1000
            warm = (statistics.median(inproc) - statistics.median(floor)) * 1000
            print(
                f"    {'client.run() -> bound':<34} {_ms(fresh_client)} {extra:+8.1f}ms"
                f"   {_ms(inproc)} {warm:+8.1f}ms"
            )
            print("    target: fresh floor + 2 ms")
        if "b" in args.parts:
            print("\n(b) the command: process start -> address on the interface")
            results: dict[str, list[float]] = {}
            for peer in all_peers:  # untimed: fills the page cache and writes the .pyc files
                time_to_address(the_rig, peer)
            for _round in range(args.reps):
                for peer in all_peers:  # interleaved, so drifts hit every peer alike
                    value = time_to_address(the_rig, peer)
                    if value is not None:
                        results.setdefault(peer.name, []).append(value)
            floors: dict[str, list[float]] = {}
            for _round in range(args.reps):
                for label, code in FLOORS.items():
                    argv = [sys.executable, "-S", "-c", code]
                    floors.setdefault(label, []).append(time_to_exit(the_rig, argv))
            reference = results.get("pyroute2")
            base = statistics.median(reference) if reference else None
            print(f"    {'client':<10} {'median':>11} {'min':>9} {'max':>9}  vs pyroute2")
            for peer in all_peers:
                values = results.get(peer.name, [])
                ratio = f"{statistics.median(values) / base:6.2f}x" if values and base else "   n/a"
                low = f"{min(values) * 1000:7.1f}ms" if values else "      n/a"
                high = f"{max(values) * 1000:7.1f}ms" if values else "      n/a"
                print(f"    {peer.name:<10} {_ms(values)} {low} {high}  {ratio}")
            print("    target: dhcp4c <= 1.00x pyroute2")
            print("    floors (start to exit, same way):")
            for label, values in floors.items():
                ratio = f"{statistics.median(values) / base:6.2f}x" if base else "   n/a"
                print(f"    {label:<34} {_ms(values)}  {ratio}")
        if "c" in args.parts:
            print("\n(c) peak RSS while bound (VmHWM)")
            rss: dict[str, list[int]] = {}
            for _round in range(max(3, args.reps // 2)):
                for peer in all_peers:
                    if peer.python:
                        value = peak_rss_while_bound(the_rig, peer)
                        if value is not None:
                            rss.setdefault(peer.name, []).append(value)
            reference_rss = rss.get("pyroute2")
            for name, values in rss.items():
                median = statistics.median(values)
                ratio = f"{median / statistics.median(reference_rss):.2f}x" if reference_rss else ""
                print(f"    {name:<10} {median / 1024:8.1f} MiB  {ratio}")
            print("    (reported: no target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
