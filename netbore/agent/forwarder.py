"""
The origin forwarder: one tunnel stream becomes one HTTP request to the origin.

The forwarder knows nothing about WebSockets.  It talks to the tunnel through
a L{StreamSink} (the agent session adapts the sans-IO session to it) and to
the origin through an L{IAgent} with a persistent connection pool.

Both directions are streamed under flow control:

  - request body: stream DATA feeds an L{IBodyProducer}; bytes are
    acknowledged to the edge (window updates) only when the origin
    connection has taken them, and not while that connection has paused us,
    so at most one stream window is ever held here;
  - response body: bytes go out as DATA while the stream's send window
    allows; otherwise the origin connection is paused and at most one read's
    worth is kept until a window update arrives.
"""

from __future__ import annotations

from collections import deque
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from netbore.headers import Header, strip_hop_by_hop
from netbore.protocol.errors import ErrorCode

__all__ = [
    "DEFAULT_MAX_PERSISTENT_PER_HOST",
    "OriginForwarder",
    "OriginStream",
    "StreamSink",
    "make_pool",
]

log = Logger()

DEFAULT_MAX_PERSISTENT_PER_HOST = 64
#: Statuses whose responses never carry a body (RFC 9110 §6.4.1).
_NO_BODY_STATUSES = frozenset({204, 304})
_MAX_MESSAGE = 200


class StreamSink(TypingProtocol):
    """
    What an L{OriginStream} needs from the tunnel session.

    Every call must put the resulting frames on the wire (or queue them for
    the next flush) by itself: the forwarder calls these from origin-side
    callbacks, outside any batch of tunnel work.
    """

    def send_response_head(
        self,
        stream_id: int,
        status: int,
        reason: bytes,
        headers: list[Header],
        end_stream: bool = False,
    ) -> None: ...

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...

    def send_end(self, stream_id: int) -> None: ...

    def reset_stream(
        self, stream_id: int, code: ErrorCode, message: bytes = b""
    ) -> None: ...

    def acknowledge(self, stream_id: int, n: int) -> None: ...

    def send_window(self, stream_id: int) -> int: ...

    def max_data_payload(self) -> int:
        """
        The largest payload one DATA frame may carry toward the edge.
        """

    def stream_finished(self, stream_id: int) -> None:
        """
        The stream is over on the agent's side (ended, reset or failed);
        the owner forgets it.
        """


class _Consumer(TypingProtocol):
    def write(self, data: bytes) -> None: ...


class _Response(TypingProtocol):
    """
    The parts of L{IResponse} used here (mypy has no zope plugin here).
    """

    code: int
    phrase: bytes
    headers: Headers
    length: int | object

    def deliverBody(self, protocol: Protocol) -> None: ...


class _Agent(TypingProtocol):
    """
    The L{IAgent} method used here.
    """

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,
    ) -> Deferred[Any]: ...


