"""The command's run: checks before anything starts, the start-up order, the tree, signals.

This module owns what the command does once its arguments are good: it checks privileges and
interfaces, then runs one client per interface under one supervision tree (`root.<ifname>`;
with `--all`/`--match`, `root.net.<ifname>` for those that come and go: `dhcp4c.cli.network`;
`root.debug` logs the tree on SIGUSR1) until a signal, `--once` or `--timeout` ends it, and turns
that into the exit code. What follows the lease events (`--json`, `--hook`, the service manager)
runs outside the scope that stops the tree, so the last events are handled before the exit.

Start-up order (a client at boot waits for nothing else): each client starts with the carrier
an ioctl reports, its first DISCOVER (or INIT-REBOOT REQUEST) goes out before the kernel side
(`dhcp4c.consumers.netconfig`, `dhcp4c.shell.runner` and the netlink library under them) is
imported, and that import runs in a worker thread while the server answers. The lease callback
awaits the import before configuring; the link watch then takes the running client over.

Invariant: the standard library only at load time; trio and the client once the run starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dhcp4c._exceptions import unwrap_group
from dhcp4c.cli.args import (
    EXIT_INTERFACE,
    EXIT_OK,
    EXIT_PRIVILEGES,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CommandError,
    Settings,
)
from dhcp4c.cli.output import print_event

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    import trio

    import supervisor
    from dhcp4c.cli.sdnotify import Notifier
    from dhcp4c.linux.interface import InterfaceFacts
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.shell.client import Client, LeaseCallback
    from dhcp4c.shell.observe import LeaseEvent

__all__ = ["check_privileges", "inspect_interface", "serve"]

# Capability bits (include/uapi/linux/capability.h).
_CAP_NET_BIND_SERVICE = 10
_CAP_NET_ADMIN = 12
_CAP_NET_RAW = 13


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


def inspect_interface(name: str) -> InterfaceFacts:
    """Look the interface up in this network namespace (`dhcp4c.linux.interface`).

    Raises:
        CommandError: code 4 when it does not exist or has no usable hardware address.
    """
    import errno

    from dhcp4c.linux.interface import ARPHRD_ETHER, read_interface

    try:
        facts = read_interface(name)
    except OSError as error:
        if error.errno == errno.ENODEV:
            raise CommandError(f"no interface named {name!r}", EXIT_INTERFACE) from None
        raise CommandError(f"{name}: cannot read it: {error.strerror}", EXIT_INTERFACE) from None
    if facts.link_type != ARPHRD_ETHER or not any(facts.hwaddr):
        raise CommandError(
            f"{name}: not an Ethernet interface (link type {facts.link_type}), DHCP cannot run "
            "on it",
            EXIT_INTERFACE,
        )
    return facts


def _node_name(ifname: str, taken: set[str]) -> str:
    """A supervisor node name (`[a-z0-9_]{1,64}`) for an interface, unique among `taken`."""
    base = re.sub(r"[^a-z0-9_]", "_", ifname.lower()) or "if"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


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


def _client(settings: Settings, interface: InterfaceFacts, kernel: _KernelSide) -> Client:
    """The client for one interface: its configuration, callback and lease file.

    The callback is made on its first call, once `kernel` has imported `dhcp4c.consumers.netconfig`.
    """
    import trio

    from dhcp4c.consumers import leasefile
    from dhcp4c.shell.client import Client

    config = settings.client
    name, hwaddr = interface.name, interface.hwaddr

    def identity(mac: bytes) -> bytes:
        return config.for_interface(name, mac).client_identifier

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
        config,
        callback=callback,
        lease=lease,
        hwaddr=hwaddr,
        mtu=interface.mtu if interface.mtu > 0 else None,
    )
    made.append(client)
    return client


def _carrier(interface: InterfaceFacts) -> bool:
    """Whether the interface is up with a carrier now (False when the kernel cannot tell)."""
    from dhcp4c.linux.interface import has_carrier

    try:
        return has_carrier(interface.name)
    except OSError:
        return False


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

    # A nursery wraps the client's error in a group: the supervisor's log deserves the error
    # itself (as `runner.run_interface` gives it).
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            await nursery.start(run_client)  # the first DISCOVER is out
            kernel.request()
            runner = await kernel.runner()
            await runner.run_interface(client, running=stop)
            nursery.cancel_scope.cancel()


def _logger() -> Any:
    import logging

    return logging.getLogger("dhcp4c")


class _Observers:
    """What follows each served client's lease events, as clients come and go (`Served`).

    For each client: one subscription printed as JSON (`--json`), told to the service manager
    (`STATUS=`, then `READY=1` once) and logged with the tree (`--debug-tree`); another fed to
    its `HookRunner` (`--hook`, which coalesces while a hook runs). Readiness is decided here,
    from the events as they are handled, so `READY=1` always precedes the `STOPPING=1` that
    `--once` sends on it: `all_bound` is set once the set is known (`synced`), not empty, and
    every interface in it holds a lease at the same moment. Tasks run in `nursery`, outside
    the scope that stops the tree: `finish()` after the tree has stopped lets them handle what
    the clients published last (the lease of `--once`, the "lost" of `--release`).
    """

    def __init__(
        self,
        settings: Settings,
        nursery: trio.Nursery,
        notifier: Notifier,
        *,
        synced: bool,
    ) -> None:
        import trio

        self.settings = settings
        self.nursery = nursery
        self.notifier = notifier
        self.tree: supervisor.Handle | None = None
        self.all_bound = trio.Event()
        self.latest: dict[str, LeaseEvent | None] = {}
        self._synced = synced
        self._stopping = False
        self._ends: dict[str, list[Callable[[], None]]] = {}

    # -- Served ---------------------------------------------------------------------------------

    def add(self, ifname: str, client: Client) -> None:
        import trio

        from dhcp4c.consumers.hooks import HookRunner

        ends: list[Callable[[], None]] = []
        done = trio.Event()
        ends.append(done.set)
        self.nursery.start_soon(self._follow, ifname, client.subscribe(), done)
        if self.settings.hook is not None:
            runner = HookRunner(self.settings.hook, ifname, timeout=self.settings.hook_timeout)
            ends.append(runner.stop)
            self.nursery.start_soon(runner.serve, client.subscribe())
        self._ends[ifname] = ends
        self.latest[ifname] = client.latest.value
        self._check(None)

    def remove(self, ifname: str) -> None:
        for end in self._ends.pop(ifname, ()):
            end()
        self.latest.pop(ifname, None)
        self._check(None)

    def synced(self) -> None:
        self._synced = True
        self._check(None)

    # -- the end ------------------------------------------------------------------------------

    def stopping(self, status: str) -> None:
        """The command is stopping: tell the service manager (once), and nothing after it."""
        if not self._stopping:
            self._stopping = True
            self.notifier.stopping(status)

    def finish(self) -> None:
        """The tree has stopped: handle what is left, then end every task."""
        for ifname in list(self._ends):
            for end in self._ends.pop(ifname):
                end()

    # -- events ----------------------------------------------------------------------------

    async def _follow(
        self, ifname: str, events: trio.MemoryReceiveChannel[LeaseEvent], done: trio.Event
    ) -> None:
        import contextlib

        import trio

        with events:
            async with trio.open_nursery() as nursery:

                async def until_done() -> None:
                    await done.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_done)
                async for event in events:
                    self._handle(ifname, event)
                nursery.cancel_scope.cancel()
            with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                while True:
                    self._handle(ifname, events.receive_nowait())

    def _handle(self, ifname: str, event: LeaseEvent) -> None:
        import trio

        from dhcp4c.cli.sdnotify import lease_status

        if self.settings.json:
            print_event(ifname, event)
        if ifname in self.latest:
            self.latest[ifname] = event
        if self.settings.debug_tree and self.tree is not None:
            import supervisor

            supervisor.log_tree(_logger(), self.tree)
        if self._stopping:
            return
        text = lease_status(ifname, event, now=trio.current_time())
        if not self._check(text):
            self.notifier.status(text)

    def _check(self, text: str | None) -> bool:
        """Set `all_bound` (and send READY=1) when it first holds; whether it did now."""
        from dhcp4c.shell.observe import holds_lease

        if self.all_bound.is_set() or not self._synced or not self.latest:
            return False
        if not all(map(holds_lease, self.latest.values())):
            return False
        if text is None:
            text = f"bound on {', '.join(sorted(self.latest))}"
        if not self._stopping:
            self.notifier.ready(text)
        self.all_bound.set()
        return True


def serve(settings: Settings, interfaces: Sequence[InterfaceFacts]) -> int:
    """Run the clients under one supervision tree until a signal (or `--once`); the exit code."""
    import trio

    # A task of `_serve` failed (not a client: the supervisor keeps those): its error, not the
    # nursery's group, is the one line to print.
    with unwrap_group():
        return trio.run(_serve, settings, tuple(interfaces))


def _dynamic_client(settings: Settings, kernel: _KernelSide, ifname: str) -> Client | None:
    """The client of an interface that appeared (None, logged: it cannot be served now)."""
    try:
        return _client(settings, inspect_interface(ifname), kernel)
    except CommandError as error:
        _logger().warning("%s: not served: %s", ifname, error)
        return None


async def _serve(settings: Settings, interfaces: tuple[InterfaceFacts, ...]) -> int:
    import functools
    import math
    import signal

    import trio

    import supervisor
    from dhcp4c.cli.network import Network
    from dhcp4c.cli.sdnotify import Notifier
    from dhcp4c.shell.observe import holds_lease

    kernel = _KernelSide()
    # Not inherited by hooks nor anything else started later: they are not the service.
    notifier = Notifier.from_environment(unset=True)
    clients: dict[str, Client] = {}
    nodes: dict[str, Client] = {}
    # Names of the root's other children: an interface named so gets another node name.
    taken: set[str] = {"net", "debug"}
    for interface in interfaces:
        client = _client(settings, interface, kernel)
        client.set_carrier(_carrier(interface))  # until the link watch reads the link
        clients[interface.name] = client
        nodes[_node_name(interface.name, taken)] = client

    async def run_dynamic(client: Client) -> None:
        runner = await kernel.runner()
        await runner.run_interface(client)

    async def run_network() -> None:
        # The link set's netlink code (pyroute2) comes with the kernel side, imported in a
        # thread after the fixed clients' first DISCOVERs.
        await kernel.runner()
        assert network is not None
        await network.run()

    outcome: list[int] = []

    async with trio.open_nursery() as observing:
        observers = _Observers(settings, observing, notifier, synced=not settings.dynamic)
        for name, client in clients.items():
            observers.add(name, client)
        network = None
        if settings.dynamic:
            network = Network(
                settings.match,
                set(clients),
                functools.partial(_dynamic_client, settings, kernel),
                run_dynamic,
                observers,
                _node_name,
            )

        async def root() -> None:
            for node, client in nodes.items():
                # The client and the watch of its link in one node: carrier changes pause and
                # resume it, a new MAC address starts it over, a vanished interface ends it
                # (DONE) while the others go on.
                supervisor.run(node, functools.partial(_run_node, client, kernel))
            if network is not None:
                supervisor.run("net", run_network)
            supervisor.run(
                "debug", functools.partial(supervisor.dump_on_signal, _logger()), worker=True
            )
            supervisor.signal(supervisor.Signal.HEALTHY)
            supervisor.signal(supervisor.Signal.DONE)

        async def watch_signals(scope: trio.CancelScope) -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    _logger().info("%s: shutting down", name)
                    observers.stopping(f"stopping ({name})")
                    outcome.append(128 + signum)
                    scope.cancel()
                    return

        async def wait_all_bound(scope: trio.CancelScope) -> None:
            timeout = settings.timeout
            with trio.move_on_after(timeout if timeout is not None else math.inf) as timer:
                await observers.all_bound.wait()
            if timer.cancelled_caught:
                missing = [n for n, event in observers.latest.items() if not holds_lease(event)]
                _logger().error(
                    "no lease within %g s on %s",
                    settings.timeout,
                    ", ".join(missing) or "any interface (none matched)",
                )
                observers.stopping("no lease in time")
                outcome.append(EXIT_TIMEOUT)
                scope.cancel()
            elif settings.once:
                observers.stopping("bound (--once)")
                outcome.append(EXIT_OK)
                scope.cancel()

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kernel.run)
                nursery.start_soon(watch_signals, scope)
                nursery.start_soon(wait_all_bound, scope)
                async with trio.open_nursery() as tree:
                    observers.tree = await tree.start(supervisor.supervise, root)
        # The tree has stopped: each client sent its DHCPRELEASE (with --release) and ran its
        # callback. The observers handle what they had no time to, hooks included.
        observers.finish()
    notifier.close()
    code = outcome[0] if outcome else EXIT_OK
    if code > 128 and not settings.once:
        code = EXIT_OK  # a signal is the normal way to stop a running client
    return code
