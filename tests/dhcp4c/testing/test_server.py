"""Tests of the in-process DHCPv4 test server: the sans-IO core with explicit `now`, its
misbehaviours (checked byte by byte and through the codec), and its two Trio shells."""

from __future__ import annotations

import math
import socket
import struct
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp4c.protocol.message import Message, MessageError, MessageType
from dhcp4c.protocol.options import OptionCode
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import (
    INFINITE,
    BindingState,
    Encoding,
    Exchange,
    Reply,
    ServerConfig,
    ServerCore,
    chain,
    classify,
    client_key,
    drop_options,
    drop_replies,
    encode,
    lease_times,
    reencode,
    set_fields,
    set_options,
    u32,
    when,
)
from dhcp4c.testing.server_net import serve_memory, serve_udp

SERVER = IPv4Address("192.0.2.1")
OTHER_SERVER = IPv4Address("192.0.2.2")
MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
MAC_C = bytes.fromhex("02000000000c")
ZERO = IPv4Address(0)
BROADCAST = IPv4Address("255.255.255.255")


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


def client_message(
    kind: MessageType,
    *,
    mac: bytes = MAC_A,
    xid: int = 0x1234,
    ciaddr: IPv4Address = ZERO,
    requested: IPv4Address | None = None,
    server_id: IPv4Address | None = None,
    rapid_commit: bool = False,
    client_id: bytes | None = None,
) -> Message:
    options: dict[int, bytes] = {OptionCode.DHCP_MESSAGE_TYPE: bytes([kind])}
    if requested is not None:
        options[OptionCode.REQUESTED_IP_ADDRESS] = requested.packed
    if server_id is not None:
        options[OptionCode.SERVER_IDENTIFIER] = server_id.packed
    if rapid_commit:
        options[OptionCode.RAPID_COMMIT] = b""
    if client_id is not None:
        options[OptionCode.CLIENT_IDENTIFIER] = client_id
    return Message(op=1, xid=xid, ciaddr=ciaddr, chaddr=mac, options=options)


def discover(**kwargs: object) -> Message:
    return client_message(MessageType.DISCOVER, **kwargs)  # type: ignore[arg-type]


def request(**kwargs: object) -> Message:
    return client_message(MessageType.REQUEST, **kwargs)  # type: ignore[arg-type]


def only(replies: list[Reply]) -> Reply:
    assert len(replies) == 1, replies
    return replies[0]


def bind(core: ServerCore, now: float, mac: bytes = MAC_A) -> IPv4Address:
    """Run DISCOVER→OFFER→REQUEST→ACK for `mac` at `now`; return the address."""
    offer = only(core.respond(discover(mac=mac), now)).message
    ack = only(
        core.respond(request(mac=mac, requested=offer.yiaddr, server_id=SERVER), now)
    ).message
    assert ack.message_type == MessageType.ACK
    return ack.yiaddr


def wire_options(payload: bytes) -> Iterator[tuple[int, bytes]]:
    """Walk the main options area by hand (stops at END or the end of the payload)."""
    assert payload[236:240] == b"\x63\x82\x53\x63"
    i = 240
    while i < len(payload):
        code = payload[i]
        if code == 255:
            yield 255, b""
            return
        if code == 0:
            i += 1
            continue
        length = payload[i + 1]
        yield code, payload[i + 2 : i + 2 + length]
        i += 2 + length


# --- DISCOVER / OFFER --------------------------------------------------------------------------


def test_discover_is_offered_the_first_free_address_with_every_configured_option() -> None:
    config = ServerConfig(
        domain_name="example.test",
        search=("example.test", "corp.example"),
        mtu=1400,
        classless_routes=((IPv4Network("10.0.0.0/8"), SERVER), (IPv4Network("0.0.0.0/0"), SERVER)),
        t1=600,
        t2=1000,
    )
    core = ServerCore(config)
    reply = only(core.respond(discover(xid=77, client_id=b"\x01" + MAC_A), 5.0))
    offer = reply.message
    assert reply.destination is None  # no ciaddr: broadcast (RFC 2131 §4.1)
    assert (offer.op, offer.xid, offer.chaddr[:6], offer.message_type) == (
        2,
        77,
        MAC_A,
        MessageType.OFFER,
    )
    assert (offer.yiaddr, offer.ciaddr) == (ip("192.0.2.100"), ZERO)
    options = Message.parse(reply.payload).options
    assert options.server_identifier == SERVER
    assert (options.lease_time, options.renewal_time, options.rebinding_time) == (3600, 600, 1000)
    assert options.subnet_mask == ip("255.255.255.0")
    assert options.routers == (SERVER,)
    assert options.dns_servers == (SERVER,)
    assert options.domain_name == "example.test"
    assert options.domain_search == ("example.test", "corp.example")
    assert options.mtu == 1400
    assert options.classless_static_routes == config.classless_routes
    assert options.client_identifier == b"\x01" + MAC_A  # RFC 6842 echo
    assert not options.rapid_commit
    binding = core.bindings[b"\x01" + MAC_A]
    assert (binding.state, binding.address, binding.expiry) == (
        BindingState.OFFERED,
        ip("192.0.2.100"),
        65.0,
    )


