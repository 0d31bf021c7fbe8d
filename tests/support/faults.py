"""Hostile networks for tests: broken servers, rogue servers and a faulty wire, composed.

* `HOSTILE`: RFC-breaking servers, each a `ServerConfig` change made of `dhcp4c.testing.server`
  misbehaviours breaking a rule real servers have been seen to break (option 80 in an OFFER, no
  END, overload, RFC 3396 splits, T1 > T2 > lease, lease time 0 or 0xffffffff, a bad yiaddr, a
  server identifier changing between OFFER and ACK); `rogue_pair` and `nak_storm` build more.
* `Simulation`: the pure `Machine` and any number of `ServerCore`s on a simulated wire with
  `dhcp4c.testing.memory.Faults`, on explicit time: the Trio-free twin of `MemoryNetwork` +
  `serve_memory` + `Client`, for Hypothesis. `HostileNetwork` is the Trio counterpart, servers
  that die and come back while a `Client` runs.
* The invariants (`check_*`, all run by `Simulation.check`): well-formed lease events, no lease
  past its expiry, 0 < t1 < t2 < expiry, retransmissions within RFC 2131 §4.1 / §4.4.5, at most
  one accepted reply per request, bounded traffic. No clock or global randomness here; the
  simulation runs events in time order and calls `Machine.handle_timer` after every input.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from ipaddress import IPv4Address, IPv4Network

import trio

from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import (
    Ipv6OnlyPreferred,
    LeaseBound,
    LeaseChanged,
    LeaseDiscarded,
    LeaseLost,
    LeaseRenewed,
    Machine,
    MachineConfig,
    Send,
    State,
)
from dhcp4c.protocol.message import Message, MessageError, MessageType
from dhcp4c.protocol.options import OptionCode
from dhcp4c.testing.memory import Faults, MemoryNetwork, ServerEndpoint
from dhcp4c.testing.server import (
    INFINITE,
    Misbehaviour,
    Reply,
    ServerConfig,
    ServerCore,
    chain,
    lease_times,
    reencode,
    set_fields,
    set_options,
)
from dhcp4c.testing.server_net import serve_memory

__all__ = [
    "HOSTILE",
    "Hostile",
    "HostileNetwork",
    "InvariantViolation",
    "LeaseAction",
    "Sent",
    "ServedServer",
    "SimServer",
    "Simulation",
    "check_accepted",
    "check_events",
    "check_lease",
    "check_retransmissions",
    "check_traffic",
    "check_usable",
    "classify_send",
    "nak_storm",
    "rogue_pair",
    "split_every_option",
]

OFFER, ACK = MessageType.OFFER, MessageType.ACK
_BROADCAST = IPv4Address("255.255.255.255")

#: The machine's lease events (every `Action` but `Send`).
LeaseAction = (
    LeaseBound | LeaseRenewed | LeaseChanged | LeaseLost | LeaseDiscarded | Ipv6OnlyPreferred
)

# -- broken servers ------------------------------------------------------------------------------


def split_every_option(size: int = 1, *, on: Sequence[MessageType] | None = None) -> Misbehaviour:
    """Write every option of a reply as RFC 3396 instances of at most `size` bytes each.

    RFC 3396 §7 makes the client concatenate them; a server doing this for short values is
    legal if odd, and finds every parser that takes the first instance only.
    """

    def rewrite(request: Message, reply: Reply) -> Reply:
        if on is not None and reply.message_type not in on:
            return reply
        split = {code: size for code in reply.message.options}
        return reencode(split=split)(request, reply) or reply

    return rewrite


def _server_id_changes(other: IPv4Address) -> Misbehaviour:
    # The ACK names another server than the OFFER did (a load balancer, or a rogue that
    # answers the REQUEST meant for the real server).
    return set_options({OptionCode.SERVER_IDENTIFIER: other.packed}, on={ACK})


@dataclass(frozen=True)
class Hostile:
    """One RFC-breaking server behaviour.

    Attributes:
        name: a short identifier (test ids).
        rule: the rule it breaks, with its reference.
        misbehaviour: the reply rewriting that implements it.
        config: further `ServerConfig` changes it needs (lease time, rapid commit...).
    """

    name: str
    rule: str
    misbehaviour: Misbehaviour
    config: dict[str, object] = field(default_factory=dict)

    def server_config(self, base: ServerConfig | None = None) -> ServerConfig:
        """`base` (default `ServerConfig()`) turned into this broken server."""
        base = base or ServerConfig()
        misbehaviour = self.misbehaviour
        if base.misbehaviour is not None:
            misbehaviour = chain(base.misbehaviour, misbehaviour)
        return dataclass_replace(base, misbehaviour=misbehaviour, **self.config)  # type: ignore[arg-type]


_OTHER_SERVER = IPv4Address("192.0.2.2")

#: The RFC-breaking servers, by name. Each keeps the default pool, so tests can tell
#: what the client should have bound.
HOSTILE: dict[str, Hostile] = {
    hostile.name: hostile
    for hostile in (
        Hostile(
            "rapid-commit-offer",
            "RFC 4039 §4: option 80 belongs in a DISCOVER and its ACK, never in an OFFER",
            set_options({OptionCode.RAPID_COMMIT: b""}, on={OFFER}),
            {"rapid_commit": False},
        ),
        Hostile("no-end", "RFC 2131 §3: the options end with END (255)", reencode(end=False)),
        Hostile(
            "overload",
            "RFC 2131 §4.1 / RFC 2132 §9.3: options moved into file and sname (option 52)",
            reencode(
                file=(OptionCode.IP_ADDRESS_LEASE_TIME, OptionCode.SUBNET_MASK),
                sname=(OptionCode.ROUTER, OptionCode.DOMAIN_NAME_SERVER),
            ),
        ),
        Hostile(
            "rfc3396-split",
            "RFC 3396 §7: every option split into 1-byte instances to be concatenated",
            split_every_option(1),
        ),
        Hostile(
            "t1-after-t2-after-lease",
            "RFC 2131 §4.4.5: T1 < T2 < lease; this server sends T1 > T2 > lease",
            lease_times(lease=600, t1=900, t2=800),
        ),
        Hostile(
            "lease-zero",
            "RFC 2131 §1.1 / table 3: a lease of at least 1 s; this server sends 0",
            lease_times(lease=0),
        ),
        Hostile(
            "lease-infinite",
            "RFC 2132 §9.2: 0xffffffff is an infinite lease (legal, and a timer overflow trap)",
            lease_times(lease=INFINITE),
        ),
        Hostile(
            "yiaddr-zero",
            "RFC 2131 §4.3.1: yiaddr is the address assigned; this server assigns 0.0.0.0",
            set_fields(yiaddr=IPv4Address(0), on={OFFER, ACK}),
        ),
        Hostile(
            "yiaddr-broadcast",
            "RFC 2131 §4.3.1: this server assigns the limited broadcast address",
            set_fields(yiaddr=_BROADCAST, on={OFFER, ACK}),
        ),
        Hostile(
            "server-id-changes",
            "RFC 2131 §4.3.2: the ACK comes from the server the REQUEST selected",
            _server_id_changes(_OTHER_SERVER),
            {"rapid_commit": False},
        ),
    )
}


def nak_storm(core: ServerCore, on: bool = True) -> None:
    """Make `core` NAK every REQUEST in every client state (and never rapid-commit)."""
    core.force_nak = on


def rogue_pair(
    real: ServerConfig | None = None, *, delay: float = 0.5
) -> tuple[ServerConfig, ServerConfig]:
    """A real server that answers after `delay` s and a rogue that answers at once.

    The rogue hands out another subnet (198.51.100.0/24, RFC 5737) with a one-minute lease and
    no rapid commit, so a client that believed it can be told from one that did not.

    Returns:
        (real, rogue) configurations.
    """
    real = dataclass_replace(real or ServerConfig(), reply_delay=delay)
    rogue_net = IPv4Network("198.51.100.0/24")
    rogue = ServerConfig(
        server_id=IPv4Address("198.51.100.1"),
        network=rogue_net,
        pool_start=IPv4Address("198.51.100.10"),
        pool_end=IPv4Address("198.51.100.20"),
        routers=(IPv4Address("198.51.100.1"),),
        dns_servers=(IPv4Address("198.51.100.53"),),
        lease_time=60,
        rapid_commit=False,
        reply_delay=0.0,
    )
    return real, rogue


# -- the pure simulation -----------------------------------------------------------------------


@dataclass
class SimServer:
    """A server on the simulated wire.

    Attributes:
        core: the server.
        address: its endpoint address (unicast reaches it); default its server id. Opening it
            elsewhere leaves renewals unanswered while rebinding broadcasts are answered.
        reply_delay: seconds before each reply leaves (a slow server, or a rogue that is fast).
        alive: False: its endpoint is closed (a dead server, unlike `core.stop()` which only
            ignores).
    """

    core: ServerCore
    address: IPv4Address | None = None
    reply_delay: float = 0.0
    alive: bool = True

    def __post_init__(self) -> None:
        if self.address is None:
            self.address = self.core.config.server_id


@dataclass(frozen=True)
class Sent:
    """One datagram the client sent.

    Attributes:
        time: when.
        message: what.
        destination: None for broadcast.
        forced: sent in direct response to a test input (start, link up, decline, stop), not by
            the client's own timers or a reply: traffic bounds count only the others.
        lease: the lease the client held when it sent it (the one a renewal is for).
    """

    time: float
    message: Message
    destination: IPv4Address | None
    forced: bool = False
    lease: Lease | None = None


class Simulation:
    """A `Machine`, `ServerCore`s and a faulty wire between them, on an explicit clock.

    Args:
        machine: the client; not started (call `start`), or started already.
        servers: the servers (a `ServerCore` is wrapped in a `SimServer`).
        rng: the source of every fault decision.
        to_server, to_client: the faults of each direction (mutable at any time).
        now: the starting time.

    Every input method acts at `now`, then runs the machine's timer and delivers its actions, as
    the Trio shell's loop does. Time only moves through `advance`/`run_until` (events in order)
    and `suspend` (a jump that skips everything in between, as a host suspend does).

    Trade-off: replies go to the one client whatever their addressing (unicast to ciaddr or
    broadcast), which is what a client with both sockets open would see; socket-level effects
    (no socket open in BOUND) are the machine's `no-exchange` drop instead.
    """

    #: Events processed by one `run_until` before it concludes that the client loops.
    MAX_EVENTS = 200_000

    def __init__(
        self,
        machine: Machine,
        servers: Sequence[ServerCore | SimServer] = (),
        *,
        rng: random.Random | None = None,
        to_server: Faults | None = None,
        to_client: Faults | None = None,
        now: float = 0.0,
    ) -> None:
        self.machine = machine
        self.servers = [s if isinstance(s, SimServer) else SimServer(s) for s in servers]
        self.rng = rng if rng is not None else random.Random(0)
        self.to_server = to_server or Faults()
        self.to_client = to_client or Faults()
        self.now = now
        self.initial_lease = machine.lease
        self.carrier = machine.link_is_up
        self.sent: list[Sent] = []
        self.events: list[tuple[float, LeaseAction]] = []
        self.accepted: list[tuple[float, Message]] = []
        self.inputs: list[tuple[float, str]] = []
        self.suspends: list[tuple[float, float]] = []
        self.delivered = 0
        self.steps = 0
        self._queue: list[tuple[float, int, str, bytes, IPv4Address | None, SimServer | None]] = []
        self._seq = itertools.count()

    # -- inputs ---------------------------------------------------------------------------------

    def start(self) -> None:
        """`Machine.start` at `now`."""
        self._input(lambda: self.machine.start(self.now), "start")

    def stop(self) -> None:
        """`Machine.stop` at `now`."""
        self._input(lambda: self.machine.stop(self.now), "stop")

    def decline(self) -> None:
        """`Machine.decline` at `now`."""
        self._input(lambda: self.machine.decline(self.now), "decline")

    def link_down(self) -> None:
        """The carrier goes: nothing is sent or delivered, the machine is told."""
        self.carrier = False
        self._input(lambda: self.machine.link_down(self.now), "link_down")

    def link_up(self) -> None:
        """The carrier comes back and the machine is told."""
        self.carrier = True
        self._input(lambda: self.machine.link_up(self.now), "link_up")

    def inject(self, payload: bytes) -> None:
        """Deliver `payload` to the client now, from nowhere (garbage, a forged reply)."""
        self.inputs.append((self.now, "inject"))
        self._deliver_to_client(payload)

    def add_server(self, server: ServerCore | SimServer) -> SimServer:
        """Put another server on the wire."""
        sim = server if isinstance(server, SimServer) else SimServer(server)
        self.servers.append(sim)
        return sim

    def _input(self, call: Callable[[], None], name: str) -> None:
        self.inputs.append((self.now, name))
        call()
        self._flush(forced=True)
        self.machine.handle_timer(self.now)
        self._flush(forced=False)

    # -- time -----------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Run every datagram and timer due in the next `seconds`, in time order."""
        self.run_until(self.now + seconds)

    def run_until(self, until: float) -> None:
        """Run every datagram and timer due up to `until`, then stand at `until`.

        Raises:
            RuntimeError: more than `MAX_EVENTS` events (the client or a server loops).
        """
        for _ in range(self.MAX_EVENTS):
            deadline = self.machine.next_deadline()
            arrival = self._queue[0][0] if self._queue else None
            if (
                arrival is not None
                and arrival <= until
                and (deadline is None or arrival <= deadline)
            ):
                self.now = max(self.now, arrival)
                self._arrive(heapq.heappop(self._queue))
            elif deadline is not None and deadline <= until:
                self.now = max(self.now, deadline)
                self.steps += 1
                self.machine.handle_timer(self.now)
                self._flush(forced=False)
            else:
                self.now = max(self.now, until)
                return
        raise RuntimeError(f"more than {self.MAX_EVENTS} events before {until}: a loop?")

    def suspend(self, seconds: float) -> None:
        """Jump `seconds` ahead as a host suspend does: datagrams in flight are lost, and the
        machine sees the time only at the first timer call after the resume."""
        self._queue.clear()
        self.suspends.append((self.now, self.now + seconds))
        self.now += seconds
        self.machine.handle_timer(self.now)
        self._flush(forced=False)

    # -- the wire -------------------------------------------------------------------------------

    def _flush(self, *, forced: bool) -> None:
        for action in self.machine.pop_actions():
            if isinstance(action, Send):
                self.sent.append(
                    Sent(self.now, action.message, action.destination, forced, self.machine.lease)
                )
                if self.carrier:
                    self._to_servers(action.message.build(), action.destination)
            else:
                self.events.append((self.now, action))

    def _faulted(self, faults: Faults, payload: bytes) -> Iterator[tuple[float, bytes]]:
        # The same order of decisions as MemoryNetwork: mangle, loss, duplication, then per copy
        # delay + jitter and reordering.
        rng = self.rng
        lose, duplicate = rng.random(), rng.random()
        draws = [(rng.random(), rng.random()) for _ in range(2)]
        if faults.mangle is not None:
            mangled = faults.mangle(payload)
            if mangled is None:
                return
            payload = mangled
        if lose < faults.loss:
            return
        copies = 2 if duplicate < faults.duplicate else 1
        for reorder, jitter in draws[:copies]:
            delay = faults.delay + jitter * faults.jitter
            if reorder < faults.reorder:
                delay += faults.reorder_delay
            yield delay, payload

    def _schedule(
        self,
        at: float,
        kind: str,
        payload: bytes,
        destination: IPv4Address | None,
        server: SimServer | None,
    ) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), kind, payload, destination, server))

    def _to_servers(self, payload: bytes, destination: IPv4Address | None) -> None:
        for server in self.servers:
            if server.alive and (destination is None or destination == server.address):
                for delay, carried in self._faulted(self.to_server, payload):
                    self._schedule(self.now + delay, "server", carried, destination, server)

    def _arrive(
        self, item: tuple[float, int, str, bytes, IPv4Address | None, SimServer | None]
    ) -> None:
        _at, _seq, kind, payload, destination, server = item
        self.steps += 1
        if kind == "client":
            self._deliver_to_client(payload)
            return
        assert server is not None
        if not server.alive:
            return  # died while the datagram was in flight
        replies = server.core.handle_datagram(payload, self.now, broadcast=destination is None)
        for reply in replies:
            for delay, carried in self._faulted(self.to_client, reply.payload):
                self._schedule(self.now + server.reply_delay + delay, "client", carried, None, None)

    def check(
        self, config: MachineConfig | None = None, *, shortest_lease: float | None = None
    ) -> None:
        """Check every hostile-network invariant on what happened so far (see the `check_*`
        functions): lease events well-formed and agreeing with the machine, the held lease
        unexpired while running, a future deadline, retransmissions within RFC 2131 bounds
        (`config`'s schedule, the RFC's by default), one accepted reply per request, traffic
        bounded (`shortest_lease`: the shortest lease a server hands out, for the renewal share).

        Raises:
            InvariantViolation: at the first violation.
        """
        held = check_events(self.events, initial=self.initial_lease)
        machine = self.machine
        # A stopped machine keeps its lease silently: no shell runs it, and `start` reports it
        # lost if it expired meanwhile.
        if machine.state is not State.STOPPED:
            if held != machine.lease:
                raise InvariantViolation("the lease events disagree with the machine's lease")
            check_usable(held, self.now)
        deadline = machine.next_deadline()
        if deadline is not None and deadline <= self.now:
            raise InvariantViolation(f"deadline {deadline} not after now {self.now}")
        config = config or MachineConfig(hwaddr=b"\x02\x00\x00\x00\x00\x01")
        check_retransmissions(
            self.sent,
            initial=config.retransmit_initial,
            cap=config.retransmit_cap,
            jitter=config.retransmit_jitter,
            renew_minimum=config.renew_retransmit_min,
            suspends=self.suspends,
        )
        check_accepted(self.accepted)
        check_traffic(self.sent, self.inputs, shortest_lease=shortest_lease)

    def _deliver_to_client(self, payload: bytes) -> None:
        if not self.carrier:
            return
        self.delivered += 1
        dropped = self.machine.receive_datagram(payload, self.now)
        if dropped is None:
            try:
                self.accepted.append((self.now, Message.parse(payload)))
            except MessageError:  # pragma: no cover - receive_datagram parsed it already
                raise AssertionError("the machine accepted bytes the codec refuses") from None
        self._flush(forced=False)
        self.machine.handle_timer(self.now)
        self._flush(forced=False)


