"""supervisor.backoff: the exponential policy, its cap, jitter bounds and validation."""

from __future__ import annotations

import random

import pytest

from supervisor.backoff import Backoff


def test_defaults_match_monogon() -> None:
    assert Backoff() == Backoff(initial=0.5, multiplier=1.5, max_interval=60.0, jitter=0.5)


def test_exact_sequence_and_cap() -> None:
    policy = Backoff(jitter=0.0, max_interval=2.0)
    rng = random.Random(0)
    interval = 0.0
    delays = []
    for _ in range(6):
        delay, interval = policy.next(interval, rng)
        delays.append(delay)
    assert delays == [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]


def test_reset_starts_again_from_initial() -> None:
    policy = Backoff(jitter=0.0)
    assert policy.next(0.0, random.Random(0)) == (0.5, 0.75)
    assert policy.next(10.0, random.Random(0)) == (10.0, 15.0)


def test_jitter_bounds_and_reproducibility() -> None:
    policy = Backoff()
    interval = 0.0
    rng = random.Random(42)
    same = random.Random(42)
    for _ in range(50):
        current = policy.initial if interval == 0 else interval
        delay, following = policy.next(interval, rng)
        assert (delay, following) == policy.next(interval, same)
        assert current * 0.5 <= delay <= current * 1.5
        interval = following
    assert interval == 60.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0.0},
        {"initial": -1.0},
        {"multiplier": 0.5},
        {"max_interval": 0.1},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
