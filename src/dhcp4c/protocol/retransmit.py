"""Retransmission and backoff schedules (RFC 2131 §4.1, §4.4.5), as pure functions.

Everything here maps an attempt number, the current time and an injected `random.Random` to a
delay or a deadline; nothing reads a clock. The machine owns the attempt counters.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay", "exchange_interval", "lease_retransmit_at"]


def exchange_interval(
    attempt: int,
    rng: random.Random,
    *,
    initial: float = 4.0,
    cap: float = 64.0,
    jitter: float = 1.0,
) -> float:
    """The wait after the `attempt`-th transmission (0-based) of a DISCOVER or REQUEST.

    RFC 2131 §4.1: 4 s before the first retransmission, doubling up to 64 s, each "randomized by the
    value of a uniform random number chosen from the range -1 to +1". The randomisation is limited
    to half the nominal interval so that shrunk test schedules (initial 0.1 s) stay positive.

    Args:
        attempt: how many transmissions of this message came before this one.
        rng: the randomisation source.
        initial: the nominal first interval.
        cap: the largest nominal interval.
        jitter: the randomisation half-width (1 s in the RFC).

    Returns:
        The delay in seconds until the next transmission, always > 0.
    """
    assert attempt >= 0 and initial > 0 and cap >= initial
    # 2**attempt overflows float arithmetic for absurd attempt counts; the cap makes them moot.
    nominal = cap if attempt >= 32 else min(cap, initial * 2.0**attempt)
    spread = min(jitter, nominal / 2)
    return nominal + rng.uniform(-spread, spread)


def lease_retransmit_at(now: float, deadline: float, minimum: float = 60.0) -> float:
    """When to retransmit a REQUEST in RENEWING (deadline T2) or REBINDING (deadline: expiry).

    RFC 2131 §4.4.5: wait half the remaining time to the deadline, "down to a minimum of 60
    seconds". We never schedule past the deadline itself: reaching it changes the state, which
    sends anyway.
    """
    return min(deadline, now + max((deadline - now) / 2, minimum))


def backoff_delay(
    failures: int, rng: random.Random, *, initial: float = 1.0, cap: float = 300.0
) -> float:
    """The wait before discovering again after `failures` consecutive failures (≥ 1).

    A NAK, a DECLINE or a REQUESTING phase that ran out of tries counts as a failure; a bound
    lease resets the count. The nominal delay doubles from `initial` to `cap` and is stretched by
    up to 25 % at random so that clients NAKed together do not come back together. It never
    shortens the nominal delay, so callers can rely on it as a lower bound (the ≥ 10 s wait after
    a DECLINE). This is what keeps a NAK storm from becoming a packet storm (systemd-networkd
    backs off after NAKs the same way).
    """
    assert failures >= 1 and initial >= 0 and cap >= initial
    nominal = cap if failures > 32 else min(cap, initial * 2.0 ** (failures - 1))
    return nominal * rng.uniform(1.0, 1.25)
