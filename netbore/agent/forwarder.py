"""
The origin forwarder: one tunnel stream becomes one HTTP request to the origin.

The forwarder knows nothing about WebSockets.  It talks to the tunnel through
a L{StreamSink} (the agent session adapts the sans-IO session to it) and to
the origin through an L{OriginPool} of persistent connections; each
L{OriginStream} is the exchange its connection calls back, so a request
costs no Deferreds and no header objects.  What every request runs is here,
in one module (each call between modules costs on every request, see
C{bench/trace.py}): the session's handler of new streams
(L{OriginRequests}), the request head, and the stream's ordinary path; the
rest of the stream (uploads, the send window, failures) is
L{netbore.agent.stream.StreamEnds}.

The request goes out with its target byte for byte, its headers in order
without the hop-by-hop ones (RFC 9110 §7.6.1, and those the viewer's
C{Connection} names), C{Host} as the edge sent it unless the agent is told
to rewrite it; the response comes back the same way (L{OriginStream}).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred

from netbore._types import Reactor
from netbore.agent.metrics import OriginCounts
from netbore.agent.origin import OriginPool, origin_endpoint
from netbore.agent.origin_connection import OriginConnection
from netbore.agent.stream import (
    S_BODY,
    S_COMPLETE,
    S_DONE,
    S_WAITING,
    U_BODY,
    U_DONE,
    W_READY,
    W_UNSENT,
    StreamEnds,
    StreamSink,
)
from netbore.agent.stream_states import RESPONSE_MOVES
from netbore.agent.tls import PeerTLS
from netbore.http1 import HOP_BY_HOP, Header, ResponseHead, connection_tokens
from netbore.http1.grammar import TOKEN, content_length
from netbore.protocol import RequestReceived
from netbore.protocol.credit import SendQueue
from netbore.protocol.errors import ErrorCode
from netbore.writes import WriteBatch

__all__ = ["OriginForwarder", "OriginRequests", "OriginStream", "StreamSink"]

#: Requests that may be sent again when a reused connection fails before
#: any response byte (RFC 9110 §9.2.2), when they have no body.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: Methods whose bodiless requests still say C{Content-Length: 0}, as
#: origins may answer 411 otherwise.
_EXPECTS_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
_TARGET_OK = re.compile(rb"/[^\x00\t\n\r ]*")
_NO_HEADERS = HOP_BY_HOP | {b"host", b"content-length"}


class OriginForwarder:
    """
    Forwards tunnel streams to one origin.

    @param origin_url: C{http://host:port} or C{https://host:port}; no path.
    @param host_header: C{None} keeps the C{Host} the edge sent (the public
        name); C{"rewrite"} sends the origin's C{host[:port]}; any other
        value is sent literally.
    @param pool: an L{OriginPool} to use (tests); else one is made for
        C{origin_url}, writing through C{writes}.
    @param writes: the process's write batch (see L{OriginPool}).
    @param tls: how an C{https} origin is verified (see L{origin_endpoint}).
    @param counts: the tallies of the origin's answers (for a pool made
        here; L{netbore.agent.metrics}).
    """

    def __init__(
        self,
        reactor: Reactor,
        origin_url: str,
        host_header: str | None = None,
        pool: OriginPool | None = None,
        connect_timeout: float = 10.0,
        writes: WriteBatch | None = None,
        tls: PeerTLS | None = None,
        counts: OriginCounts | None = None,
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
            endpoint = origin_endpoint(reactor, parts.scheme, parts.hostname, port, connect_timeout, tls)
            pool = OriginPool(endpoint, reactor, writes=writes, counts=counts)
        self.pool = pool
        self.counts = pool.counts
        # The last session streams came from, and its DATA payload limit
        # (fixed by its hello): asked once per session, not per request.
        self._sink: StreamSink | None = None
        self._limit = 1

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
        if _TARGET_OK.fullmatch(target) is None:
            # Only origin-form targets (not "*" or absolute-form); the edge
            # sends origin-form.
            return self._refused(sink, stream_id, ErrorCode.REFUSED_STREAM, b"unsupported request target")
        if TOKEN.fullmatch(method) is None:
            return self._refused(sink, stream_id, ErrorCode.INTERNAL_ERROR, b"request not sendable: bad method")

        drop = _NO_HEADERS
        for name, _ in headers:
            if name.lower() == b"connection":
                drop = _NO_HEADERS | connection_tokens(headers)
                break
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        host = self._host
        host_value: bytes | None = None
        lengths: list[bytes] | None = None
        for name, value in headers:
            lower = name.lower()
            if lower in drop:
                if lower == b"host":
                    if host_value is None:
                        host_value = value
                        parts += (name, b": ", value if host is None else host, b"\r\n")
                elif lower == b"content-length":
                    value = value.strip(b" \t")
                    if lengths is None:
                        lengths = [value]
                        parts += (name, b": ", value, b"\r\n")
                    else:
                        lengths.append(value)
                continue
            parts += (name, b": ", value, b"\r\n")
        if host_value is None:
            parts[4:4] = (b"Host: ", host if host is not None else self._origin_host, b"\r\n")

        declared: int | None = None
        if lengths is not None:
            # One Content-Length rule for every hop (netbore.http1).
            declared = content_length(lengths)
            if declared is None:
                return self._refused(sink, stream_id, ErrorCode.PROTOCOL_ERROR, b"bad content-length")
        has_body = not end_stream and declared != 0
        chunked = has_body and declared is None
        if chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif lengths is None and method in _EXPECTS_BODY:
            parts.append(b"Content-Length: 0\r\n")
        parts.append(b"\r\n")
        if sink is not self._sink:
            self._sink, self._limit = sink, max(1, sink.max_data_payload())
        stream = OriginStream(sink, stream_id, has_body, declared, self._limit)
        self.pool.request(
            stream,
            b"".join(parts),
            head_request=method == b"HEAD",
            body=has_body,
            chunked=chunked,
            retryable=not has_body and method in _IDEMPOTENT,
        )
        return stream

    @staticmethod
    def _refused(sink: StreamSink, stream_id: int, code: ErrorCode, message: bytes) -> OriginStream:
        """
        A stream that fails at once with C{code}: its request cannot go to
        the origin.
        """
        stream = OriginStream(sink, stream_id)
        stream.fail(code, message)
        return stream

    def close(self) -> Deferred[None]:
        """
        Close the pool's idle connections (service shutdown).
        """
        return self.pool.close()


class _Forwards(Protocol):
    def forward(
        self,
        sink: StreamSink,
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: Sequence[Header],
        end_stream: bool,
    ) -> OriginStream: ...


class _Forwarding(Protocol):
    @property
    def forwarder(self) -> _Forwards: ...


class OriginRequests:
    """
    The agent session's handler of new streams (a request head from the
    edge), here beside the forwarder it hands them to: one call from the
    session's dispatch table into this module, not two.  A mixin of
    L{netbore.agent.session.AgentSessionProtocol}, which is the streams'
    L{StreamSink}.
    """

    factory: _Forwarding
    going_away: bool
    paused: bool
    streams: dict[int, OriginStream]

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        raise NotImplementedError

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if self.going_away:
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, b"agent going away")
            return
        sink: StreamSink = self  # type: ignore[assignment]  # (the session, see above)
        stream = self.factory.forwarder.forward(
            sink, stream_id, event.method, event.target, event.headers, event.end_stream
        )
        if not stream.finished:
            self.streams[stream_id] = stream
            if self.paused:
                stream.pause_sending()


class OriginStream(StreamEnds):
    """
    One tunnel stream being forwarded to the origin.

    The agent session calls L{data_received}, L{end_received},
    L{reset_received}, L{window_opened}, L{pause_sending},
    L{resume_sending} and L{abort}; the origin connection calls the
    L{netbore.agent.origin_connection.Exchange} methods.

    @ivar upload: the request body's L{UploadState}; C{writer}: the
        request's L{WriterState} on its connection; C{response}: the
        response's L{ResponseState}.
    @ivar finished: the stream is over here (C{response} is C{DONE} and the
        session was told).
    """

    _conn: OriginConnection | None = None
    #: Request body waiting for the connection, response body waiting for
    #: the window (made when first needed).
    _upload: SendQueue | None = None
    _download: SendQueue | None = None

    def __init__(
        self, sink: StreamSink, stream_id: int, body: bool = False, length: int | None = None, limit: int = 1
    ) -> None:
        self.stream_id = stream_id
        self.finished = False
        self._sink = sink
        self.upload = U_BODY if body else U_DONE
        self.writer = W_UNSENT
        self.response = S_WAITING
        #: What is left of a declared request body length.
        self._left = length
        #: The largest DATA payload (the sink's L{StreamSink.max_data_payload}).
        self._limit = limit
        self._sending_paused = False  # the tunnel's transport is full

    def attached(self, conn: OriginConnection) -> None:
        self._conn = conn
        self.writer = W_UNSENT

    def request_sent(self) -> None:
        if self.writer is W_UNSENT:
            self.writer = W_READY
        if self.upload is not U_DONE:
            self._flush_body()

    def response_head(self, head: ResponseHead) -> None:
        if self.response is not S_WAITING:
            return
        no_body = head.length == 0
        drop = HOP_BY_HOP | head.connection if head.connection else HOP_BY_HOP
        headers = [field for field in head.headers if field[0].lower() not in drop]
        self.response = S_COMPLETE if no_body else S_BODY
        self._sink.send_response_head(self.stream_id, head.status, head.reason, headers, no_body)

    def response_data(self, data: bytes, last: bool) -> None:
        if last:
            # The connection is back in the pool (or closed): not ours now.
            self._conn = None
            self.writer = W_UNSENT
        response = self.response
        if response is not S_BODY:
            if response is S_COMPLETE:
                self._response_complete()  # the head ended the stream (no body)
            return
        if last:
            self.response = S_COMPLETE
        queue = self._download
        if (queue is None or not queue.size) and not self._sending_paused:
            n = len(data)
            if not n:
                if last:
                    self._sink.send_end(self.stream_id)
                    self._response_complete()
                return
            if n <= self._limit:
                # One DATA frame's worth: offered as it is, the window
                # takes all of it (the common case) or a part.
                sent = self._sink.send_data(self.stream_id, data, last)
                if sent == n:
                    if last:
                        self._response_complete()
                    return
                if sent:
                    data = data[sent:]
        if data:
            if queue is None:
                queue = self._download = SendQueue()
            queue.push(data)
        self.pump()

    def _finish(self, told: bool = False) -> None:
        """
        The stream is over here; C{told}: the sink knows (its last frame
        went through the sink), else it is told.
        """
        assert S_DONE in RESPONSE_MOVES[self.response]
        self.response = S_DONE
        self.finished = True
        if not told:
            self._sink.stream_finished(self.stream_id)

    def _response_complete(self) -> None:
        """
        The whole response went out, its last frame through the sink.  If
        the viewer is still uploading (the origin answered early), tell the
        edge to stop sending and drop the rest of the request (the
        connection is closed, not reused).
        """
        if self.upload is not U_DONE:
            self._sink.reset_stream(self.stream_id, ErrorCode.NO_ERROR, b"response complete")
            self._finish(True)
            self._drop_body()
            return
        self._finish(True)
