"""supervisor.limits: the sliding window of deaths, validation, and the exceeded error."""

from __future__ import annotations

import collections

import pytest

from supervisor.limits import RestartLimit, RestartLimitExceeded


def test_more_than_intensity_within_period_exceeds() -> None:
    limit = RestartLimit(2, 10.0)
    history: collections.deque[float] = collections.deque()
    assert [limit.record(history, t) for t in (0.0, 1.0, 2.0)] == [False, False, True]


def test_deaths_older_than_the_period_are_forgotten() -> None:
    limit = RestartLimit(2, 10.0)
    history: collections.deque[float] = collections.deque()
    # A death exactly `period` after the first one no longer sees it (window is (now-T, now]).
    assert [limit.record(history, t) for t in (0.0, 5.0, 10.0, 15.0, 16.0)] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert list(history) == [10.0, 15.0, 16.0]


def test_zero_intensity_exceeds_at_the_first_death() -> None:
    assert RestartLimit(0, 1.0).record(collections.deque(), 0.0)


@pytest.mark.parametrize(
    ("intensity", "period"), [(-1, 1.0), (1, 0.0), (1, -1.0), (1.5, 1.0), ("1", 1.0)]
)
def test_invalid_limits(intensity: object, period: float) -> None:
    with pytest.raises(ValueError):
        RestartLimit(intensity, period)  # type: ignore[arg-type]


def test_exceeded_error_names_the_node_and_chains_the_last_exception() -> None:
    last = OSError("no carrier")
    error = RestartLimitExceeded("root.net.eth0", RestartLimit(3, 10.0), last)
    assert str(error) == (
        "root.net.eth0: more than 3 deaths in 10 s, not restarted; last: OSError('no carrier')"
    )
    assert error.__cause__ is last and error.dn == "root.net.eth0" and error.group is None
    grouped = RestartLimitExceeded("root.a", RestartLimit(0, 1.0), None, ("a", "b"))
    assert str(grouped).startswith("root.a (group a, b): more than 0 deaths in 1 s")
