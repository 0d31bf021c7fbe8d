"""Lease hooks: what a hook receives, hostile option values, time limits, failures.

The hooks are real executables (sh scripts written to tmp_path) run on Trio's real clock; the
pure parts (`hook_environment`, `event_document`) are checked with explicit `now`/`wall`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from dhcp4c.consumers import hooks
from dhcp4c.consumers.hooks import HookRunner, check_hook, event_document, hook_environment
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.protocol.options import OptionCode
from dhcp4c.shell.client import Client
from dhcp4c.shell.observe import LeaseEvent, LeaseEventKind, LeaseObservers
from dhcp4c.testing.memory import MemoryNetwork
from dhcp4c.testing.server import ServerConfig, ServerCore
from dhcp4c.testing.server_net import serve_memory

REPO = Path(__file__).resolve().parents[3]
OBTAINED = 100.0
NOW = 160.0
WALL = 1_764_300_000.25


def dns_wire(*names: bytes) -> bytes:
    """Option 119's encoding (RFC 1035 §3.1) of `names`, each a dot-free list of raw labels."""
    out = b""
    for name in names:
        for label in name.split(b"."):
            out += bytes([len(label)]) + label
        out += b"\x00"
    return out


def make_lease(**extra: bytes) -> Lease:
    options: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: b"\x05",
        OptionCode.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        OptionCode.ROUTER: IPv4Address("192.0.2.1").packed,
        OptionCode.DOMAIN_NAME_SERVER: IPv4Address("192.0.2.53").packed
        + IPv4Address("192.0.2.54").packed,
        OptionCode.DOMAIN_NAME: b"example.com",
        OptionCode.INTERFACE_MTU: (1400).to_bytes(2, "big"),
        OptionCode.IP_ADDRESS_LEASE_TIME: (3600).to_bytes(4, "big"),
        OptionCode.RENEWAL_TIME_VALUE: (1800).to_bytes(4, "big"),
        OptionCode.REBINDING_TIME_VALUE: (3150).to_bytes(4, "big"),
        OptionCode.SERVER_IDENTIFIER: IPv4Address("192.0.2.1").packed,
        OptionCode.CLASSLESS_STATIC_ROUTE: bytes([16, 10, 1, 192, 0, 2, 254, 0, 192, 0, 2, 1]),
    }
    for name, value in extra.items():
        options[OptionCode[name]] = value
    ack = Message(op=BOOTREPLY, xid=1, yiaddr=IPv4Address("192.0.2.10"), options=options)
    return Lease.from_ack(ack, OBTAINED, random.Random(0))


def bound(lease: Lease | None = None, seq: int = 1) -> LeaseEvent:
    return LeaseEvent(LeaseEventKind.BOUND, lease or make_lease(), None, None, seq)


# Hostile values a server might send, each trying to create `PWNED` in the hook's directory when
# a careless hook hands it to a shell (CVE-2018-1111: option 15 through NetworkManager's
# dispatcher; CVE-2011-0997: dhclient-script and option 12).
PWN = "touch PWNED"
HOSTILE = {
    "DOMAIN_NAME": f"example.com'; {PWN}; echo '".encode(),
    "HOST_NAME": f"$({PWN})".encode(),
}
HOSTILE_SEARCH = dns_wire(
    b"good.example", f"`{PWN}`.example".encode(), b"x;" + PWN.encode(), b"ok.example"
)


def test_environment_of_a_bound_lease() -> None:
    env = hook_environment("eth0", bound(), now=NOW, wall=WALL)
    assert env == {
        "DHCP4C_REASON": "bound",
        "DHCP4C_INTERFACE": "eth0",
        "DHCP4C_ADDRESS": "192.0.2.10",
        "DHCP4C_PREFIX": "24",
        "DHCP4C_NETMASK": "255.255.255.0",
        "DHCP4C_BROADCAST": "192.0.2.255",
        "DHCP4C_SERVER_ID": "192.0.2.1",
        "DHCP4C_ROUTERS": "192.0.2.1",
        "DHCP4C_ROUTES": "10.1.0.0/16,192.0.2.254 0.0.0.0/0,192.0.2.1",
        "DHCP4C_DNS": "192.0.2.53 192.0.2.54",
        "DHCP4C_DOMAIN": "example.com",
        "DHCP4C_MTU": "1400",
        "DHCP4C_LEASE_TIME": "3600",
        "DHCP4C_T1": "1740",  # 100 + 1800 - 160
        "DHCP4C_T2": "3090",
        "DHCP4C_EXPIRY": "3540",
        "DHCP4C_TIME": "1764300000",
        "DHCP4C_SEQ": "1",
    }
    assert set(env) <= set(hooks.VARIABLES)


