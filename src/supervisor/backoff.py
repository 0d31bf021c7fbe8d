"""Restart backoff: how long a DEAD node waits before it runs again.

Pure: no clock, no global randomness. The caller passes the node's current interval (its only
backoff state, a float) and a `random.Random`; it gets back the delay to wait and the interval
to remember. This follows Monogon's use of `cenkalti/backoff` `ExponentialBackOff` with
`MaxElapsedTime = 0` (never give up): the delay is the current interval randomised by
`± jitter`, then the interval grows by `multiplier` up to `max_interval`.

Invariants: only DEAD nodes back off (CANCELED and DONE restart at once); a node's interval is
reset to zero when it signals HEALTHY or DONE, so a flapping node backs off and a node that
worked once starts again from `initial`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff policy, applied per node to DEAD restarts only.

    Args:
        initial: first interval in seconds (after a reset).
        multiplier: growth of the interval after each DEAD restart (>= 1).
        max_interval: cap of the interval, in seconds (>= initial).
        jitter: randomisation factor in [0, 1): the delay is drawn uniformly from
            `interval * (1 - jitter)` to `interval * (1 + jitter)`.

    Raises:
        ValueError: a parameter is out of range.

    As in cenkalti/backoff, the jittered delay may exceed `max_interval` by up to `jitter`; this
    keeps the spread of simultaneous restarts at the cap instead of collapsing them.
    """

    initial: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"initial must be > 0, got {self.initial}")
        if not self.multiplier >= 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not self.max_interval >= self.initial:
            raise ValueError(f"max_interval must be >= initial, got {self.max_interval}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def next(self, interval: float, rng: random.Random) -> tuple[float, float]:
        """Compute the next delay.

        Args:
            interval: the node's current interval; 0.0 means reset (start at `initial`).
            rng: the source of jitter (injected so tests and benchmarks are reproducible).

        Returns:
            `(delay, next_interval)`: seconds to wait now, and the interval to store.
        """
        current = self.initial if interval <= 0 else interval
        delay = current
        if self.jitter:
            delay = current * (1 + self.jitter * (2 * rng.random() - 1))
        return delay, min(current * self.multiplier, self.max_interval)
