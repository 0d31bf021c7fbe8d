"""The Lease value: what a DHCPACK grants, made safe to use.

Owns the translation of an accepted DHCPACK into a `Lease`: the address with its prefix,
absolute timers and the configuration the embedding code applies (routes, DNS, MTU). Pure: times
come in as `obtained: float` on the caller's clock, randomness as an injected `random.Random`.

Invariants of every `Lease` built here:
- `obtained < t1 < t2 < expiry`, whatever the server sent (RFC 2131 §4.4.5 defaults, clamped).
- `routes` are sanitised as Monogon's `lease.go` does: gateways unicast and on-link; no routes to
  loopback, multicast, "this network" or reserved space, none shadowing the subnet route, no
  duplicates; option 121 overrides options 3 and 33 (RFC 3442); at most `MAX_ROUTES`.
- `routers`/`dns_servers` hold usable unicast addresses, without duplicates, from the first
  `MAX_SERVERS` sent. A malformed optional option counts as absent; the machine drops replies
  whose essential options (lease time, server identifier) are malformed.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING, TypeVar

from dhcp4c.protocol.message import MessageError
from dhcp4c.protocol.options import OptionCode, Options

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from dhcp4c.protocol.message import Message

__all__ = [
    "DEFAULT_T1_RATIO",
    "DEFAULT_T2_RATIO",
    "LEASE_TIME_CAP",
    "MAX_ROUTES",
    "MAX_SERVERS",
    "TIMER_FUZZ",
    "Lease",
    "Route",
    "classful_prefix",
    "compute_timers",
    "is_usable_address",
    "sanitise_routes",
]

#: RFC 2131 §4.4.5: T1 defaults to 0.5 of the lease, T2 to 0.875.
DEFAULT_T1_RATIO = 0.5
DEFAULT_T2_RATIO = 0.875
#: RFC 2131 §4.4.5 asks for "some random fuzz" on T1/T2; we spread the defaults by ±2 % of the
#: lease, which keeps T1 < T2 < lease for any lease time.
TIMER_FUZZ = 0.02
#: Leases longer than this (in particular the "infinite" 0xffffffff of RFC 2132 §9.2) are treated
#: as lasting this long (about 68 years): timers stay finite, JSON-safe and exact as floats, and an
#: infinite lease still never expires in practice.
LEASE_TIME_CAP = 0x7FFF_FFFF

#: The most routes a lease keeps, against hostile servers: a 64 KiB reply can carry thousands of
#: routes in option 121, which would make sanitising (and the routing table) a denial of service.
#: Real servers send a handful; the routes a server sends past this many are ignored.
MAX_ROUTES = 256
#: The most routers or DNS servers a lease keeps, for the same reason (resolvers use three).
MAX_SERVERS = 64

# Destinations no DHCP server may route us to: RFC 1122 "this network" (0/8), loopback, multicast
# and the reserved class E block. A route is refused when its destination lies entirely inside one
# of these; a wider route that merely covers one (0.0.0.0/0, 126.0.0.0/7) is fine, because the
# kernel's more specific local routes still win.
_FORBIDDEN_DESTINATIONS = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("224.0.0.0/4"),
    IPv4Network("240.0.0.0/4"),
)

_DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")

_T = TypeVar("_T")


@dataclass(frozen=True)
class Route:
    """One route of a lease.

    Attributes:
        destination: the destination network.
        gateway: the next hop, or None for an on-link route (RFC 3442 router 0.0.0.0).
    """

    destination: IPv4Network
    gateway: IPv4Address | None


def is_usable_address(address: IPv4Address) -> bool:
    """Tell whether `address` can be a host's unicast address or a next hop at all.

    Unspecified, "this network" (0/8), loopback, multicast, reserved (class E) and the limited
    broadcast address are not; RFC 3927 link-local addresses are (Monogon accepts them too).
    """
    return not any(address in block for block in _FORBIDDEN_DESTINATIONS)


def classful_prefix(address: IPv4Address) -> int:
    """Return the pre-CIDR (RFC 791 class) prefix length for `address`.

    Used when a server omits option 1 and for option 33, whose destinations are classful
    (RFC 2132 §5.8). Class D/E addresses get 32; callers refuse them anyway.
    """
    first = address.packed[0]
    if first < 128:
        return 8
    if first < 192:
        return 16
    if first < 224:
        return 24
    return 32


def _subnet(address: IPv4Address, mask: IPv4Address | None) -> IPv4Interface:
    """The interface address for `address` from option 1, or its classful subnet.

    A /0 is not trusted, and neither is a mask that is not contiguous ones then zeros (the codec's
    accessor rejects those, and callers pass None): Monogon falls back to the default mask the
    same way.
    """
    if mask is not None:
        interface = IPv4Interface(f"{address}/{mask}")
        if interface.network.prefixlen > 0:
            return interface
    return IPv4Interface((address, classful_prefix(address)))


def compute_timers(
    lease_time: int,
    renewal_time: int | None,
    rebinding_time: int | None,
    rng: random.Random,
) -> tuple[float, float, float]:
    """Turn the server's lease time, T1 and T2 into trusted relative timers.

    Args:
        lease_time: option 51, at least 1 (the caller validates that).
        renewal_time: option 58 (T1), or None.
        rebinding_time: option 59 (T2), or None.
        rng: the fuzz source for defaulted timers.

    Returns:
        (t1, t2, lease) in seconds relative to the time the request was sent, with
        0 < t1 < t2 < lease.

    A server value is used only when it is consistent (0 < T1 < T2 < lease); otherwise the
    RFC 2131 §4.4.5 default with fuzz replaces it, so a broken server cannot make us renew too
    late, or rebind before we renew.
    """
    assert lease_time >= 1
    lease = float(min(lease_time, LEASE_TIME_CAP))
    if rebinding_time is not None and 0 < rebinding_time < lease:
        t2 = float(rebinding_time)
    else:
        t2 = lease * (DEFAULT_T2_RATIO + rng.uniform(-TIMER_FUZZ, TIMER_FUZZ))
    if renewal_time is not None and 0 < renewal_time < t2:
        t1 = float(renewal_time)
    else:
        t1 = lease * (DEFAULT_T1_RATIO + rng.uniform(-TIMER_FUZZ, TIMER_FUZZ))
        if not t1 < t2:
            # T2 came from the server and is short: keep the default T1:T2 proportion.
            t1 = t2 * DEFAULT_T1_RATIO / DEFAULT_T2_RATIO
    assert 0 < t1 < t2 < lease
    return t1, t2, lease


def _gateway_reachable(gateway: IPv4Address, subnet: IPv4Network, kept: Iterable[Route]) -> bool:
    if gateway in subnet:
        # The network and broadcast addresses of the subnet are no next hop (RFC 3021 /31 and /32
        # subnets have neither).
        edges = (subnet.network_address, subnet.broadcast_address)
        return subnet.prefixlen > 30 or gateway not in edges
    return any(gateway in route.destination for route in kept)


def sanitise_routes(routes: Iterable[Route], address: IPv4Interface) -> tuple[Route, ...]:
    """Filter `routes` down to those that are safe to install, keeping their order.

    Args:
        routes: candidate routes in the server's order.
        address: the assigned address with its prefix.

    Returns:
        The routes that survive, following Monogon's `sanitizeRoutes`: a gateway must be a usable
        unicast address reachable on-link (in the assigned subnet, or in the destination of a route
        kept earlier); destinations inside loopback, multicast, 0/8 or class E are refused; a route
        equal to the subnet route would shadow the kernel's interface route and is refused; only the
        first route per destination is kept. Only the first `MAX_ROUTES` candidates are looked at.
    """
    subnet = address.network
    kept: list[Route] = []
    destinations: set[IPv4Network] = set()
    for route in itertools.islice(routes, MAX_ROUTES):
        if route.destination in destinations:
            continue
        gateway = route.gateway
        if gateway is not None:
            if not is_usable_address(gateway) or gateway == address.ip:
                continue
            if not _gateway_reachable(gateway, subnet, kept):
                continue
        destination = route.destination
        if any(destination.subnet_of(block) for block in _FORBIDDEN_DESTINATIONS):
            continue
        if destination == subnet:
            continue
        kept.append(route)
        destinations.add(destination)
    return tuple(kept)


def _candidate_routes(options: Options, address: IPv4Interface) -> tuple[Route, ...]:
    """The routes of a lease, before and after sanitising, per RFC 3442 and RFC 2132 §5.8."""
    classless = _lenient(lambda: options.classless_static_routes)
    if classless is not None:
        # RFC 3442 §"DHCP Client Behavior": with option 121 the client MUST ignore options 3 and 33.
        return sanitise_routes(
            (Route(dest, None if gw == IPv4Address(0) else gw) for dest, gw in classless), address
        )
    candidates: list[Route] = []
    for destination, router in (_lenient(lambda: options.static_routes) or ())[:MAX_ROUTES]:
        # RFC 2132 §5.8: 0.0.0.0 is an illegal destination; destinations are classful.
        if destination == IPv4Address(0):
            continue
        network = IPv4Network((destination, classful_prefix(destination)), strict=False)
        candidates.append(Route(network, router))
    kept = list(sanitise_routes(candidates, address))[: MAX_ROUTES - 1]
    # The default route goes via the first router that survives sanitising (Monogon takes the
    # first unicast one; we also skip routers that are not reachable on-link). Checked router by
    # router rather than by sanitising the list again for each: a hostile server's thousands of
    # unreachable routers must not cost thousands of passes.
    if all(route.destination != _DEFAULT_ROUTE for route in kept):
        for router in (_lenient(lambda: options.routers) or ())[:MAX_SERVERS]:
            if (
                is_usable_address(router)
                and router != address.ip
                and _gateway_reachable(router, address.network, kept)
            ):
                kept.append(Route(_DEFAULT_ROUTE, router))
                break
    return tuple(kept)


def _lenient(get: Callable[[], _T]) -> _T | None:
    """Read an optional option, treating a malformed value as absent (None)."""
    try:
        return get()
    except MessageError:
        return None


def _unique_usable(addresses: Iterable[IPv4Address]) -> tuple[IPv4Address, ...]:
    # Only the first MAX_SERVERS addresses are looked at: a 64 KiB reply holds thousands of them.
    candidates = itertools.islice(addresses, MAX_SERVERS)
    return tuple(dict.fromkeys(a for a in candidates if is_usable_address(a)))


# Options that describe the exchange rather than the configuration: a renewal that changes only
# these is a `LeaseRenewed`.
_VOLATILE_OPTIONS = frozenset(
    {
        OptionCode.IP_ADDRESS_LEASE_TIME,
        OptionCode.RENEWAL_TIME_VALUE,
        OptionCode.REBINDING_TIME_VALUE,
        OptionCode.DHCP_MESSAGE_TYPE,
        OptionCode.RAPID_COMMIT,
    }
)


@dataclass(frozen=True)
class Lease:
    """An accepted DHCP lease, with absolute times on the clock of whoever built it.

    The machine builds leases on its own clock; the shell hands them out on the Trio clock.

    Attributes:
        address: yiaddr with the prefix from option 1 (classful when absent or invalid).
        server_id: option 54 of the ACK: where RENEWING unicasts and RELEASE goes.
        obtained: when the REQUEST that won the lease was sent (RFC 2131 §4.4.1).
        t1, t2, expiry: absolute renewal, rebinding and expiry times; obtained < t1 < t2 < expiry.
        routers: usable routers of option 3, deduplicated (informational; see `routes`).
        dns_servers: usable servers of option 6, deduplicated.
        domain: option 15.
        search: option 119 (RFC 3397).
        mtu: option 26 when at least 68 (RFC 791's minimum), else None.
        routes: sanitised routes including the default route (see module docstring).
        options: the raw options of the ACK.
    """

    address: IPv4Interface
    server_id: IPv4Address
    obtained: float
    t1: float
    t2: float
    expiry: float
    routers: tuple[IPv4Address, ...]
    dns_servers: tuple[IPv4Address, ...]
    domain: str | None
    search: tuple[str, ...]
    mtu: int | None
    routes: tuple[Route, ...]
    options: Options

    def __post_init__(self) -> None:
        if not self.obtained < self.t1 < self.t2 < self.expiry:
            raise ValueError(
                f"lease times out of order: obtained={self.obtained} t1={self.t1} "
                f"t2={self.t2} expiry={self.expiry}"
            )

    def remaining(self, now: float) -> float:
        """Seconds of validity left at `now` (0 once expired)."""
        return max(0.0, self.expiry - now)

    def same_configuration(self, other: Lease) -> bool:
        """Tell whether `other` configures the host exactly like this lease.

        Timers are ignored: a renewal that only moves them is a `LeaseRenewed`, anything else a
        `LeaseChanged`.
        """

        def config(lease: Lease) -> tuple[object, ...]:
            raw = {k: v for k, v in lease.options.items() if k not in _VOLATILE_OPTIONS}
            return (
                lease.address,
                lease.server_id,
                lease.routers,
                lease.dns_servers,
                lease.domain,
                lease.search,
                lease.mtu,
                lease.routes,
                raw,
            )

        return config(self) == config(other)

    @classmethod
    def from_ack(cls, ack: Message, obtained: float, rng: random.Random) -> Lease:
        """Build the lease granted by `ack`.

        Args:
            ack: a validated DHCPACK (lease time ≥ 1 s, server identifier present).
            obtained: when the request it answers was sent.
            rng: fuzz for defaulted T1/T2.

        Raises:
            MessageError: when option 51 or 54 is absent or malformed (the machine validates
                replies first, so this only reaches callers that skip that).
        """
        options = ack.options
        lease_time = options.lease_time
        server_id = options.server_identifier
        if lease_time is None or lease_time < 1 or server_id is None:
            raise MessageError("DHCPACK without a usable lease time or server identifier")
        t1, t2, lease = compute_timers(
            lease_time,
            _lenient(lambda: options.renewal_time),
            _lenient(lambda: options.rebinding_time),
            rng,
        )
        address = _subnet(ack.yiaddr, _lenient(lambda: options.subnet_mask))
        mtu = _lenient(lambda: options.mtu)
        return cls(
            address=address,
            server_id=server_id,
            obtained=obtained,
            t1=obtained + t1,
            t2=obtained + t2,
            expiry=obtained + lease,
            routers=_unique_usable(_lenient(lambda: options.routers) or ()),
            dns_servers=_unique_usable(_lenient(lambda: options.dns_servers) or ()),
            domain=_lenient(lambda: options.domain_name),
            search=_lenient(lambda: options.domain_search) or (),
            mtu=mtu if mtu is not None and mtu >= 68 else None,
            routes=_candidate_routes(options, address),
            options=options,
        )


def offered_interface(message: Message) -> IPv4Interface:
    """The address `message` (an OFFER or ACK) assigns, with its prefix (see `Lease.address`)."""
    return _subnet(message.yiaddr, _lenient(lambda: message.options.subnet_mask))
