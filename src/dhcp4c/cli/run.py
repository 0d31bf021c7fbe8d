"""The command's run: checks before anything starts, the start-up order, the tree, signals.

This module owns what the command does once its arguments are good: it checks privileges and
interfaces, then runs one client per interface under one supervision tree (`root.<ifname>`)
until a signal, `--once` or `--timeout` ends it, and turns that into the exit code.

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
    from types import ModuleType

    import trio

    from dhcp4c.linux.interface import InterfaceFacts
    from dhcp4c.protocol.lease import Lease
    from dhcp4c.shell.client import Client, LeaseCallback

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


def serve(settings: Settings, interfaces: Sequence[InterfaceFacts]) -> int:
    """Run the clients under one supervision tree until a signal (or `--once`); the exit code."""
    import trio

    # A task of `_serve` failed (not a client: the supervisor keeps those): its error, not the
    # nursery's group, is the one line to print.
    with unwrap_group():
        return trio.run(_serve, settings, tuple(interfaces))


async def _serve(settings: Settings, interfaces: tuple[InterfaceFacts, ...]) -> int:
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
        client.set_carrier(_carrier(interface))  # until the link watch reads the link
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
            print_event(client.interface, event)

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
                    print_event(client.interface, events.receive_nowait())
    code = outcome[0] if outcome else EXIT_OK
    if code > 128 and not settings.once:
        code = EXIT_OK  # a signal is the normal way to stop a running client
    return code
