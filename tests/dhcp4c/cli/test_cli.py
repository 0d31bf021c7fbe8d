"""The command line: parsing, validation, checks, exit codes and the JSON event format.

Everything here runs without root and without a network: the end-to-end behaviour of the
command is in `test_e2e.py`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from dhcp4c import cli
from dhcp4c.protocol.config import DEFAULT_PARAMETER_REQUEST_LIST, ClientConfig
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.machine import State
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.shell.client import Client
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory

HW = b"\x02\x00\x00\x00\x00\x01"

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


def parse(*argv: str) -> cli.Settings:
    return cli.parse(list(argv))


def usage_error(*argv: str) -> str:
    """The message of the CommandError (code 2) that parsing `argv` raises."""
    with pytest.raises(cli.CommandError) as caught:
        cli.parse(list(argv))
    assert caught.value.code == cli.EXIT_USAGE
    return str(caught.value)


def test_defaults() -> None:
    settings = parse("eth0")
    assert settings == cli.Settings(interfaces=("eth0",))
    assert settings.configure and settings.client.rapid_commit and not settings.once
    assert settings.timeout is None and settings.lease_dir is None


def test_every_option() -> None:
    settings = parse(
        "--once",
        "--timeout",
        "2.5",
        "--no-configure",
        "--json",
        "-v",
        "--release",
        "--lease-dir",
        "/tmp/leases",
        "--client-id",
        "01:02:03:04:05:06:07",
        "--hostname",
        "host-1.example.",
        "--vendor-class",
        "acme",
        "--request-option",
        "42",
        "--request-option",
        "0x2a",
        "--request-option",
        "119",
        "--no-rapid-commit",
        "--broadcast-flag",
        "--resolv-conf",
        "/tmp/resolv.conf",
        "--route-metric",
        "50",
        "--no-routes",
        "--no-mtu",
        "eth0",
        "eth1",
    )
    assert settings.interfaces == ("eth0", "eth1")
    assert settings.once and settings.timeout == 2.5 and not settings.configure
    assert settings.json and settings.verbosity == 1 and settings.client.release_on_stop
    assert settings.lease_dir == Path("/tmp/leases")
    client = settings.client
    assert client.client_id == bytes.fromhex("01020304050607")
    assert client.hostname == "host-1.example"  # the root dot is dropped
    assert client.vendor_class == b"acme"
    # 42 and 119 are requested by default already: duplicates (42 == 0x2a) once.
    assert client.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    assert not client.rapid_commit and client.broadcast_flag
    assert settings.resolv_conf == Path("/tmp/resolv.conf")
    assert settings.route_metric == 50 and not settings.routes and not settings.mtu


def test_once_has_a_default_timeout() -> None:
    assert parse("--once", "eth0").timeout == 30.0
    assert parse("--once", "--timeout", "5", "eth0").timeout == 5.0


@pytest.mark.parametrize(
    ("flags", "verbosity"),
    [((), 0), (("-v",), 1), (("-vv",), 2), (("-vvv",), 2), (("-q",), -1), (("-q", "-v"), 0)],
)
def test_verbosity(flags: tuple[str, ...], verbosity: int) -> None:
    assert parse(*flags, "eth0").verbosity == verbosity


@pytest.mark.parametrize(("text", "kind"), [("duid", "duid"), ("mac", "mac")])
def test_client_id_kinds(text: str, kind: str) -> None:
    settings = parse("--client-id", text, "eth0")
    assert settings.client.client_id is None and settings.client.client_id_type == kind


def test_request_options_extend_the_default_list() -> None:
    settings = parse("--request-option", "224", "--request-option", "0xe0", "-q", "eth0")
    assert settings.client.parameter_request_list == (*DEFAULT_PARAMETER_REQUEST_LIST, 224)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--client-id", "xyz", "eth0"), "expected 'duid', 'mac' or hex bytes"),
        (("--client-id", "01", "eth0"), "needs 2 to 255 bytes"),
        (("--hostname", "bad;name", "eth0"), "is not a valid host name"),
        (("--hostname", "bad\nname", "eth0"), "is not a valid host name"),
        (("--hostname=-leading", "eth0"), "is not a valid host name"),
        (("--vendor-class", "x" * 256, "eth0"), "1 to 255 printable bytes"),
        (("--vendor-class", "bad\x07", "eth0"), "1 to 255 printable bytes"),
        (("eth0", "eth0"), "named twice"),
        (("a/b",), "not a valid interface name"),
        (("a" * 16,), "not a valid interface name"),
        (("..",), "not a valid interface name"),
        (("has space",), "not a valid interface name"),
    ],
)
def test_bad_values_are_one_clear_message(argv: tuple[str, ...], message: str) -> None:
    assert message in usage_error(*argv)


def test_acd_options() -> None:
    assert parse("eth0").client.acd_timeout == ClientConfig().acd_timeout == 0.2
    assert parse("--acd-timeout", "7", "eth0").client.acd_timeout == 7.0
    assert parse("--acd-timeout", "0", "eth0").client.acd_timeout == 0.0
    assert parse("--no-acd", "eth0").client.acd_timeout is None


def test_lease_dir_must_be_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    assert "is not a directory" in usage_error("--lease-dir", str(file), "eth0")
    assert "is a directory" in usage_error("--resolv-conf", str(tmp_path), "eth0")


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("--request-option", "0", "eth0"),
        ("--request-option", "255", "eth0"),
        ("--request-option", "x", "eth0"),
        ("--timeout", "0", "--once", "eth0"),
        ("--timeout", "-1", "eth0"),
        ("--timeout", "nan", "eth0"),
        ("--route-metric", "-1", "eth0"),
        ("--acd-timeout", "-1", "eth0"),
        ("--acd-timeout", "inf", "eth0"),
        ("--acd-timeout", "1", "--no-acd", "eth0"),
        ("--no-such-option", "eth0"),
    ],
)
def test_argparse_errors_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse(list(argv))
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_main_reports_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--hostname", "a b", "eth0"])
    assert caught.value.code == cli.EXIT_USAGE
    assert capsys.readouterr().err == "dhcp4c: error: --hostname: 'a b' is not a valid host name\n"


def test_privileges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.run, "_effective_capabilities", lambda: 0)
    with pytest.raises(cli.CommandError) as caught:
        cli.check_privileges(parse("eth0"))
    assert caught.value.code == cli.EXIT_PRIVILEGES
    assert "CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW" in str(caught.value)
    # Without configuring the kernel, CAP_NET_ADMIN is not needed.
    monkeypatch.setattr(cli.run, "_effective_capabilities", lambda: (1 << 13) | (1 << 10))
    cli.check_privileges(parse("--no-configure", "eth0"))
    with pytest.raises(cli.CommandError, match=r"\(CAP_NET_ADMIN\)"):
        cli.check_privileges(parse("eth0"))


def test_missing_interface() -> None:
    with pytest.raises(cli.CommandError) as caught:
        cli.inspect_interface("nosuchif0")
    assert caught.value.code == cli.EXIT_INTERFACE
    assert str(caught.value) == "no interface named 'nosuchif0'"


def test_loopback_is_not_ethernet() -> None:
    with pytest.raises(cli.CommandError) as caught:
        cli.inspect_interface("lo")
    assert caught.value.code == cli.EXIT_INTERFACE
    assert "not an Ethernet interface" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("eth0", "eth0"), ("enp0s3", "enp0s3"), ("eth0.100", "eth0_100"), ("WLAN-1", "wlan_1")],
)
def test_node_names(name: str, expected: str) -> None:
    assert cli.run._node_name(name, set()) == expected


def test_node_names_are_unique() -> None:
    taken: set[str] = set()
    assert [cli.run._node_name(n, taken) for n in ("a.b", "a-b", "a_b")] == [
        "a_b",
        "a_b_2",
        "a_b_3",
    ]


def _lease() -> Lease:
    ack = Message(
        op=BOOTREPLY,
        xid=1,
        yiaddr=IPv4Address("192.0.2.10"),
        options={
            1: bytes([255, 255, 255, 0]),
            3: IPv4Address("192.0.2.1").packed,
            6: IPv4Address("192.0.2.53").packed,
            15: b"example.org",
            51: (600).to_bytes(4, "big"),
            54: IPv4Address("192.0.2.1").packed,
            58: (300).to_bytes(4, "big"),
            59: (500).to_bytes(4, "big"),
        },
    )
    return Lease.from_ack(ack, 100.0, random.Random(0))


def test_event_json() -> None:
    lease = _lease()
    document = json.loads(cli.event_json("bound", "eth0", lease, now=110.0, wall=1700000000.0))
    assert document == {
        "event": "bound",
        "interface": "eth0",
        "time": 1700000000.0,
        "address": "192.0.2.10/24",
        "server_id": "192.0.2.1",
        "routers": ["192.0.2.1"],
        "dns_servers": ["192.0.2.53"],
        "domain": "example.org",
        "search": [],
        "mtu": None,
        "routes": [{"destination": "0.0.0.0/0", "gateway": "192.0.2.1"}],
        "t1": 290.0,
        "t2": 490.0,
        "expiry": 590.0,
    }
    lost = json.loads(cli.event_json("lost", "eth0", lease, now=700.0, wall=0.0, reason="expired"))
    assert lost["reason"] == "expired" and lost["expiry"] == 0.0
    changed = json.loads(cli.event_json("changed", "eth0", lease, now=0, wall=0, old=lease))
    assert changed["old_address"] == "192.0.2.10/24" and "missed" not in changed
    coalesced = json.loads(cli.event_json("renewed", "eth0", lease, now=0, wall=0, missed=2))
    assert coalesced["missed"] == 2


def test_only_interrupts() -> None:
    assert cli.only_interrupts(KeyboardInterrupt())
    assert not cli.only_interrupts(ValueError())
    inner = BaseExceptionGroup("h", [KeyboardInterrupt()])
    assert cli.only_interrupts(BaseExceptionGroup("g", [KeyboardInterrupt(), inner]))
    assert not cli.only_interrupts(BaseExceptionGroup("g", [KeyboardInterrupt(), ValueError()]))


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dhcp4c", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_documents_exit_codes() -> None:
    result = run_module("--help")
    assert result.returncode == 0
    for text in ("--once", "--json", "--release", "--lease-dir", "exit codes:", "130"):
        assert text in result.stdout


def test_no_arguments_is_a_usage_error() -> None:
    result = run_module()
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_startup_imports_stay_lazy() -> None:
    # Parsing must not load trio, the codec or pyroute2: they cost ~100 ms each at start-up.
    code = (
        "import sys; from dhcp4c import cli; cli.parse(['--once', 'eth0']);"
        "print(sorted(m for m in ('trio', 'pyroute2', 'construct', 'dhcp4c.protocol.message')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


# -- start-up: one node's order of work -----------------------------------------------------


class FakeKernel:
    """`cli.run._KernelSide` as `_run_node` sees it, recording when the import is asked for."""

    loaded = None

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sent_at_request: dict[str, int] | None = None
        self.running: Any = None

    def request(self) -> None:
        if self.sent_at_request is None:
            self.sent_at_request = dict(self.client.stats.sent)

    async def runner(self) -> Any:
        return self

    async def run_interface(self, client: Any, *, running: Any) -> None:
        # The link watch: the client binds, then the link's identity changes (stop the run).
        await client.wait_bound()
        await running()
        assert client.state is State.STOPPED


async def test_the_first_discover_goes_out_before_the_kernel_side_is_imported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(random.Random(0))
    link = net.attach(HW)
    config = ServerConfig(lease_time=1000, t1=500, t2=875)
    client = Client("eth0", hwaddr=HW, transport_factory=lambda i, a: link.open())
    kernel = FakeKernel(client)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, ServerCore(config), net.server(config.server_id))
        await cli.run._run_node(client, kernel)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    assert kernel.sent_at_request == {"DISCOVER": 1}
    assert client.lease is not None


async def test_a_failed_kernel_import_ends_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.run._KernelSide, "_MODULES", ("dhcp4c.no_such_module",))
    kernel = cli.run._KernelSide()
    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(kernel.run)
            nursery.start_soon(kernel.netconfig)  # a waiter: cancelled, never left hanging
    (error,) = caught.value.exceptions
    assert isinstance(error, ModuleNotFoundError) and kernel.loaded is None


# -- the operators' options: hooks, --version, status, interfaces that come and go ---------


def _hook(tmp_path: Path, mode: int = 0o755) -> Path:
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\n")
    hook.chmod(mode)
    return hook


def test_hook_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dhcp4c.consumers import hooks

    hook = _hook(tmp_path)
    settings = parse("--hook", str(hook), "--hook-timeout", "2.5", "eth0")
    assert settings.hook == hook and settings.hook_timeout == 2.5
    assert parse("--hook", str(hook), "eth0").hook_timeout == hooks.DEFAULT_TIMEOUT
    monkeypatch.chdir(tmp_path)
    assert parse("--hook", "hook", "eth0").hook == hook  # absolute: never looked up in PATH


def test_bad_hooks_are_one_clear_message(tmp_path: Path) -> None:
    assert usage_error("--hook", str(tmp_path / "none"), "eth0") == (
        f"--hook: {tmp_path / 'none'} is not a file"
    )
    assert usage_error("--hook", str(tmp_path), "eth0") == f"--hook: {tmp_path} is not a file"
    hook = _hook(tmp_path, 0o644)
    assert usage_error("--hook", str(hook), "eth0") == f"--hook: {hook} is not executable"
    assert usage_error("--hook-timeout", "3", "eth0") == "--hook-timeout needs --hook"


def test_dynamic_interfaces() -> None:
    assert parse("--all").every and parse("--all").dynamic and parse("--all").interfaces == ()
    settings = parse("--match", "dyn*", "--match", "eth?", "--match", "dyn*", "lan0")
    assert settings.match == ("dyn*", "eth?") and settings.interfaces == ("lan0",)
    assert settings.dynamic and not settings.every
    assert not parse("eth0").dynamic


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--all", "--match", "e*"), "--all and --match exclude each other"),
        (("--match", ""), "--match: '' is not an interface name pattern"),
        (("--match", "a/b"), "--match: 'a/b' is not an interface name pattern"),
        (("--match", "a b"), "--match: 'a b' is not an interface name pattern"),
        (("eth*",), "'eth*' is a pattern: use --match 'eth*'"),
    ],
)
def test_bad_dynamic_options(argv: tuple[str, ...], message: str) -> None:
    assert usage_error(*argv) == message


@pytest.mark.parametrize(
    "argv", [("--hook-timeout", "0", "eth0"), ("--hook-timeout", "x", "eth0"), ("--match",)]
)
def test_bad_operator_values_exit_2(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.parse(list(argv))
    assert caught.value.code == 2
    error = capsys.readouterr().err.splitlines()
    assert error[-1].startswith("dhcp4c: error: ") and "Traceback" not in error


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from dhcp4c._version import __version__

    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"dhcp4c {__version__}\n"


def test_status_is_dispatched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["status", "--lease-dir", str(tmp_path / "none")])
    assert code == 3
    assert capsys.readouterr().err.startswith("dhcp4c status: error: no lease: ")
    # An interface named "status" is an interface after `--`.
    assert parse("--", "status").interfaces == ("status",)


def test_help_tells_the_subcommand_and_dynamic_options() -> None:
    result = run_module("--help")
    for text in ("dhcp4c status", "dhcp4c -- status", "--all", "--match", "--hook", "--version"):
        assert text in result.stdout


# -- what follows the clients' events: the service manager, readiness ----------------------


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def ready(self, status: str) -> None:
        self.sent.append(("READY", status))

    def status(self, text: str) -> None:
        self.sent.append(("STATUS", text))

    def stopping(self, status: str) -> None:
        self.sent.append(("STOPPING", status))


class FakeClient:
    """The part of `Client` the observers use: subscriptions and the latest event."""

    def __init__(self) -> None:
        from dhcp4c.shell.observe import LeaseObservers

        self.observers = LeaseObservers()
        self.subscribe = self.observers.subscribe
        self.latest = self.observers.value

    def bound(self, lease: Lease) -> None:
        from dhcp4c.shell.observe import LeaseEventKind

        self.observers.publish(LeaseEventKind.BOUND, lease, None)

    def lost(self, lease: Lease) -> None:
        from dhcp4c.shell.observe import LeaseEventKind

        self.observers.publish(LeaseEventKind.LOST, None, lease, "interface-gone")


async def test_ready_once_every_interface_is_bound_and_nothing_after_stopping() -> None:
    notifier, lease = FakeNotifier(), _lease()
    eth0, eth1 = FakeClient(), FakeClient()
    async with trio.open_nursery() as nursery:
        observers = cli.run._Observers(parse("eth0", "eth1"), nursery, notifier, synced=True)  # type: ignore[arg-type]
        observers.add("eth0", eth0)  # type: ignore[arg-type]
        observers.add("eth1", eth1)  # type: ignore[arg-type]
        eth0.bound(lease)
        await trio.testing.wait_all_tasks_blocked()
        assert [kind for kind, _ in notifier.sent] == ["STATUS"]
        assert not observers.all_bound.is_set()
        eth1.bound(lease)
        await trio.testing.wait_all_tasks_blocked()
        assert notifier.sent[1][0] == "READY"
        assert notifier.sent[1][1].startswith("eth1: bound 192.0.2.10/24 from 192.0.2.1")
        assert observers.all_bound.is_set()
        observers.stopping("stopping (SIGTERM)")
        eth0.lost(lease)  # a release while the tree stops: not told after STOPPING=1
        await trio.testing.wait_all_tasks_blocked()
        observers.finish()
    assert notifier.sent[2:] == [("STOPPING", "stopping (SIGTERM)")]


async def test_readiness_follows_the_dynamic_set() -> None:
    notifier, lease = FakeNotifier(), _lease()
    dyn0, dyn1 = FakeClient(), FakeClient()
    async with trio.open_nursery() as nursery:
        observers = cli.run._Observers(parse("--all"), nursery, notifier, synced=False)  # type: ignore[arg-type]
        observers.synced()  # no interface yet: not ready (at least one is waited for)
        assert not observers.all_bound.is_set()
        observers.add("dyn0", dyn0)  # type: ignore[arg-type]
        observers.add("dyn1", dyn1)  # type: ignore[arg-type]
        dyn0.bound(lease)
        await trio.testing.wait_all_tasks_blocked()
        assert not observers.all_bound.is_set()
        dyn1.lost(lease)  # no lease there, and then it is removed: dyn0 alone is "every"
        observers.remove("dyn1")
        assert observers.all_bound.is_set()
        await trio.testing.wait_all_tasks_blocked()
        observers.finish()
    kinds = [kind for kind, _ in notifier.sent]
    assert kinds.count("READY") == 1 and ("READY", "bound on dyn0") in notifier.sent
    assert ("STATUS", "dyn1: lost 192.0.2.10/24 (interface-gone)") in notifier.sent


def test_ipv6_only_preferred_flag() -> None:
    assert not parse("eth0").client.ipv6_only_preferred
    assert parse("--ipv6-only-preferred", "eth0").client.ipv6_only_preferred


def test_ipv6_only_event_json() -> None:
    from dhcp4c.cli.output import v6only_json

    document = json.loads(v6only_json("eth0", 300.0, wall=1700000000.0))
    assert document == {
        "event": "ipv6-only",
        "interface": "eth0",
        "time": 1700000000.0,
        "wait": 300.0,
    }
    assert json.loads(v6only_json("eth0", 300.0, wall=0.0, missed=1))["missed"] == 1