def test_t1_t2_absent_unless_configured() -> None:
    offer = only(ServerCore().respond(discover(), 0.0)).message
    assert OptionCode.RENEWAL_TIME_VALUE not in offer.options
    assert OptionCode.REBINDING_TIME_VALUE not in offer.options
    assert list(offer.options)[:2] == [OptionCode.DHCP_MESSAGE_TYPE, OptionCode.SERVER_IDENTIFIER]


def test_discover_gets_the_requested_address_when_free() -> None:
    offer = only(ServerCore().respond(discover(requested=ip("192.0.2.150")), 0.0)).message
    assert offer.yiaddr == ip("192.0.2.150")
    offer = only(ServerCore().respond(discover(requested=ip("10.1.1.1")), 0.0)).message
    assert offer.yiaddr == ip("192.0.2.100")


def test_addresses_are_stable_per_client_and_distinct_between_clients() -> None:
    core = ServerCore()
    a = bind(core, 0.0, MAC_A)
    b = bind(core, 0.0, MAC_B)
    assert (a, b) == (ip("192.0.2.100"), ip("192.0.2.101"))
    assert only(core.respond(discover(mac=MAC_A), 10.0)).message.yiaddr == a
    assert only(core.respond(discover(mac=MAC_B), 10.0)).message.yiaddr == b
    # Long after expiry the client still gets its previous address back.
    assert bind(core, 100_000.0, MAC_A) == a


def test_client_identifier_keys_bindings_and_matches_the_chaddr_form() -> None:
    core = ServerCore()
    address = bind(core, 0.0, MAC_A)
    assert client_key(discover(mac=MAC_A)) == b"\x01" + MAC_A
    same = only(core.respond(discover(mac=MAC_B, client_id=b"\x01" + MAC_A), 1.0)).message
    assert same.yiaddr == address  # one client, whatever its chaddr
    other = only(core.respond(discover(mac=MAC_A, client_id=b"\xffduid"), 1.0)).message
    assert other.yiaddr != address


def test_pool_exhaustion_gives_no_offer_until_a_lease_expires() -> None:
    core = ServerCore(
        ServerConfig(pool_start=ip("192.0.2.100"), pool_end=ip("192.0.2.101"), lease_time=100)
    )
    bind(core, 0.0, MAC_A)
    bind(core, 0.0, MAC_B)
    assert core.respond(discover(mac=MAC_C), 50.0) == []
    assert core.stats.dropped["pool exhausted"] == 1
    assert core.stats.sent[MessageType.OFFER] == 2
    assert only(core.respond(discover(mac=MAC_C), 100.0)).message.yiaddr == ip("192.0.2.100")


def test_random_allocation_is_repeatable_with_a_seeded_rng() -> None:
    import random

    config = ServerConfig(allocation="random")
    first = only(ServerCore(config, random.Random(7)).respond(discover(), 0.0)).message.yiaddr
    again = only(ServerCore(config, random.Random(7)).respond(discover(), 0.0)).message.yiaddr
    assert first == again
    assert config.in_pool(first)


def test_config_rejects_a_pool_outside_the_network() -> None:
    with pytest.raises(ValueError, match="pool"):
        ServerConfig(pool_start=ip("10.0.0.1"))
    with pytest.raises(ValueError, match="allocation"):
        ServerConfig(allocation="lifo")


def test_pool_never_contains_the_server() -> None:
    config = ServerConfig(pool_start=ip("192.0.2.1"), pool_end=ip("192.0.2.2"))
    assert list(config.pool()) == [ip("192.0.2.2")]
    whole = ServerConfig(network=IPv4Network("10.0.0.0/30"), pool_start=None, pool_end=None)
    assert whole.pool_range == (ip("10.0.0.1"), ip("10.0.0.2"))


# --- rapid commit ------------------------------------------------------------------------------


def test_rapid_commit_discover_is_acked_and_bound() -> None:
    core = ServerCore()
    reply = only(core.respond(discover(rapid_commit=True), 3.0))
    assert reply.message_type == MessageType.ACK
    assert Message.parse(reply.payload).options.rapid_commit
    binding = core.bindings[client_key(discover())]
    assert (binding.state, binding.expiry) == (BindingState.BOUND, 3603.0)


def test_rapid_commit_off_or_not_asked_gives_an_offer() -> None:
    off = ServerCore(ServerConfig(rapid_commit=False))
    offer = only(off.respond(discover(rapid_commit=True), 0.0)).message
    assert offer.message_type == MessageType.OFFER
    assert not offer.options.rapid_commit
    offer = only(ServerCore().respond(discover(), 0.0)).message
    assert offer.message_type == MessageType.OFFER


# --- REQUEST in SELECTING ----------------------------------------------------------------------


