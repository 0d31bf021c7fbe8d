"""Restart limits: OTP's intensity and period, as a pure policy.

A `RestartLimit(intensity, period)` allows at most `intensity` deaths within any `period`
seconds; the death that makes it `intensity + 1` exceeds it. The caller owns the history (a
deque of death times, one per node or group, carried across incarnations) and passes `now`;
nothing here reads a clock.

Invariants: the history only holds times within the last `period` (older ones are dropped at
each death), so it never holds more than `intensity + 1` entries. A limit is checked only for
deaths the tree did not ask for (a runnable dying while cancelled is leaving anyway), and only
for nodes that would otherwise be restarted (not TEMPORARY ones).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["RestartLimit", "RestartLimitExceeded"]


@dataclass(frozen=True, slots=True)
class RestartLimit:
    """At most `intensity` deaths within `period` seconds (OTP's `intensity` and `period`).

    Args:
        intensity: deaths allowed within a window (>= 0; 0: the first death exceeds it).
        period: the window, in seconds (> 0).

    Raises:
        ValueError: a parameter is out of range.

    Deaths are counted, not restarts: a node waiting out its backoff has died once already.
    """

    intensity: int
    period: float

    def __post_init__(self) -> None:
        if not isinstance(self.intensity, int) or self.intensity < 0:
            raise ValueError(f"intensity must be an int >= 0, got {self.intensity!r}")
        if not self.period > 0:
            raise ValueError(f"period must be > 0, got {self.period!r}")

    def record(self, history: collections.deque[float], now: float) -> bool:
        """Record a death at `now` in `history`; True if that exceeds the limit.

        Args:
            history: death times within the window, oldest first (updated in place).
            now: the time of this death (the Trio clock, for the runtime).
        """
        history.append(now)
        horizon = now - self.period
        while history and history[0] <= horizon:
            history.popleft()
        return len(history) > self.intensity


class RestartLimitExceeded(Exception):
    """A node (or its group) died more often than its `RestartLimit` allows.

    Its parent dies with this exception (the failure climbs the tree); at the root, `supervise`
    raises it. `__cause__` is the node's last exception.

    Attributes:
        dn: the node whose death exceeded the limit.
        limit: the limit exceeded.
        last: the exception of that last death (None for a clean return without DONE).
        group: the names of the group when it was the group's limit, else None.
    """

    def __init__(
        self,
        dn: str,
        limit: RestartLimit,
        last: BaseException | None,
        group: tuple[str, ...] | None = None,
    ) -> None:
        whose = f"{dn} (group {', '.join(group)})" if group else dn
        super().__init__(
            f"{whose}: more than {limit.intensity} deaths in {limit.period:g} s, not restarted;"
            f" last: {last!r}"
        )
        self.dn = dn
        self.limit = limit
        self.last = last
        self.group = group
        self.__cause__ = last
