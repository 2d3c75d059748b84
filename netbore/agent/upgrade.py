"""
HTTP/1.1 Upgrade (WebSocket) pass-through on the agent: a C{BYTES_OPEN}
in upgrade mode (L{netbore.protocol.BytesOpened}) becomes a request on a
NEW connection to the origin of its own (never one of the keep-alive
pool's, never given back to it).

L{UpgradeStream} is both that connection's protocol and the session's
stream.  It sends the request head, reads the answer's head; on C{101
Switching Protocols} it sends that head to the edge (which makes the
stream a byte stream) and from then on carries the connection's bytes
untouched both ways, with backpressure both ways:

  - edge to origin: DATA is written to the connection and acknowledged
    once its transport is not full (the stream is the transport's
    producer), so at most a stream window waits in its buffer;
  - origin to edge: the bytes go out as DATA while the stream's window
    allows; beyond L{HIGH_WATER} held, the connection is not read.

Half-close: the edge's C{END} shuts the connection's write side; the
origin's end of data is an C{END} toward the edge once what was read is
sent.  A C{RESET} aborts the connection; a connection failing before the
answer resets the stream (C{ORIGIN_UNREACHABLE}, C{ORIGIN_RESET}).

Any other final status is an ordinary response, read with the http1
client codec and relayed with its body; the connection then closes.

Each answer is counted by its status (C{101}: C{1xx}) and the time it
took, each failure by its reason (L{netbore.agent.metrics.OriginCounts}).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from netbore.agent.metrics import OriginCounts, origin_error
from netbore.agent.origin_connection import _OneConnection
from netbore.http1 import END_OF_MESSAGE, ParseError, ResponseHead, ResponseParser
from netbore.http1.grammar import HOP_BY_HOP, TOKEN
from netbore.protocol import BytesOpened
from netbore.protocol.credit import SendQueue
from netbore.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from netbore.agent.forwarder import OriginForwarder
    from netbore.agent.session import AgentSessionProtocol

__all__ = ["HIGH_WATER", "UpgradeRequests", "UpgradeStream"]

log = Logger()

#: Origin bytes held for the edge (its window shut) beyond which the
#: origin connection is not read.
HIGH_WATER = 256 * 1024

#: The longest response head read before the switch.
MAX_HEAD = 64 * 1024

_HEAD, _RESPONSE, _BYTES = range(3)


class UpgradeRequests:
    """
    The agent session's handler of C{BYTES_OPEN}: a mixin of
    L{netbore.agent.session.AgentSessionProtocol}.
    """

    factory: Any
    going_away: bool
    streams: dict[int, Any]

    def _on_bytes_open(self, event: BytesOpened) -> None:
        session: AgentSessionProtocol = self  # type: ignore[assignment]
        stream_id = event.stream_id
        if self.going_away:
            session.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, b"agent going away")
            return
        from netbore.agent.tcp import TcpForwarder  # (which builds on this module)

        forwarder: OriginForwarder | TcpForwarder = self.factory.forwarder
        if isinstance(forwarder, TcpForwarder):
            forwarder.open(session, event)
            return
        if not event.upgrade:
            session.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, b"no TCP service here")
            return
        if TOKEN.fullmatch(event.method) is None or not event.target.startswith(b"/"):
            session.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, b"upgrade request not sendable")
            return
        stream = UpgradeStream(
            session, stream_id, upgrade_head(forwarder, event), forwarder.counts, forwarder.pool.seconds
        )
        self.streams[stream_id] = stream
        stream.connect(forwarder.pool.endpoint)


def upgrade_head(forwarder: OriginForwarder, event: BytesOpened) -> bytes:
    """The request head to send the origin (C{Host} as the forwarder sets it)."""
    host = forwarder._host
    parts = [event.method, b" ", event.target, b" HTTP/1.1\r\n"]
    seen_host = False
    for name, value in event.headers:
        lower = name.lower()
        if lower == b"host":
            if seen_host:
                continue
            seen_host = True
            value = value if host is None else host
        elif lower in (b"content-length", b"transfer-encoding"):
            continue
        parts += (name, b": ", value, b"\r\n")
    if not seen_host:
        parts[4:4] = (b"Host: ", host if host is not None else forwarder._origin_host, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


@implementer(IHalfCloseableProtocol, IPushProducer)
class UpgradeStream(Protocol):
    """
    One upgrade request's origin connection and tunnel stream (see the
    module's docstring).
    """

    finished = False
    #: The origin answered (a head came); when the request's head was written.
    answered = False
    sent_at = 0.0

    def __init__(
        self,
        sink: AgentSessionProtocol,
        stream_id: int,
        head: bytes,
        counts: OriginCounts | None = None,
        seconds: Callable[[], float] | None = None,
    ) -> None:
        self.sink = sink
        self.stream_id = stream_id
        self.head = head
        self.counts = counts if counts is not None else OriginCounts()
        self.seconds = seconds
        self.state = _HEAD
        self.buf = b""
        self.out = SendQueue()  # origin bytes not sent to the edge yet
        self.limit = max(1, sink.max_data_payload())
        self.parser: ResponseParser | None = None
        self.eof_in = False  # the origin has no more to send
        self.sent_end = self.got_end = False
        self.write_paused = False
        self.unacked = 0
        self.reading_paused = False
        self.tunnel_paused = False

    # -- the origin connection ---------------------------------------------------

    def connect(self, endpoint: Any) -> None:
        d = endpoint.connect(_OneConnection(self))
        d.addErrback(self._unreachable)

    def _unreachable(self, failure: Failure) -> None:
        if not self.finished:
            self.counts.failed(origin_error(failure))
            log.info("origin unreachable for an upgrade: {why}", why=failure.getErrorMessage())
            self._fail(ErrorCode.ORIGIN_UNREACHABLE, b"origin unreachable")

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.finished:
            transport.abortConnection()
            return
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        if self.seconds is not None:
            self.sent_at = self.seconds()
        transport.write(self.head)
        if self.tunnel_paused:
            self._pause_reading()

    def dataReceived(self, data: bytes) -> None:
        state = self.state
        if state is _BYTES:
            self.out.push(data)
            self._pump()
        elif state is _HEAD:
            self._head(self.buf + data)
        else:
            self._response(data)

    def _head(self, buf: bytes) -> None:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._failed("other", b"response head too long")
                else:
                    self.buf = buf
                return
            line = buf[: buf.find(b"\r\n")]
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                self._failed("other", b"not an HTTP/1.1 response")
                return
            status = int(parts[1])
            if status == 101:
                break
            if status < 100 or status >= 200:
                # An ordinary answer: the http1 client codec reads it all.
                self.buf = b""
                self.state = _RESPONSE
                self.parser = ResponseParser()
                self._response(buf)
                return
            buf = buf[end + 4 :]  # interim (1xx): the final head follows
        headers: list[tuple[bytes, bytes]] = []
        for field in buf[buf.find(b"\r\n") + 2 : end].split(b"\r\n"):
            name, colon, value = field.partition(b":")
            if not colon or TOKEN.fullmatch(name) is None:
                self._failed("other", b"bad response head")
                return
            headers.append((name, value.strip(b" \t")))
        self.buf = b""
        self.state = _BYTES
        self._answered(101)
        reason = parts[2] if len(parts) > 2 else b""
        self.sink.send_response_head(self.stream_id, 101, reason, headers)
        rest = buf[end + 4 :]
        if rest:
            self.out.push(rest)
            self._pump()

    def _response(self, data: bytes) -> None:
        parser = self.parser
        assert parser is not None
        for event in parser.receive(data):
            if event.__class__ is bytes:
                self.out.push(event)
            elif event is END_OF_MESSAGE:
                self.eof_in = True
            elif isinstance(event, ParseError):
                self._failed("other", b"bad response")
                return
            elif isinstance(event, ResponseHead):
                self._answered(event.status)
                drop = HOP_BY_HOP | event.connection
                headers = [field for field in event.headers if field[0].lower() not in drop]
                if event.length == 0:
                    self.finished = self.sent_end = True
                    self.sink.send_response_head(self.stream_id, event.status, event.reason, headers, True)
                    self._close()
                    return
                self.sink.send_response_head(self.stream_id, event.status, event.reason, headers)
        self._pump()

    def readConnectionLost(self) -> None:
        self._origin_eof()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.transport = None
        self._origin_eof(reason)

    def _origin_eof(self, reason: Failure | None = None) -> None:
        if self.finished or self.eof_in:
            return
        state = self.state
        why = "reset" if reason is None else origin_error(reason)
        if state is _HEAD:
            self._failed(why, b"origin closed before answering the upgrade")
            return
        if state is _RESPONSE:
            try:
                assert self.parser is not None
                self.parser.feed_eof()
            except ParseError:
                self._failed(why, b"origin closed before the response was complete")
                return
        self.eof_in = True
        self._pump()

    # -- origin to edge -----------------------------------------------------------

    def _pump(self) -> None:
        if self.finished:
            return
        out = self.out
        sink = self.sink
        limit = self.limit
        while out.size:
            chunk = out.peek()
            if len(chunk) > limit:
                chunk = memoryview(chunk)[:limit]  # (a view: the session copies into the frame)
            n = sink.send_data(self.stream_id, chunk)
            if not n:
                break
            out.advance(n)
        if out.size:
            if out.size > HIGH_WATER:
                self._pause_reading()
        elif self.eof_in and not self.sent_end:
            self.sent_end = True
            if self.state is _RESPONSE:
                self.finished = True
                sink.send_end(self.stream_id)
                self._close()
                return
            sink.send_end(self.stream_id, forget=False)
            self._maybe_done()
        elif self.reading_paused and not self.tunnel_paused:
            self._resume_reading()

    def _pause_reading(self) -> None:
        transport: Any = self.transport
        if transport is not None and not self.reading_paused:
            self.reading_paused = True
            transport.pauseProducing()

    def _resume_reading(self) -> None:
        transport: Any = self.transport
        self.reading_paused = False
        if transport is not None:
            transport.resumeProducing()

    # -- the session's stream ------------------------------------------------------

    def window_opened(self) -> None:
        self._pump()

    def pause_sending(self) -> None:
        self.tunnel_paused = True
        self._pause_reading()

    def resume_sending(self) -> None:
        self.tunnel_paused = False
        self._pump()

    def data_received(self, data: bytes, end_stream: bool) -> None:
        transport: Any = self.transport
        if transport is None or self.got_end or self.state is not _BYTES:
            self.sink.acknowledge(self.stream_id, len(data))
        else:
            self._write(transport, data)
        if end_stream:
            self.end_received()

    def _write(self, transport: Any, data: bytes) -> None:
        """
        Write the edge's C{data} (through the process's write batch: it goes
        out with the read that brought it); acknowledged once the transport
        is not full.
        """
        self.sink.writes.write(transport, data)
        if self.write_paused:
            self.unacked += len(data)
        else:
            self.sink.acknowledge(self.stream_id, len(data))

    def end_received(self) -> None:
        self.got_end = True
        transport: Any = self.transport
        if transport is not None:
            self.sink.writes.flush(transport)
            # Nothing more to write: this stream stops being the transport's
            # producer (a transport whose producer is paused when its buffer
            # drains resumes it and never gets to the half-close).
            transport.unregisterProducer()
            self.resumeProducing()
            try:
                transport.loseWriteConnection()
            except AttributeError:
                transport.loseConnection()
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self.got_end and self.sent_end and not self.finished:
            self.finished = True
            self.sink.stream_finished(self.stream_id)
            self._close()

    def reset_received(self, code: int, message: bytes) -> None:
        self.abort()

    def abort(self) -> None:
        self.finished = True
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _answered(self, status: int) -> None:
        """The origin's answer: counted (as an origin connection counts it)."""
        counts = self.counts
        counts.statuses[status // 100] += 1
        if self.seconds is not None:
            counts.head_seconds.observe(self.seconds() - self.sent_at)
        self.answered = True

    def _failed(self, reason: str, message: bytes) -> None:
        """The origin failed the request (C{reason}: L{netbore.agent.metrics.ORIGIN_ERRORS})."""
        self.counts.failed(reason, self.answered)
        self._fail(ErrorCode.ORIGIN_RESET, message)

    def _fail(self, code: ErrorCode, message: bytes) -> None:
        self.finished = True
        self.sink.reset_stream(self.stream_id, code, message)
        self.abort()

    def _close(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            self.sink.writes.flush(transport)
            # (a transport with a paused producer registered would not close)
            transport.unregisterProducer()
            transport.loseConnection()

    # -- IPushProducer: the origin connection's write buffer -------------------

    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        n, self.unacked = self.unacked, 0
        if n and not self.finished:
            self.sink.acknowledge(self.stream_id, n)

    def stopProducing(self) -> None:
        pass
