"""Many interfaces: one process, N veth interfaces, one dnsmasq, N clients under one supervisor.

    sudo python -S bench/scale.py [--count 200] [--no-configure] [--timeout 60]

Topology (network namespaces this script creates and always removes, `dhcp4c.testing.netns`):
a server namespace with a bridge `br0` (10.90.0.1/22, no STP, no forward delay) enslaving the
server ends of N veth pairs and dnsmasq serving on the bridge; a client namespace holding the N
client ends. IPv6 is off in both, so the only traffic is DHCP.

The process runs one supervision tree: its root declares one `run_interface` node per interface
(the client plus its netlink link watch, as the command runs them), each client with real
sockets and, unless `--no-configure`, `netconfig.configure` putting the address on its
interface. Reported: time from the tree's start to every client bound (and the kernel holding
every address), and memory per client: the growth of RSS from just before the clients are made
to all bound, divided by N (sockets, tasks, machines, watch sockets, netconfig's netlink requests
and the lease objects all included).

`bind_all()` and `scale_network()` are also what tests/dhcp4c/test_scale.py runs.
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
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402
from ipaddress import IPv4Address, IPv4Interface, IPv4Network  # noqa: E402
from pathlib import Path  # noqa: E402

import trio  # noqa: E402

import supervisor  # noqa: E402
from dhcp4c.consumers import netconfig  # noqa: E402
from dhcp4c.linux.interface import read_ethernet  # noqa: E402
from dhcp4c.shell.client import Client, default_transport  # noqa: E402
from dhcp4c.shell.runner import run_interface  # noqa: E402
from dhcp4c.shell.transport import Transport  # noqa: E402
from dhcp4c.testing.dnsmasq import Dnsmasq, DnsmasqConfig  # noqa: E402
from dhcp4c.testing.netns import Namespace, Topology, list_namespaces, netns_available  # noqa: E402

NETWORK = IPv4Network("10.90.0.0/22")
SERVER = IPv4Interface("10.90.0.1/22")
POOL = (IPv4Address("10.90.1.0"), IPv4Address("10.90.3.250"))
BRIDGE = "br0"
PREFIX = "dhcp4cscale"


@dataclass
class ScaleNetwork:
    """The namespaces, the client interface names and the server."""

    client: Namespace
    server: Namespace
    interfaces: list[str]
    dnsmasq: Dnsmasq


@dataclass
class ScaleResult:
    """What one run measured."""

    count: int
    configure: bool
    bind_seconds: float
    addresses: int
    rss_before_kib: int
    rss_after_kib: int
    peak_rss_kib: int
    fds_before: int
    fds_after: int
    threads_after: int

    @property
    def kib_per_client(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.count


def _batch(namespace: Namespace, commands: list[str], workdir: Path) -> None:
    """Run many `ip` commands in `namespace` with one process (`ip -n NS -batch FILE`)."""
    path = workdir / f"batch-{namespace.name}.txt"
    path.write_text("\n".join(commands) + "\n")
    namespace.ip("-batch", str(path))


@contextlib.contextmanager
def scale_network(count: int, workdir: Path) -> Iterator[ScaleNetwork]:
    """Create the topology and start dnsmasq; remove everything on exit.

    Raises:
        NetnsError, DnsmasqError: no root, no `ip`, no dnsmasq.
    """
    size = int(POOL[1]) - int(POOL[0]) + 1
    if not 0 < count <= size:
        raise ValueError(f"between 1 and {size} interfaces, not {count}")
    with Topology(PREFIX) as topo:
        client, server = topo.namespace("client"), topo.namespace("server")
        for namespace in (client, server):
            namespace.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
            namespace.run(["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
        names = [f"sc{n}" for n in range(count)]
        _batch(
            server,
            [
                f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0",
                f"addr add {SERVER} dev {BRIDGE}",
                f"link set dev {BRIDGE} up",
            ],
            workdir,
        )
        # Created in the client namespace with the peer put straight into the server's: no
        # interface ever appears in the host namespace.
        _batch(
            client,
            [
                f"link add {name} type veth peer name ss{n} netns {server.name}"
                for n, name in enumerate(names)
            ]
            + [f"link set dev {name} up" for name in names],
            workdir,
        )
        _batch(
            server,
            [f"link set dev ss{n} master {BRIDGE} up" for n in range(count)],
            workdir,
        )
        config = DnsmasqConfig(
            interface=BRIDGE,
            network=NETWORK,
            pool=POOL,
            router=SERVER.ip,
            extra_args=(f"--dhcp-lease-max={count + 100}",),
        )
        with Dnsmasq(server, config, workdir=workdir / "dnsmasq") as dnsmasq:
            yield ScaleNetwork(client, server, names, dnsmasq)


def process_figures() -> tuple[int, int, int]:
    """(RSS KiB, peak RSS KiB, open fds) of this process."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return int(fields["VmRSS"][0]), int(fields["VmHWM"][0]), len(os.listdir("/proc/self/fd"))