def make_pool(
    reactor: IReactorTime, max_per_host: int = DEFAULT_MAX_PERSISTENT_PER_HOST
) -> HTTPConnectionPool:
    """
    A persistent connection pool sized for many concurrent streams.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max_per_host
    return pool


class _ExactTargetAgent(Agent):
    """
    An L{Agent} that sends the request target exactly as found in the URI.

    L{Agent.request} rebuilds the target through L{URI.originForm}, which
    drops an empty query (C{/a?}) or empty parameters (C{/a;}).  A tunnel must
    be byte-exact, so this passes everything after the authority through
    unchanged, using the same hook L{twisted.web.client.ProxyAgent} uses.
    """

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        parsed = URI.fromBytes(uri)
        endpoint = self._getEndpoint(parsed)
        prefix = parsed.scheme + b"://" + parsed.netloc
        target = uri[len(prefix) :] if uri.startswith(prefix) else parsed.originForm
        key = (parsed.scheme, parsed.host, parsed.port)
        return self._requestWithEndpoint(
            key, endpoint, method, parsed, headers, bodyProducer, target or b"/"
        )


def _short(failure: Failure) -> bytes:
    text = f"{type(failure.value).__name__}: {failure.value}"
    return text.encode("utf-8", "replace")[:_MAX_MESSAGE]


def _classify(failure: Failure) -> tuple[ErrorCode, bytes]:
    """
    Map a failure before the response head to a reset code and message.
    """
    if failure.check(ConnectError, DNSLookupError, ConnectingCancelledError):
        return ErrorCode.ORIGIN_UNREACHABLE, b"origin unreachable: " + _short(failure)
    if failure.check(ResponseFailed):
        return ErrorCode.ORIGIN_RESET, b"origin closed the connection: " + _short(failure)
    return ErrorCode.INTERNAL_ERROR, b"origin request failed: " + _short(failure)


@implementer(IBodyProducer)
class _StreamBodyProducer:
    """
    Request body fed by stream DATA, written to the origin connection.

    Bytes are acknowledged to the edge when the consumer takes them, so
    while the origin connection pauses us the edge runs out of window and
    stops sending: what is held here never exceeds the stream window.
    """

    def __init__(self, stream: OriginStream, length: int | object) -> None:
        self.length = length
        self._stream = stream
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._consumer: _Consumer | None = None
        self._done: Deferred[None] | None = None
        self._paused = False
        self._stopped = False
        self._ended = False
        self._fed = 0

    @property
    def buffered(self) -> int:
        return self._buffered

    # Stream side.

    def feed(self, data: bytes) -> None:
        if self._stopped:
            # Nobody will take it any more; give the credit back so the
            # edge is not left waiting on a window for a dead request.
            self._stream.acknowledge(len(data))
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self._fed += len(data)
        if isinstance(self.length, int) and self._fed >= self.length:
            # A declared length ends the body by itself; the origin may
            # answer before the stream's END arrives.
            self._ended = True
        self._flush()

    def finish(self) -> None:
        self._ended = True
        self._flush()

    # IBodyProducer.

    def startProducing(self, consumer: _Consumer) -> Deferred[None]:
        self._consumer = consumer
        self._done = Deferred()
        self._flush()
        return self._done

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        # IBodyProducer: after this the startProducing Deferred never fires.
        self._stopped = True
        self._done = None
        dropped, self._buffered = self._buffered, 0
        self._buffer.clear()
        # Every delivered byte is acknowledged once, written or thrown away.
        self._stream.acknowledge(dropped)

    @property
    def ended(self) -> bool:
        return self._ended

    def abandon(self) -> None:
        """
        Give up on the body from our side: the origin request fails its
        transmission, so Twisted closes that connection instead of waiting
        for bytes that will never come.
        """
        done = self._done
        self.stopProducing()
        if done is not None:
            done.errback(CancelledError("request body abandoned"))

    def _flush(self) -> None:
        consumer = self._consumer
        if consumer is None or self._stopped:
            return
        while self._buffer and not self._paused and not self._stopped:
            data = self._buffer.popleft()
            self._buffered -= len(data)
            consumer.write(data)
            self._stream.acknowledge(len(data))
        if self._ended and not self._buffer and self._done is not None:
            done, self._done = self._done, None
            done.callback(None)


@implementer(IBodyProducer)
class _EmptyBody:
    """
    A zero-length body, so that C{Content-Length: 0} reaches the origin.
    """

    length = 0

    def startProducing(self, consumer: _Consumer) -> Deferred[None]:
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Discard(Protocol):
    def dataReceived(self, data: bytes) -> None:
        pass


class _ResponseBody(Protocol):
    """
    Receives the origin's response body and turns it into DATA frames.
    """

    def __init__(self, stream: OriginStream) -> None:
        self._stream = stream
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.complete = False
        self._transport_paused = False
        # Twisted resumes the transport when deliverBody returns, after
        # handing over the bytes it buffered; pausing before that would be
        # undone behind our back.
        self.delivering = True

    def dataReceived(self, data: bytes) -> None:
        if self._stream.finished:
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        self._stream.pump()

    def connectionLost(self, reason: Failure | None = None) -> None:
        if reason is None:
            reason = Failure(ResponseDone())
        if self._stream.finished:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            # PotentialDataLoss is how Twisted reports the end of a body
            # delimited by the origin closing its connection (RFC 9112 §6.3
            # rule 8); the close is that body's only end marker.
            self.complete = True
            self._stream.pump()
        else:
            log.info(
                "origin reset stream {stream_id} during the response body: {why}",
                stream_id=self._stream.stream_id,
                why=_short(reason),
            )
            self._stream.fail(ErrorCode.ORIGIN_RESET, b"origin response failed: " + _short(reason))

    def set_paused(self, paused: bool) -> None:
        if self.transport is None or self.delivering or paused == self._transport_paused:
            return
        self._transport_paused = paused
        producer: Any = self.transport
        if paused:
            producer.pauseProducing()
        else:
            producer.resumeProducing()

    def stop(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0
        if self.transport is not None:
            transport: Any = self.transport
            transport.stopProducing()


class OriginStream:
    """
    One tunnel stream being forwarded to the origin.

    The agent session calls L{data_received}, L{end_received},
    L{reset_received}, L{window_opened}, L{pause_sending},
    L{resume_sending} and L{abort}; everything else is internal.
    """

    def __init__(self, sink: StreamSink, stream_id: int, method: bytes) -> None:
        self.stream_id = stream_id
        self.finished = False
        self._method = method.upper()
        self._sink = sink
        self._body: _StreamBodyProducer | None = None
        self._request_d: Deferred[Any] | None = None
        self._response: _ResponseBody | None = None
        self._sending_paused = False

    @property
    def buffered_bytes(self) -> int:
        """
        Bytes held by this stream in either direction (for tests and metrics).
        """
        total = 0
        if self._body is not None:
            total += self._body.buffered
        if self._response is not None:
            total += self._response.pending_bytes
        return total

    # Called by the session.

    def data_received(self, data: bytes, end_stream: bool = False) -> None:
        if self.finished:
            # Nobody will read it: the credit goes straight back.
            self.acknowledge(len(data))
            return
        if self._body is None:
            self.acknowledge(len(data))
            if data:
                self.fail(ErrorCode.STREAM_CLOSED, b"request body after end of request")
            return
        if data:
            self._body.feed(data)
        if end_stream:
            self._body.finish()

    def end_received(self) -> None:
        if not self.finished and self._body is not None:
            self._body.finish()

    def reset_received(self, code: int, message: bytes = b"") -> None:
        """
        The edge reset the stream (the viewer went away): abort the origin
        request.  Nothing is sent back.
        """
        if self.finished:
            return
        log.debug("edge reset stream {stream_id} ({code})", stream_id=self.stream_id, code=code)
        self._finish()
        self._abort_origin()

    def window_opened(self) -> None:
        self.pump()

    def pause_sending(self) -> None:
        """
        The tunnel's transport is full: stop reading the origin.
        """
        self._sending_paused = True
        self._update_reading()

    def resume_sending(self) -> None:
        self._sending_paused = False
        self.pump()

    def abort(self) -> None:
        """
        The tunnel session is gone: abort the origin request, send nothing.
        """
        if self.finished:
            return
        self._finish()
        self._abort_origin()

    # Internal.

    def acknowledge(self, n: int) -> None:
        """
        C{n} request body bytes were written to the origin or thrown away.
        Acknowledged even after the stream finished: the session window
        is charged until then.
        """
        if n:
            self._sink.acknowledge(self.stream_id, n)

    def start(
        self,
        agent: _Agent,
        method: bytes,
        uri: bytes,
        headers: Headers,
        body: _StreamBodyProducer | _EmptyBody | None,
    ) -> None:
        if isinstance(body, _StreamBodyProducer):
            self._body = body
        try:
            d = agent.request(method, uri, headers, body)
        except Exception as e:
            # Agent checks the method and target synchronously.
            log.info(
                "cannot send stream {stream_id} to the origin: {error}",
                stream_id=self.stream_id,
                error=str(e),
            )
            self.fail(ErrorCode.INTERNAL_ERROR, b"request not sendable: " + _short(Failure(e)))
            return
        self._request_d = d
        d.addCallbacks(self._got_response, self._request_failed)
        d.addErrback(self._unexpected)

    def _got_response(self, response: _Response) -> None:
        self._request_d = None
        if self.finished:
            response.deliverBody(_Discard())
            return
        status = response.code
        headers = strip_hop_by_hop(
            [
                (name, value)
                for name, values in response.headers.getAllRawHeaders()
                for value in values
            ]
        )
        no_body = (
            self._method == b"HEAD"
            or 100 <= status < 200
            or status in _NO_BODY_STATUSES
            or response.length == 0
        )
        length = response.length
        if (
            isinstance(length, int)
            and self._method != b"HEAD"
            and status not in _NO_BODY_STATUSES
            and not any(name.lower() == b"content-length" for name, _ in headers)
        ):
            headers.append((b"Content-Length", str(length).encode("ascii")))
        self._sink.send_response_head(
            self.stream_id, status, response.phrase, headers, end_stream=no_body
        )
        if no_body:
            response.deliverBody(_Discard())
            self._response_complete()
            return
        body = _ResponseBody(self)
        self._response = body
        response.deliverBody(body)
        body.delivering = False
        # deliverBody resumes the origin transport; apply our own state now.
        self.pump()

    def _request_failed(self, failure: Failure) -> None:
        self._request_d = None
        if self.finished or failure.check(CancelledError):
            return
        code, message = _classify(failure)
        log.info(
            "origin request for stream {stream_id} failed: {why}",
            stream_id=self.stream_id,
            why=message,
        )
        self.fail(code, message)

    def _unexpected(self, failure: Failure) -> None:
        log.failure(
            "unexpected error forwarding stream {stream_id}",
            failure,
            stream_id=self.stream_id,
        )
        self.fail(ErrorCode.INTERNAL_ERROR, b"internal error")

    def pump(self) -> None:
        """
        Send as much of the pending response body as the window allows,
        then pause or resume reading from the origin accordingly.
        """
        body = self._response
        if body is None or self.finished:
            return
        sink = self._sink
        limit = max(1, sink.max_data_payload())
        while body.pending and not self._sending_paused:
            window = sink.send_window(self.stream_id)
            if window <= 0:
                break
            chunk = body.pending[0]
            n = min(window, limit, len(chunk))
            if n < len(chunk):
                body.pending[0] = chunk[n:]
                chunk = chunk[:n]
            else:
                body.pending.popleft()
            body.pending_bytes -= n
            last = body.complete and not body.pending
            sink.send_data(self.stream_id, chunk, end_stream=last)
            if last:
                self._response_complete()
                return
            if self.finished:
                return
        if body.complete and not body.pending:
            sink.send_end(self.stream_id)
            self._response_complete()
            return
        self._update_reading()

    def _update_reading(self) -> None:
        body = self._response
        if body is None or self.finished:
            return
        blocked = bool(body.pending) or self._sink.send_window(self.stream_id) <= 0
        body.set_paused(self._sending_paused or blocked)

    def fail(self, code: ErrorCode, message: bytes) -> None:
        """
        Reset the stream toward the edge and abort the origin request.
        """
        if self.finished:
            return
        self._sink.reset_stream(self.stream_id, code, message)
        self._finish()
        self._abort_origin()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._sink.stream_finished(self.stream_id)

    def _response_complete(self) -> None:
        """
        The whole response went out.  If the viewer is still uploading
        (the origin answered early), tell the edge to stop sending and drop
        the rest of the request on the origin side.
        """
        body = self._body
        if body is not None and not body.ended:
            self._sink.reset_stream(self.stream_id, ErrorCode.NO_ERROR, b"response complete")
            self._finish()
            body.abandon()
            return
        self._finish()

    def _abort_origin(self) -> None:
        d, self._request_d = self._request_d, None
        if d is not None:
            d.cancel()
        if self._body is not None:
            self._body.abandon()
        if self._response is not None and not self._response.complete:
            self._response.stop()


class OriginForwarder:
    """
    Forwards tunnel streams to one origin.

    @param origin_url: C{http://host:port} or C{https://host:port}; no path.
    @param host_header: C{None} keeps the C{Host} the edge sent (the public
        name); C{"rewrite"} sends the origin's C{host[:port]}; any other
        value is sent literally.
    @param pool: a persistent connection pool (see L{make_pool}); one is
        made when not given.
    @param agent: an L{IAgent} to use instead of one built from C{pool}
        (tests).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        origin_url: str,
        host_header: str | None = None,
        pool: HTTPConnectionPool | None = None,
        connect_timeout: float = 10.0,
        agent: _Agent | None = None,
    ) -> None:
        parts = urlsplit(origin_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"origin must be an http or https URL: {origin_url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"origin URL must not have a path or query: {origin_url!r}")
        self.origin_url = origin_url
        self._base = f"{parts.scheme}://{parts.netloc}".encode("ascii")
        self._origin_host = parts.netloc.rpartition("@")[2].encode("ascii")
        if host_header is None:
            self._host: bytes | None = None
        elif host_header == "rewrite":
            self._host = self._origin_host
        else:
            self._host = host_header.encode("latin-1")
        self.pool = pool if pool is not None else make_pool(reactor)
        self._agent: _Agent = (
            agent
            if agent is not None
            else _ExactTargetAgent(reactor, connectTimeout=connect_timeout, pool=self.pool)
        )

    def forward(
        self,
        sink: StreamSink,
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: list[Header],
        end_stream: bool,
    ) -> OriginStream:
        """
        Start forwarding one stream whose request head just arrived.
        """
        stream = OriginStream(sink, stream_id, method)
        if not target.startswith(b"/"):
            # Agent can only send origin-form targets (not "*" or
            # absolute-form); the edge sends origin-form.
            stream.fail(ErrorCode.REFUSED_STREAM, b"unsupported request target")
            return stream

        kept = strip_hop_by_hop(headers)
        length: int | object = UNKNOWN_LENGTH
        declared_length = False
        out = Headers()
        host_done = False
        for name, value in kept:
            lower = name.lower()
            if lower == b"content-length":
                # Agent writes Content-Length from the body producer.
                declared_length = True
                try:
                    length = int(value.strip())
                except ValueError:
                    stream.fail(ErrorCode.PROTOCOL_ERROR, b"bad content-length")
                    return stream
                continue
            if lower == b"host":
                if host_done:
                    continue
                host_done = True
                if self._host is not None:
                    value = self._host
            out.addRawHeader(name, value)
        if not host_done:
            out.addRawHeader(b"Host", self._host if self._host is not None else self._origin_host)

        body: _StreamBodyProducer | _EmptyBody | None
        if end_stream:
            body = _EmptyBody() if declared_length and length == 0 else None
        else:
            body = _StreamBodyProducer(stream, length)
        stream.start(self._agent, method, self._base + target, out, body)
        return stream

    def close(self) -> Deferred[None]:
        """
        Close the pool's idle connections (service shutdown).
        """
        return self.pool.closeCachedConnections()
