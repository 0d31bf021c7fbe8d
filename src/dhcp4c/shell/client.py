"""The Trio shell of the DHCPv4 client: `Client`, a supervisor runnable around `Machine`.

This module owns the I/O of one client on one interface: it reads the interface's hardware
address and MTU, opens and closes the sockets each state needs, feeds datagrams and timers into
the sans-IO `dhcp4c.protocol.machine.Machine` and carries its actions out in order (sends, the
awaited
lease callback, lease events to observers, `Signal.HEALTHY` to the supervisor). Every protocol
decision is the machine's; this shell only knows addressing, time and failure.

One Trio loop per `run()`: wait for a datagram or the machine's next deadline, whichever comes
first; hand it to the machine; carry out what it says. Receiver tasks (one per open transport)
only move payloads into that loop's channel. The latest lease event is a trio-util `AsyncValue`
(`latest`, on which `wait_bound()` waits) and the carrier an `AsyncBool` (`carrier`).

Invariants:

- Sockets (RFC 2131 §4.1), as the state's `StateSpec.transport` says: a `BroadcastTransport`
  (AF_PACKET, from 0.0.0.0) while the client has no usable address (SELECTING, REQUESTING,
  REBOOTING); a `UnicastTransport` (a UDP socket on port 68 of the interface, sending from the
  leased address) in RENEWING and REBINDING (its broadcasts go out from ciaddr, §4.4.5); none in
  INIT, BOUND and INIT-REBOOT. A message with ciaddr goes out over the unicast transport, one
  without over the broadcast one (DECLINE, RELEASE are sent with a transport opened for them). A
  transport stays open for as long as its state lasts, across retransmissions, and every
  transport is closed when `run()` ends, however it ends: nothing leaks across restarts.
- Bad datagrams never raise: the machine's `receive_datagram` says why it dropped one, and the
  shell counts it under that `Drop` reason (`malformed-message`, `wrong-xid`, ...), frames the
  packet socket refuses under `frame-<reason>`; the first drop of each reason is logged.
- Lease events are the machine's, one to one (`dhcp4c.shell.observe.kind_of`): the shell never
  infers an event from a state or compares leases itself.
- The lease callback runs, and must succeed, before the client relies on a lease: before its
  event reaches the observers, before `wait_bound()` returns, before HEALTHY is signalled. An
  exception from it ends `run()` (a death for the supervisor). It is called with
  `(old, new)`: `old` the lease it last applied, `new` the lease now held (None when lost).
- The `Client` object outlives `run()`: after a crash (or a cancellation without release) the
  next `run()` starts from the lease it held, by INIT-REBOOT (RFC 2131 §3.2), so a supervisor
  restart does not drop the address.
- Time: the machine's clock is the Trio clock plus the time this host spent suspended. Trio's
  clock is CLOCK_MONOTONIC, which stops during suspend; CLOCK_BOOTTIME does not. At every
  wake-up (and at least every `suspend_check` seconds while a lease is held) the shell compares
  how far both clocks moved since the first run and moves the machine's clock forward by the
  difference, so a lease that expired during a suspend is lost at once on resume instead of
  being used for up to a lease time more (RFC 2131 §4.4.5: stop using the address at expiry).
  Leases leave the shell on the Trio clock (`Lease` times are Trio times): a lease is past its
  expiry when it is past it on either clock.

- Address conflict detection (RFC 5227, `dhcp4c.protocol.acd`, on unless `acd_timeout` is None):
  a lease the machine binds (`LeaseBound`, or `LeaseChanged` to another address) stays pending,
  not applied nor published nor HEALTHY, while its address is probed over an ARP socket opened
  for it. Free: the callback applies it, it is announced, observers hear of it. Taken: the
  machine declines it (DHCPDECLINE, the decline backoff) and nothing ever applied it. Once
  announced a second conflict within DEFEND_INTERVAL declines it with reason "conflict" (the
  callback removes it). One `Acd` per `Client`, so its conflict count survives restarts; the
  ARP socket is open exactly while conflict detection runs, and ARP drops count as `arp-<reason>`.

Trade-offs: the loop awaits the callback and sends inline, so a slow callback delays the
machine's timers (a lease is never relied on before the callback returns). The UDP socket listens
on the wildcard address of the interface rather than on the leased address (see
`default_transport`: NAKs are broadcast), so during a renewal it also sees other clients'
broadcast replies, which are dropped as `wrong-xid`. When the leased address is not configured on
the interface (no callback that configures it) the packet socket carries the renewal instead;
the server's unicast answer to ciaddr may then never arrive, and the lease ends at its expiry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import trio
from trio_util import AsyncBool, AsyncValue

from dhcp4c._exceptions import unwrap_group
from dhcp4c.linux.interface import read_ethernet
from dhcp4c.protocol.acd import (
    Acd,
    AcdAction,
    AcdConfig,
    AcdState,
    Available,
    Conflict,
    Defended,
    Phase,
    SendArp,
)
from dhcp4c.protocol.config import ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import (
    Action,
    InvalidTransition,
    Ipv6OnlyPreferred,
    LeaseBound,
    LeaseChanged,
    LeaseDiscarded,
    LeaseLost,
    LeaseRenewed,
    LossReason,
    Machine,
    Send,
    State,
)
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind, LeaseObservers, kind_of
from dhcp4c.shell.transport import ArpLink, BroadcastTransport, Transport, UnicastTransport

__all__ = [
    "ArpFactory",
    "Client",
    "ClientStats",
    "LeaseCallback",
    "TransportFactory",
    "default_arp_transport",
    "default_transport",
]

_log = logging.getLogger("dhcp4c.shell.client")

#: `async def callback(old, new)`: applies a lease change before the client relies on it.
LeaseCallback = Callable[[Lease | None, Lease | None], Awaitable[None]]
#: `factory(interface, address)`: a broadcast transport when `address` is None, else a unicast
#: one bound to `address`. Raises OSError when it cannot open it.
TransportFactory = Callable[[str, IPv4Address | None], Transport]
#: `factory(interface, hwaddr, address)`: the ARP link of conflict detection, watching `address`.
#: Raises OSError when it cannot open it.
ArpFactory = Callable[[str, bytes, IPv4Address], ArpLink]

_UNSPECIFIED = IPv4Address(0)
# Datagrams waiting for the loop; receivers wait (the socket buffer holds the rest) when full.
_QUEUE = 16
# Suspends shorter than this are not told from scheduling noise between the two clocks.
_SUSPEND_THRESHOLD = 1.0
# How long a stop may take to send DHCPRELEASE and run the callback once cancelled.
_STOP_TIMEOUT = 2.0
_DEFAULT_CONFIG = ClientConfig()


def default_transport(interface: str, address: IPv4Address | None) -> Transport:
    """The real transports: AF_PACKET for broadcast, a UDP socket on port 68 otherwise.

    The UDP socket is bound to the wildcard address on `interface` (SO_BINDTODEVICE), not to
    `address`: servers broadcast every DHCPNAK (RFC 2131 §4.1 "in all cases, when giaddr is
    zero, the server broadcasts any DHCPNAK"), and a socket bound to the leased address would
    never see a NAK of a renewal (dhclient listens on 0.0.0.0:68 for the same reason). The
    kernel still sends from the leased address, the interface's address towards the server.

    Raises:
        OSError: cannot open the socket; EADDRNOTAVAIL when `address` is not configured on
            this host (nothing configured the lease), so that the client falls back to the
            packet socket.
    """
    if address is None:
        return BroadcastTransport(interface)
    # Only a local address can be the source of a renewal: probe it without taking port 68.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((str(address), 0))
    return UnicastTransport(interface, _UNSPECIFIED)


def default_arp_transport(interface: str, hwaddr: bytes, address: IPv4Address) -> ArpLink:
    """The real ARP link: `dhcp4c.linux.arp.ArpTransport` (AF_PACKET on ETH_P_ARP, filtered).

    Raises:
        OSError: cannot open the socket.
    """
    from dhcp4c.linux.arp import ArpTransport

    return ArpTransport(interface, hwaddr, address)


class _ArpData:
    """An ARP packet in the loop's channel, told apart from DHCP datagrams."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _shift(lease: Lease | None, offset: float) -> Lease | None:
    if lease is None or offset == 0:
        return lease
    return dataclasses.replace(
        lease,
        obtained=lease.obtained + offset,
        t1=lease.t1 + offset,
        t2=lease.t2 + offset,
        expiry=lease.expiry + offset,
    )


@dataclass
class ClientStats:
    """Counters of one client over all its runs.

    Attributes:
        runs: how many times `run()` started.
        sent: messages sent, by message type name ("DISCOVER", ...).
        received: datagrams handed to the loop (before validation).
        drops: datagrams dropped, by reason: the machine's `Drop` reasons ("malformed-message"
            when the codec refused it, "wrong-xid", ...), "frame-<reason>" (the packet socket
            refused the frame).
        errors: I/O errors survived, by kind ("send", "receive", "unicast-open", "arp-open",
            "arp-send", "arp-receive").
        suspended: seconds of host suspend detected through CLOCK_BOOTTIME.
        acd: conflict detection outcomes: "conflict-probe" (an offered address was in use and
            declined), "conflict-bound" (a bound address given up), "defended"; ARP packets
            sent are counted in `sent` as "ARP-PROBE" and "ARP-ANNOUNCE", dropped ones in
            `drops` as "arp-<reason>" (`dhcp4c.protocol.acd.AcdDrop`).
    """

    runs: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    received: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    suspended: float = 0.0
    acd: Counter[str] = field(default_factory=Counter)


class _Open:
    """An open transport and the cancel scope of its receiver task."""

    __slots__ = ("scope", "transport")

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.scope = trio.CancelScope()


class Client:
    """A DHCPv4 client for one interface, run as `await client.run()` (a supervisor runnable).

    Args:
        interface: the interface name.
        config: what the user chooses (`dhcp4c.protocol.config.ClientConfig`, validated when
            made); the interface's identity is read from the interface at each run.
        callback: `async def callback(old, new)`, awaited before the client relies on a lease
            change (see `dhcp4c.consumers.netconfig`); its exceptions end `run()`.
        lease: a lease known from before (a lease file); the first run verifies it by
            INIT-REBOOT. Its times are on the Trio clock.
        transport_factory: opens transports (default: the real sockets, `default_transport`).
        arp_factory: opens the ARP link of conflict detection (`default_arp_transport` when
            `transport_factory` is not given). With a `transport_factory` and no `arp_factory`
            conflict detection is off: the probes must go over the link the DHCP traffic takes.
        rng: randomness for xids, jitter and backoff (default: a fresh `random.Random()`).
        boottime: a clock that keeps counting while the host is suspended; default
            CLOCK_BOOTTIME, or the Trio clock when that is a `MockClock` (tests).
        hwaddr: the hardware address to use instead of the interface's (tests, the command
            that read it already); default: read from the interface at each run.
        mtu: the MTU to use instead of the interface's (1500 with `hwaddr` and no `mtu`).

    Raises:
        ValueError: `hwaddr` is unusable (all zeros).

    The client keeps its lease, counters and observers across runs; one run at a time.
    """

    def __init__(
        self,
        interface: str,
        config: ClientConfig = _DEFAULT_CONFIG,
        *,
        callback: LeaseCallback | None = None,
        lease: Lease | None = None,
        transport_factory: TransportFactory | None = None,
        rng: random.Random | None = None,
        boottime: Callable[[], float] | None = None,
        hwaddr: bytes | None = None,
        mtu: int | None = None,
        arp_factory: ArpFactory | None = None,
    ) -> None:
        if hwaddr is not None:
            # Validate now, so that an unusable address is a clear error at start-up.
            config.for_interface(interface, hwaddr)
        self.interface = interface
        self._config = config
        self._hwaddr = hwaddr
        self._mtu = mtu
        self._callback = callback
        self._factory = transport_factory or default_transport
        self._rng = rng if rng is not None else random.Random()
        self._boottime = boottime
        self._suspend_check = config.suspend_check
        self._observers = LeaseObservers()
        self.stats = ClientStats()
        # The lease to resume from at the next run, on the machine's clock.
        self._held: Lease | None = lease
        # The lease the callback last applied (Trio clock); a lease given to the constructor was
        # applied by whoever saved it (the previous process).
        self._applied: Lease | None = lease
        self._last_hwaddr: bytes | None = None
        self._machine: Machine | None = None
        self._wake: trio.MemorySendChannel[bytes | _ArpData | None] | None = None
        self._commands: list[Callable[[float], None]] = []
        self._logged: set[str] = set()
        self._log = _log
        # Suspend detection: (trio time, boot time) at the first run, and the suspended total.
        self._reference: tuple[float, float] | None = None
        self._reference_clock: object = None
        self._skew = 0.0
        self._clock: Callable[[], float] = time.monotonic
        self._signalled = False
        self._transports: dict[IPv4Address | None, _Open] = {}
        # The carrier as last reported by `set_carrier` (linkwatch); a run starts with it.
        self._carrier = AsyncBool(True)
        # Conflict detection: the ARP link factory (None: off), the machine (made at the first
        # run, again when the hardware address changes), its open ARP link, and the lease held
        # back while its address is probed (the event kind it will be published as).
        if arp_factory is None and transport_factory is None:
            arp_factory = default_arp_transport
        self._arp_factory = arp_factory if config.acd_timeout is not None else None
        self._acd: Acd | None = None
        self._arp: _Open | None = None
        self._arp_link: ArpLink | None = None
        self._pending: tuple[LeaseEventKind, Lease] | None = None

    # -- observers ----------------------------------------------------------------------------

    @property
    def lease(self) -> Lease | None:
        """The lease the client holds and relies on (callback applied), or None."""
        return self._observers.lease

    @property
    def config(self) -> ClientConfig:
        """The configuration the client was made with."""
        return self._config

    @property
    def state(self) -> State:
        """The machine's state (STOPPED between runs)."""
        return State.STOPPED if self._machine is None else self._machine.state

    @property
    def drops(self) -> Mapping[str, int]:
        """Datagrams dropped so far, by reason (see `ClientStats.drops`)."""
        return self.stats.drops

    def subscribe(self) -> trio.MemoryReceiveChannel[LeaseEvent]:
        """Subscribe to lease events; the latest event comes first (see `dhcp4c.shell.observe`).

        A slow subscriber never stalls the client: it gets the latest event, with `missed`
        counting the ones it skipped.
        """
        return self._observers.subscribe()

    @property
    def latest(self) -> AsyncValue[LeaseEvent | None]:
        """The latest lease event (None before the first) as a trio-util `AsyncValue`.

        For waiting on a state, `await client.latest.wait_value(predicate)`, or for composing
        several clients' states (`trio_util.compose_values`). Only the client assigns it.
        """
        return self._observers.value

    async def wait_bound(self) -> Lease:
        """Wait until the client holds a lease and return it.

        Returns:
            The lease once its callback has applied it; at once (after a checkpoint) when one is
            held already. Built on `latest.wait_value`: the lease returned may have been renewed
            or lost again by the time the caller runs.
        """
        return await self._observers.wait_lease()

    # -- commands -----------------------------------------------------------------------------

    def decline(self) -> None:
        """Report that the bound address is in use by another host (RFC 2131 §3.1 step 5).

        The running loop sends DHCPDECLINE, loses the lease (callback, then a "lost" event with
        reason "declined") and waits at least `decline_wait` before discovering again.

        Raises:
            InvalidTransition: not running, or not BOUND/RENEWING/REBINDING.
        """
        if self._machine is None or not self._machine.spec.may_decline:
            raise InvalidTransition(f"decline in {self.state.name}")
        self._command(self._do_decline)

    def link_down(self) -> None:
        """Report that the link lost its carrier: no transmissions until `link_up()`."""
        self._command(lambda now: self._machine_or_fail().link_down(now))

    def link_up(self) -> None:
        """Report that the link has its carrier again: verify the lease, or discover now."""
        self._command(lambda now: self._machine_or_fail().link_up(now))

    def _machine_or_fail(self) -> Machine:
        assert self._machine is not None
        return self._machine

    def _do_decline(self, now: float) -> None:
        machine = self._machine_or_fail()
        if machine.spec.may_decline:
            machine.decline(now)

    def _command(self, command: Callable[[float], None]) -> None:
        if self._wake is None:
            raise InvalidTransition(f"{self.interface}: the client is not running")
        self._commands.append(command)
        # When the queue is full the loop has datagrams to read; it runs commands before each.
        with contextlib.suppress(trio.WouldBlock):
            self._wake.send_nowait(None)

    # -- link changes (for dhcp4c.linux.linkwatch)
    # --------------------------------------------------

    @property
    def hwaddr(self) -> bytes | None:
        """The hardware address in use: the configured one, else the last one read (or None)."""
        return self._hwaddr if self._hwaddr is not None else self._last_hwaddr

    @property
    def carrier(self) -> AsyncBool:
        """The carrier as last reported by `set_carrier` (True until then), an `AsyncBool` to
        wait on (`await client.carrier.wait_value(True)`); change it with `set_carrier` only."""
        return self._carrier

    def set_carrier(self, up: bool) -> None:
        """Report the link's carrier, whether the client is running or not.

        Remembered across runs: a run that starts while the carrier is down starts with the
        link down (nothing is sent until the carrier comes back). While running, the same as
        `link_up()` / `link_down()`.
        """
        self._carrier.value = up
        if self._wake is not None:
            (self.link_up if up else self.link_down)()

    async def forget(self, reason: LossReason, *, hwaddr: bytes | None = None) -> None:
        """Between runs, drop the lease as lost and optionally change the hardware address.

        Runs the callback with `(old, None)` and publishes a "lost" event with `reason` when a
        lease is held, so nothing relies on an address the next run will not verify. With
        `hwaddr`, the next run uses that address (a new client to the server: RFC 2131 §4.2
        keys bindings by client identifier or chaddr).

        Raises:
            RuntimeError: while running.
            Exception: whatever the lease callback raised.
        """
        if self._wake is not None:
            raise RuntimeError(f"{self.interface}: cannot forget the lease while running")
        if hwaddr is not None:
            self._hwaddr = hwaddr
        self._held = None
        await self._apply(LeaseEventKind.LOST if self.lease is not None else None, None, reason)

    # -- the runnable -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the client until cancelled (a supervisor runnable).

        Signals `Signal.HEALTHY` once a lease is bound when run under a supervisor. Returns
        only by cancellation, after sending DHCPRELEASE when `release_on_stop` is set. With
        `await nursery.start(client.run)`, returns to the caller once the start is carried out:
        the first DISCOVER or INIT-REBOOT REQUEST is sent (nothing while the carrier is down),
        so that the caller can do slower work while the server answers.

        Raises:
            OSError: the interface cannot be read or its broadcast socket opened.
            Exception: whatever the lease callback raised.
            RuntimeError: when already running.
        """
        if self._wake is not None:
            raise RuntimeError(f"{self.interface}: client already running")
        self._log = _node_logger() or _log
        machine = self._new_machine()
        self.stats.runs += 1
        self._signalled = False
        wake_send, wake_receive = trio.open_memory_channel[bytes | _ArpData | None](_QUEUE)
        self._wake = wake_send
        try:
            # The loop runs in the nursery's body, so Trio wraps its exception in a group:
            # callers (the command, a supervisor's log) deserve the callback's error itself.
            with unwrap_group():
                async with trio.open_nursery() as nursery:
                    try:
                        await self._loop(machine, nursery, wake_receive, task_status)
                    except trio.Cancelled:
                        with trio.CancelScope(shield=True) as scope:
                            scope.deadline = trio.current_time() + _STOP_TIMEOUT
                            await self._stop(machine, nursery)
                        raise
                    finally:
                        self._close_all(nursery, wait=False)
                        nursery.cancel_scope.cancel()
        finally:
            self._close_all(None, wait=True)
            self._stop_acd(None)
            self._pending = None
            self._held = machine.lease
            self._machine = None
            self._wake = None
            self._commands.clear()

    def _new_machine(self) -> Machine:
        if self._hwaddr is not None:
            hwaddr = self._hwaddr
            mtu = self._mtu if self._mtu is not None else 1500
        else:
            facts = read_ethernet(self.interface)
            hwaddr = facts.hwaddr
            mtu = self._mtu if self._mtu is not None else facts.mtu
        if self._last_hwaddr is not None and hwaddr != self._last_hwaddr:
            # A new hardware address is a new client to the server: its lease is not ours.
            self._log.info("%s: hardware address changed, forgetting the lease", self.interface)
            self._held = None
        self._last_hwaddr = hwaddr
        machine_config = self._config.for_interface(self.interface, hwaddr, mtu)
        self._new_acd(hwaddr)
        self._setup_clocks()
        machine = Machine(
            machine_config,
            rng=self._rng,
            lease=self._held,
            # After a restart the observers know the held lease; a lease file's they do not.
            announced=self.lease is not None,
            link_up=self._carrier.value,
        )
        self._machine = machine
        return machine

    def _new_acd(self, hwaddr: bytes) -> None:
        timeout = self._config.acd_timeout
        if self._arp_factory is None or timeout is None:
            return
        acd = self._acd
        if acd is not None and acd.config.hwaddr == hwaddr:
            return  # the same interface: keep the conflict count (RFC 5227 §2.1.1 rate limit)
        try:
            config = AcdConfig(hwaddr=hwaddr, probe_timeout=timeout)
        except ValueError as error:
            self._log.warning("%s: no conflict detection: %s", self.interface, error)
            self._acd = None
            return
        self._acd = Acd(config, rng=self._rng)

    def _setup_clocks(self) -> None:
        boottime = self._boottime
        if boottime is None:
            testing = sys.modules.get("trio.testing")  # imported by whoever made a MockClock
            if testing is not None and isinstance(trio.lowlevel.current_clock(), testing.MockClock):
                # A mock clock has no relation to the host's: there is no suspend to detect.
                boottime = trio.current_time
            else:

                def boottime() -> float:
                    return time.clock_gettime(time.CLOCK_BOOTTIME)

        self._clock = boottime
        clock = trio.lowlevel.current_clock()
        if self._reference is None or self._reference_clock is not clock:
            # The first run, or a run under another `trio.run` (another Trio clock).
            self._reference = (trio.current_time() + self._skew, boottime())
            self._reference_clock = clock

    def _now(self) -> float:
        """The machine's clock: the Trio clock plus the suspend time detected so far."""
        now = trio.current_time()
        assert self._reference is not None
        trio_start, boot_start = self._reference
        measured = (self._clock() - boot_start) - (now - trio_start)
        if measured - self._skew >= _SUSPEND_THRESHOLD:
            self._log.info(
                "%s: host was suspended for %.1f s; checking the lease",
                self.interface,
                measured - self._skew,
            )
            self._skew = measured
            self.stats.suspended = measured
        return now + self._skew

    def _trio_time_for(self, deadline: float) -> float:
        """The earliest Trio time at which the machine's clock has reached `deadline`.

        `deadline - skew` can round to a time whose `now + skew` is a hair short of `deadline`:
        the timer would fire, the machine would find it early and the loop would spin (forever
        on a mock clock, which then never advances).
        """
        wake = deadline - self._skew
        while wake + self._skew < deadline:
            wake = math.nextafter(wake, math.inf)
        return wake

    async def _loop(
        self,
        machine: Machine,
        nursery: trio.Nursery,
        datagrams: trio.MemoryReceiveChannel[bytes | _ArpData | None],
        task_status: trio.TaskStatus[None],
    ) -> None:
        machine.start(self._now())
        await self._carry_out(machine, nursery)
        task_status.started()
        while True:
            while self._commands:
                self._commands.pop(0)(self._now())
                await self._carry_out(machine, nursery)
            now = self._now()
            machine.handle_timer(now)
            if self._acd is not None:
                self._acd.handle_timer(now)
            await self._carry_out(machine, nursery)
            deadline = machine.next_deadline()
            acd_deadline = None if self._acd is None else self._acd.next_deadline()
            if acd_deadline is not None:
                deadline = acd_deadline if deadline is None else min(deadline, acd_deadline)
            wake = math.inf if deadline is None else self._trio_time_for(deadline)
            if machine.lease is not None:
                wake = min(wake, trio.current_time() + self._suspend_check)
            with trio.move_on_at(wake):
                data = await datagrams.receive()
                if data is not None:
                    self._receive(machine, data)
                    await self._carry_out(machine, nursery)

    def _receive(self, machine: Machine, data: bytes | _ArpData) -> None:
        if isinstance(data, _ArpData):
            acd = self._acd
            if acd is not None:
                arp_drop = acd.receive_bytes(data.data, self._now())
                if arp_drop is not None:
                    self._dropped(f"arp-{arp_drop.value}", f"{len(data.data)} bytes")
            return
        self.stats.received += 1
        drop = machine.receive_datagram(data, self._now())
        if drop is not None:
            self._dropped(drop.value, f"{len(data)} bytes")

    def _dropped(self, reason: str, detail: str) -> None:
        self.stats.drops[reason] += 1
        if reason not in self._logged:
            self._logged.add(reason)
            self._log.info(
                "%s: dropped a datagram (%s: %s); further drops for this reason are only counted",
                self.interface,
                reason,
                detail,
            )

    # -- carrying actions out -----------------------------------------------------------------

    async def _carry_out(self, machine: Machine, nursery: trio.Nursery) -> None:
        while True:
            for action in machine.pop_actions():
                await self._act(action, nursery)
            acd = self._acd
            if acd is None:
                break
            self._reconcile_acd(machine, nursery)
            if self._acd is None:
                # The ARP socket could not be opened: the held-back lease is used unprobed.
                pending, self._pending = self._pending, None
                if pending is not None:
                    await self._apply(pending[0], pending[1], None)
                break
            acd_actions = acd.pop_actions()
            if not acd_actions:
                break
            for acd_action in acd_actions:
                await self._act_acd(machine, acd_action)
        if machine.spec.uses_address and not self._signalled and self._pending is None:
            self._signalled = True
            _signal_healthy(self._log)
        self._reconcile(machine, nursery)

    async def _act(self, action: Action, nursery: trio.Nursery) -> None:
        if isinstance(action, Send):
            await self._send(action, nursery)
            return
        if self._acd is not None and self._hold(action):
            return
        if isinstance(action, LeaseDiscarded):
            # A lease file's lease, refused or expired: undo it, nobody was told of it.
            await self._apply(None, None, action.reason)
        elif isinstance(action, LeaseLost):
            await self._apply(kind_of(action), None, action.reason)
        elif isinstance(action, Ipv6OnlyPreferred):
            # No lease to apply (any held one was lost just before): only observers are told.
            self._observers.publish(kind_of(action), None, None, wait=action.wait)
            self._log.info("%s: IPv6-only preferred, quiet for %.0f s", self.interface, action.wait)
        else:
            held = action.new if isinstance(action, LeaseChanged) else action.lease
            await self._apply(kind_of(action), held, None)

    # -- conflict detection -------------------------------------------------------------------

    def _hold(self, action: Action) -> bool:
        """Keep a lease back while its address is probed; True when `action` is held back."""
        if isinstance(action, LeaseLost | LeaseDiscarded):
            self._pending = None  # nothing applied it: the callback undoes nothing new
            return False
        if isinstance(action, Ipv6OnlyPreferred):
            return False  # no address to probe: any lease was lost just before
        if isinstance(action, LeaseBound):
            self._pending = (LeaseEventKind.BOUND, action.lease)
            return True
        if isinstance(action, LeaseChanged):
            if self._pending is not None:
                self._pending = (self._pending[0], action.new)
                return True
            if action.new.address.ip != action.old.address.ip:
                self._pending = (LeaseEventKind.CHANGED, action.new)
                return True
            return False
        # LeaseRenewed: the address in use is not news; while one is pending, renew it there.
        assert isinstance(action, LeaseRenewed), action
        if self._pending is not None:
            self._pending = (self._pending[0], action.lease)
            return True
        return False

    def _reconcile_acd(self, machine: Machine, nursery: trio.Nursery) -> None:
        """Run conflict detection on the machine's address while it uses one, else stop it."""
        acd = self._acd
        assert acd is not None
        lease = machine.lease
        wanted = None
        if lease is not None and machine.spec.uses_address and machine.link_is_up:
            wanted = lease.address.ip
        running = acd.state not in (AcdState.IDLE, AcdState.CONFLICT)
        if running and acd.address == wanted:
            return
        if wanted is None:
            if running or self._arp is not None:
                self._stop_acd(nursery)
            return
        if acd.state is AcdState.CONFLICT and acd.address == wanted:
            return  # declined: the machine is leaving this lease
        if running:
            acd.stop(self._now())
        if not self._watch(wanted, nursery):
            # No ARP socket (an interface without ARP, no CAP_NET_RAW): use the lease unprobed.
            self._acd = None
            return
        acd.start(self._now(), wanted)

    def _watch(self, address: IPv4Address, nursery: trio.Nursery) -> bool:
        """Open the ARP link for `address`, or point the open one at it; False when it fails."""
        factory = self._arp_factory
        assert factory is not None and self._acd is not None
        try:
            if self._arp_link is not None:
                self._arp_link.watch(address)
                return True
            link = factory(self.interface, self._acd.config.hwaddr, address)
        except OSError as error:
            self.stats.errors["arp-open"] += 1
            self._log.warning(
                "%s: no conflict detection (cannot open the ARP socket: %s)", self.interface, error
            )
            self._stop_acd(nursery)
            return False
        self._arp_link = link
        opened = self._arp = _Open(link)  # type: ignore[arg-type]
        nursery.start_soon(self._arp_receiver, opened, link)
        return True

    def _stop_acd(self, nursery: trio.Nursery | None) -> None:
        acd = self._acd
        if acd is not None and acd.state is not AcdState.IDLE:
            acd.stop(self._now() if self._reference is not None else 0.0)
        opened, self._arp, self._arp_link = self._arp, None, None
        if opened is not None:
            self._close(opened, nursery)

    async def _arp_receiver(self, opened: _Open, link: ArpLink) -> None:
        with opened.scope:
            while True:
                try:
                    data = await link.receive()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return
                except OSError as error:
                    self.stats.errors["arp-receive"] += 1
                    self._log.warning("%s: ARP receive failed: %s", self.interface, error)
                    await trio.sleep(1.0)
                    continue
                wake = self._wake
                if wake is None:
                    return
                await wake.send(_ArpData(data))

    async def _act_acd(self, machine: Machine, action: AcdAction) -> None:
        acd = self._acd
        assert acd is not None
        if isinstance(action, SendArp):
            link = self._arp_link
            name = "ARP-PROBE" if action.packet.is_probe else "ARP-ANNOUNCE"
            if link is None:
                return
            try:
                await link.send(action.packet.build(), action.destination)
            except OSError as error:
                self.stats.errors["arp-send"] += 1
                self._log.warning("%s: cannot send %s: %s", self.interface, name, error)
                return
            self.stats.sent[name] += 1
        elif isinstance(action, Available):
            pending, self._pending = self._pending, None
            if pending is not None:
                kind, lease = pending
                await self._apply(kind, lease, None)
            if acd.state is AcdState.READY:
                acd.announce(self._now())
        elif isinstance(action, Defended):
            self.stats.acd["defended"] += 1
            self._log.warning(
                "%s: %s claims %s; defended it",
                self.interface,
                action.sender.hex(":"),
                action.address,
            )
        else:
            self._conflicted(machine, action)

    def _conflicted(self, machine: Machine, conflict: Conflict) -> None:
        applied = self._applied is not None and self._applied.address.ip == conflict.address
        self.stats.acd[f"conflict-{conflict.during.value}"] += 1
        if conflict.during is Phase.PROBE and not applied:
            self._log.warning(
                "%s: %s is in use by %s; declining it",
                self.interface,
                conflict.address,
                conflict.sender.hex(":"),
            )
        else:
            self._log.warning(
                "%s: %s is in use by %s; giving it up",
                self.interface,
                conflict.address,
                conflict.sender.hex(":"),
            )
        if machine.spec.may_decline:
            reason = LossReason.CONFLICT if applied else LossReason.DECLINED
            machine.decline(self._now(), reason=reason)

    async def _apply(
        self, kind: LeaseEventKind | None, held: Lease | None, reason: LossReason | None
    ) -> None:
        """Run the callback for the lease now held (machine clock), then publish `kind` (None:
        tell observers nothing)."""
        new = _shift(held, -self._skew)
        if self._callback is not None and not (new is None and self._applied is None):
            await self._callback(self._applied, new)
        self._applied = new
        old = self.lease
        if kind is None:
            if reason is not None:
                self._log.info("%s: dropped the known lease (%s)", self.interface, reason.value)
            return
        if new is None:
            assert kind is LeaseEventKind.LOST and reason is not None
            if old is None:
                return  # a stop cancelled the bound lease's callback: never published
            self._observers.publish(kind, None, old, reason.value)
            self._log.info("%s: lost %s (%s)", self.interface, old.address, reason.value)
            return
        self._observers.publish(kind, new, old)
        self._log.info(
            "%s: %s %s from %s for %.0f s",
            self.interface,
            kind.value,
            new.address,
            new.server_id,
            new.remaining(trio.current_time()),
        )

    async def _send(self, action: Send, nursery: trio.Nursery) -> None:
        message = action.message
        key = None if message.ciaddr == _UNSPECIFIED else message.ciaddr
        transport = self._open(key, nursery)
        kind = message.message_type
        name = kind.name if kind is not None else "?"
        try:
            await transport.send(message.build(), action.destination)
        except OSError as error:
            # The retransmission timer tries again; a dead interface is the supervisor's
            # (or the link watcher's) business, not a reason to die here.
            self.stats.errors["send"] += 1
            self._log.warning("%s: cannot send %s: %s", self.interface, name, error)
            return
        self.stats.sent[name] += 1

    def _open(self, key: IPv4Address | None, nursery: trio.Nursery) -> Transport:
        """The transport for `key` (None: broadcast), opened if needed."""
        if key in self._transports:
            return self._transports[key].transport
        if key is not None:
            try:
                transport = self._factory(self.interface, key)
            except OSError as error:
                # Typically EADDRNOTAVAIL: the address is not configured (no kernel callback).
                self.stats.errors["unicast-open"] += 1
                if "unicast-open" not in self._logged:
                    self._logged.add("unicast-open")
                    self._log.warning(
                        "%s: cannot bind to %s (%s); using the packet socket",
                        self.interface,
                        key,
                        error,
                    )
                return self._open(None, nursery)
        else:
            transport = self._factory(self.interface, None)
        opened = self._transports[key] = _Open(transport)
        nursery.start_soon(self._receiver, opened)
        return transport

    def _wanted(self, machine: Machine) -> tuple[bool, IPv4Address | None]:
        """Whether the state listens at all, and on which transport (None: broadcast)."""
        transport = machine.spec.transport
        if transport == "broadcast":
            return True, None
        if transport == "unicast":
            assert machine.lease is not None
            address = machine.lease.address.ip
            # When the unicast socket could not be bound, the packet socket stands in for it.
            return True, address if address in self._transports else None
        return False, None

    def _reconcile(self, machine: Machine, nursery: trio.Nursery) -> None:
        listen, wanted = self._wanted(machine)
        for key in [key for key in self._transports if not listen or key != wanted]:
            self._close(self._transports.pop(key), nursery)
        if listen and wanted not in self._transports:
            self._open(wanted, nursery)

    async def _receiver(self, opened: _Open) -> None:
        transport = opened.transport
        with opened.scope:
            while True:
                try:
                    data = await transport.receive()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return
                except OSError as error:
                    self.stats.errors["receive"] += 1
                    self._log.warning("%s: receive failed: %s", self.interface, error)
                    await trio.sleep(1.0)  # a persistent error must not spin the loop
                    continue
                wake = self._wake
                if wake is None:
                    return
                await wake.send(data)

    def _close(self, opened: _Open, nursery: trio.Nursery | None) -> None:
        opened.scope.cancel()
        transport = opened.transport
        frame_drops = getattr(transport, "drops", None)
        if isinstance(frame_drops, Counter):
            for reason, count in frame_drops.items():
                self.stats.drops[f"frame-{reason}"] += count
        aclose = getattr(transport, "aclose", None)
        if nursery is not None and aclose is not None:
            # Closing a packet socket waits for an RCU grace period (~10 ms): in a worker thread
            # (BroadcastTransport.aclose), not in the protocol loop.
            nursery.start_soon(aclose)
        else:
            transport.close()

    def _close_all(self, nursery: trio.Nursery | None, *, wait: bool) -> None:
        while self._transports:
            _key, opened = self._transports.popitem()
            self._close(opened, None if wait else nursery)

    async def _stop(self, machine: Machine, nursery: trio.Nursery) -> None:
        """Leave the protocol on cancellation: DHCPRELEASE and the callback if configured."""
        if machine.state is State.STOPPED:
            return
        # No more ARP: the address is released (or kept for the next run) from here on.
        self._stop_acd(nursery)
        machine.stop(self._now())
        for action in machine.pop_actions():
            await self._act(action, nursery)


def _node_logger() -> logging.Logger | None:
    """The calling runnable's logger when run under a supervisor, else None."""
    runtime = sys.modules.get("supervisor.runtime")
    if runtime is None:
        return None  # nothing imported the supervisor: we cannot be running under it
    try:
        logger: logging.Logger = runtime.logger()
    except RuntimeError:
        return None
    return logger


def _signal_healthy(log: logging.Logger) -> None:
    """Signal HEALTHY to the supervisor running us, if any."""
    runtime = sys.modules.get("supervisor.runtime")
    if runtime is None:
        return  # not imported, so not supervised; importing it here would cost ~80 ms
    try:
        runtime.dn()
    except RuntimeError:
        return  # not called from a supervised runnable
    from supervisor.states import Signal

    try:
        runtime.signal(Signal.HEALTHY)
    except RuntimeError as error:
        # An embedding runnable signalled already: its business, not a reason to die.
        log.debug("not signalling HEALTHY: %s", error)
