"""
Reconnect delays: full jitter between zero and a ceiling that doubles from
the base up to the cap, and starts again from the base after a reset.
"""

from __future__ import annotations

import random

import pytest

from netbore.agent.backoff import Backoff


def recording() -> tuple[list[tuple[float, float]], Backoff]:
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return high  # the worst case

    return calls, Backoff(1.0, 60.0, uniform=uniform)


def test_ceiling_doubles_from_base_to_cap() -> None:
    calls, backoff = recording()
    delays = [backoff.next() for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert all(low == 0 for low, _ in calls)  # full jitter: from zero


def test_reset_starts_again_from_the_base() -> None:
    _, backoff = recording()
    for _ in range(8):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 1.0
    assert backoff.next() == 2.0


def test_a_long_outage_does_not_overflow() -> None:
    _, backoff = recording()
    for _ in range(5000):
        delay = backoff.next()
    assert delay == 60.0


@pytest.mark.parametrize("seed", range(5))
def test_real_jitter_stays_within_bounds_and_spreads(seed: int) -> None:
    rng = random.Random(seed)
    backoff = Backoff(0.5, 4.0, uniform=rng.uniform)
    seen = []
    for attempt in range(200):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delay = backoff.next()
        assert 0 <= delay <= ceiling
        seen.append(delay)
    capped = seen[10:]
    # Not lock-step: agents dropped together spread over the whole range.
    assert min(capped) < 1.0 and max(capped) > 3.0


def test_default_uses_random_uniform() -> None:
    backoff = Backoff(1.0, 2.0)
    values = {backoff.next() for _ in range(20)}
    assert len(values) > 1
    assert all(0 <= v <= 2.0 for v in values)
