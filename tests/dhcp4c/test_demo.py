"""`dhcp4c-demo`: a lease with renewals in private namespaces, and nothing left behind.

The demo is run as a subprocess (`python -m dhcp4c.demo`, what the `dhcp4c-demo` script runs),
with a short duration and T1 so that renewals show within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points

import pytest

from dhcp4c.demo import main as demo_main
from dhcp4c.testing import dnsmasq
from dhcp4c.testing.netns import list_namespaces, require_netns

DEMO = (sys.executable, "-m", "dhcp4c.demo")
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all")


def demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def leftovers(pid: int) -> list[str]:
    return [name for name in list_namespaces() if name.startswith(f"dhcp4cdemo-{pid}-")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purpose: it holds no namespace and no socket.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_console_script_runs_the_demo() -> None:
    (script,) = entry_points(group="console_scripts", name="dhcp4c-demo")
    assert script.value == "dhcp4c.demo:main"
    assert script.load() is demo_main


def test_the_command_has_no_demo_subcommand() -> None:
    # "demo" is an interface name like any other: the command's usage, not the demo's options.
    result = subprocess.run(
        [sys.executable, "-m", "dhcp4c", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: dhcp4c ")
    assert "--duration" not in result.stdout


def test_help_lists_the_options() -> None:
    result = demo("--help")
    assert result.returncode == 0
    for option in ("--duration", "--server", "--renew"):
        assert option in result.stdout


def test_bad_duration_is_a_usage_error() -> None:
    result = demo("--duration", "-1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.netns
@pytest.mark.parametrize("server", ["dnsmasq", "builtin"])
def test_demo_binds_renews_releases_and_cleans_up(server: str) -> None:
    require_netns()
    if server == "dnsmasq" and dnsmasq.which() is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("dnsmasq is not installed (CI must install it)")
        pytest.skip("dnsmasq is not installed")
    process = subprocess.Popen(
        [*DEMO, "--duration", "4.5", "--renew", "2", "--server", server],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    assert re.search(r"^\s+[\d.]+ s  bound    192\.0\.2\.\d+/24 from 192\.0\.2\.1", out, re.M), out
    assert re.search(r"^\s+[\d.]+ s  renewed  192\.0\.2\.\d+/24", out, re.M), out
    assert re.search(r"^\s+[\d.]+ s  lost     192\.0\.2\.\d+/24 \(released\)", out, re.M), out
    assert "kernel: address 192.0.2." in out
    assert "kernel: route default via 192.0.2.1 proto dhcp" in out
    assert "Traceback" not in err
    assert leftovers(process.pid) == []
    for pid in re.findall(r"\(pid (\d+)\)", out):
        assert gone(int(pid)), f"process {pid} survived the demo"


@pytest.mark.netns
def test_interrupted_demo_removes_everything() -> None:
    require_netns()
    process = subprocess.Popen(
        [*DEMO, "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        for line in process.stdout:
            lines.append(line)
            if " bound " in line or time.monotonic() > deadline:
                break
        assert any(" bound " in line for line in lines), "".join(lines)
        assert leftovers(process.pid), "the demo's namespaces should exist while it runs"
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, out + err
    assert "Traceback" not in err
    assert leftovers(process.pid) == []
    for pid in re.findall(r"\(pid (\d+)\)", "".join(lines) + out):
        assert gone(int(pid)), f"process {pid} survived the interrupted demo"


@pytest.mark.netns
def test_demo_without_root_says_so() -> None:
    require_netns()  # setpriv needs root to drop it
    result = subprocess.run(
        [*NOBODY, *DEMO, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 5
    assert result.stderr.strip().splitlines() == [
        "dhcp4c-demo: error: cannot create network namespaces: network namespace tests need root"
    ]
