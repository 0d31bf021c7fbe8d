"""Network namespaces and veth pairs for tests and the demo, always removed afterwards.

    with Topology() as topo:
        client, server = topo.namespace("client"), topo.namespace("server")
        c_if, s_if = topo.veth(client, server, address_b=IPv4Interface("10.0.0.1/24"))
        with client.entered():
            transport = BroadcastTransport(c_if.name)   # the socket lives in `client` for good

Invariants: host interfaces are never touched (every `ip` command names a namespace made here;
a veth pair is created inside its first namespace, its peer placed straight into the second);
names are `{prefix}-{pid}-{counter}`; every namespace is removed by `Topology.close()` (also on
errors and Ctrl-C) or else an `atexit` net; each gets an empty `/etc/netns/NAME/resolv.conf`,
so peer clients' hook scripts started by `ip netns exec` cannot rewrite the host's resolver;
`Namespace.entered()` switches only the calling thread and always switches back. Needs root;
`require_netns()` skips without it for developers and fails in CI.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface

from dhcp4c._closing import Closing
from dhcp4c.linux import netns as _netns

__all__ = [
    "Interface",
    "Namespace",
    "NetnsError",
    "Topology",
    "netns_available",
    "remove_stale",
    "require_netns",
    "terminate",
]

_ETC_NETNS_DIR = "/etc/netns"
_counter = itertools.count()
_lock = threading.Lock()
_live: set[str] = set()  # namespaces created by this process and not removed yet


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries its stderr."""


