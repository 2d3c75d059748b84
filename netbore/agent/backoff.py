"""
Reconnect delays: exponential backoff with full jitter.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """
    Delay before attempt C{n} (0-based) is uniform in
    C{[0, min(cap, base * 2**n)]} ("full jitter"), so a fleet of agents
    dropped at once by an edge restart does not reconnect in lock-step.
    """

    def __init__(self, base: float, cap: float, uniform: Callable[[float, float], float] = random.uniform) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._uniform: Callable[[float, float], float] = uniform

    def ceiling(self) -> float:
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        delay = self._uniform(0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
