"""
What the edge records of each viewer request of a tunnel once it is
answered (or its connection gave up): its counts in L{EdgeMetrics} and its
access-log line (L{netbore.edge.accesslog}).

L{netbore.edge.viewer.ViewerProtocol} calls L{RequestLog.done} exactly
once per request, after its response ended (or was cut), with what it
noted on the way: when the head was read and the response head written,
the status, the body bytes each way.  Requests for the edge's own names
(the control API, C{/connect}) are twisted.web's, not counted here.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Protocol

from .._types import Clock
from ..metrics import METHODS

if TYPE_CHECKING:
    from .metrics import EdgeMetrics
    from .viewer import ViewerProtocol

__all__ = ["AccessLine", "RequestLog"]


class AccessLine(Protocol):
    """An access log (L{netbore.edge.accesslog.AccessLog})."""

    def write(
        self,
        when: float,
        tunnel: str | None,
        method: bytes,
        target: bytes,
        status: int,
        received: int,
        sent: int,
        duration: float,
        client: bytes,
    ) -> None:
        """One request's line (see C{docs/operations.rst}); C{method} and C{target} are C{b"-"} if unknown."""


class RequestLog:
    """
    The request path's one call into observability (see the module's
    docstring): counts in C{metrics}, a line in C{access} (L{None}: off).
    """

    def __init__(self, clock: Clock, metrics: EdgeMetrics, access: AccessLine | None = None) -> None:
        self.clock = clock
        self.metrics = metrics
        self.access = access

    def done(self, viewer: ViewerProtocol, status: int, started: float) -> None:
        """
        C{viewer}'s request, whose head was read at C{started}, is over:
        answered with C{status} (0: nothing was sent).
        """
        now = self.clock.seconds()
        head = viewer.head
        method = b"-" if head is None else head.method
        received = viewer.received_bytes
        sent = viewer.sent_bytes
        # EdgeMetrics.request_done, inline (a call per request costs, see bench/trace.py).
        metrics = self.metrics
        tunnel = viewer.label if metrics.per_tunnel else None
        metrics.requests[tunnel, method if method in METHODS else b"other", status // 100] += 1
        if received:
            metrics.received[tunnel] += received
        if sent:
            metrics.sent[tunnel] += sent
        if status:
            latencies = metrics.head_seconds
            seconds = viewer.answered_at - started
            latencies.counts[bisect_left(latencies.bounds, seconds)] += 1
            latencies.sum += seconds
        access = self.access
        if access is not None:
            target = b"-" if head is None else head.target
            access.write(now, viewer.label, method, target, status, received, sent, now - started, viewer.client_ip)