# -- invariants ----------------------------------------------------------------------------------


class InvariantViolation(AssertionError):
    """A client broke one of the hostile-network invariants (see the `check_*` functions)."""


def check_lease(lease: Lease) -> None:
    """`obtained < t1 < t2 < expiry` (RFC 2131 §4.4.5), whatever the server sent.

    Raises:
        InvariantViolation: otherwise.
    """
    if not lease.obtained < lease.t1 < lease.t2 < lease.expiry:
        raise InvariantViolation(f"timers out of order: {lease}")


def check_events(
    events: Sequence[tuple[float, LeaseAction]], *, initial: Lease | None = None
) -> Lease | None:
    """Check that a lease event sequence is well-formed and return the lease held after it.

    Well-formed: `LeaseBound` only when no lease is held; `LeaseRenewed`/`LeaseChanged` only when
    one is (and `LeaseChanged.old` is it); `LeaseLost` (or `LeaseDiscarded`) only for the lease
    held, so exactly once per lease; `Ipv6OnlyPreferred` only when none is held; every lease
    handed out has ordered timers and is unexpired when handed out.

    Args:
        events: (time, event) in order.
        initial: the lease held before the first event (a lease given to the machine).
    Raises:
        InvariantViolation: at the first event that breaks a rule.
    """
    held = initial
    for time, event in events:
        if isinstance(event, LeaseBound):
            if held is not None:
                raise InvariantViolation(f"bound at {time} while holding {held.address}")
            held = event.lease
        elif isinstance(event, LeaseRenewed):
            if held is None:
                raise InvariantViolation(f"renewed at {time} before any bound")
            held = event.lease
        elif isinstance(event, LeaseChanged):
            if held is None or event.old != held:
                raise InvariantViolation(f"changed at {time} from a lease not held")
            held = event.new
        elif isinstance(event, Ipv6OnlyPreferred):
            if held is not None:
                raise InvariantViolation(f"ipv6-only at {time} while holding {held.address}")
        else:
            if held is None or event.lease != held:
                raise InvariantViolation(f"lost at {time} a lease not held (twice?)")
            held = None
        if held is not None:
            check_lease(held)
            if time >= held.expiry:
                raise InvariantViolation(f"handed out at {time} a lease expired at {held.expiry}")
    return held


