"""Tests for dhcp4c.protocol.retransmit: the RFC 2131 §4.1 / §4.4.5 schedules and the failure
backoff."""

from __future__ import annotations

import random

import pytest

from dhcp4c.protocol.retransmit import backoff_delay, exchange_interval, lease_retransmit_at


def test_exchange_interval_doubles_to_the_cap_with_one_second_jitter() -> None:
    rng, expected = random.Random(5), random.Random(5)
    for attempt, nominal in enumerate((4, 8, 16, 32, 64, 64, 64)):
        assert exchange_interval(attempt, rng) == nominal + expected.uniform(-1, 1)


def test_exchange_interval_bounds() -> None:
    rng = random.Random(0)
    for attempt in range(100):
        nominal = min(64, 4 * 2**attempt)
        assert nominal - 1 <= exchange_interval(attempt, rng) <= nominal + 1
    assert 63 <= exchange_interval(10**6, rng) <= 65  # no overflow for absurd counts


def test_exchange_interval_jitter_is_limited_for_tiny_schedules() -> None:
    rng = random.Random(0)
    for _ in range(100):
        assert 0.05 <= exchange_interval(0, rng, initial=0.1, cap=0.1) <= 0.15


@pytest.mark.parametrize(
    ("now", "deadline", "expected"),
    [
        (0.0, 1000.0, 500.0),  # half the remaining time
        (900.0, 1000.0, 960.0),  # at least 60 s
        (950.0, 1000.0, 1000.0),  # never past the deadline
        (1000.0, 1000.0, 1000.0),
    ],
)
def test_lease_retransmit_at(now: float, deadline: float, expected: float) -> None:
    assert lease_retransmit_at(now, deadline) == expected


def test_lease_retransmit_at_custom_minimum() -> None:
    assert lease_retransmit_at(0.0, 10.0, minimum=1.0) == 5.0
    assert lease_retransmit_at(9.0, 10.0, minimum=1.0) == 10.0


def test_backoff_doubles_to_the_cap_and_never_undershoots() -> None:
    rng = random.Random(1)
    for failures in range(1, 40):
        nominal = min(300.0, 2.0 ** (failures - 1))
        assert nominal <= backoff_delay(failures, rng) <= nominal * 1.25
    assert 300 <= backoff_delay(10**6, rng) <= 375


def test_backoff_can_start_at_zero() -> None:
    assert backoff_delay(5, random.Random(0), initial=0.0, cap=0.0) == 0.0
