"""The systemd unit template: systemd accepts it, and the command accepts its command line."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dhcp4c import cli
from dhcp4c.cli import status

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "dhcp4c@.service"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_the_command_line_is_one_the_command_accepts() -> None:
    unit = service()
    assert unit["Type"] == "notify"
    argv = shlex.split(unit["ExecStart"].replace("%I", "eth0"))
    assert argv[0] == "dhcp4c"
    settings = cli.parse(argv[1:])
    assert settings.interfaces == ("eth0",)
    assert settings.lease_dir == status.DEFAULT_LEASE_DIR  # where `dhcp4c status` looks
    assert unit["StateDirectory"] == status.DEFAULT_LEASE_DIR.name


def test_capabilities_are_the_ones_the_command_checks() -> None:
    unit = service()
    needed = {"CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE"}
    assert set(unit["CapabilityBoundingSet"].split()) == needed
    assert set(unit["AmbientCapabilities"].split()) == needed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # With ExecStart's `dhcp4c` replaced by this environment's command (verify checks that it
    # is executable; systemd itself looks plain names up in /usr/local/bin, /usr/bin, ...).
    command = Path(sys.executable).with_name("dhcp4c")
    text = UNIT.read_text().replace("ExecStart=dhcp4c ", f"ExecStart={command} ")
    (tmp_path / UNIT.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "dhcp4c@eth0.service")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