def test_selecting_request_for_our_offer_is_acked() -> None:
    core = ServerCore(ServerConfig(lease_time=120, t1=60, t2=105))
    offer = only(core.respond(discover(), 0.0)).message
    reply = only(core.respond(request(requested=offer.yiaddr, server_id=SERVER), 2.0))
    ack = reply.message
    assert reply.destination is None
    assert (ack.message_type, ack.yiaddr, ack.xid) == (MessageType.ACK, offer.yiaddr, 0x1234)
    assert not ack.options.rapid_commit
    assert ack.options.lease_time == 120
    binding = core.bindings[client_key(ack)]
    assert (binding.state, binding.expiry) == (BindingState.BOUND, 122.0)


def test_selecting_request_for_another_server_withdraws_the_offer_silently() -> None:
    core = ServerCore()
    offer = only(core.respond(discover(), 0.0)).message
    assert core.respond(request(requested=offer.yiaddr, server_id=OTHER_SERVER), 1.0) == []
    assert core.stats.dropped["other server selected"] == 1
    assert not core.bindings[client_key(offer)].active(1.0)


def test_selecting_request_for_a_taken_address_is_naked() -> None:
    core = ServerCore()
    taken = bind(core, 0.0, MAC_A)
    reply = only(core.respond(request(mac=MAC_B, requested=taken, server_id=SERVER), 1.0))
    nak = reply.message
    assert (nak.message_type, nak.yiaddr, reply.destination) == (MessageType.NAK, ZERO, None)
    assert nak.options.server_identifier == SERVER
    assert OptionCode.IP_ADDRESS_LEASE_TIME not in nak.options
    assert core.stats.naks["requested address not available"] == 1


# --- REQUEST in INIT-REBOOT --------------------------------------------------------------------


def test_init_reboot_for_the_clients_address_is_acked() -> None:
    core = ServerCore()
    address = bind(core, 0.0, MAC_A)
    reply = only(core.respond(request(requested=address), 4000.0))  # even after expiry
    assert (reply.message_type, reply.message.yiaddr) == (MessageType.ACK, address)
    assert core.stats.exchanges[Exchange.INIT_REBOOT] == 1
    assert core.bindings[client_key(reply.message)].expiry == 7600.0


def test_init_reboot_for_a_free_pool_address_is_acked_after_a_server_restart() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.reconfigure(core.config, forget=True)
    reply = only(core.respond(request(requested=address), 10.0))
    assert (reply.message_type, reply.message.yiaddr) == (MessageType.ACK, address)


@pytest.mark.parametrize(
    ("requested", "reason"),
    [
        (ip("192.0.2.101"), "requested address not available"),  # another client's
        (ip("10.9.9.9"), "wrong network"),
        (ip("192.0.2.20"), "requested address not available"),  # outside the pool
    ],
)
def test_init_reboot_for_an_address_that_is_not_the_clients_is_naked(
    requested: IPv4Address, reason: str
) -> None:
    core = ServerCore()
    bind(core, 0.0, MAC_B)
    bind(core, 0.0, MAC_C)  # holds .101
    nak = only(core.respond(request(mac=MAC_A, requested=requested), 1.0)).message
    assert nak.message_type == MessageType.NAK
    assert core.stats.naks == {reason: 1}


def test_init_reboot_with_a_different_address_than_the_binding_is_naked() -> None:
    core = ServerCore()
    bind(core, 0.0, MAC_A)
    nak = only(core.respond(request(mac=MAC_A, requested=ip("192.0.2.150")), 1.0)).message
    assert nak.message_type == MessageType.NAK


def test_init_reboot_after_restart_with_a_different_pool_is_naked() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.reconfigure(
        ServerConfig(pool_start=ip("192.0.2.200"), pool_end=ip("192.0.2.210")), forget=True
    )
    assert only(core.respond(request(requested=address), 1.0)).message_type == MessageType.NAK


def test_non_authoritative_server_is_silent_for_unknown_clients() -> None:
    core = ServerCore(ServerConfig(authoritative=False))
    assert core.respond(request(requested=ip("192.0.2.150")), 0.0) == []
    assert core.stats.dropped["unknown client"] == 1
    assert core.respond(request(ciaddr=ip("192.0.2.150")), 0.0, broadcast=True) == []
    assert core.stats.dropped["unknown binding"] == 1


# --- REQUEST in RENEWING / REBINDING -----------------------------------------------------------


def test_renewal_extends_the_lease_and_is_unicast_to_ciaddr() -> None:
    core = ServerCore(ServerConfig(lease_time=100))
    address = bind(core, 0.0)
    reply = only(core.respond(request(ciaddr=address), 50.0, broadcast=False))
    assert reply.destination == address
    assert (reply.message_type, reply.message.yiaddr, reply.message.ciaddr) == (
        MessageType.ACK,
        address,
        address,
    )
    assert core.bindings[client_key(reply.message)].expiry == 150.0
    assert core.stats.exchanges[Exchange.RENEWING] == 1