def _addresses(namespace: Namespace) -> int:
    found = json.loads(namespace.ip("-j", "-4", "addr", "show"))
    return sum(1 for link in found if link["ifname"] != "lo" for _ in link.get("addr_info", ()))


async def bind_all(
    network: ScaleNetwork, *, configure: bool = True, timeout: float = 60.0
) -> ScaleResult:
    """Run one client per interface under one tree until all are bound; measure.

    Raises:
        TimeoutError: not all bound within `timeout` seconds (trio.TooSlowError).
    """
    namespace = network.client
    with namespace.entered():
        info = {name: read_ethernet(name) for name in network.interfaces}

    def factory(interface: str, address: IPv4Address | None) -> Transport:
        with namespace.entered():
            return default_transport(interface, address)

    rss_before, _, fds_before = process_figures()
    clients = []
    for name in network.interfaces:
        facts = info[name]
        callback = netconfig.configure(name, netns=namespace.name, mtu=False) if configure else None
        clients.append(
            Client(
                name,
                hwaddr=facts.hwaddr,
                mtu=facts.mtu,
                transport_factory=factory,
                callback=callback,
            )
        )

    async def root() -> None:
        for client in clients:
            supervisor.run(client.interface, partial(run_interface, client, netns=namespace.name))
        supervisor.signal(supervisor.Signal.HEALTHY)
        supervisor.signal(supervisor.Signal.DONE)

    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        await nursery.start(partial(supervisor.supervise, root))
        with trio.fail_after(timeout):
            for client in clients:
                await client.wait_bound()
        bind_seconds = trio.current_time() - started
        rss_after, peak, fds_after = process_figures()
        threads = threading.active_count()
        addresses = await trio.to_thread.run_sync(_addresses, namespace)
        nursery.cancel_scope.cancel()
    return ScaleResult(
        count=len(clients),
        configure=configure,
        bind_seconds=bind_seconds,
        addresses=addresses,
        rss_before_kib=rss_before,
        rss_after_kib=rss_after,
        peak_rss_kib=peak,
        fds_before=fds_before,
        fds_after=fds_after,
        threads_after=threads,
    )


def describe(result: ScaleResult, setup_seconds: float | None = None) -> str:
    """The report, one figure per line."""
    setup = (
        [] if setup_seconds is None else [f"  topology + dnsmasq set up  {setup_seconds:8.2f} s"]
    )
    return "\n".join(
        [
            f"{result.count} interfaces, one dnsmasq, one process, one supervision tree"
            f" ({'with' if result.configure else 'without'} kernel configuration)",
            *setup,
            f"  time to bind all           {result.bind_seconds:8.2f} s"
            f"  ({result.addresses} addresses on the interfaces)",
            f"  RSS before clients         {result.rss_before_kib / 1024:8.1f} MiB",
            f"  RSS all bound              {result.rss_after_kib / 1024:8.1f} MiB"
            f"  (peak {result.peak_rss_kib / 1024:.1f} MiB)",
            f"  memory per client          {result.kib_per_client:8.1f} KiB",
            f"  fds before / after         {result.fds_before} / {result.fds_after}",
            f"  threads when all bound     {result.threads_after}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200, help="interfaces (default 200)")
    parser.add_argument(
        "--no-configure", action="store_true", help="do not put the addresses on the interfaces"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to bind all")
    args = parser.parse_args()
    reason = netns_available()
    if reason is not None:
        print(f"bench/scale.py: {reason}", file=sys.stderr)
        return 1
    if shutil.which("dnsmasq") is None and not os.access("/usr/sbin/dnsmasq", os.X_OK):
        print("bench/scale.py: dnsmasq is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="dhcp4c-scale-") as tmp:
        start = time.monotonic()
        with scale_network(args.count, Path(tmp)) as network:
            setup = time.monotonic() - start
            result = trio.run(
                partial(bind_all, network, configure=not args.no_configure, timeout=args.timeout)
            )
        left = [name for name in list_namespaces() if name.startswith(f"{PREFIX}-{os.getpid()}-")]
    print(describe(result, setup))
    print(f"  namespaces left behind     {len(left)}")
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