def check_usable(held: Lease | None, now: float) -> None:
    """A lease the client reports as held is unexpired at `now` (RFC 2131 §4.4.5).

    Raises:
        InvariantViolation: otherwise.
    """
    if held is not None and now >= held.expiry:
        raise InvariantViolation(f"{held.address} still reported at {now}, expired {held.expiry}")


def classify_send(sent: Sent) -> str:
    """Which exchange a client datagram belongs to: "discover", "request" (REQUESTING),
    "reboot" (INIT-REBOOT), "renew" (unicast, ciaddr), "rebind" (broadcast, ciaddr), or the
    lower-case message type name."""
    message = sent.message
    kind = message.message_type
    if kind is MessageType.DISCOVER:
        return "discover"
    if kind is MessageType.REQUEST:
        if message.ciaddr != IPv4Address(0):
            return "renew" if sent.destination is not None else "rebind"
        if message.options.server_identifier is not None:
            return "request"
        return "reboot"
    return "?" if kind is None else kind.name.lower()


def check_retransmissions(
    sent: Sequence[Sent],
    *,
    initial: float = 4.0,
    cap: float = 64.0,
    jitter: float = 1.0,
    renew_minimum: float = 60.0,
    slack: float = 1e-6,
    suspends: Sequence[tuple[float, float]] = (),
) -> int:
    """Check every retransmission against RFC 2131.

    * §4.1: DISCOVER, REQUESTING's and INIT-REBOOT's REQUEST: the k-th retransmission of one
      xid follows the previous one after `initial * 2**k` (at most `cap`) ± `jitter` seconds.
    * §4.4.5: renewals go out from T1 on and rebinding requests from T2 on, never at or after
      expiry; the next one waits half the time left to T2 (renewing) or to expiry (rebinding),
      at least `renew_minimum` seconds, or until that deadline when it is nearer.

    Args:
        sent: the client's datagrams in order, with the lease held at each (`Sent.lease`).
        initial, cap, jitter, renew_minimum: the schedule (RFC values by default).
        slack: floating-point tolerance.
        suspends: (start, end) of host suspends: an interval spanning one is late by design.
    Returns:
        How many intervals were checked.
    Raises:
        InvariantViolation: at the first interval out of bounds.
    """
    groups: dict[tuple[int, str], list[Sent]] = {}
    for item in sent:
        groups.setdefault((item.message.xid, classify_send(item)), []).append(item)
    checked = 0
    for (xid, kind), items in groups.items():
        pairs = list(itertools.pairwise(items))
        late = {
            k
            for k, (a, b) in enumerate(pairs)
            if any(a.time <= start < b.time for start, _end in suspends)
        }
        if kind in ("discover", "request", "reboot"):
            for k, (a, b) in enumerate(pairs):
                if k in late:
                    continue
                nominal = min(cap, initial * 2.0**k)
                spread = min(jitter, nominal / 2)
                gap = b.time - a.time
                if not nominal - spread - slack <= gap <= nominal + spread + slack:
                    raise InvariantViolation(
                        f"{kind} xid {xid:#x}: retransmission {k + 1} after {gap:.3f} s, "
                        f"not {nominal} ± {spread} s (RFC 2131 §4.1)"
                    )
                checked += 1
        elif kind in ("renew", "rebind"):
            for item in items:
                lease = item.lease
                if lease is None:
                    raise InvariantViolation(f"{kind} at {item.time} without a lease")
                start = lease.t1 if kind == "renew" else lease.t2
                if not start - slack <= item.time < lease.expiry:
                    raise InvariantViolation(
                        f"{kind} at {item.time} outside [{start}, {lease.expiry}) (RFC 2131 §4.4.5)"
                    )
            for k, (a, b) in enumerate(pairs):
                if k in late:
                    continue
                assert a.lease is not None
                deadline = a.lease.t2 if kind == "renew" else a.lease.expiry
                left = deadline - a.time
                gap = b.time - a.time
                lower, upper = min(renew_minimum, left), max(renew_minimum, left / 2)
                if not lower - slack <= gap <= upper + slack:
                    raise InvariantViolation(
                        f"{kind} xid {xid:#x}: next request after {gap:.3f} s, not within "
                        f"[{lower:.3f}, {upper:.3f}] (RFC 2131 §4.4.5)"
                    )
                checked += 1
    return checked