def test_rebinding_is_classified_apart_from_renewing() -> None:
    core = ServerCore(ServerConfig(lease_time=100))
    address = bind(core, 0.0)
    reply = only(core.respond(request(ciaddr=address), 90.0, broadcast=True))
    assert reply.message_type == MessageType.ACK
    assert core.stats.exchanges[Exchange.REBINDING] == 1
    assert classify(request(ciaddr=address), broadcast=False) is Exchange.RENEWING


def test_renewal_of_an_unknown_binding_is_naked() -> None:
    core = ServerCore()
    reply = only(core.respond(request(ciaddr=ip("192.0.2.150")), 0.0, broadcast=False))
    assert (reply.message_type, reply.destination) == (MessageType.NAK, None)  # NAK: broadcast


def test_renewal_after_the_pool_changed_is_naked() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.reconfigure(ServerConfig(pool_start=ip("192.0.2.200"), pool_end=ip("192.0.2.210")))
    assert core.bindings == {}
    reply = only(core.respond(request(ciaddr=address), 10.0, broadcast=False))
    assert reply.message_type == MessageType.NAK


def test_infinite_lease_never_expires() -> None:
    core = ServerCore(ServerConfig(lease_time=INFINITE))
    bind(core, 0.0)
    assert core.bindings[client_key(discover())].expiry == math.inf


# --- DECLINE, RELEASE, INFORM ------------------------------------------------------------------


def test_decline_takes_the_address_out_of_the_pool_for_decline_time() -> None:
    core = ServerCore(ServerConfig(decline_time=10.0))
    address = bind(core, 0.0)
    decline = client_message(MessageType.DECLINE, requested=address, server_id=SERVER)
    assert core.respond(decline, 1.0) == []
    assert core.declined(1.0) == {address}
    assert client_key(decline) not in core.bindings
    assert only(core.respond(discover(), 2.0)).message.yiaddr != address
    assert core.declined(11.0) == frozenset()
    assert only(core.respond(discover(mac=MAC_B), 11.0)).message.yiaddr == address


def test_decline_for_another_server_or_another_clients_address_is_ignored() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    decline = client_message(MessageType.DECLINE, requested=address, server_id=OTHER_SERVER)
    assert core.respond(decline, 1.0) == []
    decline = client_message(MessageType.DECLINE, mac=MAC_B, requested=address, server_id=SERVER)
    assert core.respond(decline, 1.0) == []
    assert core.declined(1.0) == frozenset()
    assert core.bindings[client_key(discover())].active(1.0)


def test_release_ends_the_binding_but_remembers_the_address() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    release = client_message(MessageType.RELEASE, ciaddr=address, server_id=SERVER)
    assert core.respond(release, 5.0, broadcast=False) == []
    assert not core.bindings[client_key(release)].active(5.0)
    assert only(core.respond(discover(mac=MAC_B), 6.0)).message.yiaddr != address
    assert only(core.respond(discover(), 7.0)).message.yiaddr == address


def test_inform_is_acked_without_lease_time_and_unicast() -> None:
    core = ServerCore(ServerConfig(t1=10, t2=20))
    inform = client_message(MessageType.INFORM, ciaddr=ip("192.0.2.50"))
    reply = only(core.respond(inform, 0.0, broadcast=False))
    ack = reply.message
    assert (ack.message_type, ack.yiaddr, ack.ciaddr) == (MessageType.ACK, ZERO, ip("192.0.2.50"))
    assert reply.destination == ip("192.0.2.50")
    for code in (51, 58, 59):
        assert code not in ack.options
    assert ack.options.routers == (SERVER,)
    assert core.bindings == {}


def test_replies_and_other_types_are_not_answered() -> None:
    core = ServerCore()
    offer = only(core.respond(discover(), 0.0)).message
    assert core.respond(offer, 0.0) == []  # a BOOTREPLY arriving on port 67
    assert core.respond(client_message(MessageType(99)), 0.0) == []
    assert core.stats.dropped == {"not a request": 1, "unexpected message type": 1}


# --- controls and stats ------------------------------------------------------------------------


def test_stats_count_and_log_exact_traffic() -> None:
    core = ServerCore()
    address = bind(core, 1.0)
    core.respond(request(ciaddr=address), 1801.0, broadcast=False)
    assert core.stats.received == {MessageType.DISCOVER: 1, MessageType.REQUEST: 2}
    assert core.stats.sent == {MessageType.OFFER: 1, MessageType.ACK: 2}
    assert [(t, m.message_type) for t, m in core.stats.log] == [
        (1.0, MessageType.DISCOVER),
        (1.0, MessageType.REQUEST),
        (1801.0, MessageType.REQUEST),
    ]
    assert [(t, m.message_type) for t, m in core.stats.sent_log] == [
        (1.0, MessageType.OFFER),
        (1.0, MessageType.ACK),
        (1801.0, MessageType.ACK),
    ]
    core.stats.reset()
    assert core.stats.received == {} and core.stats.log == []


