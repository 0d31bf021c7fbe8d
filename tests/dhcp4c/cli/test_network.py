"""The `net` runnable: clients started and stopped as matching links come and go (mock clock)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import trio
import trio.testing
from trio_util import AsyncValue

from dhcp4c.cli.network import Network
from dhcp4c.cli.run import _node_name
from supervisor.testing import harness


class FakeLinks:
    """`LinkSet` as `Network` reads it: `run` (started at once) and `indexes`."""

    def __init__(self) -> None:
        self.match: Callable[[str], bool] = lambda ifname: True
        self.indexes: AsyncValue[Mapping[str, int]] = AsyncValue(MappingProxyType({}))
        self.fail = trio.Event()

    def __call__(self, match: Callable[[str], bool]) -> FakeLinks:
        self.match = match
        return self

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.fail.wait()
        self.fail = trio.Event()
        raise OSError("netlink socket failed")

    def set(self, **indexes: int) -> None:
        self.indexes.value = MappingProxyType(
            {name: index for name, index in indexes.items() if self.match(name)}
        )


class FakeClient:
    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.running = 0
        self.forgotten: list[str] = []

    async def forget(self, reason: str) -> None:
        self.forgotten.append(reason)


class World:
    def __init__(self) -> None:
        self.links = FakeLinks()
        self.made: list[FakeClient] = []
        self.calls: list[tuple[str, ...]] = []

    def make_client(self, ifname: str) -> FakeClient:
        client = FakeClient(ifname)
        self.made.append(client)
        return client

    async def run_client(self, client: FakeClient) -> None:
        client.running += 1
        try:
            await trio.sleep_forever()
        finally:
            client.running -= 1

    def add(self, ifname: str, client: Any) -> None:
        self.calls.append(("add", ifname))

    def remove(self, ifname: str) -> None:
        self.calls.append(("remove", ifname))

    def synced(self) -> None:
        self.calls.append(("synced",))


async def test_clients_follow_the_matching_links(autojump_clock: trio.testing.MockClock) -> None:
    world = World()
    network = Network(
        ("dyn*",),
        {"dyn9"},  # a fixed client's interface
        world.make_client,  # type: ignore[arg-type]
        world.run_client,  # type: ignore[arg-type]
        world,  # type: ignore[arg-type]
        _node_name,
        links=world.links,  # type: ignore[arg-type]
    )
    world.links.indexes.value = MappingProxyType({})
    async with harness(network.run) as tree:
        world.links.set(dyn0=2, eth0=3)
        await tree.wait_settled()
        assert world.calls == [("add", "dyn0"), ("synced",)]
        (dyn0,) = world.made
        assert dyn0.running == 1 and set(network.clients) == {"dyn0"}

        world.links.set(dyn0=2, dyn1=4, dyn9=5, eth0=3)  # dyn9 is not the set's
        await tree.wait_settled()
        assert world.calls[2:] == [("add", "dyn1")]
        dyn1 = world.made[1]
        assert dyn0.running == 1 and dyn1.running == 1

        world.links.set(dyn1=4)  # dyn0 removed: stopped, its lease dropped, then forgotten
        await tree.wait_settled()
        assert world.calls[3:] == [("remove", "dyn0")]
        assert dyn0.running == 0 and dyn0.forgotten == ["interface-gone"]
        assert set(network.clients) == {"dyn1"}

        world.links.set(dyn1=6)  # deleted and created again between two reads: a new client
        await tree.wait_settled()
        assert world.calls[4:] == [("remove", "dyn1"), ("add", "dyn1")]
        assert dyn1.running == 0 and dyn1.forgotten == ["interface-gone"]
        assert world.made[2].interface == "dyn1" and world.made[2].running == 1


async def test_a_restart_of_net_keeps_the_clients(autojump_clock: trio.testing.MockClock) -> None:
    world = World()
    network = Network(
        (),  # --all
        (),
        world.make_client,  # type: ignore[arg-type]
        world.run_client,  # type: ignore[arg-type]
        world,  # type: ignore[arg-type]
        _node_name,
        links=world.links,  # type: ignore[arg-type]
    )
    world.links.set(eth0=2)
    async with harness(network.run, propagate_exceptions=False) as tree:
        await tree.wait_settled()
        (eth0,) = world.made
        world.links.fail.set()  # net dies, its children with it; it restarts after a backoff
        await tree.wait_settled()
        assert tree.snapshot().starts == 2  # the same client object runs again
        assert world.made == [eth0] and eth0.running == 1 and eth0.forgotten == []
        assert world.calls == [("add", "eth0"), ("synced",)]