def check_accepted(accepted: Sequence[tuple[float, Message]]) -> None:
    """At most one accepted reply per request: per xid one OFFER and one ACK or NAK.

    The one exception is REBOOTING's held NAK (`reboot_nak_grace`): a NAK the machine took in
    and held may be followed, once, by the ACK or NAK of another server that decides instead.

    Raises:
        InvariantViolation: for a second accepted reply.
    """
    seen: dict[tuple[int, bool], Message] = {}
    superseded: set[tuple[int, bool]] = set()
    for time, message in accepted:
        key = (message.xid, message.message_type is MessageType.OFFER)
        first = seen.get(key)
        if first is not None:
            held = (
                key not in superseded
                and first.message_type is MessageType.NAK
                and first.options.server_identifier != message.options.server_identifier
            )
            if not held:
                raise InvariantViolation(f"a second {message.message_type!r} accepted at {time}")
            superseded.add(key)
        seen[key] = message


def check_traffic(
    sent: Sequence[Sent],
    inputs: Sequence[tuple[float, str]] = (),
    *,
    window: float = 3600.0,
    base: int = 100,
    per_input: int = 10,
    shortest_lease: float | None = None,
    per_lease: int = 6,
) -> int:
    """Bound the client's own traffic in every `window` (a NAK or decline storm, a dead server).

    In any window, the datagrams the client sent on its own (not `forced`) are at most
    `base + per_input * inputs + per_lease * window / shortest_lease`, where `inputs` counts the
    test inputs (start, link up, decline, injected replies) in that window and the one before
    it: each may legitimately restart a retransmission schedule. A client that answers a NAK by
    discovering at once, or that retransmits on every stray datagram, breaks it by orders of
    magnitude.

    Returns:
        The most datagrams seen in one window.
    Raises:
        InvariantViolation: for a window over budget.
    """
    times = sorted(item.time for item in sent if not item.forced)
    resets = sorted(t for t, name in inputs if name not in ("stop", "link_down"))
    per_renewal = 0.0 if shortest_lease is None else per_lease * window / shortest_lease
    worst = 0
    for index, start in enumerate(times):
        count = bisect.bisect_left(times, start + window) - index
        nearby = bisect.bisect_left(resets, start + window) - bisect.bisect_left(
            resets, start - window
        )
        budget = base + per_input * nearby + per_renewal
        worst = max(worst, count)
        if count > budget:
            raise InvariantViolation(
                f"{count} datagrams in {window} s from {start} (budget {budget:.0f}, "
                f"{nearby} test inputs nearby)"
            )
    return worst


