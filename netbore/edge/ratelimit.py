"""
Limiting failed authentications per client address.

Sans-IO: the limiter holds timestamps from an injected clock and answers
questions; it never schedules anything.  The control API and the agent
WebSocket endpoint (C{/connect}) share one instance, so guessing tokens on
either counts against the same budget.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from .._types import Clock

__all__ = ["AuthFailureLimiter"]

#: Length of the sliding window, in seconds.
WINDOW = 60.0

#: Addresses remembered at most; the one whose last failure is oldest is
#: forgotten first.
MAX_ADDRESSES = 10_000


class AuthFailureLimiter:
    """
    Count failed authentications per client address in a sliding window of
    L{WINDOW} seconds.  Once C{per_minute} failures from one address are in
    the window, L{check} refuses that address until the oldest of them leaves
    the window.

    A C{per_minute} of 0 (or less) switches limiting off.

    Memory is bounded: at most C{max_addresses} addresses, each with at most
    C{per_minute} timestamps.
    """

    def __init__(
        self,
        clock: Clock,
        per_minute: int,
        *,
        window: float = WINDOW,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._clock = clock
        self._limit = per_minute
        self._window = window
        self._max_addresses = max(1, max_addresses)
        # address -> failure times, oldest first; the dict itself is ordered
        # by the time of each address's last failure, oldest first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, addr: str, now: float) -> deque[float] | None:
        times = self._failures.get(addr)
        if times is None:
            return None
        horizon = now - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[addr]
            return None
        return times

    def check(self, addr: str) -> float | None:
        """
        L{None} when C{addr} may try to authenticate now; otherwise the number
        of seconds (> 0) until it may, for a C{Retry-After} header.
        """
        if self._limit <= 0:
            return None
        now = self._clock.seconds()
        times = self._recent(addr, now)
        if times is None or len(times) < self._limit:
            return None
        return max(times[0] + self._window - now, 0.001)

    def failed(self, addr: str) -> None:
        """
        Record one failed authentication from C{addr}.
        """
        if self._limit <= 0:
            return
        now = self._clock.seconds()
        times = self._recent(addr, now)
        if times is None:
            while len(self._failures) >= self._max_addresses:
                self._failures.popitem(last=False)
            times = self._failures[addr] = deque(maxlen=self._limit)
        else:
            self._failures.move_to_end(addr)
        times.append(now)

    def __len__(self) -> int:
        """
        How many addresses are remembered (for tests and metrics).
        """
        return len(self._failures)