def test_offline_server_ignores_everything_and_logs_nothing() -> None:
    core = ServerCore()
    core.stop()
    assert core.respond(discover(), 0.0) == []
    assert core.handle_datagram(discover().build(), 0.0) == []
    assert core.stats.log == [] and core.stats.received == {}
    assert core.stats.dropped == {"offline": 2}
    core.start()
    assert only(core.respond(discover(), 1.0)).message_type == MessageType.OFFER


def test_drop_next_leaves_messages_unanswered_but_logged() -> None:
    core = ServerCore()
    core.drop_next(2)
    assert core.respond(discover(), 0.0) == []
    assert core.respond(discover(), 4.0) == []
    assert only(core.respond(discover(), 12.0)).message_type == MessageType.OFFER
    assert core.stats.received[MessageType.DISCOVER] == 3
    assert core.stats.dropped["drop_next"] == 2


def test_force_nak_naks_every_request_but_still_offers() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.force_nak = True
    assert core.force_nak
    offer = only(core.respond(discover(rapid_commit=True), 1.0)).message
    assert offer.message_type == MessageType.OFFER  # no rapid commit: it would be a NAK
    for message, broadcast in [
        (request(requested=address, server_id=SERVER), True),
        (request(requested=address), True),
        (request(ciaddr=address), False),
        (request(ciaddr=address), True),
    ]:
        reply = only(core.respond(message, 2.0, broadcast=broadcast))
        assert reply.message_type == MessageType.NAK
    assert core.stats.naks["forced NAK"] == 4
    core.force_nak = False
    assert only(core.respond(request(requested=address), 3.0)).message_type == MessageType.ACK


def test_silent_renewals_drive_a_client_to_rebinding() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.silent = {Exchange.RENEWING}
    assert core.respond(request(ciaddr=address), 1800.0, broadcast=False) == []
    reply = only(core.respond(request(ciaddr=address), 3150.0, broadcast=True))
    assert reply.message_type == MessageType.ACK
    assert core.stats.dropped["silent renewing"] == 1


def test_nak_only_for_one_exchange() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.nak = {Exchange.INIT_REBOOT}
    assert only(core.respond(request(requested=address), 1.0)).message_type == MessageType.NAK
    renew = only(core.respond(request(ciaddr=address), 1.0, broadcast=False))
    assert renew.message_type == MessageType.ACK


def test_handle_returns_messages_and_malformed_datagrams_are_counted() -> None:
    core = ServerCore()
    [offer] = core.handle(discover(), 0.0)
    assert offer.message_type == MessageType.OFFER
    assert core.handle_datagram(b"\x01" * 10, 0.0) == []
    assert core.stats.dropped["malformed"] == 1
    [reply] = core.handle_datagram(discover(mac=MAC_B).build(), 0.0)
    assert reply.message.yiaddr == ip("192.0.2.101")


# --- misbehaviour ------------------------------------------------------------------------------


def misbehaving(misbehaviour: object, **config: object) -> ServerCore:
    return ServerCore(ServerConfig(misbehaviour=misbehaviour, **config))  # type: ignore[arg-type]


def test_encode_without_deviation_parses_like_build() -> None:
    offer = only(ServerCore(ServerConfig(domain_name="x.test")).respond(discover(), 0.0)).message
    assert Message.parse(encode(offer)) == Message.parse(offer.build())
    assert len(encode(offer)) == 300


def test_rapid_commit_option_in_offer() -> None:
    core = misbehaving(set_options({OptionCode.RAPID_COMMIT: b""}, on={MessageType.OFFER}))
    reply = only(core.respond(discover(), 0.0))
    parsed = Message.parse(reply.payload)
    assert parsed.message_type == MessageType.OFFER and parsed.options.rapid_commit
    address = reply.message.yiaddr
    ack = only(core.respond(request(requested=address, server_id=SERVER), 0.0)).message
    assert not ack.options.rapid_commit
    assert core.stats.sent == {MessageType.OFFER: 1, MessageType.ACK: 1}


def test_server_id_changes_between_offer_and_ack() -> None:
    core = misbehaving(
        set_options({OptionCode.SERVER_IDENTIFIER: OTHER_SERVER.packed}, on={MessageType.ACK})
    )
    offer = only(core.respond(discover(), 0.0)).message
    assert offer.options.server_identifier == SERVER
    ack = only(core.respond(request(requested=offer.yiaddr, server_id=SERVER), 0.0))
    assert Message.parse(ack.payload).options.server_identifier == OTHER_SERVER


def test_missing_end_option_is_on_the_wire() -> None:
    core = misbehaving(reencode(end=False))
    reply = only(core.respond(discover(), 0.0))
    codes = [code for code, _value in wire_options(reply.payload)]
    assert 255 not in codes
    assert codes[0] == OptionCode.DHCP_MESSAGE_TYPE
    # The codec tolerates a missing END followed by padding, and reads the same options.
    assert Message.parse(reply.payload).options == reply.message.options


