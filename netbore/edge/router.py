"""
The edge's tunnel router: which requests are tunnel traffic, and the start
of their exchanges.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from .._types import Clock
from ..names import split_host
from ..writes import WriteBatch
from .config import EdgeConfig
from .exchange import Deadlines, Fields, ViewerExchange

if TYPE_CHECKING:
    from .limits import ConnectionLimits
    from .metrics import EdgeMetrics
    from .registry import IRegistry
    from .viewer import ViewerProtocol

__all__ = ["StreamSession", "TunnelRouter"]

#: Distinct Host values whose tunnel label is remembered (bounded: the
#: values come from viewers).
_LABEL_CACHE = 4096


class StreamSession(Protocol):
    """
    What an exchange needs of an agent session (L{agents.EdgeSession}).
    """

    def open_stream(
        self, exchange: ViewerExchange, method: bytes, target: bytes, headers: Fields, end_stream: bool
    ) -> int: ...

    def send_data(self, stream_id: int, data: bytes | memoryview) -> int: ...

    def send_end(self, stream_id: int) -> None: ...

    def reset(self, stream_id: int, code: int) -> None: ...

    def acknowledge(self, stream_id: int, n: int) -> None: ...

    def stream_count(self) -> int: ...


class _Labels(dict[bytes | None, str | None]):
    """
    Host value -> tunnel label (L{None}: the edge's own), learnt on first
    sight; bounded (the values come from viewers).
    """

    def __init__(self, domain: str) -> None:
        super().__init__()
        self.domain = domain

    def __missing__(self, host: bytes | None) -> str | None:
        label = split_host(host, self.domain)
        if len(self) >= _LABEL_CACHE:
            self.clear()
        self[host] = label
        return label


class TunnelRouter:
    """
    Decides, when a request's head is in, whether it is tunnel traffic, and
    starts its exchange.

    @ivar draining: the edge is shutting down: new exchanges answer 502.
    @ivar exchange: C{exchange(viewer, label, length)} starts the
        L{ViewerExchange} of the request C{viewer} has just read, for the
        tunnel C{label}; C{length} is its body's (L{None}: chunked).  (A
        partial of the class, so starting one costs no call of its own.)
    """

    def __init__(self, config: EdgeConfig, registry: IRegistry, reactor: Clock) -> None:
        self.config = config
        self.registry = registry
        self.reactor = reactor
        self.draining = False
        #: Response heads from agents refused for breaking header_rules (issue 10).
        self.refused_heads = 0
        #: The response timeouts of the exchanges (one timer for all).
        self.timeouts = Deadlines(reactor, config.response_timeout, "timed_out")
        #: The send timeouts of the exchanges whose viewer's connection is full.
        self.send_timeouts = Deadlines(reactor, config.send_timeout, "send_timed_out")
        #: Open byte streams (WebSockets, TCP connections) per tunnel id, and
        #: how many were refused for C{--max-byte-streams}.
        self.byte_streams: dict[str, int] = {}
        self.byte_streams_refused = 0
        #: The edge's tallies (L{netbore.edge.metrics}; set by L{netbore.edge.site.build_edge}).
        self.metrics: EdgeMetrics | None = None
        #: The process's write batch and the connection caps (set by
        #: L{netbore.edge.site.build_edge}): TCP tunnels' connections use them.
        self.writes = WriteBatch()
        self.limits: ConnectionLimits | None = None
        #: The idle timeouts of the upgraded connections (byte streams), if any.
        self.idle_timeouts: Deadlines | None = None
        if config.stream_idle_timeout > 0:
            self.idle_timeouts = Deadlines(reactor, config.stream_idle_timeout, "idle_timed_out")
        #: Request body bytes that restart the wait for the response (half
        #: of C{body_min_rate} over a response timeout): a body at that
        #: rate or faster is never timed out, one at less than half of it
        #: always is (408).
        self.body_quantum = max(1, int(config.body_min_rate * config.response_timeout / 2))
        #: C{label_for(host)}: the tunnel label C{host} addresses, or L{None}
        #: when it is the edge's own (the control API and C{/connect}).  A
        #: dictionary lookup (L{_Labels}): a Host seen before costs no call.
        self.label_for: Callable[[bytes | None], str | None] = _Labels(config.domain).__getitem__
        self.exchange: Callable[[ViewerProtocol, str, int | None], ViewerExchange] = partial(ViewerExchange, self)
