"""`dhcp4c status`: lease files written by `leasefile.save`, read back for an operator."""

from __future__ import annotations

import io
import json
import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from dhcp4c import cli
from dhcp4c.cli import status
from dhcp4c.consumers import leasefile
from dhcp4c.consumers.leasefile import WallClocks
from dhcp4c.protocol.lease import Lease
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.protocol.options import OptionCode

HWADDR = bytes.fromhex("020000000001")
BOOT = "6f1c3b7e-0000-4000-8000-000000000001"
SAVED = WallClocks(realtime=1_764_300_000.0, boottime=5_000.0, boot_id=BOOT)
# Obtained at Trio time 100, saved at Trio time 160: 60 s into a 3600 s lease (T1 1800, T2 3150).
OBTAINED = 100.0
SAVED_AT = 160.0


def make_lease(address: str = "192.0.2.10", **extra: bytes) -> Lease:
    options: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: b"\x05",
        OptionCode.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        OptionCode.DOMAIN_NAME_SERVER: IPv4Address("192.0.2.53").packed,
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
    ack = Message(op=BOOTREPLY, xid=1, yiaddr=IPv4Address(address), options=options)
    return Lease.from_ack(ack, OBTAINED, random.Random(0))


def save(lease_dir: Path, ifname: str = "eth0", lease: Lease | None = None) -> Path:
    path = leasefile.lease_path(lease_dir, ifname)
    leasefile.save(
        path,
        make_lease() if lease is None else lease,
        ifname=ifname,
        hwaddr=HWADDR,
        client_id=b"\x01" + HWADDR,
        now_trio=SAVED_AT,
        clocks=SAVED,
    )
    return path


def later(seconds: float, *, boot: float | None = None) -> WallClocks:
    return WallClocks(
        realtime=SAVED.realtime + seconds,
        boottime=SAVED.boottime + (seconds if boot is None else boot),
        boot_id=BOOT,
    )


def run(*argv: str, clocks: WallClocks | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = status.main(list(argv), clocks=clocks or later(60), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_text(tmp_path: Path) -> None:
    path = save(tmp_path)
    code, out, err = run("--lease-dir", str(tmp_path), "eth0")
    assert (code, err) == (0, "")
    # 60 s after saving, 120 s into the lease.
    assert out.splitlines() == [
        "eth0: 192.0.2.10/24 from 192.0.2.1, bound",
        "  renew in 28m 0s, rebind in 50m 30s, expires in 58m 0s (2025-11-28 04:19:00 UTC)",
        "  routes: 10.1.0.0/16 via 192.0.2.254, 0.0.0.0/0 via 192.0.2.1",
        "  dns: 192.0.2.53",
        "  domain: example.com; search: none",
        "  mtu: 1400",
        f"  saved 60 s ago in {path}",
    ]


def test_json(tmp_path: Path) -> None:
    path = save(tmp_path)
    code, out, _ = run("--lease-dir", str(tmp_path), "--json")
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "interface": "eth0",
            "address": "192.0.2.10/24",
            "server_id": "192.0.2.1",
            "state": "bound",
            "routers": [],
            "dns_servers": ["192.0.2.53"],
            "domain": "example.com",
            "search": [],
            "mtu": 1400,
            "routes": [
                {"destination": "10.1.0.0/16", "gateway": "192.0.2.254"},
                {"destination": "0.0.0.0/0", "gateway": "192.0.2.1"},
            ],
            "t1": 1680.0,
            "t2": 3030.0,
            "expiry": 3480.0,
            "expires_at": SAVED.realtime + 60 + 3480,
            "saved_ago": 60.0,
            "lease_file": str(path),
        }
    ]


def test_all_interfaces_sorted_and_one_without_a_lease(tmp_path: Path) -> None:
    save(tmp_path, "eth1", make_lease("192.0.2.11"))
    save(tmp_path, "eth0")
    code, out, _ = run("--lease-dir", str(tmp_path), "--json")
    assert code == 0
    assert [json.loads(line)["address"] for line in out.splitlines()] == [
        "192.0.2.10/24",
        "192.0.2.11/24",
    ]
    code, out, err = run("--lease-dir", str(tmp_path), "eth1", "wlan0")
    assert code == status.EXIT_NO_LEASE
    assert out.startswith("eth1: 192.0.2.11/24 from 192.0.2.1, bound\n")
    assert err == f"dhcp4c status: wlan0: no lease (no lease file {tmp_path}/wlan0.lease)\n"
    code, out, err = run("--lease-dir", str(tmp_path), "--json", "wlan0")
    assert code == status.EXIT_NO_LEASE and err
    assert json.loads(out) == {
        "interface": "wlan0",
        "address": None,
        "reason": f"no lease file {tmp_path}/wlan0.lease",
    }