def test_environment_of_changed_and_lost() -> None:
    old = make_lease()
    new = make_lease(SUBNET_MASK=IPv4Address("255.255.0.0").packed)
    changed = LeaseEvent(LeaseEventKind.CHANGED, new, old, None, 2, missed=1)
    env = hook_environment("eth0", changed, now=NOW, wall=WALL)
    assert env["DHCP4C_PREFIX"] == "16"
    assert (env["DHCP4C_OLD_ADDRESS"], env["DHCP4C_OLD_PREFIX"]) == ("192.0.2.10", "24")
    assert env["DHCP4C_MISSED"] == "1" and "DHCP4C_LOST_REASON" not in env
    lost = LeaseEvent(LeaseEventKind.LOST, None, old, "expired", 3)
    env = hook_environment("eth0", lost, now=4000.0, wall=WALL)
    assert env["DHCP4C_REASON"] == "lost" and env["DHCP4C_LOST_REASON"] == "expired"
    assert env["DHCP4C_ADDRESS"] == "192.0.2.10"  # the lease that was lost
    assert env["DHCP4C_EXPIRY"] == "0" and "DHCP4C_OLD_ADDRESS" not in env
    # A reason that is not a plain word never reaches the hook (they come from an enum).
    odd = LeaseEvent(LeaseEventKind.LOST, None, old, "x; rm -rf /", 3)
    assert "DHCP4C_LOST_REASON" not in hook_environment("eth0", odd, now=NOW, wall=WALL)


def test_document_has_the_json_output_shape() -> None:
    document = event_document("eth0", bound(), now=NOW, wall=WALL)
    assert document == {
        "event": "bound",
        "interface": "eth0",
        "time": 1764300000.25,
        "address": "192.0.2.10/24",
        "server_id": "192.0.2.1",
        "routers": ["192.0.2.1"],
        "dns_servers": ["192.0.2.53", "192.0.2.54"],
        "domain": "example.com",
        "search": [],
        "hostname": None,
        "mtu": 1400,
        "routes": [
            {"destination": "10.1.0.0/16", "gateway": "192.0.2.254"},
            {"destination": "0.0.0.0/0", "gateway": "192.0.2.1"},
        ],
        "t1": 1740.0,
        "t2": 3090.0,
        "expiry": 3540.0,
        "seq": 1,
    }


def test_hostile_names_are_left_out() -> None:
    lease = make_lease(**HOSTILE, DOMAIN_SEARCH=HOSTILE_SEARCH)
    assert lease.domain is not None and PWN in lease.domain  # the Lease keeps the raw option
    env = hook_environment("eth0", bound(lease), now=NOW, wall=WALL)
    assert "DHCP4C_DOMAIN" not in env and "DHCP4C_HOSTNAME" not in env
    assert env["DHCP4C_SEARCH"] == "good.example ok.example"
    document = event_document("eth0", bound(lease), now=NOW, wall=WALL)
    assert document is not None
    assert (document["domain"], document["hostname"]) == (None, None)
    assert document["search"] == ["good.example", "ok.example"]


def test_search_names_are_deduplicated_ignoring_case() -> None:
    search = dns_wire(b"a.example", b"A.Example.", b"b.example")
    env = hook_environment("eth0", bound(make_lease(DOMAIN_SEARCH=search)), now=NOW, wall=WALL)
    assert env["DHCP4C_SEARCH"] == "a.example b.example"


@pytest.mark.parametrize(
    "raw", [b"example.com\nnameserver 6.6.6.6", b"a.example\r", b"ex ample.com", b"a`id`.com"]
)
def test_names_with_control_characters_or_shell_text_are_omitted(raw: bytes) -> None:
    lease = make_lease(DOMAIN_NAME=raw, HOST_NAME=raw)
    env = hook_environment("eth0", bound(lease), now=NOW, wall=WALL)
    assert "DHCP4C_DOMAIN" not in env and "DHCP4C_HOSTNAME" not in env
    assert all(v.isprintable() for v in env.values())


def test_valid_hostname_is_passed() -> None:
    lease = make_lease(HOST_NAME=b"box-1.example.", DOMAIN_NAME=b"Example.COM")
    env = hook_environment("eth0", bound(lease), now=NOW, wall=WALL)
    assert (env["DHCP4C_HOSTNAME"], env["DHCP4C_DOMAIN"]) == ("box-1.example", "Example.COM")


def test_every_variable_is_documented() -> None:
    text = (REPO / "docs" / "hooks.md").read_text()
    missing = [name for name in hooks.VARIABLES if f"`{name}`" not in text]
    assert not missing