def test_options_split_per_rfc3396_are_concatenated_by_the_codec() -> None:
    dns = (ip("192.0.2.53"), ip("192.0.2.54"), ip("192.0.2.55"))
    core = misbehaving(reencode(split={OptionCode.DOMAIN_NAME_SERVER: 4}), dns_servers=dns)
    payload = only(core.respond(discover(), 0.0)).payload
    chunks = [v for c, v in wire_options(payload) if c == OptionCode.DOMAIN_NAME_SERVER]
    assert chunks == [a.packed for a in dns]
    assert Message.parse(payload).options.dns_servers == dns


def test_overloaded_options_are_read_from_file_and_sname() -> None:
    core = misbehaving(
        reencode(file=(OptionCode.ROUTER,), sname=(OptionCode.DOMAIN_NAME_SERVER,)),
        dns_servers=(ip("192.0.2.53"),),
    )
    payload = only(core.respond(discover(), 0.0)).payload
    main = dict(wire_options(payload))
    assert main[OptionCode.OPTION_OVERLOAD] == b"\x03"
    assert OptionCode.ROUTER not in main and OptionCode.DOMAIN_NAME_SERVER not in main
    assert payload[108] == OptionCode.ROUTER  # file starts at offset 108
    assert payload[44] == OptionCode.DOMAIN_NAME_SERVER  # sname at 44
    options = Message.parse(payload).options
    assert options.routers == (SERVER,)
    assert options.dns_servers == (ip("192.0.2.53"),)


def test_overload_that_does_not_fit_is_an_error() -> None:
    core = misbehaving(reencode(sname=(OptionCode.DOMAIN_NAME,)), domain_name="x" * 70)
    reply = only(core.respond(discover(), 0.0))
    with pytest.raises(ValueError, match="sname"):
        _ = reply.payload


@pytest.mark.parametrize(
    ("lease", "t1", "t2", "expected"),
    [
        (100, 600, 300, (100, 600, 300)),  # T1 > T2 > lease
        (0, None, None, (0, None, None)),
        (INFINITE, None, None, (INFINITE, None, None)),
    ],
)
def test_weird_lease_times(
    lease: int, t1: int | None, t2: int | None, expected: tuple[int | None, ...]
) -> None:
    core = misbehaving(lease_times(lease=lease, t1=t1, t2=t2))
    options = Message.parse(only(core.respond(discover(), 0.0)).payload).options
    assert (options.lease_time, options.renewal_time, options.rebinding_time) == expected


def test_weird_lease_times_straight_from_the_config() -> None:
    core = ServerCore(ServerConfig(lease_time=0, t1=50, t2=20))
    options = only(core.respond(discover(rapid_commit=True), 0.0)).message.options
    assert (options.lease_time, options.renewal_time, options.rebinding_time) == (0, 50, 20)


@pytest.mark.parametrize("yiaddr", [ZERO, BROADCAST])
def test_weird_yiaddr(yiaddr: IPv4Address) -> None:
    core = misbehaving(set_fields(yiaddr=yiaddr))
    assert Message.parse(only(core.respond(discover(), 0.0)).payload).yiaddr == yiaddr


def test_dropped_options_and_dropped_replies() -> None:
    core = misbehaving(
        chain(
            drop_options(OptionCode.SERVER_IDENTIFIER, on={MessageType.OFFER}),
            drop_replies(on={MessageType.ACK}),
        )
    )
    offer = only(core.respond(discover(), 0.0)).message
    assert OptionCode.SERVER_IDENTIFIER not in offer.options
    assert core.respond(request(requested=offer.yiaddr, server_id=SERVER), 0.0) == []
    assert core.stats.dropped["misbehaviour"] == 1
    assert core.stats.sent == {MessageType.OFFER: 1}


def test_when_applies_to_chosen_clients_only() -> None:
    core = misbehaving(
        when(lambda req, _reply: req.chaddr[:6] == MAC_B, set_fields(yiaddr=BROADCAST))
    )
    assert only(core.respond(discover(mac=MAC_A), 0.0)).message.yiaddr == ip("192.0.2.100")
    assert only(core.respond(discover(mac=MAC_B), 0.0)).message.yiaddr == BROADCAST


def test_raw_bytes_can_make_an_unparseable_reply() -> None:
    core = misbehaving(lambda _req, reply: replace(reply, raw=reply.payload[:200]))
    payload = only(core.respond(discover(), 0.0)).payload
    assert len(payload) == 200
    with pytest.raises(MessageError):
        Message.parse(payload)


def test_misbehaviour_is_switched_on_by_reconfigure() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    core.reconfigure(replace(core.config, misbehaviour=lease_times(lease=0)))
    ack = only(core.respond(request(ciaddr=address), 10.0, broadcast=False))
    assert ack.message.options.lease_time == 0
    assert core.bindings[client_key(ack.message)].expiry == 3610.0  # the core's own view