def _ip(*args: str) -> str:
    try:
        result = subprocess.run(
            ["ip", *args], check=False, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError as error:
        raise NetnsError("iproute2's `ip` is not installed") from error
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _delete(name: str) -> None:
    with _lock:
        _live.discard(name)
    with contextlib.suppress(NetnsError):
        _ip("netns", "delete", name)
    shutil.rmtree(os.path.join(_ETC_NETNS_DIR, name), ignore_errors=True)


@atexit.register
def _remove_leftovers() -> None:
    # The safety net for namespaces whose Topology was never closed (e.g. a test process
    # interrupted between creation and its `with`), so repeated runs do not pile them up.
    # Only our own: a forked child inherits `_live` but not the namespaces' ownership.
    mine = f"-{os.getpid()}-"
    for name in sorted(_live):
        if mine in name:
            _delete(name)


@dataclass(frozen=True)
class Namespace:
    """A named network namespace (a bind mount under /run/netns) created by a Topology."""

    name: str

    @property
    def path(self) -> str:
        return os.path.join(_netns.NETNS_DIR, self.name)

    def ip(self, *args: str) -> str:
        """Run `ip -n NAME ARGS...` and return its stdout; raise NetnsError on failure."""
        return _ip("-n", self.name, *args)

    def command(self, argv: Sequence[str]) -> list[str]:
        """Return `argv` prefixed to run inside this namespace (for trio.run_process, Popen)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, timeout: float = 30) -> str:
        """Run a command inside this namespace; return stdout; raise NetnsError on failure."""
        result = subprocess.run(
            self.command(argv), check=False, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise NetnsError(f"{' '.join(argv)} in {self.name}: {result.stderr.strip()}")
        return result.stdout

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread inside this namespace, then switch back.

        Sockets created in the block belong to this namespace until closed, wherever they are
        used later. Keep the block synchronous: under Trio, other tasks run on the same thread
        at every checkpoint and would create their sockets here too.

        Raises:
            OSError: when setns(2) fails (not root).
        """
        with _netns.entered(self.path):
            yield

    def socket(
        self,
        family: int = socket.AF_INET,
        type: int = socket.SOCK_DGRAM,
        proto: int = 0,
    ) -> socket.socket:
        """Create a (stdlib, blocking) socket inside this namespace.

        Wrap it with `trio.socket.from_stdlib_socket` for Trio code.
        """
        with self.entered():
            return socket.socket(family, type, proto)


@dataclass(frozen=True)
class Interface:
    """One end of a veth pair."""

    namespace: Namespace
    name: str
    address: IPv4Interface | None

    @property
    def hwaddr(self) -> bytes:
        """The MAC address, read through `ip -j link`."""
        info = json.loads(self.namespace.ip("-j", "link", "show", "dev", self.name))
        return bytes.fromhex(str(info[0]["address"]).replace(":", ""))

    @property
    def index(self) -> int:
        """The interface index inside its namespace."""
        info = json.loads(self.namespace.ip("-j", "link", "show", "dev", self.name))
        return int(info[0]["ifindex"])

    def set_up(self, up: bool = True) -> None:
        """Set the link administratively up or down (the peer sees carrier follow)."""
        self.namespace.ip("link", "set", "dev", self.name, "up" if up else "down")


class Topology(Closing):
    """A set of namespaces and veth pairs that is removed as a whole.

    Args:
        prefix: the start of every namespace name (`{prefix}-{pid}-{n}`), so that leftovers of a
            killed run can be found by `remove_stale(prefix)`.

    Use as a context manager (sync `with`; it works inside Trio code as well since creation and
    removal take a few milliseconds).
    """

    def __init__(self, prefix: str = "dhcp4c") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", prefix):
            raise ValueError(f"prefix {prefix!r} must be alphanumeric (no '-')")
        self.prefix = prefix
        self.namespaces: list[Namespace] = []
        self._veths = itertools.count()
        self._closed = False

    def namespace(self, label: str = "") -> Namespace:
        """Create a namespace with its loopback up.

        Args:
            label: appended to the name, for people reading `ip netns list`.
        """
        if self._closed:
            raise RuntimeError("topology is closed")
        name = f"{self.prefix}-{os.getpid()}-{next(_counter)}"
        if label:
            name += f"-{label}"
        with _lock:
            _live.add(name)
        try:
            _ip("netns", "add", name)
            # `ip netns exec` bind-mounts these over /etc: see the module's invariants.
            etc = os.path.join(_ETC_NETNS_DIR, name)
            os.makedirs(etc, exist_ok=True)
            with open(os.path.join(etc, "resolv.conf"), "w"):
                pass
        except BaseException:
            _delete(name)
            raise
        namespace = Namespace(name)
        self.namespaces.append(namespace)
        namespace.ip("link", "set", "dev", "lo", "up")
        return namespace

    def veth(
        self,
        a: Namespace,
        b: Namespace,
        *,
        name_a: str | None = None,
        name_b: str | None = None,
        address_a: IPv4Interface | None = None,
        address_b: IPv4Interface | None = None,
        hwaddr_a: bytes | None = None,
        hwaddr_b: bytes | None = None,
        up: bool = True,
    ) -> tuple[Interface, Interface]:
        """Create a veth pair with one end in `a` and the other in `b`.

        Args:
            a, b: namespaces of this topology (they may be the same one).
            name_a, name_b: interface names (default `veth{n}a` / `veth{n}b`, unique within
                the topology; interface names only need to be unique inside a namespace).
            address_a, address_b: IPv4 addresses with prefix to add, or None for none.
            hwaddr_a, hwaddr_b: MAC addresses, or None for random ones.
            up: bring both ends up.

        Returns:
            The two ends.
        """
        for namespace in (a, b):
            if namespace not in self.namespaces:
                raise ValueError(f"{namespace.name} does not belong to this topology")
        n = next(self._veths)
        name_a = name_a or f"veth{n}a"
        name_b = name_b or f"veth{n}b"
        args = ["link", "add", name_a]
        if hwaddr_a is not None:
            args += ["address", hwaddr_a.hex(":")]
        args += ["type", "veth", "peer", "name", name_b]
        if hwaddr_b is not None:
            args += ["address", hwaddr_b.hex(":")]
        # The peer is created directly in `b`: nothing ever appears in the host namespace.
        a.ip(*args, "netns", b.name)
        ends = (Interface(a, name_a, address_a), Interface(b, name_b, address_b))
        for end in ends:
            if end.address is not None:
                end.namespace.ip("addr", "add", str(end.address), "dev", end.name)
            if up:
                end.set_up()
        return ends

    def close(self) -> None:
        """Remove every namespace (and so every veth) of this topology; idempotent."""
        self._closed = True
        while self.namespaces:
            _delete(self.namespaces.pop().name)


def list_namespaces() -> list[str]:
    """Return the names of the namespaces under /run/netns."""
    try:
        return sorted(os.listdir(_netns.NETNS_DIR))
    except FileNotFoundError:
        return []


def remove_stale(prefix: str = "dhcp4c") -> list[str]:
    """Remove namespaces named `{prefix}-{pid}-...` whose process no longer exists.

    For leftovers of a run that was SIGKILLed (atexit did not run). Namespaces of live processes
    are left alone, so concurrent test runs do not disturb each other.

    Returns:
        The names removed.
    """
    removed = []
    for name in list_namespaces():
        match = re.fullmatch(rf"{re.escape(prefix)}-(\d+)-\d+(-.*)?", name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _delete(name)
            removed.append(name)
        except PermissionError:
            pass  # alive, owned by someone else
    return removed


def netns_available() -> str | None:
    """Return why network namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "network namespace tests need iproute2's `ip`"
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_netns() -> None:
    """Skip the calling test when namespaces are unavailable, unless in CI, where it fails.

    CI (the environment variable CI set to a true value) must run the real-kernel tests, so a
    missing capability there is an error, never a silent skip.
    """
    import pytest  # test-only dependency, imported where it is used

    reason = netns_available()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so this is not skipped)")
    pytest.skip(reason)


def terminate(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Stop a server started in a namespace: SIGTERM, then SIGKILL after `grace` seconds.

    Returns once the process has exited; a process already gone is not an error.
    """
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