# -- real hooks ---------------------------------------------------------------------------------


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


# A careless hook: it hands every variable and its argument to a shell, the way the vulnerable
# dhclient-script and NetworkManager dispatcher scripts did, and keeps what it got.
CARELESS = """\
cd "$(dirname "$0")"
env | grep '^DHCP4C_' | sort > env.txt
cat > stdin.json
printf '%s\\n' "$@" > argv.txt
for name in $(env | sed -n 's/^\\(DHCP4C_[A-Z0-9_]*\\)=.*/\\1/p'); do
    eval "value=\\$$name"
    sh -c "echo $value" >/dev/null 2>&1
    sh -c "echo '$value'" >/dev/null 2>&1
    eval "echo $value" >/dev/null 2>&1
done
echo "$PWD" > cwd.txt
exit 0
"""


async def test_hook_receives_environment_argument_and_json(tmp_path: Path) -> None:
    hook = script(tmp_path / "hook", CARELESS)
    runner = HookRunner(
        hook, "eth0", clock=lambda: NOW, wall=lambda: WALL, environ={"PATH": os.environ["PATH"]}
    )
    result = await runner.run(bound())
    assert result.ok
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env == hook_environment("eth0", bound(), now=NOW, wall=WALL)
    assert json.loads((tmp_path / "stdin.json").read_text()) == event_document(
        "eth0", bound(), now=NOW, wall=WALL
    )
    assert (tmp_path / "argv.txt").read_text() == "bound\n"
    assert not (tmp_path / "PWNED").exists()


async def test_hostile_option_values_run_no_command(tmp_path: Path) -> None:
    hook = script(tmp_path / "hook", CARELESS)
    lease = make_lease(**HOSTILE, DOMAIN_SEARCH=HOSTILE_SEARCH)
    result = await HookRunner(hook, "eth0").run(bound(lease))
    assert result.ok
    # The careless hook evaluated every value it was given: had any hostile name reached it,
    # PWNED would exist (the hook's cwd is /, but it changes into its own directory first).
    assert (tmp_path / "env.txt").exists()
    assert not (tmp_path / "PWNED").exists()
    text = (tmp_path / "env.txt").read_text() + (tmp_path / "stdin.json").read_text()
    assert PWN not in text
    # Stale DHCP4C_ variables of the client's own environment are not inherited either.
    stale = HookRunner(hook, "eth0", environ={**os.environ, "DHCP4C_X": f"$({PWN})"})
    assert (await stale.run(bound())).ok
    assert not (tmp_path / "PWNED").exists()


async def test_the_careless_hook_is_exploitable(tmp_path: Path) -> None:
    # The control for the two tests above: given a raw option value, the hook runs it.
    hook = script(tmp_path / "hook", CARELESS)
    for name, value in HOSTILE.items():
        env = {"PATH": os.environ["PATH"], "DHCP4C_" + name: value.decode()}
        await trio.run_process([str(hook)], env=env, stdin=b"")
        assert (tmp_path / "PWNED").exists(), name
        (tmp_path / "PWNED").unlink()


async def test_the_hook_runs_in_its_own_session_at_root(tmp_path: Path) -> None:
    hook = script(
        tmp_path / "hook",
        f"""\
        ids=$(cut -d' ' -f5,6 /proc/$$/stat)
        echo "$$ $ids $PWD ${{NOTIFY_SOCKET:-none}}" > {tmp_path}/ids
        """,
    )
    runner = HookRunner(hook, "eth0", environ={**os.environ, "NOTIFY_SOCKET": "/run/x"})
    assert (await runner.run(bound())).ok
    pid, pgrp, sid, cwd, notify = (tmp_path / "ids").read_text().split()
    assert pid == pgrp == sid  # a session and process group of its own, killable as a whole
    assert cwd == "/" and notify == "none"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The hook and a background child both ignore SIGTERM (so SIGKILL must follow) and hold
    # the write end of a FIFO: its read end sees EOF only once every one of them is dead.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    hook = script(
        tmp_path / "hook",
        f"""\
        trap '' TERM
        exec 3>{fifo}
        printf x >&3
        sleep 600 &
        wait
        """,
    )
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = await HookRunner(hook, "eth0", timeout=1.0).run(bound())
        assert result.timed_out and not result.ok
        received = b""
        with trio.fail_after(30):
            while True:
                await trio.lowlevel.wait_readable(reader)
                chunk = os.read(reader, 100)
                if not chunk:
                    break
                received += chunk
        assert received == b"x"  # it ran, and now no process holds the FIFO open
    finally:
        os.close(reader)


