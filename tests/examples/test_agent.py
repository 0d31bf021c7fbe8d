"""The example agent (examples/agent.py), run with `supervisor.testing` on the mock clock.

One in-process DHCP server on an in-memory network; each link is a `MemoryLink` with its own
hardware address. The tests follow the agent through links appearing and going, a client that
keeps dying (its restart limit restarts `net`, and the other clients keep their leases), the
flaky reporter (its limit climbs to `report`), and the tree dumped on SIGUSR1.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio
from examples.agent import PUSH_LIMIT, Agent, MemoryLinks, node_name
from trio.testing import MockClock

from dhcp4c.shell.client import Client
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory
from supervisor import Backoff, Handle, NodeState, StateChanges
from supervisor.testing import harness

HEALTHY = NodeState.HEALTHY
DNS = (IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54"))


@dataclass
class World:
    """The network, the server, the links and what the agent's sink received."""

    net: MemoryNetwork
    links: MemoryLinks
    resolv: Path
    pushed: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    sink_fails: bool = False
    clients: dict[str, Client] = field(default_factory=dict)

    def factory(self, ifname: str) -> Client:
        if ifname.startswith("bad"):
            client = Client(ifname, rng=random.Random(0))  # no such interface: run() raises
        else:
            hwaddr = bytes([2, 0, 0, 0, 0, int(ifname[-1]) + 1])
            link = self.net.attach(hwaddr)
            client = Client(
                ifname,
                hwaddr=hwaddr,
                transport_factory=lambda interface, address: link.open(),
                rng=random.Random(0),
            )
        self.clients[ifname] = client
        return client

    async def sink(self, summary: Mapping[str, str]) -> None:
        if self.sink_fails:
            raise ConnectionError("collector down")
        self.pushed.append((trio.current_time(), dict(summary)))

    def nameservers(self) -> list[str]:
        return [
            line.split()[1]
            for line in self.resolv.read_text().splitlines()
            if line.strip()[:1] != "#"
        ]


@asynccontextmanager
async def agent_running(
    tmp_path: Path, *links: str, **agent_options: Any
) -> AsyncIterator[tuple[World, Agent, Handle, StateChanges]]:
    world = World(MemoryNetwork(random.Random(0)), MemoryLinks(*links), tmp_path / "resolv.conf")
    core = ServerCore(ServerConfig(dns_servers=DNS))
    changes = StateChanges(max_buffer=100_000)
    agent = Agent(world.links, world.factory, world.resolv, world.sink, **agent_options)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, core, world.net.server(core.config.server_id))
        async with harness(
            agent.root,
            backoff=Backoff(jitter=0.0),
            rng=random.Random(0),
            observers=[changes],
            propagate_exceptions=False,
        ) as handle:
            yield world, agent, handle, changes
        nursery.cancel_scope.cancel()


def test_node_names_for_interfaces() -> None:
    assert [node_name(n) for n in ("eth0", "enp0s31f6", "br-lan.10", "WLAN0", "")] == [
        "eth0",
        "enp0s31f6",
        "br_lan_10",
        "wlan0",
        "_",
    ]


