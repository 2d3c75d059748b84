"""
A lean HTTP/1.1 client for the one origin an agent serves.

L{OriginPool} keeps persistent connections to the origin (bounded idle
connections, C{TCP_NODELAY}, a connect timeout, TLS for C{https} origins);
each is an L{OriginConnection} (L{netbore.agent.origin_connection}).

A connection goes back to the pool only after a complete response that
allows it (HTTP/1.1 without C{Connection: close}, a self-delimited body,
nothing extra after it) and a complete request body.  A reused connection
that fails before any response byte is retried once on a fresh connection
when the request is idempotent and has no body (RFC 9110 §9.2.2).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from zope.interface import implementer

from netbore._types import Clock, Reactor
from netbore.writes import WriteBatch

from .metrics import OriginCounts
from .origin_connection import Exchange, OriginConnection
from .tls import PeerTLS

__all__ = [
    "DEFAULT_MAX_IDLE",
    "DEFAULT_IDLE_TIMEOUT",
    "Exchange",
    "OriginConnection",
    "OriginPool",
    "origin_endpoint",
]

#: Idle connections kept per origin: enough for a few hundred concurrent
#: viewers without closing and reopening origin connections between their
#: requests (64 did that at c=200: 2,000 new connections in 5 s, doubling
#: the agent's CPU per request).  Idle ones expire after
#: L{DEFAULT_IDLE_TIMEOUT}.
DEFAULT_MAX_IDLE = 256
#: Idle connections older than this are not reused: origins commonly close
#: keep-alive connections after 5 s (Node.js, Apache), and a request sent
#: on a connection the origin is closing fails.
DEFAULT_IDLE_TIMEOUT = 4.0


@implementer(IStreamClientEndpoint)
class origin_endpoint:
    """
    The endpoint of an C{http} or C{https} origin, made at the first
    connection (so that building a forwarder needs no name resolver).

    @param tls: how an C{https} origin is verified (L{PeerTLS}; default:
        against the system's CAs).
    """

    def __init__(
        self,
        reactor: Reactor,
        scheme: str,
        host: str,
        port: int,
        connect_timeout: float,
        tls: PeerTLS | None = None,
    ) -> None:
        self._args = (reactor, scheme, host, port, connect_timeout)
        self.tls = tls
        self._endpoint: IStreamClientEndpoint | None = None

    def connect(self, factory: Any) -> Deferred[Any]:
        endpoint = self._endpoint
        if endpoint is None:
            reactor, scheme, host, port, timeout = self._args
            endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
            if scheme == "https":
                tls = self.tls if self.tls is not None else PeerTLS("origin", None, "--origin-ca-cert")
                endpoint = wrapClientTLS(tls.creator(host), endpoint)
            self._endpoint = endpoint
        return endpoint.connect(factory)


class OriginPool:
    """
    Persistent connections to one origin.

    @param endpoint: where new connections go (see L{origin_endpoint}).
    @param clock: gives C{seconds()} for the idle timeout.
    @param max_idle: at most this many idle connections are kept.
    @param writes: the process's write batch (a fresh one if not given).
    @param counts: where the origin's answers and failures are counted
        (L{netbore.agent.metrics}; a fresh tally if not given).
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: Clock,
        max_idle: int = DEFAULT_MAX_IDLE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        writes: WriteBatch | None = None,
        counts: OriginCounts | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.writes = writes if writes is not None else WriteBatch()
        self.counts = counts if counts is not None else OriginCounts()
        #: The clock's C{seconds}, read by the pool and its connections.
        self.seconds: Callable[[], float] = clock.seconds
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._idle: deque[OriginConnection] = deque()
        self._closing: list[Deferred[None]] = []

    @property
    def idle(self) -> int:
        return len(self._idle)

    def request(
        self,
        exchange: Exchange,
        head: bytes,
        head_request: bool = False,
        body: bool = False,
        chunked: bool = False,
        retryable: bool = False,
    ) -> None:
        """
        Send one request (its whole head in C{head}) on an idle connection
        or a new one.  The exchange hears of its connection through
        L{Exchange.attached} before this returns.

        @param body: a request body follows (through the connection's
            C{write} and C{end_body}).
        @param chunked: frame that body with chunked coding.
        @param retryable: the request may be sent again on a fresh
            connection if a reused one fails before any response byte.
        """
        conn = self._take()
        if conn is None:
            conn = OriginConnection(self)
            conn.send(exchange, head, head_request, body, chunked, retryable)
            if conn.exchange is exchange:
                conn.connect(self.endpoint)
        else:
            conn.send(exchange, head, head_request, body, chunked, retryable)

    def retry(self, exchange: Exchange, head: bytes, head_request: bool) -> None:
        """
        Send a request again on a fresh connection, once.
        """
        conn = OriginConnection(self)
        conn.send(exchange, head, head_request, False, False, False)
        if conn.exchange is exchange:
            conn.connect(self.endpoint)

    def _take(self) -> OriginConnection | None:
        idle = self._idle
        if not idle:
            return None
        now = self.seconds()
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since <= self.idle_timeout:
                conn.sent_at = now  # (its head goes out now: the latency's start)
                return conn
            conn.close(abort=False)
        return None

    def put(self, conn: OriginConnection, now: float | None = None) -> None:
        """
        C{conn} is idle since C{now} (read from the clock if not given).
        """
        if len(self._idle) >= self.max_idle:
            conn.close(abort=False)
            return
        conn.idle_since = self.seconds() if now is None else now
        self._idle.append(conn)

    def forget(self, conn: OriginConnection) -> None:
        """
        C{conn} closed.
        """
        try:
            self._idle.remove(conn)
        except ValueError:
            pass
        if self._closing and not self._idle:
            waiters, self._closing = self._closing, []
            for d in waiters:
                d.callback(None)

    def close(self) -> Deferred[None]:
        """
        Close the idle connections; fires once they are closed.
        """
        d: Deferred[None] = Deferred()
        if not self._idle:
            d.callback(None)
            return d
        self._closing.append(d)
        for conn in list(self._idle):
            conn.close(abort=False)
        return d
