"""
The viewers' send timeout (C{--send-timeout}, nginx's C{send_timeout}): a
viewer whose connection takes none of the response bytes the edge has for
it, for that long, is closed and its stream reset, so that a dead or
stalled viewer holds its stream (its window, its origin request) for a
bounded time.

The exchange's response bytes wait in its own buffer while the viewer's
connection is full (its transport paused it; see
L{netbore.edge.exchange_ends.ExchangeEnds.pauseProducing}); the transport
resumes it only once everything it had was written to the socket.  So
"paused for the whole timeout" means the viewer took less than the
connection's buffer (about 64 KiB) in that time: the clock starts when the
connection pauses the exchange and stops when it resumes it.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .._types import Clock

__all__ = ["SendTimed", "SendTimeouts"]

log = Logger()


class SendTimed(Protocol):
    """What L{SendTimeouts} calls on an exchange whose viewer stalled."""

    stream_id: int

    def send_timed_out(self) -> None: ...


class SendTimeouts:
    """
    The send timeouts of a router's exchanges, on one timer (as
    L{netbore.edge.exchange.ResponseTimeouts}): a deadline is the last
    L{start} plus a fixed timeout, so the dictionary's order is theirs.
    """

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        #: The exchanges whose viewer's connection is full, by deadline.
        self.deadlines: dict[SendTimed, float] = {}
        self._timer: IDelayedCall | None = None

    def start(self, exchange: SendTimed) -> None:
        """
        The viewer's connection of C{exchange} is full: its clock (re)starts.
        """
        deadlines = self.deadlines
        deadlines.pop(exchange, None)
        deadlines[exchange] = self.clock.seconds() + self.timeout
        if self._timer is None:
            self._timer = self.clock.callLater(self.timeout, self._fire)

    def stop(self, exchange: SendTimed) -> None:
        """
        The viewer took the bytes (or the exchange is over): no deadline.
        """
        self.deadlines.pop(exchange, None)

    def _fire(self) -> None:
        self._timer = None
        deadlines = self.deadlines
        now = self.clock.seconds()
        while deadlines:
            exchange, deadline = next(iter(deadlines.items()))
            if deadline > now:
                self._timer = self.clock.callLater(deadline - now, self._fire)
                return
            del deadlines[exchange]
            try:
                exchange.send_timed_out()
            except Exception:
                log.failure("send timeout of stream {stream_id} failed", stream_id=exchange.stream_id)
