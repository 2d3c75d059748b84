"""
The session state machine shared by the edge and the agent (sans-IO).

A L{Session} is created once both hellos are exchanged.  The shell feeds
every binary WebSocket message to L{Session.receive} and acts on the events
it returns; the application calls the C{send_*} methods, L{acknowledge} and
L{reset_stream}; after each batch of calls the shell writes every message of
L{Session.data_to_send} as one binary WebSocket message.

End of a body (the convention the shells rely on)
=================================================
The peer's body on a stream ends exactly once, and is reported exactly once:

  - by the event of the frame that carried C{FLAG_END_STREAM}:
    L{RequestReceived}, L{ResponseReceived} or L{DataReceived} with
    C{end_stream=True} (no L{StreamEnded} follows), or
  - by L{StreamEnded}, for an C{END} frame.

A L{StreamReset} instead means the stream is gone in both directions.

Flow control and acknowledgement
================================
Every DATA byte delivered in a L{DataReceived} event must be passed to
L{Session.acknowledge} exactly once, when the application has written it
on I{or thrown it away} (after a reset, for instance), even after the
stream has closed.  Bytes not acknowledged stay charged to the session
receive window and eventually stall every stream.  DATA the session drops
itself (late frames on a stream this side reset) is credited back
automatically and never delivered.

The class is split in two modules: the receiving half (events, stream
bookkeeping, one handler per frame type) is L{netbore.protocol._receive};
this module holds the session's state, sending, acknowledging and going
away.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ._batch import batch
from ._encode import encode, encode_data, encode_request_head, encode_response_head
from ._frames import (
    HEADER,
    MAX_MESSAGE,
    MAX_STREAM_ID,
    Data,
    End,
    FrameType,
    GoAway,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
)
from ._receive import (
    CLOSED_STREAMS_REMEMBERED,
    IGNORE,
    STRICT,
    DataReceived,
    Event,
    GoAwayReceived,
    Receiving,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    StreamState,
    WindowOpened,
)
from .errors import ErrorCode, FlowControlError, ProtocolError, StreamClosedError, StreamError
from .handshake import ROLES, Settings

__all__ = [
    "CLOSED_STREAMS_REMEMBERED",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "RequestReceived",
    "ResponseReceived",
    "Session",
    "StreamEnded",
    "StreamReset",
    "WindowOpened",
]

_pack_header = HEADER.pack  # (not HEADER.pack() per call: see _encode's note on CPython 3.11)


class Session(Receiving):
    """
    One edge<->agent session: stream states, credit windows, go-away.

    @param role: C{"edge"} (opens streams, sends requests) or C{"agent"}.
    @param local: the settings this side announced in its hello (what it
        can receive).
    @param peer: the settings from the peer's hello.
    """

    def __init__(self, role: str, local: Settings, peer: Settings) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.role = role
        self.local = local
        self.peer = peer
        self._edge = role == "edge"
        self._streams: dict[int, StreamState] = {}
        self._closed: OrderedDict[int, bool] = OrderedDict()
        self._outbox: list[bytes] = []
        # Edge: the last stream id it allocated; agent: the highest stream
        # id of a REQUEST_HEAD it received.  Ids above were never opened.
        self._highest = 0
        self._send_window = peer.session_window
        self._recv_window = local.session_window
        self._recv_unacked = 0
        self._session_pending = 0
        self._stream_threshold = max(1, local.stream_window // 2)
        self._session_threshold = max(1, local.session_window // 2)
        self._go_away_sent = False
        self._go_away_last = 0  # the last stream id of our first GOAWAY
        self._go_away_received = False
        self._peer_last_stream_id = MAX_STREAM_ID
        self._error: ProtocolError | None = None
        wrong = self._wrong_direction
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            RequestHead: wrong if self._edge else self._on_request_head,
            ResponseHead: self._on_response_head if self._edge else wrong,
            Data: self._on_data,
            End: self._on_end,
            Reset: self._on_reset,
            WindowUpdate: self._on_window_update,
            GoAway: self._on_go_away,
        }

    # ----------------------------------------------------------------------
    # State

    @property
    def open_streams(self) -> int:
        """
        Live streams: opened, neither reset nor ended in both directions.
        """
        return len(self._streams)

    def is_open(self, stream_id: int) -> bool:
        """
        Is C{stream_id} live (opened, neither reset nor ended both ways)?
        """
        return stream_id in self._streams

    @property
    def closed(self) -> bool:
        """
        Nothing more can happen on this session: a protocol error was
        raised, or a GOAWAY went each way and no stream is live.  The shell
        may then close the WebSocket.
        """
        return self._error is not None or (self._go_away_sent and self._go_away_received and not self._streams)

    @property
    def go_away_sent(self) -> bool:
        return self._go_away_sent

    @property
    def go_away_received(self) -> bool:
        return self._go_away_received

    @property
    def error(self) -> ProtocolError | None:
        """
        The L{ProtocolError} L{receive} raised, if it did.
        """
        return self._error

    @property
    def last_stream_id(self) -> int:
        """
        Edge: the last stream id allocated.  Agent: the highest stream id
        received in a REQUEST_HEAD (refused ones included).
        """
        return self._highest

    def send_window(self, stream_id: int) -> int:
        """
        How many DATA bytes L{send_data} accepts now on C{stream_id}:
        min(stream send window, session send window); 0 for a stream that is
        unknown, closed, reset or whose body this side already ended.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return min(stream.send_window, self._send_window)

    # ----------------------------------------------------------------------
    # Sending

    def data_to_send(self) -> list[bytes]:
        """
        The messages to send, in order: the frames queued since the last
        call, each one binary WebSocket message -- except that, when the
        peer announced C{batch}, runs of small frames (up to
        L{BATCH_FRAME_MAX} bytes each, L{BATCH_MAX} together) go as one
        BATCH message.  Empties the queue.
        """
        out = self._outbox
        self._outbox = []
        if len(out) < 2 or not self.peer.batch:
            return out
        return batch(out)

    def _sending_stream(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"stream {stream_id} is not open")
        if stream.local_closed:
            raise StreamClosedError(f"stream {stream_id}: this side's body ended")
        return stream

    def _close_local(self, stream_id: int, stream: StreamState) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[stream_id]
            self._remember(stream_id, STRICT)

    def send_request_head(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        end_stream: bool = False,
    ) -> int:
        """
        (edge) Open the next stream (1, 2, 3, ...) with a request head.

        @param end_stream: the request has no body.
        @return: the new stream id.
        @raise StreamClosedError: a GOAWAY was sent or received, the session
            failed, or the stream ids are used up (open a new session).
        @raise StreamError: called on the agent, or a value that cannot be
            encoded (see L{encode}).
        """
        if not self._edge:
            raise StreamError("only the edge opens streams")
        if self._error is not None:
            raise StreamClosedError("the session failed")
        if self._go_away_received or self._go_away_sent:
            raise StreamClosedError("the session is going away: no new streams")
        stream_id = self._highest + 1
        if stream_id > MAX_STREAM_ID:
            raise StreamClosedError("stream ids used up: open a new session")
        try:
            message = encode_request_head(stream_id, method, target, list(headers), end_stream)
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._highest = stream_id
        stream = StreamState(self.peer.stream_window, self.local.stream_window, True, False)
        stream.local_closed = end_stream
        self._streams[stream_id] = stream
        self._outbox.append(message)
        return stream_id

    def send_response_head(
        self,
        stream_id: int,
        status: int,
        reason: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        end_stream: bool = False,
    ) -> None:
        """
        (agent) Answer C{stream_id}.  A 1xx status is informational: it may
        not end the stream and a final head must follow.

        @param end_stream: the response has no body.
        @raise StreamClosedError: the stream is not open or its response
            already ended.
        @raise StreamError: called on the edge, a final head was already
            sent, or a value that cannot be encoded.
        """
        if self._edge:
            raise StreamError("only the agent sends response heads")
        stream = self._sending_stream(stream_id)
        if stream.local_head:
            raise StreamError(f"stream {stream_id}: response head already sent")
        final = status >= 200
        if end_stream and not final:
            raise StreamError("an informational (1xx) head cannot end the stream")
        try:
            message = encode_response_head(stream_id, status, reason, list(headers), end_stream)
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._outbox.append(message)
        stream.local_head = final
        if end_stream:
            self._close_local(stream_id, stream)

    def send_data(
        self,
        stream_id: int,
        data: bytes | bytearray | memoryview,
        end_stream: bool = False,
    ) -> None:
        """
        Queue body bytes on C{stream_id}, split into DATA frames of at most
        the peer's C{max_frame_payload}; the last one carries
        C{FLAG_END_STREAM} if C{end_stream}.  Empty C{data} with
        C{end_stream} queues an C{END} frame; without, nothing.

        C{data} may be any bytes-like object; it is copied exactly once
        (into the queued message).

        @raise FlowControlError: C{len(data) > send_window(stream_id)}.
        @raise StreamClosedError: the stream is not open, or this side's
            body on it already ended.
        @raise StreamError: (agent) no final response head sent yet.
        """
        stream = self._sending_stream(stream_id)
        if not stream.local_head:
            raise StreamError(f"stream {stream_id}: DATA before the response head")
        size = len(data)
        if size > stream.send_window or size > self._send_window:
            raise FlowControlError(
                f"stream {stream_id}: {size} bytes offered, send window is {min(stream.send_window, self._send_window)}"
            )
        if size:
            stream.send_window -= size
            self._send_window -= size
            limit = self.peer.max_frame_payload
            if size <= limit:
                self._outbox.append(encode_data(stream_id, data, end_stream))
            else:
                view = memoryview(data)
                last = size - limit
                append = self._outbox.append
                for offset in range(0, size, limit):
                    append(
                        encode_data(
                            stream_id,
                            view[offset : offset + limit],
                            end_stream and offset >= last,
                        )
                    )
        elif end_stream:
            self._outbox.append(_pack_header(FrameType.END, 0, stream_id))
        if end_stream:
            self._close_local(stream_id, stream)

    def send_end(self, stream_id: int) -> None:
        """
        End this side's body on C{stream_id} (an C{END} frame).

        @raise StreamClosedError: the stream is not open, or this side's
            body on it already ended.
        @raise StreamError: (agent) no final response head sent yet.
        """
        stream = self._sending_stream(stream_id)
        if not stream.local_head:
            raise StreamError(f"stream {stream_id}: END before the response head")
        self._outbox.append(_pack_header(FrameType.END, 0, stream_id))
        self._close_local(stream_id, stream)

    def reset_stream(self, stream_id: int, code: int = ErrorCode.CANCEL, message: bytes = b"") -> None:
        """
        Abort C{stream_id} both ways with a C{RESET} frame.  Idempotent: a
        no-op for a stream that is unknown, closed or already reset.  The
        stream is closed at once; the peer's frames still in flight for it
        are ignored (their DATA credited back to the session window).
        C{message} is cut to L{MAX_MESSAGE} bytes.

        Bytes already delivered on the stream must still be acknowledged.
        """
        if stream_id not in self._streams:
            return
        try:
            frame = encode(Reset(stream_id, code, bytes(message[:MAX_MESSAGE])))
        except ValueError as e:
            raise StreamError(str(e)) from None
        del self._streams[stream_id]
        self._remember(stream_id, IGNORE)
        self._outbox.append(frame)

    def acknowledge(self, stream_id: int, n: int) -> None:
        """
        The application consumed (wrote on, or discarded) C{n} bytes
        delivered on C{stream_id}.  That credit is returned to the peer in
        batches: a WINDOW_UPDATE for the stream (while the peer's body on it
        goes on) once half the local C{stream_window} is waiting, and one for
        the session (stream 0) once half the local C{session_window} is.
        Acknowledging bytes of a stream that has since closed or been reset
        still credits the session window.

        @raise StreamError: C{n} is negative or more than was delivered and
            not yet acknowledged (on the stream, or on the whole session).
        """
        if n <= 0:
            if n < 0:
                raise StreamError(f"cannot acknowledge {n} bytes")
            return
        if self._error is not None:
            return
        if n > self._recv_unacked:
            raise StreamError(f"acknowledging {n} bytes, only {self._recv_unacked} unacknowledged")
        stream = self._streams.get(stream_id)
        if stream is not None:
            if n > stream.unacked:
                raise StreamError(f"stream {stream_id}: acknowledging {n} bytes, only {stream.unacked} unacknowledged")
            stream.unacked -= n
            if not stream.remote_closed:
                pending = stream.pending + n
                if pending >= self._stream_threshold:
                    stream.recv_window += pending
                    stream.pending = 0
                    self._outbox.append(encode(WindowUpdate(stream_id, pending)))
                else:
                    stream.pending = pending
        elif stream_id > self._highest or stream_id <= 0:
            raise StreamError(f"stream {stream_id} was never opened")
        self._recv_unacked -= n
        self._credit_session(n)

    def _credit_session(self, n: int) -> None:
        pending = self._session_pending + n
        if pending >= self._session_threshold:
            self._recv_window += pending
            self._session_pending = 0
            self._outbox.append(encode(WindowUpdate(0, pending)))
        else:
            self._session_pending = pending

    def go_away(self, code: int = ErrorCode.NO_ERROR, message: bytes = b"") -> None:
        """
        Queue a GOAWAY: this side opens and accepts no new streams; live
        streams go on.  It carries L{last_stream_id} on the agent (the edge
        opens every stream, so the edge sends 0).  Calling it again sends
        another GOAWAY with the same last stream id (streams refused in
        between do not count).  No-op after a protocol
        error (L{receive} already queued one).
        """
        if self._error is not None:
            return
        last = self._processed()
        try:
            frame = encode(GoAway(last, code, bytes(message[:MAX_MESSAGE])))
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._go_away_sent = True
        self._go_away_last = last
        self._outbox.append(frame)
