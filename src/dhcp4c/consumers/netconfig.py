"""Kernel configuration from leases: lease callbacks that apply a lease over rtnetlink.

A lease callback `async def cb(old, new)` sees every event: bound (None → lease), renewed, changed
(lease → lease) and lost (lease → None). One callback per concern, and `configure()` composing
them in order: the address (lifetimes = the remaining lease, so the kernel drops it at expiry even
if this process dies, RFC 2131 §4.4.5; replaced in place on renewal), then routes (protocol
`dhcp`, the address as source, a per-interface metric; on-link before gateway routes, stale ones
deleted after), the MTU (option 26, at least 576 per RFC 791, restored on loss) and a
resolv.conf-format file (`resolvconf`). Each call opens one netlink socket (`dhcp4c.linux.rtnl`)
in `netns` and closes it: nothing is held between events, every request is cancellable.

Invariants: an address the kernel marks permanent (the administrator's) is never replaced nor
removed, and ours never are permanent. `NetconfigError` when the address cannot be configured;
a failing route, MTU or file is logged and skipped; deleting what is already gone is no error.
Why: docs/design.md, "Kernel configuration".
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from ipaddress import IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from pyroute2.netlink.rtnl.ifaddrmsg import IFA_F_PERMANENT

from dhcp4c.consumers import leasefile, resolvconf
from dhcp4c.linux import rtnl
from dhcp4c.shell.client import LeaseCallback

if TYPE_CHECKING:
    from dhcp4c.protocol.lease import Lease, Route

__all__ = [
    "MIN_MTU",
    "RTPROT_DHCP",
    "LeaseCallback",
    "NetconfigError",
    "address_callback",
    "compose",
    "configure",
    "lease_file_callback",
    "mtu_callback",
    "resolv_conf_callback",
    "routes_callback",
]

logger = logging.getLogger(__name__)

RTPROT_DHCP = rtnl.RTPROT_DHCP
MIN_MTU = 576  # RFC 791: every host must accept datagrams of 576 octets
MAX_MTU = 65535
MAIN_TABLE = rtnl.MAIN_TABLE


class NetconfigError(Exception):
    """The kernel refused to configure the lease's address (or the interface does not exist)."""


def compose(*callbacks: LeaseCallback) -> LeaseCallback:
    """Return a callback running `callbacks` one after the other, in the order given.

    An exception stops the sequence and propagates (later callbacks do not run).
    """

    async def composed(old: Lease | None, new: Lease | None) -> None:
        for callback in callbacks:
            await callback(old, new)

    return composed


def _reversing(*steps: LeaseCallback) -> LeaseCallback:
    """Like `compose`, but the steps run in reverse order when the lease is lost (teardown)."""

    async def composed(old: Lease | None, new: Lease | None) -> None:
        for step in steps if new is not None else reversed(steps):
            await step(old, new)

    return composed


# ---------------------------------------------------------------------------------------------
# The kernel operations, one netlink socket each.


@contextlib.asynccontextmanager
async def _on_link(
    netns: str | None, ifname: str, what: str, *, teardown: bool
) -> AsyncIterator[tuple[rtnl.RtnlSocket, rtnl.Link] | None]:
    """Open a netlink socket in `netns` and find `ifname`: (socket, link).

    Yields None when the interface is gone and this is a `teardown`: what we configured on it
    went with it.

    Raises:
        NetconfigError: no such interface (unless tearing down), the socket cannot be opened or a
            request failed (`what` says which configuration), or an invalid interface name.
    """
    try:
        with rtnl.RtnlSocket.open(netns) as netlink:
            link = await netlink.link(ifname)
            if link is None and not teardown:
                raise NetconfigError(f"no interface named {ifname!r}")
            yield None if link is None else (netlink, link)
    except (OSError, ValueError) as error:
        raise NetconfigError(f"{ifname}: cannot configure {what}: {error}") from error


async def _apply_address(
    netns: str | None, ifname: str, old: Lease | None, new: Lease | None, remaining: float
) -> None:
    async with _on_link(netns, ifname, "the address", teardown=new is None) as found:
        if found is None:
            return
        netlink, link = found
        index = link.index
        present = await netlink.addresses(index)

        def ours(address: IPv4Interface) -> bool:
            flags = present.get(address)
            if flags is not None and flags & IFA_F_PERMANENT:
                logger.warning(
                    "%s: leaving the permanent address %s alone", ifname, address.with_prefixlen
                )
                return False
            return flags is not None

        # Delete before adding: with promote_secondaries off, deleting a primary address also
        # deletes the secondaries of its subnet, possibly the new one.
        leaving = old is not None and (new is None or old.address != new.address)
        if old is not None and leaving and ours(old.address):
            try:
                await netlink.delete_address(old.address, index)
            except OSError as error:
                if error.errno != errno.EADDRNOTAVAIL:  # already gone (expired meanwhile)
                    raise
            logger.info("%s: removed %s", ifname, old.address.with_prefixlen)
        if new is None or (new.address in present and not ours(new.address)):
            return
        lifetime = rtnl.lifetime(remaining)
        if lifetime == 0:
            logger.warning("%s: lease for %s already expired; not adding it", ifname, new.address)
            return
        await netlink.replace_address(new.address, index, lifetime)
        logger.info("%s: %s valid for %d s", ifname, new.address.with_prefixlen, lifetime)


