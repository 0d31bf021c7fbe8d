"""ISC `dhcrelay` (Debian package isc-dhcp-relay) as a DHCP relay agent in a test namespace.

    with Topology() as topo, tempfile.TemporaryDirectory() as tmp:
        ...                                        # client -- router -- server namespaces
        router.enable_forwarding()                 # see `enable_forwarding`
        relay = Relay(router, downstream="r0c", upstream="r0s", servers=(server_ip,),
                      workdir=Path(tmp))
        with relay:
            ...                                    # relay.log_text()

Invariants:
- `dhcrelay` runs in the foreground (`-d`) as a child of this process, started with
  `ip netns exec` inside the namespace given, with its pid file in `workdir` (nothing else is
  written); `stop()` ends it with SIGTERM, then SIGKILL after a grace period.
- It listens for clients only on `downstream` (`-id`) and talks to servers only on `upstream`
  (`-iu`), so it relays broadcasts from the client link (setting giaddr to the downstream
  address, RFC 1542 §4.1.1) and sends the servers' replies back onto that link.
- `start()` returns once dhcrelay has opened both interfaces (its "Sending on" lines).
- Its packet socket on `downstream` sees every frame to port 67, so it also relays a copy of a
  client's *unicast* REQUEST passing through the router (giaddr set, the client's ciaddr kept);
  tests that tell a unicast renewal from a relayed one must look at giaddr and the IP source.
- Forwarding is a namespace setting: `enable_forwarding` writes it from inside a namespace a
  Topology created, never the host's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

from dhcp4c.testing.netns import Namespace, terminate

__all__ = ["Relay", "RelayError", "enable_forwarding", "which"]


class RelayError(RuntimeError):
    """dhcrelay is missing, exited, or did not come up in time."""


def which() -> str | None:
    """The path of the dhcrelay binary, or None when it is not installed."""
    return shutil.which("dhcrelay") or next(
        (p for p in ("/usr/sbin/dhcrelay", "/sbin/dhcrelay") if os.access(p, os.X_OK)), None
    )


def enable_forwarding(namespace: Namespace, enabled: bool = True) -> None:
    """Turn IPv4 forwarding on (or off) in `namespace`, a router between two test subnets."""
    # /proc/sys/net belongs to the writer's namespace; a shell, since sysctl(8) may be missing.
    value = "1" if enabled else "0"
    namespace.run(["sh", "-c", f"echo {value} > /proc/sys/net/ipv4/ip_forward"])


class Relay:
    """One dhcrelay process relaying from `downstream` to `servers` via `upstream`.

    Args:
        namespace: the router's namespace, holding both interfaces.
        downstream: the interface on the clients' link.
        upstream: the interface towards the servers.
        servers: the servers' addresses (reachable through `upstream`).
        workdir: a directory for the pid file (created if missing); the caller owns it.
        extra_args: further raw dhcrelay arguments, before the servers.

    Use as a context manager, or `start()`/`stop()`.
    """

    def __init__(
        self,
        namespace: Namespace,
        *,
        downstream: str,
        upstream: str,
        servers: Sequence[IPv4Address],
        workdir: Path,
        extra_args: Sequence[str] = (),
    ) -> None:
        if not servers:
            raise ValueError("a relay needs at least one server")
        self.namespace = namespace
        self.downstream = downstream
        self.upstream = upstream
        self.servers = tuple(servers)
        self.workdir = Path(workdir)
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def arguments(self) -> list[str]:
        """The dhcrelay command line (without the binary)."""
        return [
            "-4",
            "-d",
            "-pf",
            str(self.workdir / "dhcrelay.pid"),
            "-id",
            self.downstream,
            "-iu",
            self.upstream,
            *self.extra_args,
            *map(str, self.servers),
        ]

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self._lines.append(line.decode(errors="replace").rstrip("\n"))

    def start(self, *, timeout: float = 10.0) -> None:
        """Start dhcrelay and wait until it listens on both interfaces.

        Raises:
            RelayError: not installed, it exited, or it was not ready within `timeout` seconds.
        """
        if self.running:
            raise RelayError("dhcrelay is already running")
        binary = which()
        if binary is None:
            raise RelayError("dhcrelay is not installed (Debian package isc-dhcp-relay)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._lines = []
        process = subprocess.Popen(
            self.namespace.command([binary, *self.arguments()]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._process = process
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        wanted = {f"/{self.downstream}", f"/{self.upstream}"}
        while True:
            sending = [line for line in list(self._lines) if line.startswith("Sending on")]
            if all(any(name in line for line in sending) for name in wanted):
                return
            code = process.poll()
            if code is not None:
                self._finish(process)
                self._process = None
                raise RelayError(f"dhcrelay exited with {code}: {self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RelayError(f"dhcrelay not ready within {timeout} s: {self.log_text()}")
            time.sleep(0.01)

    def _finish(self, process: subprocess.Popen[bytes]) -> None:
        if self._reader is not None:
            self._reader.join(5)
        if process.stderr is not None:
            process.stderr.close()

    def stop(self, *, grace: float = 5.0) -> None:
        """Stop dhcrelay (SIGTERM, then SIGKILL after `grace` seconds); idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        terminate(process, grace=grace)
        self._finish(process)

    def log_text(self) -> str:
        """What dhcrelay wrote so far (its log goes to stderr with `-d`)."""
        return "\n".join(self._lines)

    def __enter__(self) -> Relay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
