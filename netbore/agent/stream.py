"""
One tunnel stream forwarded to the origin: L{StreamSink}, what it needs of
the tunnel session, and L{StreamEnds}, the part of
L{netbore.agent.forwarder.OriginStream} (the
L{netbore.agent.origin_connection.Exchange} its origin connection calls
back) that a GET answered in order never runs.

Both directions are streamed under flow control, with the credit pump of
L{netbore.protocol.credit} and explicit states (L{stream_states}):

  - request body: DATA is written to the origin connection and
    acknowledged to the edge only when the connection has taken it (queued
    while the head is not out or the connection paused us), so at most one
    stream window is ever held here;
  - response body: bytes go out as DATA while the stream's send window
    allows; otherwise the origin connection is paused and what was read is
    queued until a window update arrives.

Errors: an origin that cannot be connected to resets the stream with
ORIGIN_UNREACHABLE; one that closes the connection (or breaks HTTP) before
the response is complete, with ORIGIN_RESET (a body delimited by the close
ends normally); an edge reset aborts the origin connection.  Every DATA
byte received is acknowledged exactly once, written or thrown away.
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from netbore.agent.origin_connection import OriginConnection
from netbore.agent.stream_states import ResponseState, UploadState, WriterState
from netbore.http1 import Header
from netbore.protocol.credit import SendQueue
from netbore.protocol.errors import ErrorCode

__all__ = ["StreamEnds", "StreamSink"]

log = Logger()

# The states as module globals, in their definition order (a member read
# through its class costs a descriptor call); tests check each name.
U_BODY, U_ENDED, U_DONE = UploadState
W_UNSENT, W_READY, W_BLOCKED = WriterState
S_WAITING, S_BODY, S_COMPLETE, S_DONE = ResponseState

_MAX_MESSAGE = 200


class StreamSink(Protocol):
    """
    What an L{OriginStream} needs from the tunnel session.

    Every call must put the resulting frames on the wire (or queue them for
    the next flush) by itself: the forwarder calls these from origin-side
    callbacks, outside any batch of tunnel work.

    A call that sends the stream's last frame toward the edge (a head or
    DATA with C{end_stream}, END, RESET) also ends the stream for the sink:
    it forgets it then, and L{stream_finished} is not called for it.
    """

    def send_response_head(
        self, stream_id: int, status: int, reason: bytes, headers: list[Header], end_stream: bool = False
    ) -> None: ...

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """
        Send what the stream's send window takes of C{data} (none while
        the tunnel's transport is full), ending the stream if
        C{end_stream} and it took all of it; how many bytes it took.
        """

    def send_end(self, stream_id: int) -> None: ...

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None: ...

    def acknowledge(self, stream_id: int, n: int) -> None: ...

    def send_window(self, stream_id: int) -> int: ...

    def max_data_payload(self) -> int:
        """The largest payload one DATA frame may carry toward the edge."""

    def stream_finished(self, stream_id: int) -> None:
        """
        The stream is over on the agent's side without a last frame sent
        through the sink (the edge reset it, the session is gone): the
        owner forgets it.
        """


def _short(failure: Failure) -> bytes:
    text = f"{type(failure.value).__name__}: {failure.value}"
    return text.encode("utf-8", "replace")[:_MAX_MESSAGE]


class StreamEnds:
    """
    The base of L{netbore.agent.forwarder.OriginStream}: what a GET answered
    in order never runs (each call between modules costs on every request,
    see C{bench/trace.py}): the request body (uploads), the response body
    beyond the send window, backpressure, the edge's reset, failures and
    aborts.  The attributes are the stream's.
    """

    stream_id: int
    finished: bool
    upload: UploadState
    writer: WriterState
    response: ResponseState
    _sink: StreamSink
    _left: int | None
    _limit: int
    _sending_paused: bool
    _conn: OriginConnection | None = None
    #: Request body waiting for the connection, response body waiting for
    #: the window (made when first needed).
    _upload: SendQueue | None = None
    _download: SendQueue | None = None

    # -- the stream's own (netbore.agent.forwarder) ------------------------------

    def _finish(self, told: bool = False) -> None:
        raise NotImplementedError

    def _response_complete(self) -> None:
        raise NotImplementedError

    @property
    def buffered_bytes(self) -> int:
        """
        Bytes held by this stream in either direction (for tests and metrics).
        """
        up, down = self._upload, self._download
        return (up.size if up is not None else 0) + (down.size if down is not None else 0)

    def data_received(self, data: bytes, end_stream: bool = False) -> None:
        n = len(data)
        if self.upload is not U_BODY:
            # Nobody will read it: the credit goes straight back.
            if n:
                self._sink.acknowledge(self.stream_id, n)
                if not self.finished:
                    self.fail(ErrorCode.STREAM_CLOSED, b"request body after end of request")
            return
        left = self._left
        if left is not None:
            if n > left:
                self._sink.acknowledge(self.stream_id, n)
                self.fail(ErrorCode.PROTOCOL_ERROR, b"request body longer than its content-length")
                return
            self._left = left - n
            if left == n:
                # A declared length ends the body by itself; the origin may
                # answer before the stream's END arrives.
                end_stream = True
        if n:
            queue = self._upload
            if self.writer is W_READY and (queue is None or not queue.size):
                conn: OriginConnection = self._conn  # type: ignore[assignment]
                conn.write(data)
                self._sink.acknowledge(self.stream_id, n)
            else:
                if queue is None:
                    queue = self._upload = SendQueue()
                queue.push(data)
        if end_stream:
            self.end_received()

    def end_received(self) -> None:
        if self.upload is not U_BODY:
            return
        if self._left:
            self.fail(ErrorCode.PROTOCOL_ERROR, b"request body shorter than its content-length")
            return
        self.upload = U_ENDED
        self._flush_body()

    def reset_received(self, code: int, message: bytes = b"") -> None:
        """
        The edge reset the stream (the viewer went away): abort the origin
        request.  Nothing is sent back.
        """
        if not self.finished:
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
        if not self.finished:
            self._finish()
            self._abort_origin()

    def write_paused(self) -> None:
        self.writer = W_BLOCKED

    def write_resumed(self) -> None:
        if self.writer is W_BLOCKED:
            self.writer = W_READY
            self._flush_body()

    def unreachable(self, failure: Failure) -> None:
        self._conn = None
        self.writer = W_UNSENT
        if self.finished:
            return
        why = _short(failure)
        log.info("origin unreachable for stream {stream_id}: {why}", stream_id=self.stream_id, why=why)
        self.fail(ErrorCode.ORIGIN_UNREACHABLE, b"origin unreachable: " + why)

    def response_failed(self, why: str) -> None:
        self._conn = None
        self.writer = W_UNSENT
        if self.finished:
            return
        log.info("origin reset stream {stream_id}: {why}", stream_id=self.stream_id, why=why)
        self.fail(ErrorCode.ORIGIN_RESET, why.encode("utf-8", "replace")[:_MAX_MESSAGE])

    def pump(self) -> None:
        """
        Send as much of the queued response body as the window allows,
        then pause or resume reading from the origin accordingly.
        """
        if self.finished:
            return
        sink = self._sink
        stream_id = self.stream_id
        queue = self._download
        queued = 0
        if queue is not None:
            limit = self._limit
            while queue.size and not self._sending_paused:
                chunk = queue.peek()
                if len(chunk) > limit:
                    # A view, not a copy: the session copies into the frame.
                    chunk = memoryview(chunk)[:limit]
                last = self.response is S_COMPLETE and len(chunk) == queue.size
                sent = sink.send_data(stream_id, chunk, last)
                if not sent:
                    break
                queue.advance(sent)
                if last and sent == len(chunk):
                    self._response_complete()
                    return
                if self.finished:  # the sink's send may have reset the stream
                    return  # type: ignore[unreachable]  # (mypy keeps the narrowing across the call)
            queued = queue.size
        if self.response is S_COMPLETE:
            if not queued:
                sink.send_end(stream_id)
                self._response_complete()
            return
        conn = self._conn
        if conn is not None:
            if queued or self._sending_paused or (self.response is S_BODY and sink.send_window(stream_id) <= 0):
                conn.pause_reading()
            else:
                conn.resume_reading()

    def _flush_body(self) -> None:
        """
        Write what the connection can take of the queued request body, and
        the body's end once the edge's END is in and nothing is queued.
        """
        if self.writer is not W_READY or self.finished:
            return
        conn = self._conn
        assert conn is not None
        queue = self._upload
        if queue is not None:
            sink = self._sink
            while queue.size and self.writer is W_READY:
                data = queue.take()
                conn.write(data)  # type: ignore[arg-type]
                sink.acknowledge(self.stream_id, len(data))
                if self._conn is not conn:
                    return
        if self.upload is U_ENDED and (queue is None or not queue.size):
            self.upload = U_DONE
            conn.end_body()

    def fail(self, code: ErrorCode, message: bytes) -> None:
        """
        Reset the stream toward the edge and abort the origin request.
        """
        if self.finished:
            return
        self._sink.reset_stream(self.stream_id, code, message)
        self._finish(True)
        self._abort_origin()

    def _abort_origin(self) -> None:
        conn, self._conn = self._conn, None
        self.writer = W_UNSENT
        if conn is not None:
            conn.abort()
        self._drop_body()
        if self._download is not None:
            self._download.clear()

    def _drop_body(self) -> None:
        self.upload = U_DONE
        queue = self._upload
        if queue is not None:
            dropped = queue.clear()
            if dropped:
                # Every delivered byte is acknowledged once, written or not.
                self._sink.acknowledge(self.stream_id, dropped)