def _route(route: Route, index: int, lease: Lease, metric: int, table: int) -> rtnl.Route:
    return rtnl.Route(
        destination=route.destination,
        gateway=route.gateway,
        index=index,
        metric=metric,
        table=table,
        protocol=RTPROT_DHCP,
        prefsrc=lease.address.ip,
    )


async def _apply_routes(
    netns: str | None,
    ifname: str,
    old: Lease | None,
    new: Lease | None,
    metric: int | None,
    table: int,
) -> None:
    async with _on_link(netns, ifname, "routes", teardown=new is None) as found:
        if found is None:
            return
        netlink, link = found
        index = link.index
        await _replace_routes(
            netlink, ifname, index, old, new, 1000 + index if metric is None else metric, table
        )


async def _replace_routes(
    netlink: rtnl.RtnlSocket,
    ifname: str,
    index: int,
    old: Lease | None,
    new: Lease | None,
    metric: int,
    table: int,
) -> None:
    wanted: set[tuple[object, ...]] = set()
    if new is not None:
        # On-link routes first: a gateway may only be reachable through one of them.
        for route in sorted(new.routes, key=lambda route: route.gateway is not None):
            wanted.add((route.destination, route.gateway))
            try:
                await netlink.replace_route(_route(route, index, new, metric, table))
            except OSError as error:
                logger.warning("%s: cannot add route %s: %s", ifname, _describe(route), error)
    if old is None:
        return
    for route in old.routes:
        if (route.destination, route.gateway) in wanted:
            continue
        try:
            await netlink.delete_route(_route(route, index, old, metric, table))
        except OSError as error:
            # ESRCH: gone already (removed with the address, or expired with it).
            if error.errno != errno.ESRCH:
                logger.warning("%s: cannot remove route %s: %s", ifname, _describe(route), error)


def _describe(route: Route) -> str:
    via = "on-link" if route.gateway is None else f"via {route.gateway}"
    return f"{route.destination} {via}"


async def _set_mtu(netns: str | None, ifname: str, mtu: int | None, saved: list[int]) -> None:
    """Set the MTU (None: restore the original); `saved` holds the original once we changed it."""
    try:
        async with _on_link(netns, ifname, "the MTU", teardown=mtu is None) as found:
            if found is None:
                return
            netlink, link = found
            if mtu is None:
                if saved:
                    await netlink.set_mtu(link.index, saved.pop())
                return
            current = link.mtu
            if current == mtu:
                return
            await netlink.set_mtu(link.index, mtu)
            if not saved and current is not None:
                saved.append(current)
            logger.info("%s: MTU %d (was %s)", ifname, mtu, current)
    except (OSError, NetconfigError) as error:
        logger.warning("%s: cannot set the MTU: %s", ifname, error)


# ---------------------------------------------------------------------------------------------
# The callbacks.


def address_callback(
    ifname: str,
    *,
    netns: str | None = None,
    clock: Callable[[], float] = trio.current_time,
) -> LeaseCallback:
    """Manage the lease's address on `ifname`.

    Args:
        ifname: the interface.
        netns: a namespace name under /run/netns or a namespace file path; None: our own.
        clock: the clock the lease's times are on (Trio's).

    Returns:
        A callback that adds/replaces the new address with lifetimes = the lease's remaining time
        and deletes the old one on change or loss; permanent addresses are never touched.
        It raises `NetconfigError` when the address cannot be configured.
    """

    async def callback(old: Lease | None, new: Lease | None) -> None:
        remaining = new.remaining(clock()) if new is not None else 0.0
        await _apply_address(netns, ifname, old, new, remaining)

    return callback


def routes_callback(
    ifname: str,
    *,
    netns: str | None = None,
    metric: int | None = None,
    table: int = MAIN_TABLE,
) -> LeaseCallback:
    """Manage the lease's routes (protocol dhcp) on `ifname`.

    Args:
        ifname: the interface.
        netns: as for `address_callback`.
        metric: the routes' priority; None: 1000 + the interface index (dhcpcd's convention),
            so that DHCP interfaces do not replace each other's routes.
        table: the routing table (main by default).

    Returns:
        A callback that replaces the new lease's routes (no flap) and deletes those of the old
        lease that the new one lacks. Failures of single routes are logged, not raised.
    """

    async def callback(old: Lease | None, new: Lease | None) -> None:
        await _apply_routes(netns, ifname, old, new, metric, table)

    return callback


