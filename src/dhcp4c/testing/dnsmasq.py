"""A dnsmasq DHCP server in a network namespace, for the end-to-end tests, the demo and the bench.

    with Topology() as topo, tempfile.TemporaryDirectory() as tmp:
        client, server = topo.namespace("client"), topo.namespace("server")
        c_if, s_if = topo.veth(client, server, address_b=IPv4Interface("10.0.0.1/24"))
        config = DnsmasqConfig(interface=s_if.name, network=IPv4Network("10.0.0.0/24"), t1=5, t2=8)
        with Dnsmasq(server, config, workdir=Path(tmp)) as dnsmasq:
            ...                                   # dnsmasq.leases(), dnsmasq.log_text()

Invariants: dnsmasq reads no system configuration, serves no DNS and keeps every file in
`workdir`, so instances share nothing and nothing else is written; it runs in the foreground as
our child (`ip netns exec` execs it), `start()` returns once its DHCP socket is bound, `stop()`
sends SIGTERM then SIGKILL. It refuses leases under 120 s but sends the T1/T2 it is told
(options 58/59), which is how tests see renewals and rebinding within seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType

from dhcp4c.testing.netns import Namespace, terminate

__all__ = ["MIN_LEASE_TIME", "Dnsmasq", "DnsmasqConfig", "DnsmasqError", "DnsmasqLease", "which"]

#: dnsmasq silently raises any shorter lease time to this.
MIN_LEASE_TIME = 120
_READY_MARK = "DHCP, IP range"


class DnsmasqError(RuntimeError):
    """dnsmasq is missing, refused its configuration, or did not come up in time."""


def which() -> str | None:
    """The path of the dnsmasq binary, or None when it is not installed."""
    return shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.access(p, os.X_OK)), None
    )


@dataclass(frozen=True)
class DnsmasqConfig:
    """What dnsmasq hands out.

    Attributes:
        interface: the server-side interface (it must carry an address in `network`).
        network: the subnet; the pool is `pool` or, by default, hosts .100 to .199 of it.
        pool: an inclusive (first, last) range inside `network`.
        lease_time: seconds; dnsmasq raises anything below 120 s to 120 s.
        t1, t2: options 58 and 59 in seconds (sent as given), or None for dnsmasq's defaults.
        router: option 3; None for dnsmasq's default (its own address on the interface).
        dns_servers: option 6; empty for none.
        domain: option 15; None for none.
        rapid_commit: answer a DISCOVER with option 80 by an ACK (RFC 4039).
        authoritative: NAK requests for addresses that are not the client's (RFC 2131 §4.3.2).
        ping_check: let dnsmasq ping a new address before handing it out (its default); off
            here, because that ping holds every first answer back by about 3 s.
        extra_args: further raw dnsmasq arguments, appended last.
    """

    interface: str
    network: IPv4Network
    pool: tuple[IPv4Address, IPv4Address] | None = None
    lease_time: int = MIN_LEASE_TIME
    t1: int | None = None
    t2: int | None = None
    router: IPv4Address | None = None
    dns_servers: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    rapid_commit: bool = True
    authoritative: bool = True
    ping_check: bool = False
    extra_args: tuple[str, ...] = ()

    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        """The inclusive pool range."""
        if self.pool is not None:
            return self.pool
        base = self.network.network_address
        last = min(base + 199, self.network.broadcast_address - 1)
        first = min(base + 100, last)
        return first, last

    def arguments(self, workdir: Path) -> list[str]:
        """The dnsmasq command line (without the binary) keeping its files under `workdir`."""
        first, last = self.pool_range()
        args = [
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",  # no DNS: only DHCP
            "--user=root",  # keep access to workdir (the default drops to nobody)
            "--group=root",
            f"--pid-file={workdir / 'dnsmasq.pid'}",
            f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}",
            f"--log-facility={workdir / 'dnsmasq.log'}",
            "--log-dhcp",
            f"--interface={self.interface}",
            "--bind-interfaces",
            "--except-interface=lo",
            f"--dhcp-range={first},{last},{self.network.netmask},{int(self.lease_time)}",
        ]
        if self.router is not None:
            args.append(f"--dhcp-option=option:router,{self.router}")
        if self.dns_servers:
            args.append("--dhcp-option=option:dns-server," + ",".join(map(str, self.dns_servers)))
        if self.domain is not None:
            args.append(f"--dhcp-option=option:domain-name,{self.domain}")
        if self.t1 is not None:
            args.append(f"--dhcp-option=58,{int(self.t1)}")
        if self.t2 is not None:
            args.append(f"--dhcp-option=59,{int(self.t2)}")
        if self.rapid_commit:
            args.append("--dhcp-rapid-commit")
        if self.authoritative:
            args.append("--dhcp-authoritative")
        if not self.ping_check:
            args.append("--no-ping")
        args.extend(self.extra_args)
        return args


@dataclass(frozen=True)
class DnsmasqLease:
    """One line of dnsmasq's lease file."""

    expiry: int  # Unix time, 0 for infinite
    hwaddr: str
    address: IPv4Address
    hostname: str
    client_id: str