async def test_failures_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dhcp4c.consumers.hooks")
    failing = script(tmp_path / "failing", "exit 3\n")
    result = await HookRunner(failing, "eth0").run(bound())
    assert result.returncode == 3 and "exited with 3" in caplog.text

    missing = await HookRunner(tmp_path / "nonexistent", "eth0").run(bound())
    assert missing.returncode is None and missing.error is not None

    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\nexit 0\n")
    plain.chmod(0o644)
    not_executable = await HookRunner(plain, "eth0").run(bound())
    assert not_executable.error is not None

    no_shebang = tmp_path / "no-shebang"
    no_shebang.write_bytes(b"\x7fELF garbage")
    no_shebang.chmod(0o755)
    garbage = await HookRunner(no_shebang, "eth0").run(bound())
    assert garbage.error is not None
    assert caplog.text.count("cannot run it") == 3


def test_check_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = script(tmp_path / "good", "exit 0\n")
    monkeypatch.chdir(tmp_path)
    assert check_hook("good") == good  # relative to the current directory, never PATH
    with pytest.raises(ValueError, match="not a file"):
        check_hook(tmp_path / "nonexistent")
    with pytest.raises(ValueError, match="not a file"):
        check_hook(tmp_path)
    good.chmod(stat.S_IRUSR)  # no execute bit for anyone (root too needs one)
    with pytest.raises(ValueError, match="not executable"):
        check_hook(good)


# -- with a real client --------------------------------------------------------------------------


@asynccontextmanager
async def memory_client() -> AsyncIterator[tuple[Client, trio.Nursery]]:
    hw = b"\x02\x00\x00\x00\x00\x01"
    net = MemoryNetwork(random.Random(0))
    link = net.attach(hw)
    config = ServerConfig(lease_time=1000, t1=500, t2=875)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_memory, ServerCore(config), net.server(config.server_id))

        def factory(interface: str, address: Any) -> Any:
            return link.open()

        client = Client("eth0", hwaddr=hw, transport_factory=factory, rng=random.Random(0))
        yield client, nursery
        nursery.cancel_scope.cancel()


async def test_a_hung_hook_never_holds_up_the_client(tmp_path: Path) -> None:
    # The first run (bound) hangs until its time is up; meanwhile the client declines the lease.
    # The client goes on regardless, and the hook's next run gets the "lost" event.
    log = tmp_path / "log"
    hook = script(
        tmp_path / "hook",
        f"""\
        echo "$DHCP4C_SEQ $1 ${{DHCP4C_LOST_REASON:-}}" >> {log}
        [ "$DHCP4C_SEQ" = 1 ] && exec sleep 600
        exit 0
        """,
    )
    runner = HookRunner(hook, "eth0", timeout=1.0)
    async with memory_client() as (client, nursery):
        events = client.subscribe()
        done = trio.Event()

        async def serve() -> None:
            async for event in events:
                await runner.run(event)
                if event.kind is LeaseEventKind.LOST:
                    done.set()

        nursery.start_soon(client.run)
        nursery.start_soon(serve)
        await client.wait_bound()
        client.decline()  # while the hook hangs
        with trio.fail_after(30):
            await done.wait()
    assert log.read_text().splitlines() == ["1 bound ", "2 lost declined"]


async def test_stop_lets_the_running_hook_and_the_pending_events_finish(tmp_path: Path) -> None:
    # Shutdown: the run in progress is not killed, the event published meanwhile still runs,
    # then serve() returns.
    log, go = tmp_path / "log", tmp_path / "go"
    os.mkfifo(go)
    hook = script(
        tmp_path / "hook",
        f"""\
        [ "$DHCP4C_SEQ" = 1 ] && read line < {go}
        echo "$DHCP4C_SEQ $1" >> {log}
        """,
    )
    observers = LeaseObservers()
    events = observers.subscribe()
    runner = HookRunner(hook, "eth0", timeout=60)
    lease = make_lease()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.serve, events)
            observers.publish(LeaseEventKind.BOUND, lease, None)
            # Opening the FIFO for writing returns once the hook has it open for reading.
            writer = await trio.to_thread.run_sync(
                lambda: open(go, "w"),  # noqa: SIM115
                abandon_on_cancel=True,
            )
            observers.publish(LeaseEventKind.LOST, None, lease, "released")
            runner.stop()
            writer.write("go\n")
            writer.close()
    assert log.read_text().splitlines() == ["1 bound", "2 lost"]


async def test_stop_when_idle_returns_at_once() -> None:
    observers = LeaseObservers()
    runner = HookRunner("/nonexistent", "eth0")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.serve, observers.subscribe())
            await trio.testing.wait_all_tasks_blocked()
            runner.stop()