def test_appended_raw_options_are_not_validated() -> None:
    bad_server_id = (OptionCode.SERVER_IDENTIFIER, b"\xc0\x00\x02")
    core = misbehaving(reencode(append=[bad_server_id], on={MessageType.ACK}))
    offer = only(core.respond(discover(), 0.0)).message
    payload = only(core.respond(request(requested=offer.yiaddr, server_id=SERVER), 0.0)).payload
    assert list(wire_options(payload))[-2:] == [bad_server_id, (255, b"")]
    with pytest.raises(MessageError):
        Message.parse(payload)


def test_discover_does_not_shorten_a_bound_lease() -> None:
    core = ServerCore()
    address = bind(core, 0.0)
    assert only(core.respond(discover(), 10.0)).message.yiaddr == address
    binding = core.bindings[client_key(discover())]
    assert (binding.state, binding.expiry) == (BindingState.BOUND, 3600.0)


def test_set_pool_moves_clients() -> None:
    core = ServerCore()
    bind(core, 0.0)
    core.set_pool(ip("192.0.2.50"), ip("192.0.2.60"))
    assert core.bindings == {}
    assert only(core.respond(discover(), 1.0)).message.yiaddr == ip("192.0.2.50")


def test_encoding_is_a_value() -> None:
    assert Encoding() == Encoding()
    assert u32(INFINITE) == b"\xff\xff\xff\xff"


# --- Trio shells -------------------------------------------------------------------------------


async def test_serve_memory_answers_on_the_trio_clock(autojump_clock: trio.abc.Clock) -> None:
    net = MemoryNetwork()
    core = ServerCore(ServerConfig(reply_delay=0.5))
    link_a, link_b = net.attach(MAC_A), net.attach(MAC_B)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, net.server(SERVER))
        start = trio.current_time()
        with link_a.open() as a, link_b.open() as b:
            await trio.sleep(3)
            await a.send(discover(mac=MAC_A).build(), None)
            await b.send(discover(mac=MAC_B).build(), None)
            # Broadcast replies reach every link; the delay does not serialise them.
            offers = [Message.parse(await a.receive()) for _ in range(2)]
            assert trio.current_time() - start == 3.5
            assert [o.yiaddr for o in offers] == [ip("192.0.2.100"), ip("192.0.2.101")]
            assert [Message.parse(await b.receive()).chaddr[:6] for _ in range(2)] == [MAC_A, MAC_B]
            address = offers[0].yiaddr
            # A unicast reply (to ciaddr) goes to the requesting link only.
            await a.send(request(mac=MAC_A, requested=address, server_id=SERVER).build(), None)
            assert Message.parse(await a.receive()).message_type == MessageType.ACK
            assert Message.parse(await b.receive()).message_type == MessageType.ACK
            await a.send(request(mac=MAC_A, ciaddr=address).build(), SERVER)
            ack = Message.parse(await a.receive())
            assert (ack.message_type, ack.ciaddr) == (MessageType.ACK, address)
            with trio.move_on_after(10):
                await b.receive()
                pytest.fail("the unicast reply reached another link")
        nursery.cancel_scope.cancel()
    assert [t - start for t, _ in core.stats.log] == [3.0, 3.0, 3.5, 4.0]


async def test_serve_memory_ends_when_the_endpoint_closes(autojump_clock: trio.abc.Clock) -> None:
    net = MemoryNetwork()
    core = ServerCore(ServerConfig(reply_delay=1.0))
    endpoint = net.server(SERVER)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, endpoint)
        with net.attach(MAC_A).open() as transport:
            await transport.send(discover().build(), None)
            await trio.sleep(0.5)
            endpoint.close()  # the server dies with a reply pending
    assert core.stats.sent == {MessageType.OFFER: 1}
    assert net.stats["to_client.sent"] == 0


async def test_serve_memory_endpoint_away_from_server_id_misses_renewals(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = MemoryNetwork()
    core = ServerCore()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, net.server(ip("192.0.2.254")))
        with net.attach(MAC_A).open() as transport:
            await transport.send(discover(rapid_commit=True).build(), None)
            address = Message.parse(await transport.receive()).yiaddr
            await transport.send(request(ciaddr=address).build(), SERVER)  # RENEWING: lost
            await transport.send(request(ciaddr=address).build(), None)  # REBINDING
            ack = Message.parse(await transport.receive())
            assert (ack.message_type, ack.ciaddr) == (MessageType.ACK, address)
        nursery.cancel_scope.cancel()
    assert net.stats["to_server.no_recipient"] == 1
    assert core.stats.received == {MessageType.DISCOVER: 1, MessageType.REQUEST: 1}


def _require_netns() -> None:
    from dhcp4c.testing.netns import require_netns

    require_netns()


