"""`ClientConfig`: the user's choices, checked when made, and their one conversion."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest

from dhcp4c.protocol.clientid import iaid_for_interface, rfc4361_client_id
from dhcp4c.protocol.config import (
    DEFAULT_PARAMETER_REQUEST_LIST,
    MACHINE_CHOICES,
    MANAGED_OPTIONS,
    ClientConfig,
)
from dhcp4c.protocol.machine import MachineConfig
from dhcp4c.protocol.message import MessageError
from dhcp4c.protocol.options import OptionCode

HW = b"\x02\x00\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_message_size": 575}, "max_message_size 575 not in 576..65535"),
        ({"max_message_size": 65536}, "max_message_size 65536 not in 576..65535"),
        ({"client_id": b"\x01"}, "client_id must be at least 2 bytes"),
        ({"client_id_type": "uuid"}, "client_id_type must be 'duid' or 'mac'"),
        ({"hostname": ""}, "hostname must be 1..255 ASCII characters"),
        ({"hostname": "héllo"}, "hostname must be 1..255 ASCII characters"),
        ({"vendor_class": b""}, "vendor_class must be 1..255 bytes"),
        ({"parameter_request_list": (1, 1)}, "parameter_request_list must be distinct"),
        ({"parameter_request_list": (255,)}, "parameter_request_list must be distinct"),
        ({"extra_options": {54: bytes(4)}}, r"extra_options may not set managed options \[54\]"),
        ({"retransmit_initial": 0}, "need 0 < retransmit_initial <= retransmit_cap"),
        ({"retransmit_cap": 1.0}, "need 0 < retransmit_initial <= retransmit_cap"),
        ({"retransmit_jitter": -1.0}, "need retransmit_jitter >= 0"),
        ({"renew_retransmit_min": 0.0}, "renew_retransmit_min > 0"),
        ({"max_request_tries": 0}, "max_request_tries must be at least 1"),
        ({"backoff_cap": 0.5}, "need 0 <= backoff_initial <= backoff_cap"),
        ({"decline_wait": 9.9}, r"decline_wait must be at least 10 s \(RFC 2131 §3.1\)"),
        ({"suspend_check": 0}, "suspend_check must be positive"),
    ],
    ids=repr,
)
def test_every_choice_is_checked_when_made(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClientConfig(**changes)  # type: ignore[arg-type]
    if "suspend_check" not in changes:
        # The machine's own configuration refuses the same values with the same message.
        with pytest.raises(ValueError, match=message):
            MachineConfig(hwaddr=HW, **changes)  # type: ignore[arg-type]


def test_a_malformed_extra_option_is_the_codecs_error() -> None:
    with pytest.raises(MessageError):
        ClientConfig(extra_options={OptionCode.SUBNET_MASK: b"\x00"})  # fixed size 4


def test_frozen_and_compared_by_value() -> None:
    config = ClientConfig(hostname="box")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hostname = "other"  # type: ignore[misc]
    assert config == ClientConfig(hostname="box") != ClientConfig()


def test_for_interface_adds_the_identity() -> None:
    config = ClientConfig(hostname="box", rapid_commit=False, suspend_check=5.0)
    machine = config.for_interface("eth1", HW, 9000)
    assert (machine.hwaddr, machine.interface) == (HW, "eth1")
    assert machine.hostname == "box" and not machine.rapid_commit
    assert machine.max_message_size == 9000  # from the MTU
    assert machine.client_identifier == rfc4361_client_id(
        iaid_for_interface("eth1"), b"\x00\x03\x00\x01" + HW
    )
    assert {name: getattr(machine, name) for name in MACHINE_CHOICES} == {
        name: getattr(config, name) for name in MACHINE_CHOICES if name != "max_message_size"
    } | {"max_message_size": 9000}


@pytest.mark.parametrize(("mtu", "size"), [(1500, 1500), (100, 576), (100_000, 65535)])
def test_max_message_size_follows_the_mtu_unless_set(mtu: int, size: int) -> None:
    assert ClientConfig().for_interface("eth0", HW, mtu).max_message_size == size
    assert ClientConfig(max_message_size=1000).for_interface("eth0", HW, mtu).max_message_size == (
        1000
    )


def test_the_hardware_address_is_checked_with_the_identity() -> None:
    with pytest.raises(ValueError, match="unusable hardware address"):
        ClientConfig().for_interface("eth0", bytes(6))


def test_machine_choices_are_every_machine_field_but_the_identity() -> None:
    machine_fields = {f.name for f in dataclasses.fields(MachineConfig)}
    assert set(MACHINE_CHOICES) == machine_fields - {"hwaddr", "interface", "htype"}
    shell = {f.name for f in dataclasses.fields(ClientConfig)} - set(MACHINE_CHOICES)
    assert shell == {"suspend_check", "acd_timeout"}


def test_the_option_lists_name_rfc_2132_codes() -> None:
    assert DEFAULT_PARAMETER_REQUEST_LIST == (
        OptionCode.SUBNET_MASK,
        OptionCode.ROUTER,
        OptionCode.DOMAIN_NAME_SERVER,
        OptionCode.DOMAIN_NAME,
        OptionCode.INTERFACE_MTU,
        OptionCode.BROADCAST_ADDRESS,
        OptionCode.NTP_SERVERS,
        OptionCode.IP_ADDRESS_LEASE_TIME,
        OptionCode.RENEWAL_TIME_VALUE,
        OptionCode.REBINDING_TIME_VALUE,
        OptionCode.DOMAIN_SEARCH,
        OptionCode.CLASSLESS_STATIC_ROUTE,
    )
    assert {
        OptionCode.REQUESTED_IP_ADDRESS,
        OptionCode.IP_ADDRESS_LEASE_TIME,
        OptionCode.OPTION_OVERLOAD,
        OptionCode.DHCP_MESSAGE_TYPE,
        OptionCode.SERVER_IDENTIFIER,
        OptionCode.PARAMETER_REQUEST_LIST,
        OptionCode.MAXIMUM_DHCP_MESSAGE_SIZE,
        OptionCode.CLIENT_IDENTIFIER,
        OptionCode.RAPID_COMMIT,
        OptionCode.HOST_NAME,
        OptionCode.VENDOR_CLASS_IDENTIFIER,
    } == MANAGED_OPTIONS


def test_making_one_loads_no_codec() -> None:
    # The command parses its arguments into a ClientConfig before the codec is loaded.
    code = (
        "import sys; from dhcp4c.protocol.config import ClientConfig; ClientConfig(hostname='a');"
        "print(sorted(m for m in ('construct', 'dhcp4c.protocol.options') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_acd_timeout_default_is_the_acd_default_and_is_checked() -> None:
    from dhcp4c.protocol.acd import DEFAULT_PROBE_TIMEOUT

    assert ClientConfig().acd_timeout == DEFAULT_PROBE_TIMEOUT
    assert ClientConfig(acd_timeout=None).acd_timeout is None
    for bad in (-0.1, 61.0, math.nan):
        with pytest.raises(ValueError, match="acd_timeout"):
            ClientConfig(acd_timeout=bad)