@pytest.mark.parametrize(
    ("elapsed", "boot", "state", "expiry"),
    [
        (1750, None, "renewing", 3600 - 60 - 1750),  # the lease is 1810 s old: past T1
        (3100, None, "rebinding", 3600 - 60 - 3100),
        # The wall clock was stepped back, but the boot clock counted 1700 s (a suspend, say):
        # the lease is as old as the larger of the two says.
        (-300, 1750, "renewing", 3600 - 60 - 1750),
    ],
)
def test_state_and_timers_follow_the_clocks(
    tmp_path: Path, elapsed: float, boot: float | None, state: str, expiry: float
) -> None:
    save(tmp_path)
    code, out, _ = run("--lease-dir", str(tmp_path), "--json", clocks=later(elapsed, boot=boot))
    document = json.loads(out)
    assert code == 0
    assert (document["state"], document["expiry"]) == (state, expiry)
    assert document["t1"] == 0.0


def test_expired_lease(tmp_path: Path) -> None:
    save(tmp_path)
    code, out, err = run("--lease-dir", str(tmp_path), "eth0", clocks=later(4000))
    assert (code, out) == (status.EXIT_NO_LEASE, "")
    assert err.startswith("dhcp4c status: eth0: no lease (ignoring lease file ")
    assert "expired 460 s ago" in err and err.count("\n") == 1


def test_corrupt_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "eth0.lease").write_text("{not json")
    path = save(tmp_path, "eth1")
    document = json.loads(path.read_text())
    document["server_id"] = "198.51.100.7"  # disagrees with the saved options
    path.write_text(json.dumps(document))
    code, out, err = run("--lease-dir", str(tmp_path))
    assert (code, out) == (status.EXIT_NO_LEASE, "")
    lines = err.splitlines()
    assert (
        lines[0]
        == f"dhcp4c status: eth0: no lease (ignoring lease file {tmp_path}/eth0.lease: not JSON)"
    )
    assert lines[1].startswith("dhcp4c status: eth1: no lease (ignoring lease file")
    assert "disagree" in lines[1]


def test_hostile_names_are_not_shown(tmp_path: Path) -> None:
    search = b"\x04good\x07example\x00\x05a;b`c\x07example\x00"
    save(tmp_path, lease=make_lease(DOMAIN_NAME=b"x.com\nnameserver 6.6.6.6", DOMAIN_SEARCH=search))
    code, out, _ = run("--lease-dir", str(tmp_path), "--json")
    document = json.loads(out)
    assert code == 0
    assert (document["domain"], document["search"]) == (None, ["good.example"])
    _, text, _ = run("--lease-dir", str(tmp_path))
    assert "6.6.6.6" not in text and "domain: none; search: good.example" in text


def test_no_lease_files(tmp_path: Path) -> None:
    code, out, err = run("--lease-dir", str(tmp_path / "nonexistent"))
    assert (code, out) == (status.EXIT_NO_LEASE, "")
    assert err == (
        f"dhcp4c status: error: no lease: {tmp_path}/nonexistent does not exist "
        "(is dhcp4c running?)\n"
    )
    (tmp_path / ".eth0.lease.1234.tmp").write_text("{}")  # a save in progress is no lease
    code, _, err = run("--lease-dir", str(tmp_path))
    assert code == status.EXIT_NO_LEASE
    assert err == f"dhcp4c status: error: no lease: no lease file in {tmp_path}\n"


def test_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("--lease-dir", str(tmp_path), "../etc/x")
    assert code == status.EXIT_USAGE and "invalid interface name" in err
    with pytest.raises(SystemExit) as exit_info:
        run("--frobnicate")
    assert exit_info.value.code == status.EXIT_USAGE


def test_exit_codes_are_the_commands() -> None:
    assert (status.EXIT_OK, status.EXIT_FAILURE, status.EXIT_USAGE) == (
        cli.EXIT_OK,
        cli.EXIT_FAILURE,
        cli.EXIT_USAGE,
    )
    assert (status.EXIT_NO_LEASE, status.EXIT_PRIVILEGES) == (
        cli.EXIT_TIMEOUT,
        cli.EXIT_PRIVILEGES,
    )


def test_with_the_systems_clocks(tmp_path: Path) -> None:
    # Saved and read on the real clocks: the remaining time can only have shrunk.
    leasefile.save(
        leasefile.lease_path(tmp_path, "eth0"),
        make_lease(),
        ifname="eth0",
        hwaddr=HWADDR,
        now_trio=SAVED_AT,
    )
    out, err = io.StringIO(), io.StringIO()
    assert status.main(["--lease-dir", str(tmp_path), "--json"], out=out, err=err) == 0
    expiry = json.loads(out.getvalue())["expiry"]
    assert 3540 - 60 < expiry <= 3540  # 3540 s were left when it was saved
