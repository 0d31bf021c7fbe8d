"""One interface's supervisor runnable: its client and the watch of its link, in one node.

This module owns what happens to a client when its link changes under it (the pure decisions are
`dhcp4c.linux.linkwatch.LinkTracker`'s): carrier changes pause and resume the client, a new
hardware address makes it a new client, and an interface that disappears ends the runnable DONE
(not restarted) after its lease is dropped.

Invariants: the client starts only once the link's state is known, so a dead link is never
transmitted into, and a restart of the node reads the link again before the client sends.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from dhcp4c._exceptions import unwrap_group
from dhcp4c.linux.linkwatch import (
    CarrierChanged,
    HwaddrChanged,
    LinkGone,
    LinkSource,
    LinkTracker,
    LinkWatch,
)
from dhcp4c.protocol.events import LossReason

if TYPE_CHECKING:
    from dhcp4c.shell.client import Client

__all__ = ["run_interface"]

_log = logging.getLogger("dhcp4c.shell.runner")


def _node_logger() -> logging.Logger:
    runtime = sys.modules.get("supervisor.runtime")
    if runtime is not None:
        with contextlib.suppress(RuntimeError):
            logger: logging.Logger = runtime.logger()
            return logger
    return _log


def _signal_done() -> None:
    """Signal DONE to the supervisor running us (HEALTHY first if never signalled), if any."""
    runtime = sys.modules.get("supervisor.runtime")
    if runtime is None:
        return  # nothing imported the supervisor: not supervised
    try:
        runtime.dn()
    except RuntimeError:
        return
    from supervisor.states import Signal

    with contextlib.suppress(RuntimeError):
        runtime.signal(Signal.HEALTHY)  # a client that never bound is still NEW
    runtime.signal(Signal.DONE)


async def run_interface(
    client: Client,
    *,
    netns: str | None = None,
    source: LinkSource | None = None,
    running: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run `client` and watch its link: a supervisor runnable for one interface.

    The client starts once the link's state is known (so a dead link at start-up is never
    transmitted into) and follows it: carrier changes pause and resume it, a new hardware
    address makes it start over, and when the interface disappears it drops its lease and this
    runnable returns DONE. It is HEALTHY once the client is bound.

    Args:
        client: the interface's client (`client.interface` names the interface).
        netns: the network namespace of the interface (a name under /run/netns or a path);
            None: the calling thread's. The client's own sockets are the client's business.
        source: where link snapshots come from (default: `LinkWatch.open(...)` in `netns`).
        running: the client is running already, started by the caller (the command starts it
            before this module is imported); awaiting `running()` must stop that run and
            return once it ended. The first snapshot then corrects the carrier the client
            started with, and the client's later runs are this function's own.

    Raises:
        OSError: the netlink socket failed.
        Exception: whatever `client.run()` or the lease callback raised.
        Both are deaths for the supervisor, which restarts the node: the client resumes its
        lease by INIT-REBOOT and the link is read again before it sends anything.

    Trade-off: one node holds both tasks instead of a group of two, so that the client starts
    only after the first snapshot and a restart of either re-reads the link before the client
    sends anything; the supervisor sees one node per interface (`root.<ifname>`).
    """
    log = _node_logger()
    links = source if source is not None else LinkWatch.open(client.interface, netns=netns)
    try:
        tracker = LinkTracker(client.interface, hwaddr=client.hwaddr)
        while True:
            ending = await _run_until_change(client, links, tracker, log, running)
            running = None
            if isinstance(ending, LinkGone):
                log.info("%s: interface gone; stopping its client", client.interface)
                await client.forget(LossReason.INTERFACE_GONE)
                _signal_done()
                return
            log.info(
                "%s: hardware address now %s; starting over",
                client.interface,
                ending.hwaddr.hex(":"),
            )
            await client.forget(LossReason.HWADDR_CHANGED, hwaddr=ending.hwaddr)
    finally:
        links.close()


async def _run_until_change(
    client: Client,
    links: LinkSource,
    tracker: LinkTracker,
    log: logging.Logger,
    running: Callable[[], Awaitable[None]] | None = None,
) -> HwaddrChanged | LinkGone:
    """Run the client, telling it the carrier, until the link changes identity or goes."""
    # The client runs in a nursery, so Trio wraps its exception in a group: the supervisor's
    # log (and `propagate_exceptions`) deserve the client's error itself.
    with unwrap_group():
        return await _supervise_client(client, links, tracker, log, running)


async def _supervise_client(
    client: Client,
    links: LinkSource,
    tracker: LinkTracker,
    log: logging.Logger,
    running: Callable[[], Awaitable[None]] | None = None,
) -> HwaddrChanged | LinkGone:
    async with trio.open_nursery() as nursery:
        started = False
        while True:
            if not started and tracker.known:
                # After the first snapshot: the client starts with the carrier it reported, or
                # (started by the caller) is told the carrier it reported when it differs.
                started = True
                if running is None:
                    nursery.start_soon(client.run)
                elif client.carrier.value != tracker.carrier:
                    log.info(
                        "%s: carrier %s", client.interface, "up" if tracker.carrier else "down"
                    )
                    client.set_carrier(tracker.carrier)
            for link in await links.receive():
                for change in tracker.update(link):
                    if isinstance(change, CarrierChanged):
                        log.info("%s: carrier %s", client.interface, "up" if change.up else "down")
                        client.set_carrier(change.up)
                    else:
                        if running is not None:
                            await running()
                        nursery.cancel_scope.cancel()
                        return change
