"""
The origin forwarder: one tunnel stream becomes one HTTP request to the origin.

The forwarder knows nothing about WebSockets.  It talks to the tunnel through
a L{StreamSink} (the agent session adapts the sans-IO session to it) and to
the origin through an L{OriginPool} of persistent connections
(L{netbore.agent.origin}); each L{OriginStream} is the L{Exchange} its
connection calls back, so a request costs no Deferreds and no header
objects.

The request goes out with its target byte for byte, its headers in order
without the hop-by-hop ones (RFC 9110 §7.6.1, and those the viewer's
C{Connection} names), C{Host} as the edge sent it unless the agent is told
to rewrite it.  The response comes back the same way: the fields the
origin's C{Connection} header names are dropped too.

Both directions are streamed under flow control:

  - request body: stream DATA is written to the origin connection
    (C{Content-Length} when the viewer gave one, else chunked) and
    acknowledged to the edge (window updates) only when the connection has
    taken it, and not while that connection has paused us, so at most one
    stream window is ever held here;
  - response body: bytes go out as DATA while the stream's send window
    allows; otherwise the origin connection is paused and at most one read's
    worth is kept until a window update arrives.

Errors: an origin that cannot be connected to resets the stream with
ORIGIN_UNREACHABLE; one that closes the connection (or breaks HTTP) before
the response is complete, with ORIGIN_RESET (a body delimited by the close
ends normally); an edge reset aborts the origin connection.  Every DATA
byte received is acknowledged exactly once, written or thrown away.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from typing import Any
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from netbore.agent.origin import OriginConnection, OriginPool, origin_endpoint
from netbore.headers import HOP_BY_HOP, Header, connection_tokens
from netbore.http1 import ResponseHead
from netbore.protocol.errors import ErrorCode

__all__ = [
    "OriginForwarder",
    "OriginStream",
    "PoolLimits",
    "StreamSink",
]

log = Logger()

_MAX_MESSAGE = 200
#: Requests that may be sent again when a reused connection fails before
#: any response byte (RFC 9110 §9.2.2), when they have no body.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: Methods whose bodiless requests still say C{Content-Length: 0}, as
#: origins may answer 411 otherwise.
_EXPECTS_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET_OK = re.compile(rb"/[^\x00\t\n\r ]*")
_NO_HEADERS = HOP_BY_HOP | {b"host", b"content-length"}


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

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False
    ) -> None: ...

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


def _short(failure: Failure) -> bytes:
    text = f"{type(failure.value).__name__}: {failure.value}"
    return text.encode("utf-8", "replace")[:_MAX_MESSAGE]


def _response_headers(head: ResponseHead) -> list[Header]:
    """
    The origin's fields without the hop-by-hop ones and those its
    C{Connection} names.
    """
    drop = HOP_BY_HOP | head.connection if head.connection else HOP_BY_HOP
    return [field for field in head.headers if field[0].lower() not in drop]


class OriginStream:
    """
    One tunnel stream being forwarded to the origin.

    The agent session calls L{data_received}, L{end_received},
    L{reset_received}, L{window_opened}, L{pause_sending},
    L{resume_sending} and L{abort}; the origin connection calls the
    L{netbore.agent.origin.Exchange} methods.
    """

    def __init__(self, sink: StreamSink, stream_id: int) -> None:
        self.stream_id = stream_id
        self.finished = False
        self._sink = sink
        self._conn: OriginConnection | None = None
        # Request body: None when the request has none.
        self._body: deque[bytes] | None = None
        self._body_held = 0
        self._body_left: int | None = None  # of a declared length, to feed
        self._body_ended = True
        self._sent = False  # the head is on the connection
        self._write_paused = False
        # Response body.
        self._pending: deque[bytes | memoryview] = deque()
        self._pending_bytes = 0
        self._complete = False
        self._responding = False
        self._sending_paused = False

    @property
    def buffered_bytes(self) -> int:
        """
        Bytes held by this stream in either direction (for tests and metrics).
        """
        return self._body_held + self._pending_bytes

    # -- called by the session -------------------------------------------------

    def data_received(self, data: bytes, end_stream: bool = False) -> None:
        n = len(data)
        if self.finished or self._body_ended:
            # Nobody will read it: the credit goes straight back.
            if n:
                self._sink.acknowledge(self.stream_id, n)
            if not self.finished and n:
                self.fail(ErrorCode.STREAM_CLOSED, b"request body after end of request")
            return
        left = self._body_left
        if left is not None:
            if n > left:
                self._sink.acknowledge(self.stream_id, n)
                self.fail(ErrorCode.PROTOCOL_ERROR, b"request body longer than its content-length")
                return
            self._body_left = left - n
            if left == n:
                # A declared length ends the body by itself; the origin may
                # answer before the stream's END arrives.
                end_stream = True
        conn = self._conn
        if conn is not None and self._sent and not self._write_paused and not self._body:
            if n:
                conn.write(data)
                self._sink.acknowledge(self.stream_id, n)
        elif n:
            assert self._body is not None
            self._body.append(data)
            self._body_held += n
        if end_stream:
            self.end_received()

    def end_received(self) -> None:
        if self.finished or self._body_ended:
            return
        if self._body_left:
            self.fail(ErrorCode.PROTOCOL_ERROR, b"request body shorter than its content-length")
            return
        self._body_ended = True
        self._flush_body()

    def reset_received(self, code: int, message: bytes = b"") -> None:
        """
        The edge reset the stream (the viewer went away): abort the origin
        request.  Nothing is sent back.
        """
        if self.finished:
            return
        self._finish()
        self._abort_origin()

    def window_opened(self) -> None:
        self.pump()

    def pause_sending(self) -> None:
        """
        The tunnel's transport is full: stop reading the origin.
        """
        self._sending_paused = True
        conn = self._conn
        if conn is not None:
            conn.pause_reading()

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

    # -- Exchange: called by the origin connection ------------------------------------

    def attached(self, conn: OriginConnection) -> None:
        self._conn = conn
        self._sent = False

    def request_sent(self) -> None:
        self._sent = True
        self._flush_body()

    def write_paused(self) -> None:
        self._write_paused = True

    def write_resumed(self) -> None:
        self._write_paused = False
        self._flush_body()

    def unreachable(self, failure: Failure) -> None:
        self._conn = None
        if self.finished:
            return
        why = _short(failure)
        log.info(
            "origin unreachable for stream {stream_id}: {why}", stream_id=self.stream_id, why=why
        )
        self.fail(ErrorCode.ORIGIN_UNREACHABLE, b"origin unreachable: " + why)

    def response_head(self, head: ResponseHead) -> None:
        if self.finished:
            return
        self._responding = True
        no_body = head.length == 0
        self._sink.send_response_head(
            self.stream_id, head.status, head.reason, _response_headers(head), no_body
        )
        if no_body:
            self._complete = True

    def response_data(self, data: bytes, last: bool) -> None:
        if last:
            self._conn = None
        if self.finished:
            return
        if self._complete:
            # The head ended the stream (no body).
            self._response_complete()
            return
        if last:
            self._complete = True
        pending = self._pending
        if not pending and not self._sending_paused:
            n = len(data)
            sink = self._sink
            if n and n <= sink.send_window(self.stream_id) and n <= sink.max_data_payload():
                sink.send_data(self.stream_id, data, last)
                if last:
                    self._response_complete()
                return
            if not n:
                if last:
                    sink.send_end(self.stream_id)
                    self._response_complete()
                return
        if data:
            pending.append(data)
            self._pending_bytes += len(data)
        self.pump()

    def response_failed(self, why: str) -> None:
        self._conn = None
        if self.finished:
            return
        log.info(
            "origin reset stream {stream_id}: {why}", stream_id=self.stream_id, why=why
        )
        self.fail(ErrorCode.ORIGIN_RESET, why.encode("utf-8", "replace")[:_MAX_MESSAGE])

    # -- internals -------------------------------------------------------------------------

    def pump(self) -> None:
        """
        Send as much of the pending response body as the window allows,
        then pause or resume reading from the origin accordingly.
        """
        if self.finished:
            return
        sink = self._sink
        stream_id = self.stream_id
        pending = self._pending
        limit = max(1, sink.max_data_payload())
        while pending and not self._sending_paused:
            window = sink.send_window(stream_id)
            if window <= 0:
                break
            chunk = pending[0]
            n = min(window, limit, len(chunk))
            if n < len(chunk):
                # Views, not copies: the session copies into the frame.
                view = memoryview(chunk)
                pending[0] = view[n:]
                chunk = view[:n]
            else:
                pending.popleft()
            self._pending_bytes -= n
            last = self._complete and not pending
            sink.send_data(stream_id, chunk, last)
            if last:
                self._response_complete()
                return
            if self.finished:
                return
        if self._complete:
            if not pending:
                sink.send_end(stream_id)
                self._response_complete()
            return
        conn = self._conn
        if conn is not None:
            if (
                pending
                or self._sending_paused
                or (self._responding and sink.send_window(stream_id) <= 0)
            ):
                conn.pause_reading()
            else:
                conn.resume_reading()

    def _flush_body(self) -> None:
        conn = self._conn
        if conn is None or not self._sent or self.finished:
            return
        body = self._body
        if body:
            sink = self._sink
            while body and not self._write_paused:
                data = body.popleft()
                self._body_held -= len(data)
                conn.write(data)
                sink.acknowledge(self.stream_id, len(data))
                if self._conn is not conn:
                    return
        if self._body_ended and not body:
            conn.end_body()

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
        self.finished = True
        self._sink.stream_finished(self.stream_id)

    def _response_complete(self) -> None:
        """
        The whole response went out.  If the viewer is still uploading
        (the origin answered early), tell the edge to stop sending and drop
        the rest of the request (the connection is closed, not reused).
        """
        if not self._body_ended:
            self._sink.reset_stream(self.stream_id, ErrorCode.NO_ERROR, b"response complete")
            self._finish()
            self._drop_body()
            return
        self._finish()

    def _abort_origin(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
        self._drop_body()
        self._pending.clear()
        self._pending_bytes = 0

    def _drop_body(self) -> None:
        self._body_ended = True
        body = self._body
        if body:
            body.clear()
        dropped, self._body_held = self._body_held, 0
        if dropped:
            # Every delivered byte is acknowledged once, written or not.
            self._sink.acknowledge(self.stream_id, dropped)


class OriginForwarder:
    """
    Forwards tunnel streams to one origin.

    @param origin_url: C{http://host:port} or C{https://host:port}; no path.
    @param host_header: C{None} keeps the C{Host} the edge sent (the public
        name); C{"rewrite"} sends the origin's C{host[:port]}; any other
        value is sent literally.
    @param pool: an L{OriginPool} to use (tests), or L{PoolLimits} for the
        one made for C{origin_url}.
    """

    def __init__(
        self,
        reactor: Any,
        origin_url: str,
        host_header: str | None = None,
        pool: OriginPool | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(origin_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"origin must be an http or https URL: {origin_url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"origin URL must not have a path or query: {origin_url!r}")
        self.origin_url = origin_url
        self._origin_host = parts.netloc.rpartition("@")[2].encode("ascii")
        if host_header is None:
            self._host: bytes | None = None
        elif host_header == "rewrite":
            self._host = self._origin_host
        else:
            self._host = host_header.encode("latin-1")
            if re.fullmatch(rb"[^\x00-\x1f\x7f]+", self._host) is None:
                raise ValueError(f"bad host header value: {host_header!r}")
        if pool is None:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            endpoint = origin_endpoint(reactor, parts.scheme, parts.hostname, port, connect_timeout)
            pool = OriginPool(endpoint, reactor)
        self.pool = pool

    def forward(
        self,
        sink: StreamSink,
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: Sequence[Header],
        end_stream: bool,
    ) -> OriginStream:
        """
        Start forwarding one stream whose request head just arrived.
        """
        stream = OriginStream(sink, stream_id)
        if _TARGET_OK.fullmatch(target) is None:
            # Only origin-form targets (not "*" or absolute-form); the edge
            # sends origin-form.
            stream.fail(ErrorCode.REFUSED_STREAM, b"unsupported request target")
            return stream
        if _METHOD.fullmatch(method) is None:
            stream.fail(ErrorCode.INTERNAL_ERROR, b"request not sendable: bad method")
            return stream

        drop = _NO_HEADERS
        for name, value in headers:
            if name.lower() == b"connection":
                drop = _NO_HEADERS | connection_tokens(headers)
                break
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        host = self._host
        host_value: bytes | None = None
        length: bytes | None = None
        for name, value in headers:
            lower = name.lower()
            if lower in drop:
                if lower == b"host":
                    if host_value is None:
                        host_value = value
                        parts += (name, b": ", value if host is None else host, b"\r\n")
                elif lower == b"content-length":
                    value = value.strip(b" \t")
                    if length is None:
                        length = value
                        parts += (name, b": ", value, b"\r\n")
                    elif value != length:
                        stream.fail(ErrorCode.PROTOCOL_ERROR, b"bad content-length")
                        return stream
                continue
            parts += (name, b": ", value, b"\r\n")
        if host_value is None:
            parts[4:4] = (b"Host: ", host if host is not None else self._origin_host, b"\r\n")

        declared: int | None = None
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                stream.fail(ErrorCode.PROTOCOL_ERROR, b"bad content-length")
                return stream
            declared = int(length)
        has_body = not end_stream and declared != 0
        chunked = has_body and declared is None
        if chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif length is None and method in _EXPECTS_BODY:
            parts.append(b"Content-Length: 0\r\n")
        parts.append(b"\r\n")
        if has_body:
            stream._body = deque()
            stream._body_ended = False
            stream._body_left = declared
        self.pool.request(
            stream,
            b"".join(parts),
            head_request=method == b"HEAD",
            body=has_body,
            chunked=chunked,
            retryable=not has_body and method in _IDEMPOTENT,
        )
        return stream

    def close(self) -> Deferred[None]:
        """
        Close the pool's idle connections (service shutdown).
        """
        return self.pool.close()