def mtu_callback(ifname: str, *, netns: str | None = None) -> LeaseCallback:
    """Apply the lease's MTU (option 26) to `ifname`; restore the original MTU on loss.

    MTUs below 576 (`MIN_MTU`) or above 65535 are refused with a warning (a hostile
    server must not be able to make the link unusable). Failures are logged, not raised.
    """
    saved: list[int] = []  # the interface's MTU before we first changed it

    async def callback(old: Lease | None, new: Lease | None) -> None:
        mtu = new.mtu if new is not None else None
        if mtu is not None and not MIN_MTU <= mtu <= MAX_MTU:
            logger.warning("%s: refusing MTU %d from the server (below %d)", ifname, mtu, MIN_MTU)
            mtu = None
        if mtu is None and not saved:
            return
        await _set_mtu(netns, ifname, mtu, saved)

    return callback


def resolv_conf_callback(path: Path | str, *, ifname: str | None = None) -> LeaseCallback:
    """Write the lease's DNS configuration to `path` (resolv.conf format); remove it on loss.

    The file is replaced atomically; names are validated (`dhcp4c.protocol.dnsname`) and invalid
    ones
    dropped with a warning. Write failures are logged, not raised.
    """
    target = Path(path)

    async def callback(old: Lease | None, new: Lease | None) -> None:
        try:
            if new is None:
                await trio.to_thread.run_sync(target.unlink, True)
            else:
                text = resolvconf.render_lease(new, ifname=ifname)
                await trio.to_thread.run_sync(resolvconf.write, target, text)
        except OSError as error:
            logger.warning("cannot update %s: %s", target, error)

    return callback


def lease_file_callback(
    path: Path,
    *,
    ifname: str,
    hwaddr: bytes,
    client_id: bytes | None = None,
    owner: Callable[[], tuple[bytes, bytes | None]] | None = None,
    clock: Callable[[], float] = trio.current_time,
) -> LeaseCallback:
    """Save each new lease to `path` (see `dhcp4c.consumers.leasefile`); remove the file on loss.

    Args:
        path: the lease file.
        ifname, hwaddr, client_id: whom the lease belongs to (`leasefile.load` refuses a file
            written for another).
        owner: when given, called at each save for the current (hwaddr, client_id), instead of
            `hwaddr` and `client_id`: the interface's hardware address may change while the
            client runs (`dhcp4c.linux.linkwatch`), and a lease got after the change belongs to the
            new one.
        clock: the clock the lease's times are on (Trio's).

    Failures are logged, not raised: without the file the next start only costs a DISCOVER.
    """

    async def callback(old: Lease | None, new: Lease | None) -> None:
        try:
            if new is None:
                await trio.to_thread.run_sync(leasefile.remove, path)
            else:
                now = clock()
                mac, cid = owner() if owner is not None else (hwaddr, client_id)
                await trio.to_thread.run_sync(
                    lambda: leasefile.save(
                        path, new, ifname=ifname, hwaddr=mac, client_id=cid, now_trio=now
                    )
                )
        except OSError as error:
            logger.warning("cannot update the lease file %s: %s", path, error)

    return callback


def configure(
    ifname: str,
    *,
    netns: str | None = None,
    routes: bool = True,
    mtu: bool = True,
    resolv_conf: Path | str | None = None,
    route_metric: int | None = None,
    extra: Sequence[LeaseCallback] = (),
) -> LeaseCallback:
    """The full kernel configuration for one interface, as one callback.

    Args:
        ifname: the interface.
        netns: as for `address_callback`.
        routes: install the lease's routes.
        mtu: apply option 26.
        resolv_conf: a path for a resolv.conf-format file, or None for none.
        route_metric: see `routes_callback`.
        extra: further callbacks, run after the kernel's (e.g. `lease_file_callback`).

    Returns:
        A callback running address, MTU, routes, resolv.conf and `extra` in that order when a
        lease is bound, renewed or changed (routes need the address), and in the reverse order
        when it is lost.
    """
    steps: list[LeaseCallback] = [address_callback(ifname, netns=netns)]
    if mtu:
        steps.append(mtu_callback(ifname, netns=netns))
    if routes:
        steps.append(routes_callback(ifname, netns=netns, metric=route_metric))
    if resolv_conf is not None:
        steps.append(resolv_conf_callback(resolv_conf, ifname=ifname))
    steps.extend(extra)
    return _reversing(*steps)