@pytest.mark.netns
async def test_serve_udp_in_a_namespace_with_a_plain_udp_client() -> None:
    _require_netns()
    from dhcp4c.testing.netns import Topology

    core = ServerCore(ServerConfig(lease_time=100))
    with Topology("srvtest") as topology:
        client_ns, server_ns = topology.namespace("client"), topology.namespace("server")
        client_if, server_if = topology.veth(
            client_ns, server_ns, address_b=IPv4Interface("192.0.2.1/24")
        )
        with client_ns.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, client_if.name.encode())
            sock.bind(("0.0.0.0", 68))
            client = trio.socket.from_stdlib_socket(sock)
            mac = client_if.hwaddr

            async def exchange(message: Message, destination: str) -> Message:
                await client.sendto(message.build(), (destination, 67))
                with trio.fail_after(5):
                    payload, (source, port) = await client.recvfrom(0x10000)
                assert (source, port) == ("192.0.2.1", 67)
                return Message.parse(payload)

            async with trio.open_nursery() as nursery:
                await nursery.start(partial(serve_udp, core, server_if.name, namespace=server_ns))
                offer = await exchange(discover(mac=mac), "255.255.255.255")
                assert offer.message_type == MessageType.OFFER
                ack = await exchange(
                    request(mac=mac, requested=offer.yiaddr, server_id=SERVER), "255.255.255.255"
                )
                assert (ack.message_type, ack.yiaddr) == (MessageType.ACK, offer.yiaddr)
                # Configure the lease by hand, then renew by unicast: the ACK comes back unicast.
                client_ns.ip("addr", "add", f"{ack.yiaddr}/24", "dev", client_if.name)
                renewal = await exchange(request(mac=mac, ciaddr=ack.yiaddr), "192.0.2.1")
                assert (renewal.message_type, renewal.ciaddr) == (MessageType.ACK, ack.yiaddr)
                rebind = await exchange(request(mac=mac, ciaddr=ack.yiaddr), "255.255.255.255")
                assert rebind.message_type == MessageType.ACK
                nursery.cancel_scope.cancel()
    assert core.stats.exchanges == {
        Exchange.DISCOVER: 1,
        Exchange.SELECTING: 1,
        Exchange.RENEWING: 1,
        Exchange.REBINDING: 1,
    }
    assert struct.pack("!I", 100) == ack.options[OptionCode.IP_ADDRESS_LEASE_TIME]


# --- property: any client traffic keeps the pool consistent ------------------------------------

_ADDRESSES = [ip("192.0.2.100"), ip("192.0.2.101"), ip("192.0.2.102"), ip("10.0.0.1"), ZERO]
_step = st.tuples(
    st.sampled_from([MAC_A, MAC_B, MAC_C]),
    st.sampled_from(
        [
            MessageType.DISCOVER,
            MessageType.REQUEST,
            MessageType.DECLINE,
            MessageType.RELEASE,
            MessageType.INFORM,
        ]
    ),
    st.sampled_from(_ADDRESSES),  # requested
    st.sampled_from(_ADDRESSES),  # ciaddr
    st.sampled_from([None, SERVER, OTHER_SERVER]),
    st.booleans(),  # rapid commit
    st.booleans(),  # broadcast
    st.floats(min_value=0, max_value=100),
)


@given(steps=st.lists(_step, max_size=40), authoritative=st.booleans())
@settings(max_examples=200, deadline=None)
def test_any_traffic_keeps_bindings_consistent(
    steps: list[
        tuple[
            bytes,
            MessageType,
            IPv4Address,
            IPv4Address,
            IPv4Address | None,
            bool,
            bool,
            float,
        ]
    ],
    authoritative: bool,
) -> None:
    config = ServerConfig(
        pool_start=ip("192.0.2.100"),
        pool_end=ip("192.0.2.101"),
        lease_time=120,
        offer_time=30,
        decline_time=200,
        authoritative=authoritative,
    )
    core = ServerCore(config)
    now = 0.0
    for mac, kind, requested, ciaddr, server_id, rapid, broadcast, dt in steps:
        now += dt
        message = client_message(
            kind,
            mac=mac,
            requested=None if requested == ZERO else requested,
            ciaddr=ciaddr,
            server_id=server_id,
            rapid_commit=rapid,
        )
        replies = core.respond(message, now, broadcast=broadcast)
        assert len(replies) <= 1
        for reply in replies:
            parsed = Message.parse(reply.payload)
            assert (parsed.xid, parsed.chaddr) == (message.xid, message.chaddr)
            assert parsed.options.server_identifier == SERVER
            if parsed.message_type in (MessageType.OFFER, MessageType.ACK):
                assert kind != MessageType.INFORM or parsed.yiaddr == ZERO
                assert kind == MessageType.INFORM or config.in_pool(parsed.yiaddr)
        bindings = list(core.bindings.values())
        assert len({b.address for b in bindings}) == len(bindings)  # one binding per address
        active = [b for b in bindings if b.active(now)]
        assert all(config.in_pool(b.address) for b in core.bindings.values())
        assert not {b.address for b in active} & core.declined(now)
    assert sum(core.stats.received.values()) == len(steps)
