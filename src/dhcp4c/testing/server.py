"""An in-process DHCPv4 server: a sans-IO core for tests, the demo and the benchmarks.

Owns `ServerCore` (the server side of RFC 2131 §4.3 with the addressing rules of §4.1, Rapid
Commit per RFC 4039 §4.1, the client-identifier echo of RFC 6842), its `ServerConfig`, the
`Reply`s it produces (a logical `Message`, where it goes, the bytes on the wire) and the
misbehaviours (`ServerConfig.misbehaviour`) that rewrite, re-encode or drop replies to make it a
broken server. `dhcp4c.testing.server_net` holds the Trio shells that feed it.

Invariants: no clock or global randomness (`now` and an injected `random.Random`); every message
received and every reply is counted and logged, a message left unanswered is counted once in
`stats.dropped` by reason; at most one binding holds an address, and an active binding's address
is in the pool and not declined; bindings are keyed by option 61, else htype + chaddr (RFC 2132
§9.14). Deliberately, for a test server: replies to clients without ciaddr are broadcast, relayed
requests are answered by the UDP shell at giaddr:67 (the pool must be the relayed subnet), the
parameter request list is ignored (every option is sent).
"""

from __future__ import annotations

import enum
import math
import random
import struct
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from ipaddress import IPv4Address, IPv4Network

from dhcp4c.protocol.message import BOOTREPLY, BOOTREQUEST, Message, MessageError, MessageType
from dhcp4c.protocol.options import OptionCode

__all__ = [
    "DEFAULT_NETWORK",
    "DEFAULT_POOL",
    "DEFAULT_SERVER_ID",
    "INFINITE",
    "REQUESTS",
    "Binding",
    "BindingState",
    "Encoding",
    "Exchange",
    "Misbehaviour",
    "Reply",
    "ServerConfig",
    "ServerCore",
    "ServerStats",
    "chain",
    "classify",
    "client_key",
    "drop_options",
    "drop_replies",
    "encode",
    "lease_times",
    "reencode",
    "set_fields",
    "set_options",
    "u32",
    "when",
]

INFINITE = 0xFFFFFFFF
"""Lease time meaning 'infinite' (RFC 2131 §3.3)."""

_ZERO = IPv4Address(0)
_MAGIC_COOKIE = b"\x63\x82\x53\x63"
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # RFC 2131 §2, figure 1: 236 bytes


def u32(value: int) -> bytes:
    """Encode an unsigned 32-bit option value (lease time, T1, T2)."""
    return struct.pack("!I", value)


def _addresses(addresses: Iterable[IPv4Address]) -> bytes:
    return b"".join(address.packed for address in addresses)


def _domain_search(names: Iterable[str]) -> bytes:
    # RFC 3397 §2: RFC 1035 §3.1 labels; compression is allowed but never required.
    out = bytearray()
    for name in names:
        for label in name.rstrip(".").split("."):
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
        out += b"\x00"
    return bytes(out)


