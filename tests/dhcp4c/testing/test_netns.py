"""Network namespace topologies: creation, isolation from the host, and guaranteed removal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import IPv4Interface

import pytest

from dhcp4c.testing import netns


def host_links() -> set[str]:
    return {link["ifname"] for link in json.loads(subprocess.check_output(["ip", "-j", "link"]))}


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


@pytest.fixture
def needs_netns() -> None:
    netns.require_netns()


@pytest.fixture
def topology(needs_netns: None) -> Iterator[netns.Topology]:
    with netns.Topology("nstest") as topo:
        yield topo


@pytest.mark.netns
def test_namespaces_exist_inside_and_are_gone_after(needs_netns: None) -> None:
    with netns.Topology("nstest") as topo:
        a, b = topo.namespace("a"), topo.namespace()
        assert a.name.startswith(f"nstest-{os.getpid()}-") and a.name.endswith("-a")
        assert a.name != b.name
        assert {a.name, b.name} <= set(netns.list_namespaces())
    assert not {a.name, b.name} & set(netns.list_namespaces())
    topo.close()  # idempotent
    with pytest.raises(RuntimeError):
        topo.namespace()


@pytest.mark.netns
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_removed_on_exception(needs_netns: None, error: type[BaseException]) -> None:
    names = []
    with pytest.raises(error), netns.Topology("nstest") as topo:
        a, b = topo.namespace(), topo.namespace()
        topo.veth(a, b)
        names = [a.name, b.name]
        raise error
    assert names
    assert not set(names) & set(netns.list_namespaces())


@pytest.mark.netns
def test_veth_lives_only_in_the_namespaces(topology: netns.Topology) -> None:
    before = host_links()
    a, b = topology.namespace("a"), topology.namespace("b")
    end_a, end_b = topology.veth(
        a,
        b,
        address_a=IPv4Interface("10.88.0.1/30"),
        hwaddr_b=bytes.fromhex("020000aabbcc"),
    )
    assert host_links() == before
    assert (end_a.namespace, end_b.namespace) == (a, b)
    assert end_b.hwaddr == bytes.fromhex("020000aabbcc")
    assert end_a.index > 1
    links_a = json.loads(a.ip("-j", "link"))
    assert {link["ifname"] for link in links_a} == {"lo", end_a.name}
    assert all("UP" in link["flags"] for link in links_a)
    assert "10.88.0.1/30" in a.run(["ip", "-4", "addr", "show", "dev", end_a.name])
    assert end_b.name in b.run(["ip", "link"])
    assert b.command(["true"]) == ["ip", "netns", "exec", b.name, "true"]
    end_b.set_up(False)
    assert "UP" not in json.loads(b.ip("-j", "link", "show", "dev", end_b.name))[0]["flags"]
    with pytest.raises(ValueError, match="does not belong"):
        topology.veth(a, netns.Namespace("elsewhere"))
    with pytest.raises(netns.NetnsError):
        a.ip("link", "set", "dev", "nosuchif0", "up")


@pytest.mark.netns
def test_entered_switches_this_thread_only_and_restores(topology: netns.Topology) -> None:
    ns = topology.namespace()
    target = os.stat(ns.path).st_ino
    original = current_netns_inode()
    seen_by_other_thread: list[int] = []
    look = threading.Event()

    def other_thread() -> None:
        look.wait()
        seen_by_other_thread.append(current_netns_inode())

    # Started before entering (a thread started inside would inherit the namespace).
    thread = threading.Thread(target=other_thread)
    thread.start()
    with ns.entered():
        assert current_netns_inode() == target
        look.set()
        thread.join()
    assert current_netns_inode() == original
    assert seen_by_other_thread == [original]
    with pytest.raises(ZeroDivisionError), ns.entered():
        1 / 0  # noqa: B018
    assert current_netns_inode() == original


@pytest.mark.netns
def test_sockets_stay_in_their_namespace(topology: netns.Topology) -> None:
    a, b = topology.namespace(), topology.namespace()
    end_a, _ = topology.veth(a, b, name_a="onlyinside0")
    with a.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # The interface exists only in `a`; the socket, used from the host namespace, sees it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, end_a.name.encode())
    assert end_a.name not in host_links()


def test_programs_run_inside_cannot_rewrite_the_host_resolv_conf(needs_netns: None) -> None:
    # Peer DHCP clients' hook scripts write /etc/resolv.conf (udhcpc's default.script did, once,
    # and cut this host off DNS): inside our namespaces that path is a private, empty file.
    with open("/etc/resolv.conf", "rb") as file:
        before = file.read()
    with netns.Topology("rtest") as topo:
        ns = topo.namespace()
        ns.run(["sh", "-c", "echo 'nameserver 198.51.100.9' > /etc/resolv.conf"])
        assert ns.run(["cat", "/etc/resolv.conf"]) == "nameserver 198.51.100.9\n"
        private = f"/etc/netns/{ns.name}"
        assert os.path.isdir(private)
    with open("/etc/resolv.conf", "rb") as file:
        assert file.read() == before
    assert not os.path.exists(private)


def test_prefix_must_not_contain_separator() -> None:
    with pytest.raises(ValueError):
        netns.Topology("bad-prefix")


@pytest.mark.netns
def test_atexit_removes_namespaces_left_open(needs_netns: None) -> None:
    code = (
        "from dhcp4c.testing import netns\n"
        "topo = netns.Topology('nstest')\n"
        "print(topo.namespace().name, flush=True)\n"
    )
    name = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert name.startswith("nstest-")
    assert name not in netns.list_namespaces()


@pytest.mark.netns
def test_remove_stale_after_sigkill(needs_netns: None) -> None:
    code = (
        "import os, signal\n"
        "from dhcp4c.testing import netns\n"
        "print(netns.Topology('nsstale').namespace().name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL
    stale = result.stdout.strip()
    try:
        assert stale in netns.list_namespaces()  # SIGKILL: no atexit
        with netns.Topology("nsstale") as topo:
            alive = topo.namespace()
            assert netns.remove_stale("nsstale") == [stale]
            assert alive.name in netns.list_namespaces()  # our own process is alive
        assert stale not in netns.list_namespaces()
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        (None, pytest.skip.Exception),
        ("", pytest.skip.Exception),
        ("false", pytest.skip.Exception),
        ("true", pytest.fail.Exception),
        ("1", pytest.fail.Exception),
    ],
)
def test_require_netns_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    monkeypatch.setattr(netns, "netns_available", lambda: "no root here")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no root here"):
        netns.require_netns()


def test_require_netns_passes_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "netns_available", lambda: None)
    monkeypatch.setenv("CI", "true")
    netns.require_netns()
