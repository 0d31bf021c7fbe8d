"""Lease files: atomic versioned writes, clock conversion, and reads that never crash the client."""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import tempfile
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dhcp4c.consumers import leasefile
from dhcp4c.consumers.leasefile import MAX_SIZE, WallClocks
from dhcp4c.protocol.lease import Lease, Route
from dhcp4c.protocol.message import BOOTREPLY, Message
from dhcp4c.protocol.options import OptionCode

HWADDR = bytes.fromhex("020000000001")
OTHER_HWADDR = bytes.fromhex("020000000002")
CLIENT_ID = b"\x01" + HWADDR
BOOT = "6f1c3b7e-0000-4000-8000-000000000001"
SAVED = WallClocks(realtime=1_764_300_000.0, boottime=5_000.0, boot_id=BOOT)
# Leases are obtained at Trio time 100 and saved at Trio time 160 (60 s into a 3600 s lease).
OBTAINED = 100.0
SAVED_AT = 160.0


def make_lease(obtained: float = OBTAINED, lease_time: int = 3600) -> Lease:
    options: dict[int, bytes] = {
        OptionCode.DHCP_MESSAGE_TYPE: b"\x05",
        OptionCode.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        OptionCode.ROUTER: IPv4Address("192.0.2.1").packed,
        OptionCode.DOMAIN_NAME_SERVER: IPv4Address("192.0.2.53").packed,
        OptionCode.DOMAIN_NAME: b"example.com",
        OptionCode.INTERFACE_MTU: (1400).to_bytes(2, "big"),
        OptionCode.IP_ADDRESS_LEASE_TIME: lease_time.to_bytes(4, "big"),
        OptionCode.RENEWAL_TIME_VALUE: (lease_time // 2).to_bytes(4, "big"),
        OptionCode.REBINDING_TIME_VALUE: (lease_time * 7 // 8).to_bytes(4, "big"),
        OptionCode.SERVER_IDENTIFIER: IPv4Address("192.0.2.1").packed,
        # RFC 3442: 10.1.0.0/16 via 192.0.2.254, then the default route via 192.0.2.1
        OptionCode.CLASSLESS_STATIC_ROUTE: bytes([16, 10, 1, 192, 0, 2, 254, 0, 192, 0, 2, 1]),
    }
    ack = Message(op=BOOTREPLY, xid=1, yiaddr=IPv4Address("192.0.2.10"), options=options)
    return Lease.from_ack(ack, obtained, random.Random(0))


def later(seconds: float, *, boot: float | None = None, boot_id: str = BOOT) -> WallClocks:
    """The clocks `seconds` of wall time after SAVED (`boot` seconds of boot time, default same)."""
    return WallClocks(
        realtime=SAVED.realtime + seconds,
        boottime=SAVED.boottime + (seconds if boot is None else boot),
        boot_id=boot_id,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return leasefile.lease_path(tmp_path / "leases", "eth0")


def save(path: Path, lease: Lease | None = None) -> Lease:
    lease = make_lease() if lease is None else lease
    leasefile.save(
        path,
        lease,
        ifname="eth0",
        hwaddr=HWADDR,
        client_id=CLIENT_ID,
        now_trio=SAVED_AT,
        clocks=SAVED,
    )
    return lease


def load(path: Path, clocks: WallClocks, now_trio: float = 7.0, **kwargs: Any) -> Lease | None:
    return leasefile.load(path, "eth0", HWADDR, now_trio, clocks=clocks, **kwargs)


def document(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text())
    assert isinstance(value, dict)
    return value


def rewrite(path: Path, **changes: Any) -> None:
    path.write_text(json.dumps({**document(path), **changes}))


# -- writing ------------------------------------------------------------------------------------


def test_lease_path() -> None:
    assert leasefile.lease_path("/var/lib/dhcp4c", "eth0") == Path("/var/lib/dhcp4c/eth0.lease")
    for bad in ("", ".", "..", "../etc", "a/b", "eth 0", "a" * 16, "x\x00"):
        with pytest.raises(ValueError):
            leasefile.lease_path("/var/lib/dhcp4c", bad)


def test_save_writes_the_versioned_format(path: Path) -> None:
    lease = save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = document(path)
    assert data["format"] == "dhcp4c-lease"
    assert data["version"] == 1
    assert data["interface"] == "eth0"
    assert data["hardware_address"] == "02:00:00:00:00:01"
    assert data["client_id"] == CLIENT_ID.hex()
    assert data["address"] == "192.0.2.10/24"
    assert data["server_id"] == "192.0.2.1"
    assert data["saved"] == {"realtime": SAVED.realtime, "boottime": 5000.0, "boot_id": BOOT}
    # Wall-clock times: saved.realtime + (trio time - trio time at saving).
    assert data["obtained"] == SAVED.realtime - 60
    assert data["t1"] == SAVED.realtime - 60 + 1800
    assert data["t2"] == SAVED.realtime - 60 + 3150
    assert data["expiry"] == SAVED.realtime - 60 + 3600
    assert data["options"][0] == [53, "05"]
    assert [code for code, _ in data["options"]] == list(lease.options)


def test_save_replaces_atomically_and_leaves_no_temp_file(path: Path) -> None:
    save(path)
    save(path, make_lease(obtained=150.0))
    assert [p.name for p in path.parent.iterdir()] == ["eth0.lease"]
    assert document(path)["obtained"] == SAVED.realtime - 10


def test_failed_save_keeps_the_old_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(path)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="No space"):
        save(path, make_lease(obtained=150.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["eth0.lease"]  # the temp file is gone


def test_remove(path: Path) -> None:
    leasefile.remove(path)  # missing is fine
    save(path)
    leasefile.remove(path)
    assert not path.exists()


# -- reading back -------------------------------------------------------------------------------


def test_round_trip_moves_times_to_the_new_trio_clock(path: Path) -> None:
    original = save(path)
    # 100 s later (wall and boot clocks agree), in a new process whose Trio clock reads 7.
    loaded = load(path, later(100), now_trio=7.0, client_id=CLIENT_ID)
    assert loaded is not None
    # The lease had 3600 - 60 = 3540 s left at saving; 100 s passed.
    assert loaded.expiry == 7.0 + 3440
    assert loaded.obtained == 7.0 - 160
    assert loaded.t1 == 7.0 - 160 + 1800
    assert loaded.t2 == 7.0 - 160 + 3150
    assert loaded.remaining(7.0) == 3440
    for field in ("address", "server_id", "routers", "dns_servers", "domain", "search", "mtu"):
        assert getattr(loaded, field) == getattr(original, field), field
    assert (
        loaded.routes
        == original.routes
        == (
            Route(IPv4Network("10.1.0.0/16"), IPv4Address("192.0.2.254")),
            Route(IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.1")),
        )
    )
    assert loaded.options == original.options
    assert loaded.mtu == 1400


def test_missing_file_is_none_without_warning(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert load(path, later(1)) is None
    assert caplog.records == []


def test_expired_lease_is_ignored(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(path)
    assert load(path, later(3539)) is not None
    with caplog.at_level(logging.WARNING):
        assert load(path, later(3540)) is None
    assert "expired" in caplog.text


def test_suspend_counts_against_the_lease(path: Path) -> None:
    # The wall clock was stepped back an hour while the machine slept for 3000 s: CLOCK_BOOTTIME
    # (same boot) still says 3000 s passed.
    save(path)
    loaded = load(path, later(-3600, boot=3000), now_trio=0.0)
    assert loaded is not None
    assert loaded.expiry == 540.0


def test_a_wall_clock_jump_forward_shortens_the_lease(path: Path) -> None:
    # The larger of the two elapsed times wins: err towards giving the address up early.
    save(path)
    loaded = load(path, later(3000, boot=10), now_trio=0.0)
    assert loaded is not None
    assert loaded.expiry == 540.0


def test_after_a_reboot_only_the_wall_clock_counts(path: Path) -> None:
    save(path)
    loaded = load(path, later(1000, boot=-4990, boot_id="another-boot"), now_trio=0.0)
    assert loaded is not None
    assert loaded.expiry == 2540.0


def test_after_a_reboot_a_wall_clock_in_the_past_discards_the_lease(path: Path) -> None:
    save(path)
    assert load(path, later(-5, boot=-4990, boot_id="another-boot")) is None


@pytest.mark.parametrize(
    ("change", "kwargs"),
    [
        ({"interface": "eth1"}, {}),
        ({"hardware_address": OTHER_HWADDR.hex(":")}, {}),
        ({}, {"client_id": b"\x00other"}),
        ({"format": "dhclient"}, {}),
        ({"version": 2}, {}),
        ({"version": True}, {}),  # JSON true is not the integer 1
        ({"version": "1"}, {}),
    ],
)
def test_foreign_files_are_ignored(
    path: Path, caplog: pytest.LogCaptureFixture, change: dict[str, Any], kwargs: dict[str, Any]
) -> None:
    save(path)
    rewrite(path, **change)
    with caplog.at_level(logging.WARNING):
        assert load(path, later(1), **kwargs) is None
    assert "ignoring lease file" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\xff\xfe",
        b"{",
        b"[]",
        b"null",
        b'{"format": "dhcp4c-lease"}',
        b"[" * 100_00 + b"]" * 100_00,  # deep nesting
    ],
)
def test_corrupt_files_are_ignored(
    path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert load(path, later(1)) is None
    assert "lease file" in caplog.text


@pytest.mark.parametrize(
    "change",
    [
        {"address": "192.0.2.300/24"},
        {"address": "192.0.2.10/16"},  # disagrees with option 1
        {"address": 3},
        {"server_id": "192.0.2.2"},  # disagrees with option 54
        {"options": [[1, "zz"]]},
        {"options": [[256, "00"]]},
        {"options": [[True, "00"]]},
        {"options": "0501"},
        {"options": []},  # no lease time, no server id
        {"saved": {"realtime": 0}},
        {"saved": None},
        {"saved": {"realtime": float("nan"), "boottime": 5000.0, "boot_id": BOOT}},
        {"saved": {"realtime": 10**400, "boottime": 5000.0, "boot_id": BOOT}},
        {"saved": {"realtime": SAVED.realtime, "boottime": 5000.0, "boot_id": 7}},
        {"expiry": "soon"},
        {"expiry": 1e400},
        {"t1": 0},  # out of order
        {"client_id": 5},
    ],
)
def test_inconsistent_fields_are_ignored(path: Path, change: dict[str, Any]) -> None:
    save(path)
    rewrite(path, **change)
    assert load(path, later(1), client_id=CLIENT_ID) is None


def test_oversized_file_is_ignored(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(path)
    data = document(path)
    data["padding"] = "x" * MAX_SIZE
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        assert load(path, later(1)) is None
    assert "65536" in caplog.text


def test_padding_within_the_limit_is_fine(path: Path) -> None:
    save(path)
    data = document(path)
    data["padding"] = ""
    size = len(json.dumps(data))
    data["padding"] = "x" * (MAX_SIZE - size)
    path.write_text(json.dumps(data))
    assert path.stat().st_size == MAX_SIZE
    assert load(path, later(1)) is not None


def test_non_regular_files_do_not_block(path: Path) -> None:
    path.parent.mkdir(parents=True)
    os.mkfifo(path)  # opening it for reading without O_NONBLOCK would hang
    assert load(path, later(1)) is None
    path.unlink()
    path.mkdir()
    assert load(path, later(1)) is None


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "eth0.lease"
        path.write_bytes(content)
        assert load(path, later(1)) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(
        [
            "format",
            "version",
            "interface",
            "hardware_address",
            "client_id",
            "address",
            "server_id",
            "saved",
            "obtained",
            "t1",
            "t2",
            "expiry",
            "options",
        ]
    ),
    value=json_values,
)
def test_any_field_value_never_raises(key: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "eth0.lease"
        save(path)
        rewrite(path, **{key: value})
        result = load(path, later(1))
        assert result is None or isinstance(result, Lease)