def _classless_routes(routes: Iterable[tuple[IPv4Network, IPv4Address]]) -> bytes:
    # RFC 3442 §3: width, the significant octets of the destination, then the router.
    out = bytearray()
    for destination, router in routes:
        width = destination.prefixlen
        out += bytes([width]) + destination.network_address.packed[: (width + 7) // 8]
        out += router.packed
    return bytes(out)


# --- configuration -----------------------------------------------------------------------------

DEFAULT_SERVER_ID = IPv4Address("192.0.2.1")
DEFAULT_NETWORK = IPv4Network("192.0.2.0/24")
DEFAULT_POOL = (IPv4Address("192.0.2.100"), IPv4Address("192.0.2.199"))


@dataclass(frozen=True)
class ServerConfig:
    """What the server hands out and how it behaves.

    The defaults describe a usable server on TEST-NET-1 (RFC 5737): server 192.0.2.1, pool
    192.0.2.100-192.0.2.199, one-hour leases, rapid commit on, authoritative.

    Attributes:
        server_id: option 54, also the source address of the UDP shell's replies.
        network: the subnet the pool lives in; INIT-REBOOT requests outside it are NAKed.
        pool_start, pool_end: inclusive pool range; default the whole usable network.
        subnet_mask: option 1; default `network.netmask` (set it to lie about the prefix).
        routers, dns_servers, domain_name, search, mtu, classless_routes: options 3, 6, 15, 119,
            26, 121; empty or None means not sent.
        lease_time: option 51 in seconds; `INFINITE` (0xffffffff) never expires. Any value is
            allowed, including 0, so that broken servers can be modelled.
        t1, t2: options 58 and 59, sent only when set; not checked against each other.
        rapid_commit: answer a DISCOVER carrying option 80 with an ACK (RFC 4039).
        authoritative: NAK requests for addresses that are not the client's (RFC 2131 §4.3.2);
            when False, requests the server has no record of are ignored instead.
        offer_time: how long an offered address is held for the client.
        decline_time: how long a declined address stays out of the pool.
        allocation: "sequential" (lowest free address) or "random" (from the core's rng).
        extra_options: further options added to every OFFER and ACK, last.
        misbehaviour: rewrites every reply (see `Misbehaviour`); None for a well-behaved server.
        reply_delay: seconds the Trio shells wait before sending each reply (a slow server, or a
            rogue one that answers first); the core ignores it.

    The dataclass is frozen: change a running server with `ServerCore.reconfigure`, which makes
    the moment of the change explicit in the test.
    """

    server_id: IPv4Address = DEFAULT_SERVER_ID
    network: IPv4Network = DEFAULT_NETWORK
    pool_start: IPv4Address | None = DEFAULT_POOL[0]
    pool_end: IPv4Address | None = DEFAULT_POOL[1]
    subnet_mask: IPv4Address | None = None
    routers: tuple[IPv4Address, ...] = (DEFAULT_SERVER_ID,)
    dns_servers: tuple[IPv4Address, ...] = (DEFAULT_SERVER_ID,)
    domain_name: str | None = None
    search: tuple[str, ...] = ()
    mtu: int | None = None
    classless_routes: tuple[tuple[IPv4Network, IPv4Address], ...] = ()
    lease_time: int = 3600
    t1: int | None = None
    t2: int | None = None
    rapid_commit: bool = True
    authoritative: bool = True
    offer_time: float = 60.0
    decline_time: float = 3600.0
    allocation: str = "sequential"
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    misbehaviour: Misbehaviour | None = None
    reply_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.allocation not in ("sequential", "random"):
            raise ValueError(f"allocation must be 'sequential' or 'random': {self.allocation!r}")
        if not 0 <= self.lease_time <= INFINITE:
            raise ValueError(f"lease_time out of range: {self.lease_time}")
        first, last = self.pool_range
        if first not in self.network or last not in self.network or first > last:
            raise ValueError(f"pool {first}-{last} is not a range inside {self.network}")

    @property
    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        """The inclusive (first, last) addresses of the pool."""
        first = self.pool_start
        last = self.pool_end
        if first is None:
            first = self.network.network_address + (1 if self.network.num_addresses > 2 else 0)
        if last is None:
            last = self.network.broadcast_address - (1 if self.network.num_addresses > 2 else 0)
        return first, last

    def pool(self) -> Iterator[IPv4Address]:
        """The addresses the server may hand out, in order (never the server's own)."""
        first, last = self.pool_range
        for value in range(int(first), int(last) + 1):
            address = IPv4Address(value)
            if address != self.server_id:
                yield address

    def in_pool(self, address: IPv4Address) -> bool:
        """Whether `address` may be handed out by this server."""
        first, last = self.pool_range
        return first <= address <= last and address != self.server_id


# --- replies and misbehaviours -----------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """How a reply is put on the wire when it must differ from the codec's canonical `build()`.

    Attributes:
        end: write the END option (a server that omits it breaks RFC 2131 §3 rules).
        split: option code -> chunk size; the option is written as several instances of at most
            that many bytes, which RFC 3396 §7 requires a client to concatenate.
        file, sname: option codes moved into the `file` / `sname` fields with option 52
            (RFC 2132 §9.3); each field gets its own END.
        append: raw (code, value) options written after the others, never validated (a
            3-byte server identifier, a duplicate option 53, a length past the end...).
        pad_to: minimum payload length (RFC 1542 §3.3 BOOTP minimum 300).
    """

    end: bool = True
    split: Mapping[int, int] = field(default_factory=dict)
    file: tuple[int, ...] = ()
    sname: tuple[int, ...] = ()
    append: tuple[tuple[int, bytes], ...] = ()
    pad_to: int = 300


def _encode_options(items: Iterable[tuple[int, bytes]], split: Mapping[int, int]) -> bytes:
    out = bytearray()
    for code, value in items:
        if code in (OptionCode.PAD, OptionCode.END):
            continue
        size = max(1, min(255, split.get(code, 255)))
        chunks = [value[i : i + size] for i in range(0, len(value), size)] or [b""]
        for chunk in chunks:
            out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


def encode(message: Message, encoding: Encoding | None = None) -> bytes:
    """Serialise `message` by hand, following `encoding` where it breaks the usual rules.

    Args:
        message: the reply; its options are written in their iteration order.
        encoding: how to deviate; None gives the plain RFC 2131 layout.

    Returns:
        The UDP payload.

    Raises:
        ValueError: the options moved to `file` / `sname` do not fit there.

    Independent of `Message.build` on purpose, so that a broken server's bytes do not depend on
    what the codec is willing to produce.
    """
    encoding = encoding or Encoding()
    moved = set(encoding.file) | set(encoding.sname)
    options = message.options

    def field_bytes(codes: tuple[int, ...], size: int, fallback: bytes, name: str) -> bytes:
        if not codes:
            return fallback
        raw = _encode_options(((c, options[c]) for c in codes if c in options), encoding.split)
        raw += bytes([OptionCode.END])
        if len(raw) > size:
            raise ValueError(f"options {codes} need {len(raw)} bytes, {name} has {size}")
        return raw.ljust(size, b"\x00")

    file = field_bytes(encoding.file, 128, message.file, "file")
    sname = field_bytes(encoding.sname, 64, message.sname, "sname")
    main: list[tuple[int, bytes]] = [(c, v) for c, v in options.items() if c not in moved]
    overload = (1 if encoding.file else 0) | (2 if encoding.sname else 0)
    if overload:
        main = [(c, v) for c, v in main if c != OptionCode.OPTION_OVERLOAD]
        main.insert(1, (OptionCode.OPTION_OVERLOAD, bytes([overload])))
    header = _HEADER.pack(
        message.op,
        message.htype,
        message.hlen,
        message.hops,
        message.xid,
        message.secs,
        message.flags,
        message.ciaddr.packed,
        message.yiaddr.packed,
        message.siaddr.packed,
        message.giaddr.packed,
        message.chaddr,
        sname,
        file,
    )
    payload = header + _MAGIC_COOKIE + _encode_options(main, encoding.split)
    for code, value in encoding.append:
        payload += bytes([code, len(value) & 0xFF]) + value
    if encoding.end:
        payload += bytes([OptionCode.END])
    return payload.ljust(encoding.pad_to, b"\x00")


@dataclass(frozen=True)
class Reply:
    """One reply of the server: the message it means, where it goes, and its bytes.

    Attributes:
        message: the logical reply (what stats and logs record).
        destination: unicast address (UDP port 68), or None for 255.255.255.255.
        encoding: a deliberate deviation from the codec's canonical encoding, or None.
        raw: bytes sent instead of any encoding (a misbehaviour that wants full control).
    """

    message: Message
    destination: IPv4Address | None
    encoding: Encoding | None = None
    raw: bytes | None = None

    @property
    def payload(self) -> bytes:
        """The UDP payload to send."""
        if self.raw is not None:
            return self.raw
        if self.encoding is not None:
            return encode(self.message, self.encoding)
        return self.message.build()

    @property
    def message_type(self) -> MessageType | None:
        """The DHCP message type of the logical reply."""
        return self.message.message_type


Misbehaviour = Callable[[Message, Reply], "Reply | None"]
"""Rewrites one reply: `(request, reply) -> new reply`, or None to send nothing.

Build one from the helpers below (`set_options`, `drop_options`, `set_fields`, `reencode`,
`drop_replies`, `when`, `chain`) or write any function of this shape.
"""

_Types = Collection[MessageType] | None


def _applies(reply: Reply, on: _Types) -> bool:
    return on is None or reply.message_type in on


def set_options(options: Mapping[int, bytes], *, on: _Types = None) -> Misbehaviour:
    """Add or replace options (e.g. `{OptionCode.RAPID_COMMIT: b""}` on OFFERs).

    Args:
        options: code -> raw value; an existing option keeps its position, a new one goes last.
        on: message types to rewrite; None for every reply.
    """

    def rewrite(request: Message, reply: Reply) -> Reply:
        if not _applies(reply, on):
            return reply
        merged = dict(reply.message.options)
        merged.update(options)
        return dataclass_replace(reply, message=reply.message.replace(options=merged))

    return rewrite


def drop_options(*codes: int, on: _Types = None) -> Misbehaviour:
    """Remove options from replies (e.g. no server identifier, no lease time)."""

    def rewrite(request: Message, reply: Reply) -> Reply:
        if not _applies(reply, on):
            return reply
        kept = {c: v for c, v in reply.message.options.items() if c not in codes}
        return dataclass_replace(reply, message=reply.message.replace(options=kept))

    return rewrite


def lease_times(
    *, lease: int | None = None, t1: int | None = None, t2: int | None = None, on: _Types = None
) -> Misbehaviour:
    """Send these options 51, 58, 59 whatever the binding says (e.g. T1 > T2 > lease, lease 0)."""
    values: dict[int, bytes] = {
        code: u32(value)
        for code, value in (
            (OptionCode.IP_ADDRESS_LEASE_TIME, lease),
            (OptionCode.RENEWAL_TIME_VALUE, t1),
            (OptionCode.REBINDING_TIME_VALUE, t2),
        )
        if value is not None
    }
    return set_options(values, on=on)


def set_fields(*, on: _Types = None, **fields: object) -> Misbehaviour:
    """Overwrite fixed header fields (e.g. `yiaddr=IPv4Address("255.255.255.255")`, `xid=...`)."""

    def rewrite(request: Message, reply: Reply) -> Reply:
        if not _applies(reply, on):
            return reply
        return dataclass_replace(reply, message=reply.message.replace(**fields))

    return rewrite


def reencode(
    *,
    end: bool = True,
    split: Mapping[int, int] | None = None,
    file: Iterable[int] = (),
    sname: Iterable[int] = (),
    append: Iterable[tuple[int, bytes]] = (),
    on: _Types = None,
) -> Misbehaviour:
    """Put replies on the wire with `encode` and this `Encoding` (no END, RFC 3396, overload)."""
    encoding = Encoding(
        end=end,
        split=dict(split or {}),
        file=tuple(file),
        sname=tuple(sname),
        append=tuple(append),
    )

    def rewrite(request: Message, reply: Reply) -> Reply:
        if not _applies(reply, on):
            return reply
        return dataclass_replace(reply, encoding=encoding)

    return rewrite


def drop_replies(*, on: _Types = None) -> Misbehaviour:
    """Never send these replies (e.g. a server that OFFERs but never ACKs)."""

    def rewrite(request: Message, reply: Reply) -> Reply | None:
        return None if _applies(reply, on) else reply

    return rewrite


def when(predicate: Callable[[Message, Reply], bool], misbehaviour: Misbehaviour) -> Misbehaviour:
    """Apply `misbehaviour` only to replies for which `predicate(request, reply)` holds."""

    def rewrite(request: Message, reply: Reply) -> Reply | None:
        return misbehaviour(request, reply) if predicate(request, reply) else reply

    return rewrite


def chain(*misbehaviours: Misbehaviour) -> Misbehaviour:
    """Apply several misbehaviours in order; a dropped reply stays dropped."""

    def rewrite(request: Message, reply: Reply) -> Reply | None:
        current: Reply | None = reply
        for misbehaviour in misbehaviours:
            if current is None:
                return None
            current = misbehaviour(request, current)
        return current

    return rewrite


# --- bindings, stats ---------------------------------------------------------------------------


class BindingState(enum.Enum):
    """Where a binding stands."""

    OFFERED = "offered"
    BOUND = "bound"


@dataclass(frozen=True)
class Binding:
    """An address held for a client until `expiry` (absolute, `math.inf` for infinite)."""

    client: bytes
    address: IPv4Address
    state: BindingState
    expiry: float

    def active(self, now: float) -> bool:
        """Whether the address is still reserved for the client at `now`."""
        return now < self.expiry


class Exchange(enum.Enum):
    """What a received message is, as far as the server can tell (RFC 2131 §4.3)."""

    DISCOVER = "discover"
    SELECTING = "selecting"  # REQUEST with a server identifier
    INIT_REBOOT = "init-reboot"  # REQUEST with a requested address and no ciaddr
    RENEWING = "renewing"  # REQUEST with ciaddr, unicast
    REBINDING = "rebinding"  # REQUEST with ciaddr, broadcast
    DECLINE = "decline"
    RELEASE = "release"
    INFORM = "inform"
    OTHER = "other"


REQUESTS = frozenset(
    {Exchange.SELECTING, Exchange.INIT_REBOOT, Exchange.RENEWING, Exchange.REBINDING}
)


def classify(message: Message, *, broadcast: bool = True) -> Exchange:
    """Tell which client state a message comes from (RFC 2131 §4.3.2 and table 4).

    Args:
        message: a BOOTREQUEST.
        broadcast: whether it was sent to the broadcast address; it only tells RENEWING (unicast)
            from REBINDING (broadcast).
    """
    kind = message.message_type
    if kind == MessageType.REQUEST:
        if message.options.server_identifier is not None:
            return Exchange.SELECTING
        if message.ciaddr == _ZERO:
            return Exchange.INIT_REBOOT
        return Exchange.REBINDING if broadcast else Exchange.RENEWING
    simple = {
        MessageType.DISCOVER: Exchange.DISCOVER,
        MessageType.DECLINE: Exchange.DECLINE,
        MessageType.RELEASE: Exchange.RELEASE,
        MessageType.INFORM: Exchange.INFORM,
    }
    return simple.get(kind, Exchange.OTHER) if kind is not None else Exchange.OTHER


def client_key(message: Message) -> bytes:
    """The binding key: option 61, else htype + chaddr (RFC 2132 §9.14's suggested form)."""
    identifier = message.options.get(OptionCode.CLIENT_IDENTIFIER)
    if identifier:
        return identifier
    return bytes([message.htype]) + message.chaddr[: min(message.hlen, 16)]


@dataclass
class ServerStats:
    """What the server saw and did, for tests that assert exact traffic.

    Attributes:
        received: count per message type of every message received while online.
        exchanges: count per `Exchange` of the same messages (tells renewals from rebinds).
        sent: count per message type of every reply sent (after misbehaviour).
        dropped: count per reason of messages not answered (or not even parsed).
        naks: count per reason of the NAKs decided (before misbehaviour).
        log: (now, message) of every message received while online, in order.
        sent_log: (now, message) of every reply sent, in order.
    """

    received: Counter[MessageType] = field(default_factory=Counter)
    exchanges: Counter[Exchange] = field(default_factory=Counter)
    sent: Counter[MessageType] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    naks: Counter[str] = field(default_factory=Counter)
    log: list[tuple[float, Message]] = field(default_factory=list)
    sent_log: list[tuple[float, Message]] = field(default_factory=list)

    def reset(self) -> None:
        """Forget everything counted so far."""
        self.received.clear()
        self.exchanges.clear()
        self.sent.clear()
        self.dropped.clear()
        self.naks.clear()
        self.log.clear()
        self.sent_log.clear()


# --- the core ----------------------------------------------------------------------------------


class ServerCore:
    """The sans-IO DHCPv4 server: messages and `now` in, replies out.

    Control for tests: `stop()`/`start()` (an offline server ignores everything, uncounted),
    `reconfigure()` / `set_pool()` (new pool, times or misbehaviour; optionally forgetting every
    binding, as a server that died and came back), `force_nak` / `nak` (NAK requests: a NAK
    storm), `silent` (ignore some exchanges, e.g. renewals, to drive a client into REBINDING),
    `drop_next(n)`. Observation: `stats`, `bindings`, `binding_for()`, `declined()`.

    Answers:
    - DISCOVER: OFFER an address (the client's previous one, else the requested one, else the
      first free one), reserved for `offer_time`; with rapid commit on both sides, ACK at once.
    - REQUEST in SELECTING (server identifier present): ACK when the identifier is ours and the
      address available to this client, NAK when not; naming another server withdraws our offer
      silently (RFC 2131 §4.3.2).
    - REQUEST in INIT-REBOOT (requested address, no ciaddr): ACK when the address is this
      client's, or free and the client unknown (as dnsmasq does, so a server restarted without
      its leases keeps its clients); otherwise NAK when authoritative, silence when not.
    - REQUEST in RENEWING/REBINDING (ciaddr): ACK extending the binding; NAK for an unknown
      binding when authoritative, else silence.
    - DECLINE takes the address out of the pool for `decline_time`; RELEASE ends the binding;
      INFORM gets an ACK without a lease time (§3.4.4).
    """

    def __init__(self, config: ServerConfig | None = None, rng: random.Random | None = None):
        """Create a server with no bindings.

        Args:
            config: what to serve; the defaults of `ServerConfig` when None.
            rng: randomness for `allocation="random"`; a fixed seed when None, so that runs
                repeat.
        """
        self.config = config or ServerConfig()
        self.rng = rng or random.Random(0)
        self.stats = ServerStats()
        self.online = True
        self.silent: set[Exchange] = set()
        self.nak: set[Exchange] = set()
        self._drop_next = 0
        self._bindings: dict[bytes, Binding] = {}
        self._holders: dict[IPv4Address, bytes] = {}  # address -> client key: one per address
        self._declined: dict[IPv4Address, float] = {}

    # -- control --

    def stop(self) -> None:
        """Go offline: received messages are ignored (and counted only as dropped 'offline')."""
        self.online = False

    def start(self) -> None:
        """Come back online with the bindings kept (`reconfigure(forget=True)` loses them)."""
        self.online = True

    def reconfigure(self, config: ServerConfig, *, forget: bool = False) -> None:
        """Serve with a new configuration from now on.

        Args:
            config: the new configuration.
            forget: drop every binding and declined address, as a server that lost its state.
                Otherwise bindings whose address left the pool are dropped and the rest kept.
        """
        self.config = config
        if forget:
            self._bindings.clear()
            self._holders.clear()
            self._declined.clear()
            return
        for key, binding in list(self._bindings.items()):
            if not config.in_pool(binding.address):
                self._forget(key)

    def set_pool(self, start: IPv4Address, end: IPv4Address, *, forget: bool = False) -> None:
        """Hand out `start`..`end` (inclusive) from now on; see `reconfigure`."""
        self.reconfigure(
            dataclass_replace(self.config, pool_start=start, pool_end=end), forget=forget
        )

    @property
    def force_nak(self) -> bool:
        """Whether every REQUEST, in any client state, is answered with a NAK."""
        return self.nak >= REQUESTS

    @force_nak.setter
    def force_nak(self, value: bool) -> None:
        self.nak = set(REQUESTS) if value else set()

    def drop_next(self, count: int) -> None:
        """Leave the next `count` received messages unanswered (they are still logged)."""
        self._drop_next += count

    @property
    def bindings(self) -> Mapping[bytes, Binding]:
        """Every binding by client key, expired ones included (the client's last address)."""
        return dict(self._bindings)

    def binding_for(self, address: IPv4Address) -> Binding | None:
        """The binding holding `address`, if any (expired or not)."""
        key = self._holders.get(address)
        return None if key is None else self._bindings[key]

    def declined(self, now: float) -> frozenset[IPv4Address]:
        """The addresses out of the pool at `now` because a client declined them."""
        return frozenset(a for a, until in self._declined.items() if now < until)

    # -- input --

    def handle_datagram(self, data: bytes, now: float, *, broadcast: bool = True) -> list[Reply]:
        """Handle one UDP payload received on port 67.

        Args:
            data: the payload.
            now: the current time (Trio clock in the shells).
            broadcast: whether it was addressed to a broadcast address.

        Returns:
            The replies to send; malformed payloads are counted in `stats.dropped['malformed']`.
        """
        if not self.online:
            self.stats.dropped["offline"] += 1
            return []
        try:
            message = Message.parse(data)
        except MessageError:
            self.stats.dropped["malformed"] += 1
            return []
        return self.respond(message, now, broadcast=broadcast)

    def handle(self, message: Message, now: float, *, broadcast: bool = True) -> list[Message]:
        """Handle one message; return the reply messages (see `respond` for their addressing)."""
        return [reply.message for reply in self.respond(message, now, broadcast=broadcast)]

    def respond(self, message: Message, now: float, *, broadcast: bool = True) -> list[Reply]:
        """Handle one message and return the replies, addressed and after misbehaviour.

        Args:
            message: a received message.
            now: the current time.
            broadcast: whether the message was sent to a broadcast address (RENEWING or
                REBINDING for a REQUEST with ciaddr).

        Returns:
            Zero or one reply (a list, so that shells need not special-case silence).

        Protocol errors in the message are never raised: they are counted in `stats.dropped`.
        """
        if not self.online:
            self.stats.dropped["offline"] += 1
            return []
        exchange = classify(message, broadcast=broadcast)
        kind = message.message_type
        self.stats.log.append((now, message))
        if kind is not None:
            self.stats.received[kind] += 1
        self.stats.exchanges[exchange] += 1
        try:
            reply = self._decide(message, exchange, now)
        except MessageError:
            # An option the client sent is malformed (e.g. a 3-byte requested address).
            self.stats.dropped["malformed option"] += 1
            return []
        if reply is None:
            return []
        if self.config.misbehaviour is not None:
            rewritten = self.config.misbehaviour(message, reply)
            if rewritten is None:
                self.stats.dropped["misbehaviour"] += 1
                return []
            reply = rewritten
        sent_type = reply.message_type
        if sent_type is not None:
            self.stats.sent[sent_type] += 1
        self.stats.sent_log.append((now, reply.message))
        return [reply]

    # -- decisions --

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1

    def _decide(self, message: Message, exchange: Exchange, now: float) -> Reply | None:
        if message.op != BOOTREQUEST:
            self._drop("not a request")
            return None
        if self._drop_next > 0:
            self._drop_next -= 1
            self._drop("drop_next")
            return None
        if exchange in self.silent:
            self._drop(f"silent {exchange.value}")
            return None
        if exchange in self.nak:
            return self._nak(message, "forced NAK")
        handlers: dict[Exchange, Callable[[Message, float], Reply | None]] = {
            Exchange.DISCOVER: self._discover,
            Exchange.SELECTING: self._selecting,
            Exchange.INIT_REBOOT: self._init_reboot,
            Exchange.RENEWING: self._renewing,
            Exchange.REBINDING: self._renewing,
            Exchange.DECLINE: self._decline,
            Exchange.RELEASE: self._release,
            Exchange.INFORM: self._inform,
        }
        handler = handlers.get(exchange)
        if handler is None:
            self._drop("unexpected message type")
            return None
        return handler(message, now)

    def _discover(self, message: Message, now: float) -> Reply | None:
        key = client_key(message)
        address = self._allocate(key, message.options.requested_address, now)
        if address is None:
            self._drop("pool exhausted")
            return None
        # RFC 4039 §4.1: commit the binding and ACK, with option 80 in the ACK; not when the
        # server is set to NAK the REQUEST that rapid commit stands for (a NAK storm).
        if (
            self.config.rapid_commit
            and message.options.rapid_commit
            and Exchange.SELECTING not in self.nak
        ):
            self._bind(key, address, now)
            return self._ack(message, address, rapid_commit=True)
        previous = self._bindings.get(key)
        if not (
            previous is not None
            and previous.address == address
            and previous.state is BindingState.BOUND
            and previous.active(now)
        ):
            # A bound lease stays bound: a DISCOVER alone does not shorten it.
            self._hold(Binding(key, address, BindingState.OFFERED, now + self.config.offer_time))
        return self._lease_reply(message, MessageType.OFFER, address)

    def _selecting(self, message: Message, now: float) -> Reply | None:
        key = client_key(message)
        if message.options.server_identifier != self.config.server_id:
            # RFC 2131 §4.3.2: the client chose another server; withdraw our offer.
            binding = self._bindings.get(key)
            if binding is not None and binding.state is BindingState.OFFERED:
                self._bindings[key] = dataclass_replace(binding, expiry=now)
            self._drop("other server selected")
            return None
        requested = message.options.requested_address
        if requested is None or not self._available(key, requested, now):
            return self._nak(message, "requested address not available")
        self._bind(key, requested, now)
        return self._ack(message, requested)

    def _init_reboot(self, message: Message, now: float) -> Reply | None:
        key = client_key(message)
        requested = message.options.requested_address
        if requested is None:
            # RFC 2131 table 5: INIT-REBOOT MUST carry option 50; there is nothing to confirm.
            self._drop("request without address")
            return None
        binding = self._bindings.get(key)
        if binding is not None and binding.address == requested:
            if self._available(key, requested, now):
                self._bind(key, requested, now)
                return self._ack(message, requested)
        elif binding is None and not self.config.authoritative:
            # RFC 2131 §4.3.2: "If the DHCP server has no record of this client, then it MUST
            # remain silent".
            self._drop("unknown client")
            return None
        if requested not in self.config.network:
            return self._nak(message, "wrong network")
        if binding is None and self._available(key, requested, now):
            # Like dnsmasq: a free address in our pool is this client's to keep (a server that
            # restarted without its leases must not knock every client off the network).
            self._bind(key, requested, now)
            return self._ack(message, requested)
        if not self.config.authoritative:
            self._drop("not authoritative")
            return None
        return self._nak(message, "requested address not available")

    def _renewing(self, message: Message, now: float) -> Reply | None:
        key = client_key(message)
        binding = self._bindings.get(key)
        if (
            binding is not None
            and binding.address == message.ciaddr
            and binding.state is BindingState.BOUND
            and self._available(key, message.ciaddr, now)
        ):
            self._bind(key, message.ciaddr, now)
            return self._ack(message, message.ciaddr)
        if not self.config.authoritative:
            self._drop("unknown binding")
            return None
        return self._nak(message, "unknown binding")

    def _decline(self, message: Message, now: float) -> Reply | None:
        # RFC 2131 §4.3.3: mark the address unusable; never answered.
        if message.options.server_identifier != self.config.server_id:
            self._drop("decline for another server")
            return None
        address = message.options.requested_address
        if address is None:
            self._drop("decline without address")
            return None
        key = client_key(message)
        binding = self._bindings.get(key)
        if binding is None or binding.address != address:
            # Only the client holding an address can report it in use (as ISC dhcpd checks);
            # anyone else could take addresses out of the pool at will.
            self._drop("decline of an address not the client's")
            return None
        self._forget(key)
        self._declined[address] = now + self.config.decline_time
        self._drop("decline (no reply)")
        return None

    def _release(self, message: Message, now: float) -> Reply | None:
        # RFC 2131 §4.3.4: end the binding; remember the client's address for a later DISCOVER.
        key = client_key(message)
        binding = self._bindings.get(key)
        if (
            message.options.server_identifier == self.config.server_id
            and binding is not None
            and binding.address == message.ciaddr
        ):
            self._bindings[key] = dataclass_replace(binding, expiry=min(binding.expiry, now))
        self._drop("release (no reply)")
        return None

    def _inform(self, message: Message, now: float) -> Reply | None:
        # RFC 2131 §4.3.5: configuration only, no lease time and no yiaddr; unicast to ciaddr.
        reply = self._reply(message, MessageType.ACK, _ZERO, self._config_options())
        destination = message.ciaddr if message.ciaddr != _ZERO else None
        return Reply(reply.replace(ciaddr=message.ciaddr), destination)

    # -- pool --

    def _available(self, key: bytes, address: IPv4Address, now: float) -> bool:
        """Whether `address` may be bound to client `key` at `now`."""
        if not self.config.in_pool(address) or now < self._declined.get(address, -math.inf):
            return False
        holder = self.binding_for(address)
        return holder is None or holder.client == key or not holder.active(now)

    def _allocate(
        self, key: bytes, requested: IPv4Address | None, now: float
    ) -> IPv4Address | None:
        previous = self._bindings.get(key)
        if previous is not None and self._available(key, previous.address, now):
            return previous.address
        if requested is not None and self._available(key, requested, now):
            return requested
        shuffled: list[IPv4Address] | None = None
        if self.config.allocation == "random":
            shuffled = list(self.config.pool())
            self.rng.shuffle(shuffled)

        def candidates() -> Iterable[IPv4Address]:
            return self.config.pool() if shuffled is None else shuffled

        # Never-held addresses first, so that other clients' expired addresses stay theirs for
        # as long as the pool allows (as ISC dhcpd and dnsmasq do); lazily, for large pools.
        for address in candidates():
            if address not in self._holders and self._available(key, address, now):
                return address
        return next((a for a in candidates() if self._available(key, a, now)), None)

    def _hold(self, binding: Binding) -> None:
        # Invariant: one binding per address. Another client's (expired) binding on the
        # address is forgotten, so that `binding_for` is unambiguous.
        holder = self._holders.get(binding.address)
        if holder is not None and holder != binding.client:
            self._forget(holder)
        self._forget(binding.client)
        self._bindings[binding.client] = binding
        self._holders[binding.address] = binding.client

    def _forget(self, key: bytes) -> None:
        binding = self._bindings.pop(key, None)
        if binding is not None:
            del self._holders[binding.address]

    def _bind(self, key: bytes, address: IPv4Address, now: float) -> None:
        lease = self.config.lease_time
        expiry = math.inf if lease == INFINITE else now + lease
        self._hold(Binding(key, address, BindingState.BOUND, expiry))

    # -- composition (RFC 2131 §4.3.1 table 3) --

    def _config_options(self) -> dict[int, bytes]:
        config = self.config
        options: dict[int, bytes] = {}
        mask = config.subnet_mask or config.network.netmask
        options[OptionCode.SUBNET_MASK] = mask.packed
        if config.routers:
            options[OptionCode.ROUTER] = _addresses(config.routers)
        if config.dns_servers:
            options[OptionCode.DOMAIN_NAME_SERVER] = _addresses(config.dns_servers)
        if config.domain_name is not None:
            options[OptionCode.DOMAIN_NAME] = config.domain_name.encode("ascii")
        if config.search:
            options[OptionCode.DOMAIN_SEARCH] = _domain_search(config.search)
        if config.mtu is not None:
            options[OptionCode.INTERFACE_MTU] = struct.pack("!H", config.mtu)
        if config.classless_routes:
            options[OptionCode.CLASSLESS_STATIC_ROUTE] = _classless_routes(config.classless_routes)
        options.update(config.extra_options)
        return options

    def _reply(
        self,
        request: Message,
        kind: MessageType,
        yiaddr: IPv4Address,
        options: Mapping[int, bytes],
    ) -> Message:
        head: dict[int, bytes] = {
            OptionCode.DHCP_MESSAGE_TYPE: bytes([kind]),
            OptionCode.SERVER_IDENTIFIER: self.config.server_id.packed,
        }
        head.update(options)
        identifier = request.options.get(OptionCode.CLIENT_IDENTIFIER)
        if identifier is not None:
            head[OptionCode.CLIENT_IDENTIFIER] = identifier  # RFC 6842 §3
        return Message(
            op=BOOTREPLY,
            xid=request.xid,
            htype=request.htype,
            hlen=request.hlen,
            flags=request.flags,
            yiaddr=yiaddr,
            giaddr=request.giaddr,
            chaddr=request.chaddr,
            options=head,
        )

    def _lease_options(self, *, rapid_commit: bool = False) -> dict[int, bytes]:
        config = self.config
        options: dict[int, bytes] = {OptionCode.IP_ADDRESS_LEASE_TIME: u32(config.lease_time)}
        if config.t1 is not None:
            options[OptionCode.RENEWAL_TIME_VALUE] = u32(config.t1)
        if config.t2 is not None:
            options[OptionCode.REBINDING_TIME_VALUE] = u32(config.t2)
        options.update(self._config_options())
        if rapid_commit:
            options[OptionCode.RAPID_COMMIT] = b""
        return options

    def _lease_reply(self, request: Message, kind: MessageType, address: IPv4Address) -> Reply:
        reply = self._reply(request, kind, address, self._lease_options())
        return Reply(reply, None)

    def _ack(self, request: Message, address: IPv4Address, *, rapid_commit: bool = False) -> Reply:
        options = self._lease_options(rapid_commit=rapid_commit)
        reply = self._reply(request, MessageType.ACK, address, options)
        # RFC 2131 §4.1: a client with ciaddr (RENEWING/REBINDING) gets a unicast reply.
        if request.ciaddr != _ZERO:
            return Reply(reply.replace(ciaddr=request.ciaddr), request.ciaddr)
        return Reply(reply, None)

    def _nak(self, request: Message, reason: str) -> Reply:
        # RFC 2131 §4.1: NAKs are always broadcast when giaddr is 0; table 3: no yiaddr, no
        # lease options, a message (56) allowed.
        self.stats.naks[reason] += 1
        reply = self._reply(
            request, MessageType.NAK, _ZERO, {OptionCode.MESSAGE: reason.encode("ascii")}
        )
        return Reply(reply, None)
