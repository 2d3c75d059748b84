"""
A lean HTTP/1.1 client for the one origin an agent serves.

L{OriginPool} keeps persistent connections to the origin (bounded idle
connections, C{TCP_NODELAY}, a connect timeout, TLS for C{https} origins);
L{OriginConnection} writes a request head in one write, frames the request
body (C{Content-Length} or chunked) and parses the response with the
sans-IO L{netbore.http1.ResponseParser}, handing the head and every read of
body bytes to an L{Exchange} as they arrive.  There are no Deferreds, no
header objects and no body producers per request: the exchange (the
forwarder's stream) is called back directly and drives backpressure with
L{OriginConnection.pause_reading} / L{OriginConnection.resume_reading}.

A connection goes back to the pool only after a complete response that
allows it (HTTP/1.1 without C{Connection: close}, a self-delimited body,
nothing extra after it) and a complete request body.  A reused connection
that fails before any response byte is retried once on a fresh connection
when the request is idempotent and has no body (RFC 9110 §9.2.2).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from zope.interface import implementer

from netbore.http1 import END, ParseError, ResponseHead, ResponseParser
from netbore.writes import BATCH

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

_LAST_CHUNK = b"0\r\n\r\n"


class Exchange(TypingProtocol):
    """
    What an L{OriginConnection} reports to about its current request.

    After L{response_data} with C{last} or L{response_failed} the
    connection is no longer the exchange's: it must not be touched again.
    """

    def attached(self, conn: OriginConnection) -> None:
        """
        C{conn} now carries the request (again, after a retry).
        """

    def request_sent(self) -> None:
        """
        The head is written; body bytes may follow (L{OriginConnection.write}).
        """

    def unreachable(self, failure: Failure) -> None:
        """
        The origin could not be connected to.
        """

    def response_head(self, head: ResponseHead) -> None: ...

    def response_data(self, data: bytes, last: bool) -> None:
        """
        Body bytes as read (possibly empty when C{last}); C{last}: the
        response is complete.
        """

    def response_failed(self, why: str) -> None:
        """
        The connection closed, or the origin broke HTTP, before the
        response was complete.
        """

    def write_paused(self) -> None:
        """
        The origin connection's write buffer is full.
        """

    def write_resumed(self) -> None: ...


@implementer(IStreamClientEndpoint)
class origin_endpoint:
    """
    The endpoint of an C{http} or C{https} origin, made at the first
    connection (so that building a forwarder needs no name resolver).
    """

    def __init__(
        self, reactor: Any, scheme: str, host: str, port: int, connect_timeout: float
    ) -> None:
        self._args = (reactor, scheme, host, port, connect_timeout)
        self._endpoint: IStreamClientEndpoint | None = None

    def connect(self, factory: Any) -> Deferred[Any]:
        endpoint = self._endpoint
        if endpoint is None:
            reactor, scheme, host, port, timeout = self._args
            endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout)
            if scheme == "https":
                endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
            self._endpoint = endpoint
        return endpoint.connect(factory)


class _OneConnection(Factory):
    """
    Hands the endpoint the connection made for it.
    """

    noisy = False  # no log line per connection

    def __init__(self, conn: OriginConnection) -> None:
        self.conn = conn

    def buildProtocol(self, addr: Any) -> OriginConnection:
        return self.conn


@implementer(IPushProducer)
class OriginConnection(Protocol):
    """
    One connection to the origin, carrying one request at a time.

    It is its transport's push producer, so a full write buffer pauses the
    current exchange's request body.
    """

    def __init__(self, pool: OriginPool) -> None:
        self._pool = pool
        self.exchange: Exchange | None = None
        self.connected = False
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._connecting: Deferred[Any] | None = None
        self._parser: ResponseParser | None = None
        self._head = b""
        self._head_request = False
        self._chunked = False
        self._body_done = True
        self._retryable = False
        self._got_bytes = False
        self._reading_paused = False
        self._write_paused = False

    # -- driven by the pool ---------------------------------------------------

    def send(
        self,
        exchange: Exchange,
        head: bytes,
        head_request: bool,
        body: bool,
        chunked: bool,
        retryable: bool,
    ) -> None:
        """
        Carry this request: write C{head} now if connected, else once connected.
        """
        self.exchange = exchange
        self._head = head
        self._head_request = head_request
        self._body_done = not body
        self._chunked = chunked
        self._retryable = retryable
        self._got_bytes = False
        self._parser = ResponseParser(head_request)
        exchange.attached(self)
        if self.connected:
            self._start()

    def connect(self, endpoint: IStreamClientEndpoint) -> None:
        d = endpoint.connect(_OneConnection(self))
        if d.called:
            # Synchronous success or failure (tests).
            d.addCallbacks(lambda _: None, self._connect_failed)
            return
        self._connecting = d
        d.addCallbacks(self._connect_done, self._connect_failed)

    def _connect_done(self, _: object) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not failure.check(CancelledError):
            exchange.unreachable(failure)

    def _start(self) -> None:
        exchange = self.exchange
        assert exchange is not None and self.transport is not None
        BATCH.write(self.transport, self._head)
        exchange.request_sent()

    # -- used by the exchange ------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Request body bytes (framed here when the body is chunked).
        """
        transport: Any = self.transport
        if self._chunked:
            BATCH.write(transport, b"%X\r\n" % len(data))
            BATCH.write(transport, data)
            BATCH.write(transport, b"\r\n")
        else:
            BATCH.write(transport, data)

    def end_body(self) -> None:
        """
        The request body is complete.
        """
        if self._body_done:
            return
        self._body_done = True
        if self._chunked and self.transport is not None:
            BATCH.write(self.transport, _LAST_CHUNK)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.connected and not self.closed:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self._reading_paused and self.connected and not self.closed:
            self._reading_paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def abort(self) -> None:
        """
        Give up on the request: the connection is closed, nothing more is
        reported.
        """
        self.exchange = None
        self.closed = True
        d, self._connecting = self._connecting, None
        if self.transport is not None and self.connected:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        elif d is not None:
            d.cancel()

    # -- Protocol --------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        transport: Any = self.transport
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        transport.registerProducer(self, True)
        if self.closed:
            # Aborted while the connect completed.
            transport.abortConnection()
        elif self.exchange is not None:
            self._start()

    def dataReceived(self, data: bytes) -> None:
        # Whatever this response causes (tunnel frames) leaves in one write.
        BATCH.hold()
        try:
            self._data_received(data)
        finally:
            BATCH.release()

    def _data_received(self, data: bytes) -> None:
        exchange = self.exchange
        parser = self._parser
        if exchange is None or parser is None:
            # Bytes nobody asked for on an idle connection.
            self._close(abort=True)
            return
        self._got_bytes = True
        try:
            events = parser.feed(data)
        except ParseError as e:
            self._failed(exchange, f"bad response from the origin: {e}")
            return
        n = len(events)
        i = 0
        while i < n:
            event = events[i]
            i += 1
            if self.exchange is not exchange:
                return
            if event.__class__ is bytes:
                if i < n and events[i] is END:
                    self._response_done()
                    exchange.response_data(event, True)  # type: ignore[arg-type]
                    return
                exchange.response_data(event, False)  # type: ignore[arg-type]
            elif event is END:
                self._response_done()
                exchange.response_data(b"", True)
                return
            else:
                exchange.response_head(event)  # type: ignore[arg-type]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.connected = False
        self.closed = True
        self._pool.forget(self)
        exchange, self.exchange = self.exchange, None
        parser = self._parser
        if exchange is None or parser is None:
            return
        try:
            events = parser.feed_eof()
        except ParseError:
            self._parser = None
            if not self._got_bytes and self.reused and self._retryable:
                self._pool.retry(exchange, self._head, self._head_request)
                return
            exchange.response_failed(f"origin closed the connection: {reason.getErrorMessage()}")
            return
        self._parser = None
        if events:
            exchange.response_data(b"", True)

    # -- IPushProducer (the transport's write buffer) ------------------------------------

    def pauseProducing(self) -> None:
        self._write_paused = True
        if self.exchange is not None:
            self.exchange.write_paused()

    def resumeProducing(self) -> None:
        self._write_paused = False
        if self.exchange is not None:
            self.exchange.write_resumed()

    def stopProducing(self) -> None:
        pass

    # -- internals ------------------------------------------------------------------------

    def _response_done(self) -> None:
        """
        The response is complete: back to the pool, or closed.
        """
        self.exchange = None
        parser = self._parser
        self._parser = None
        if (
            parser is not None
            and parser.reusable
            and self._body_done
            and not self._write_paused
            and self.connected
        ):
            self.resume_reading()
            self.reused = True
            self._pool.put(self)
        else:
            self._close(abort=not self._body_done)

    def _failed(self, exchange: Exchange, why: str) -> None:
        self.exchange = None
        self._parser = None
        self._close(abort=True)
        exchange.response_failed(why)

    def _close(self, abort: bool) -> None:
        self.closed = True
        transport: Any = self.transport
        if transport is None or not self.connected:
            return
        transport.unregisterProducer()
        if abort:
            transport.abortConnection()
        else:
            BATCH.flush(transport)
            transport.loseConnection()


class OriginPool:
    """
    Persistent connections to one origin.

    @param endpoint: where new connections go (see L{origin_endpoint}).
    @param clock: gives C{seconds()} for the idle timeout.
    @param max_idle: at most this many idle connections are kept.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: Any,
        max_idle: int = DEFAULT_MAX_IDLE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint
        self._seconds: Callable[[], float] = clock.seconds
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
        now = self._seconds()
        while idle:
            conn = idle.pop()
            if conn.connected and not conn.closed and now - conn.idle_since <= self.idle_timeout:
                return conn
            conn._close(abort=False)
        return None

    def put(self, conn: OriginConnection) -> None:
        if len(self._idle) >= self.max_idle:
            conn._close(abort=False)
            return
        conn.idle_since = self._seconds()
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
            conn._close(abort=False)
        return d
