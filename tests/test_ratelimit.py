"""
The failed-authentication limiter: sliding window, per address, bounded.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from netbore.edge.ratelimit import AuthFailureLimiter


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_under_the_limit(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 3)
    assert limiter.check("1.2.3.4") is None
    limiter.failed("1.2.3.4")
    limiter.failed("1.2.3.4")
    assert limiter.check("1.2.3.4") is None


def test_limit_reached_then_window_slides(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 3)
    for _ in range(3):
        limiter.failed("a")
        clock.advance(10)
    # failures at 0, 10, 20; now 30: the first leaves at 60
    assert limiter.check("a") == pytest.approx(30)
    clock.advance(29)
    assert limiter.check("a") == pytest.approx(1)
    clock.advance(1)
    assert limiter.check("a") is None
    limiter.failed("a")  # failures at 10, 20, 60
    assert limiter.check("a") == pytest.approx(10)
    clock.advance(60)
    assert limiter.check("a") is None
    assert len(limiter) == 0


def test_addresses_are_independent(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 2)
    limiter.failed("a")
    limiter.failed("a")
    limiter.failed("b")
    assert limiter.check("a") is not None
    assert limiter.check("b") is None
    assert limiter.check("c") is None


def test_memory_bounded(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 2, max_addresses=3)
    for addr in ["a", "b", "c"]:
        limiter.failed(addr)
        limiter.failed(addr)
    limiter.failed("a")  # "a" becomes the most recent
    limiter.failed("d")  # evicts "b", whose last failure is the oldest
    assert len(limiter) == 3
    assert limiter.check("b") is None
    assert limiter.check("a") is not None
    assert limiter.check("c") is not None
    for _ in range(1000):
        limiter.failed("a")
    assert limiter.check("a") is not None
    assert len(limiter._failures["a"]) == 2


def test_disabled(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 0)
    for _ in range(100):
        limiter.failed("a")
    assert limiter.check("a") is None
    assert len(limiter) == 0


def test_custom_window(clock: Clock) -> None:
    limiter = AuthFailureLimiter(clock, 1, window=5)
    limiter.failed("a")
    assert limiter.check("a") == pytest.approx(5)
    clock.advance(5)
    assert limiter.check("a") is None