async def test_a_client_per_link_that_comes_and_goes(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with agent_running(tmp_path, "eth0") as (world, agent, handle, _):
        await handle.wait_state("root.net.eth0", HEALTHY)  # HEALTHY once bound
        await handle.wait_settled()
        assert world.nameservers() == [str(a) for a in DNS]
        eth0 = world.clients["eth0"]
        assert eth0.lease is not None

        world.links.add("eth1")
        await handle.wait_state("root.net.eth1", HEALTHY)
        await handle.wait_settled()
        assert sorted(agent.clients.value) == ["eth0", "eth1"]
        assert world.pushed[-1][1] == {
            "eth0": str(eth0.lease.address.ip),
            "eth1": str(world.clients["eth1"].lease.address.ip),  # type: ignore[union-attr]
        }

        world.links.remove("eth0")
        world.links.remove("eth1")
        await handle.wait_settled()
        assert not any(dn.startswith("root.net.") for dn in handle.states())
        assert agent.clients.value == {}
        assert world.nameservers() == []
        assert world.pushed[-1][1] == {}


async def test_links_not_matching_get_no_client(autojump_clock: MockClock, tmp_path: Path) -> None:
    options = {"match": lambda ifname: ifname.startswith("eth")}
    async with agent_running(tmp_path, "eth0", "wlan0", **options) as (_, agent, handle, _):
        await handle.wait_state("root.net.eth0", HEALTHY)
        await handle.wait_settled()
        assert list(agent.clients.value) == ["eth0"]
        assert "root.net.wlan0" not in handle.states()


async def test_a_dying_client_restarts_net_and_the_others_keep_their_lease(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with agent_running(tmp_path, "eth0") as (world, agent, handle, changes):
        await handle.wait_state("root.net.eth0", HEALTHY)
        lease = world.clients["eth0"].lease
        began = trio.current_time()
        world.links.add("bad0")
        # bad0's client dies at once each run; its sixth death within a minute exceeds its
        # limit (5 in 60 s) and `net` dies: net and its clients run again after net's backoff.
        await handle.wait_state("root.net", NodeState.DEAD)
        net = handle.snapshot().find("root.net")
        assert net is not None and net.last_error is not None
        assert "root.net.bad0: more than 5 deaths in 60 s" in net.last_error
        assert trio.current_time() - began == pytest.approx(0.5 + 0.75 + 1.125 + 1.6875 + 2.53125)
        await handle.wait_state("root.net.eth0", HEALTHY)
        # The same client object, and so the same lease, verified by INIT-REBOOT.
        assert agent.clients.value["eth0"] is world.clients["eth0"]
        assert world.clients["eth0"].lease is not None
        assert world.clients["eth0"].lease.address == lease.address  # type: ignore[union-attr]
        deaths = [c for c in changes.drain() if c.dn == "root.net" and c.new is NodeState.DEAD]
        assert len(deaths) == 1


async def test_the_flaky_reporter_limit_climbs_to_report(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    async with agent_running(tmp_path, "eth0") as (world, _, handle, changes):
        await handle.wait_state("root.net.eth0", HEALTHY)
        await handle.wait_settled()
        changes.drain()
        world.sink_fails = True
        began = trio.current_time()
        world.links.add("eth1")  # a lease change: push calls the sink, which now fails
        await handle.wait_state("root.report", NodeState.DEAD)
        # push died at once, then after each of its backoffs (0.5, 0.75, 1.125): the fourth
        # death is more than PUSH_LIMIT allows, so report died.
        assert PUSH_LIMIT.intensity == 3
        assert trio.current_time() - began == pytest.approx(0.5 + 0.75 + 1.125)
        world.sink_fails = False
        await handle.wait_settled()
        report = handle.snapshot().find("root.report")
        assert report is not None and (report.state, report.deaths, report.restarts) == (
            HEALTHY,
            1,
            1,
        )
        push = report.children[0]
        assert (push.name, push.state, push.deaths) == ("push", HEALTHY, 0)  # a fresh history
        assert sorted(world.pushed[-1][1]) == ["eth0", "eth1"]


async def test_the_tree_is_logged_on_sigusr1(
    autojump_clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("agent.test.debug")
    with caplog.at_level(logging.INFO, logger="agent.test.debug"):
        async with agent_running(tmp_path, "eth0", debug_log=log) as (_, _, handle, _):
            await handle.wait_state("root.net.eth0", HEALTHY)
            await handle.wait_state("root.debug", HEALTHY)
            os.kill(os.getpid(), signal.SIGUSR1)
            with trio.fail_after(1):
                while not any(r.name == "agent.test.debug" for r in caplog.records):
                    await trio.sleep(0.01)
    [record] = [r for r in caplog.records if r.name == "agent.test.debug"]
    lines = record.getMessage().splitlines()
    assert lines[0] == "supervision tree:"
    assert [line.split()[0] for line in lines[1:]] == [
        "root",
        "net",
        "eth0",
        "resolver",
        "report",
        "push",
        "debug",
    ]
