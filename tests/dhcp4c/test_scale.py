"""Many interfaces: 200 veths against one dnsmasq, 200 clients under one supervision tree.

The same run as `bench/scale.py` (imported from there): every client binds and every address
reaches its interface within a generous bound (a timeout, not a speed assertion), and every
namespace is gone afterwards. Real time and real sockets, in namespaces the test creates.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dhcp4c.testing import dnsmasq as dnsmasq_module
from dhcp4c.testing import netns

COUNT = 200
# A bound, not a speed assertion: binding all takes a few seconds, but a client whose first
# exchanges are lost in the burst of 200 retransmits on RFC 2131's doubling schedule.
TIMEOUT = 150.0
BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dhcp4c_bench_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench() -> ModuleType:
    netns.require_netns()
    if dnsmasq_module.which() is None:
        if netns._in_ci():
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    return load_bench()


@pytest.mark.slow
@pytest.mark.netns
async def test_two_hundred_interfaces_bind(
    bench: Any, tmp_path: Path, record_property: Any
) -> None:
    with bench.scale_network(COUNT, tmp_path) as network:
        result = await bench.bind_all(network, configure=True, timeout=TIMEOUT)
        names = [network.client.name, network.server.name]
    record_property("bind_seconds", round(result.bind_seconds, 2))
    record_property("kib_per_client", round(result.kib_per_client, 1))
    print(bench.describe(result))
    assert result.count == COUNT
    assert result.addresses == COUNT  # every lease reached the kernel
    assert not set(names) & set(netns.list_namespaces())
    mine = f"{bench.PREFIX}-{os.getpid()}-"
    assert not [name for name in netns.list_namespaces() if name.startswith(mine)]


@pytest.mark.netns
@pytest.mark.parametrize("flags", [[], ["-S"]], ids=["site", "no-site"])
def test_the_script_runs_as_the_benches_are_run(bench: Any, flags: list[str]) -> None:
    # `./dev bench` runs `python bench/scale.py` (site on: the editable install puts src on the
    # path after bench/, whose supervisor.py must not shadow the package); `python -S` as the
    # docstring shows. A few interfaces: the script's path set-up and its end-to-end run.
    result = subprocess.run(
        [sys.executable, *flags, str(BENCH), "--count", "3", "--timeout", "30"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "(3 addresses on the interfaces)" in result.stdout