# -- the Trio counterpart ----------------------------------------------------------------------


@dataclass
class ServedServer:
    """A `ServerCore` served on a `MemoryNetwork` endpoint by `serve_memory`."""

    core: ServerCore
    address: IPv4Address
    endpoint: ServerEndpoint | None = None

    @property
    def alive(self) -> bool:
        """Whether its endpoint is open."""
        return self.endpoint is not None and not self.endpoint.closed


class HostileNetwork:
    """Servers on a `MemoryNetwork` that can die and come back, for `Client` tests.

    Args:
        net: the network (its `to_server`/`to_client` faults apply).
        nursery: where the servers run.
    """

    def __init__(self, net: MemoryNetwork, nursery: trio.Nursery) -> None:
        self.net = net
        self.nursery = nursery
        self.servers: list[ServedServer] = []

    async def add(self, core: ServerCore, address: IPv4Address | None = None) -> ServedServer:
        """Serve `core` at `address` (default its server id) from now on."""
        served = ServedServer(core, address or core.config.server_id)
        self.servers.append(served)
        await self._serve(served)
        return served

    async def _serve(self, served: ServedServer) -> None:
        endpoint = self.net.server(served.address)
        served.endpoint = endpoint
        await self.nursery.start(serve_memory, served.core, endpoint)

    def kill(self, served: ServedServer) -> None:
        """The server dies: its endpoint closes, datagrams to it are lost, late replies too."""
        if served.endpoint is not None:
            served.endpoint.close()
            served.endpoint = None

    async def revive(
        self, served: ServedServer, config: ServerConfig | None = None, *, forget: bool = True
    ) -> None:
        """Bring a dead server back, with a new configuration (another pool) and, by default,
        without the bindings it had (a server that lost its state)."""
        if served.alive:
            raise RuntimeError("the server is alive")
        if config is not None or forget:
            served.core.reconfigure(config or served.core.config, forget=forget)
        await self._serve(served)
