"""
One connection to the origin (the Twisted shell around the sans-IO
L{netbore.http1.client.ClientState}), and what it reports to.

L{OriginConnection} writes a request head in one write, frames the request
body (C{Content-Length} or chunked) and parses the response with its
L{netbore.http1.ResponseParser}, handing the head and every read of body
bytes to an L{Exchange} as they arrive.  There are no Deferreds, no header
objects and no body producers per request: the exchange (the forwarder's
stream) is called back directly and drives backpressure with
L{OriginConnection.pause_reading} / L{OriginConnection.resume_reading}.

It counts what the origin does (L{netbore.agent.metrics.OriginCounts}):
each response head by its status and the time it took, inline, and each
failure by its reason.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from netbore.http1 import CHUNK_END, END_OF_MESSAGE, LAST_CHUNK, ParseError, ResponseHead, chunk_head
from netbore.http1.client import ClientState, Phase, Receiving, Sending

from .metrics import origin_error

if TYPE_CHECKING:
    from .origin import OriginPool

__all__ = ["Exchange", "OriginConnection"]


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


class _OneConnection(Factory):
    """
    Hands the endpoint the connection made for it.
    """

    noisy = False  # no log line per connection

    def __init__(self, conn: Protocol) -> None:
        self.conn = conn

    def buildProtocol(self, addr: Any) -> Protocol:
        return self.conn


@implementer(IPushProducer)
class OriginConnection(Protocol):
    """
    One connection to the origin, carrying one request at a time.

    Its state is its transport's L{Phase} and, sans-IO, one state per
    direction (L{netbore.http1.client.ClientState}).  It is its
    transport's push producer, so a full write buffer pauses the current
    exchange's request body.
    """

    #: When the current request's head was written (the pool sets it for
    #: a reused connection); C{-1.0} once its response head came.
    sent_at = -1.0

    def __init__(self, pool: OriginPool) -> None:
        self._pool = pool
        self._writes = pool.writes
        self._counts = pool.counts
        self._seconds = pool.seconds
        self.exchange: Exchange | None = None
        self.state = ClientState()
        self.idle_since = 0.0
        self._connecting: Deferred[Any] | None = None
        # Flow control, both directions.
        self._reading_paused = False
        self._write_paused = False

    @property
    def usable(self) -> bool:
        """
        Open, with no request on it.
        """
        state = self.state
        return state.phase is Phase.OPEN and state.sending is Sending.IDLE

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
        state = self.state
        state.start(head, head_request, body, chunked, retryable)
        exchange.attached(self)
        if state.phase is Phase.OPEN and self.exchange is exchange:
            # A pooled connection: the head goes out now (start knew).
            self._writes.write(self.transport, head)
            exchange.request_sent()

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
        self.state.phase = Phase.CLOSED
        exchange, self.exchange = self.exchange, None
        if exchange is not None and not failure.check(CancelledError):
            self._counts.failed(origin_error(failure))
            exchange.unreachable(failure)

    def _start(self) -> None:
        exchange = self.exchange
        assert exchange is not None and self.transport is not None
        state = self.state
        state.head_written()
        self.sent_at = self._seconds()
        self._writes.write(self.transport, state.request)
        exchange.request_sent()

    # -- used by the exchange ------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Request body bytes (framed here when the body is chunked).
        """
        if not data:
            return
        transport = self.transport
        if self.state.chunked:
            write = self._writes.write
            write(transport, chunk_head(len(data)))
            write(transport, data)
            write(transport, CHUNK_END)
        else:
            self._writes.write(transport, data)

    def end_body(self) -> None:
        """
        The request body is complete.
        """
        state = self.state
        if state.end_body() and state.chunked and self.transport is not None:
            self._writes.write(self.transport, LAST_CHUNK)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.state.phase is Phase.OPEN:
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self._reading_paused and self.state.phase is Phase.OPEN:
            self._reading_paused = False
            self.transport.resumeProducing()  # type: ignore[union-attr]

    def abort(self) -> None:
        """
        Give up on the request: the connection is closed, nothing more is
        reported.
        """
        self.exchange = None
        state = self.state
        phase, state.phase = state.phase, Phase.CLOSED
        d, self._connecting = self._connecting, None
        if phase is Phase.OPEN and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        elif d is not None:
            d.cancel()

    # -- Protocol --------------------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        try:
            transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        transport.registerProducer(self, True)
        if self.state.phase is Phase.CLOSED:
            # Aborted while the connect completed.
            transport.abortConnection()
            return
        self.state.phase = Phase.OPEN
        if self.exchange is not None:
            self._start()

    def dataReceived(self, data: bytes) -> None:
        # Whatever this response causes (tunnel frames) leaves in one write.
        writes = self._writes
        writes.hold()
        try:
            self._data_received(data)
        finally:
            writes.release()

    def _data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            # Bytes nobody asked for on an idle connection.
            self.close(abort=True)
            return
        state = self.state
        state.receiving = Receiving.RECEIVING
        events = state.receive(data)
        n = len(events)
        i = 0
        answered: float | None = None  # when a response head came in this read
        while i < n:
            event = events[i]
            i += 1
            if event.__class__ is bytes:
                if i < n and events[i] is END_OF_MESSAGE:
                    self._response_done(answered)
                    exchange.response_data(event, True)
                    return
                exchange.response_data(event, False)
            elif event is END_OF_MESSAGE:
                self._response_done(answered)
                exchange.response_data(b"", True)
                return
            elif event.__class__ is ParseError:
                self._failed(exchange, f"bad response from the origin: {event}")
                return
            else:
                # The origin's answer, counted here inline (a call per
                # request costs, see bench/trace.py); this clock read is
                # also the time the connection goes idle if the response
                # ends in this read (the pool's put reads none then).
                answered = self._seconds()
                counts = self._counts
                counts.statuses[event.status // 100] += 1  # type: ignore[union-attr]
                seconds = answered - self.sent_at
                self.sent_at = -1.0
                latencies = counts.head_seconds
                latencies.counts[bisect_left(latencies.bounds, seconds)] += 1
                latencies.sum += seconds
                exchange.response_head(event)  # type: ignore[arg-type]
            if self.exchange is not exchange:
                return

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.state.phase = Phase.CLOSED
        self._pool.forget(self)
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        state = self.state
        try:
            state.feed_eof()
            ended = state.next_event() is END_OF_MESSAGE
        except ParseError:
            if state.may_retry():
                self._pool.retry(exchange, state.request, state.head_request)
                return
            self._counts.failed(origin_error(reason), answered=self.sent_at < 0)
            exchange.response_failed(f"origin closed the connection: {reason.getErrorMessage()}")
            return
        if ended:
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

    def _response_done(self, now: float | None) -> None:
        """
        The response is complete (at C{now}, if the clock was read in
        this read): back to the pool, or closed.
        """
        self.exchange = None
        reusable, body_done = self.state.response_done()
        if reusable and not self._write_paused and self.state.phase is Phase.OPEN:
            self.resume_reading()
            self._pool.put(self, now)
        else:
            self.close(abort=not body_done)

    def _failed(self, exchange: Exchange, why: str) -> None:
        self.exchange = None
        self._counts.failed("other", answered=self.sent_at < 0)
        self.close(abort=True)
        exchange.response_failed(why)

    def close(self, abort: bool) -> None:
        state = self.state
        phase, state.phase = state.phase, Phase.CLOSED
        transport: Any = self.transport
        if transport is None or phase is not Phase.OPEN:
            return
        transport.unregisterProducer()
        if abort:
            transport.abortConnection()
        else:
            self._writes.flush(transport)
            transport.loseConnection()
