"""`dhcp4c.testing`: the example its docstring gives embedders runs, as written."""

from __future__ import annotations

import random
import textwrap
from typing import Any

import trio
import trio.testing

import dhcp4c.testing
from dhcp4c import Client
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory


def documented_example() -> str:
    doc = dhcp4c.testing.__doc__
    assert doc is not None
    start = doc.index("    async def test_")
    return textwrap.dedent(doc[start:])


async def test_the_documented_example_runs(autojump_clock: trio.testing.MockClock) -> None:
    names: dict[str, Any] = {
        "random": random,
        "trio": trio,
        "Client": Client,
        "MemoryNetwork": MemoryNetwork,
        "ServerConfig": ServerConfig,
        "ServerCore": ServerCore,
        "serve_memory": serve_memory,
    }
    exec(documented_example(), names)
    await names["test_agent_renews"](autojump_clock)
    assert trio.current_time() >= 3600