class Dnsmasq:
    """One dnsmasq process serving DHCP on an interface inside `namespace`.

    Args:
        namespace: where the server interface lives.
        config: what to serve.
        workdir: a directory for the pid, lease and log files (created if missing); the caller
            owns it (a test's tmp_path, a TemporaryDirectory).

    Use as a context manager (starts and stops it), or call `start()`/`stop()`; `stop()` then
    `start()` again restarts it with the same lease file, like a server that went away and came
    back (use `reconfigure` to come back with other settings).
    """

    def __init__(self, namespace: Namespace, config: DnsmasqConfig, *, workdir: Path) -> None:
        self.namespace = namespace
        self.config = config
        self.workdir = Path(workdir)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "dnsmasq.log"

    @property
    def lease_path(self) -> Path:
        return self.workdir / "dnsmasq.leases"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, *, timeout: float = 10.0) -> None:
        """Start dnsmasq and wait until it serves DHCP.

        Raises:
            DnsmasqError: not installed, it exited (bad configuration, port 67 taken), or it did
                not report its DHCP range within `timeout` seconds.
        """
        if self.running:
            raise DnsmasqError("dnsmasq is already running")
        binary = which()
        if binary is None:
            raise DnsmasqError("dnsmasq is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.lease_path.touch()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = self.namespace.command([binary, *self.config.arguments(self.workdir)])
        self._process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while True:
            if _READY_MARK in self.log_text(offset):
                return
            code = self._process.poll()
            if code is not None:
                assert self._process.stderr is not None
                with self._process.stderr as stderr:
                    message = stderr.read().decode(errors="replace").strip()
                self._process = None
                raise DnsmasqError(f"dnsmasq exited with {code}: {message or self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DnsmasqError(f"dnsmasq did not start within {timeout} s")
            time.sleep(0.005)

    def stop(self, *, grace: float = 5.0) -> None:
        """Stop dnsmasq (SIGTERM, then SIGKILL after `grace` seconds); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process, grace=grace)
        if process.stderr is not None:
            process.stderr.close()

    def reconfigure(self, config: DnsmasqConfig) -> None:
        """Restart with another configuration (the lease file is kept)."""
        self.stop()
        self.config = config
        self.start()

    def log_text(self, offset: int = 0) -> str:
        """The DHCP log so far (from byte `offset`)."""
        try:
            with open(self.log_path, "rb") as file:
                file.seek(offset)
                return file.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def leases(self) -> list[DnsmasqLease]:
        """The leases in dnsmasq's lease file (written as they are granted)."""
        try:
            text = self.lease_path.read_text()
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) == 5 and fields[0].isdigit():
                found.append(
                    DnsmasqLease(
                        int(fields[0]), fields[1], IPv4Address(fields[2]), fields[3], fields[4]
                    )
                )
        return found

    def __enter__(self) -> Dnsmasq:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
