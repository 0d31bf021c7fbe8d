"""The in-memory network: delivery, addressing, faults on the mock clock, determinism."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest
import trio
import trio.testing

from dhcp4c.shell.transport import Transport
from dhcp4c.testing.memory import Captured, Faults, MemoryNetwork, ServerDatagram

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
SERVER = IPv4Address("10.0.0.1")
ROGUE = IPv4Address("10.0.0.66")


async def test_broadcast_exchange(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    server = net.server(SERVER)
    transport: Transport = net.attach(MAC_A).open()
    await transport.send(b"discover", None)
    assert await server.receive() == ServerDatagram(b"discover", MAC_A)
    await server.send(b"offer", MAC_A)
    assert await transport.receive() == b"offer"
    assert trio.current_time() == 0
    assert net.capture == [
        Captured(0.0, "to_server", MAC_A, None, b"discover"),
        Captured(0.0, "to_client", MAC_A, None, b"offer"),
    ]
    transport.close()


async def test_addressing(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    server, rogue = net.server(SERVER), net.server(ROGUE)
    a, b = net.attach(MAC_A).open(), net.attach(MAC_B).open()
    await a.send(b"broadcast", None)
    await a.send(b"unicast", SERVER)
    await a.send(b"nobody", IPv4Address("10.9.9.9"))
    assert [await server.receive(), await server.receive()] == [
        ServerDatagram(b"broadcast", MAC_A, None),
        ServerDatagram(b"unicast", MAC_A, SERVER),
    ]
    assert await rogue.receive() == ServerDatagram(b"broadcast", MAC_A)
    await server.send(b"to b", MAC_B)
    await server.send(b"to all", None)
    assert await a.receive() == b"to all"
    assert [await b.receive(), await b.receive()] == [b"to b", b"to all"]
    assert net.stats["to_server.no_recipient"] == 1
    with trio.move_on_after(10):
        await rogue.receive()
        pytest.fail("the rogue got a unicast to another server")


async def test_every_open_transport_gets_a_copy_and_closed_ones_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    server = net.server(SERVER)
    link = net.attach(MAC_A)
    first, second = link.open(), link.open()
    await server.send(b"one", MAC_A)
    first.close()
    first.close()  # idempotent
    await server.send(b"two", MAC_A)
    assert [await second.receive(), await second.receive()] == [b"one", b"two"]
    assert link.open_transports == 1
    second.close()
    await server.send(b"lost", MAC_A)
    assert net.stats["to_client.no_recipient"] == 1
    assert link.open_transports == 0
    with pytest.raises(trio.ClosedResourceError):
        await first.receive()
    with pytest.raises(trio.ClosedResourceError):
        await first.send(b"x", None)


async def test_close_wakes_a_blocked_receiver(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    transport = net.attach(MAC_A).open()
    server = net.server(SERVER)
    async with trio.open_nursery() as nursery:

        async def close_later() -> None:
            await trio.sleep(5)
            transport.close()
            server.close()

        nursery.start_soon(close_later)
        with pytest.raises(trio.ClosedResourceError):
            await transport.receive()
        with pytest.raises(trio.ClosedResourceError):
            await server.receive()
    assert trio.current_time() == 5


async def test_context_managers(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    link = net.attach(MAC_A)
    with link.open() as transport:
        assert not transport.closed
    assert transport.closed
    async with link.open() as transport:
        pass
    assert transport.closed
    with net.server(SERVER) as server:
        pass
    assert server.closed
    assert link.open_transports == 0


async def test_delay_and_jitter_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(random.Random(1))
    net.to_server = Faults(delay=0.25)
    net.to_client = Faults(delay=1.0, jitter=0.5)
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    await transport.send(b"discover", None)
    await server.receive()
    assert trio.current_time() == 0.25
    await server.send(b"offer", MAC_A)
    await transport.receive()
    assert 1.25 <= trio.current_time() < 1.75


async def test_reordering_lets_later_datagrams_overtake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    net.to_client = Faults(reorder=1.0, reorder_delay=2.0)
    await server.send(b"first", MAC_A)
    net.to_client = Faults()
    await server.send(b"second", MAC_A)
    assert await transport.receive() == b"second"
    assert trio.current_time() == 0
    assert await transport.receive() == b"first"
    assert trio.current_time() == 2.0
    assert net.stats["to_client.reordered"] == 1


async def test_duplication(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    net.to_client.duplicate = 1.0
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    await server.send(b"ack", MAC_A)
    assert [await transport.receive(), await transport.receive()] == [b"ack", b"ack"]
    assert net.stats["to_client.duplicated"] == 1
    assert net.stats["to_client.delivered"] == 2


async def test_mangle_rewrites_or_drops(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    net.to_server.mangle = lambda payload: None if payload == b"drop" else payload.upper()
    await transport.send(b"drop", None)
    await transport.send(b"keep", None)
    assert await server.receive() == ServerDatagram(b"KEEP", MAC_A)
    assert net.stats["to_server.mangled"] == 1
    assert net.capture[0].payload == b"drop"  # the capture shows what was offered


async def test_carrier_down(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork()
    server = net.server(SERVER)
    link = net.attach(MAC_A)
    transport = link.open()
    link.carrier = False
    await transport.send(b"into the void", None)
    await server.send(b"unheard", MAC_A)
    link.carrier = True
    await server.send(b"heard", MAC_A)
    assert await transport.receive() == b"heard"
    assert net.stats["to_server.carrier_down"] == net.stats["to_client.carrier_down"] == 1
    with trio.move_on_after(10):
        await server.receive()
        pytest.fail("a datagram crossed a dead link")


async def test_queue_limit(autojump_clock: trio.testing.MockClock) -> None:
    net = MemoryNetwork(queue_limit=3)
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    for n in range(5):
        await server.send(bytes([n]), MAC_A)
    assert net.stats["to_client.overflow"] == 2
    assert [await transport.receive() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]


async def test_receive_is_a_checkpoint_and_cancellable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork()
    transport = net.attach(MAC_A).open()
    with trio.move_on_after(3) as scope:
        await transport.receive()
    assert scope.cancelled_caught
    assert trio.current_time() == 3
    server = net.server(SERVER)
    await server.send(b"queued", MAC_A)
    with trio.CancelScope() as scope:
        scope.cancel()
        await transport.receive()
    assert scope.cancelled_caught
    assert await transport.receive() == b"queued"  # not consumed by the cancelled call


async def lossy_run(seed: int) -> tuple[list[bytes], dict[str, int]]:
    net = MemoryNetwork(random.Random(seed))
    net.to_server = Faults(loss=0.5, duplicate=0.2, jitter=1.0)
    net.to_client = Faults(loss=0.3, reorder=0.3, reorder_delay=0.5, delay=0.1)
    server = net.server(SERVER)
    transport = net.attach(MAC_A).open()
    received: list[bytes] = []

    async def echo() -> None:
        while True:
            payload, hwaddr, _destination = await server.receive()
            await server.send(b"re:" + payload, hwaddr)

    async def collect() -> None:
        while True:
            received.append(await transport.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        nursery.start_soon(collect)
        for n in range(200):
            await transport.send(b"%d" % n, None)
            await trio.sleep(0.3)
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    return received, dict(net.stats)


async def test_faults_are_deterministic_given_a_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, first_stats = await lossy_run(7)
    second, second_stats = await lossy_run(7)
    other, _ = await lossy_run(8)
    assert first == second
    assert first_stats == second_stats
    assert first != other
    # Roughly the configured rates (200 requests, 50% loss, 20% duplication, then 30% loss).
    assert 70 <= first_stats["to_server.lost"] <= 130
    assert first_stats["to_client.sent"] == first_stats["to_server.delivered"]
    assert len(first) == first_stats["to_client.delivered"]
    assert first != sorted(first, key=lambda p: int(p[3:]))  # some replies were reordered
