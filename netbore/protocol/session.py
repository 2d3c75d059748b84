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
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional, Union

import attrs

from .errors import (
    ErrorCode,
    FlowControlError,
    ProtocolError,
    StreamClosedError,
    StreamError,
)
from .frames import (
    BATCH_FRAME_MAX,
    BATCH_MAX,
    HEADER,
    MAX_MESSAGE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    Data,
    End,
    FrameType,
    GoAway,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
    decode,
    decode_batch,
    encode,
    encode_batch,
    encode_data,
)
from .handshake import ROLES, Settings

_BATCH_TYPE = bytes([FrameType.BATCH])

__all__ = [
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

HeaderList = list[tuple[bytes, bytes]]


# --------------------------------------------------------------------------
# Events


@attrs.frozen
class RequestReceived:
    """
    (agent) The edge opened C{stream_id} with this request head.
    C{end_stream}: the request has no body.
    """

    stream_id: int
    method: bytes
    target: bytes
    headers: HeaderList
    end_stream: bool


@attrs.frozen
class ResponseReceived:
    """
    (edge) The agent's response head for C{stream_id}.  A 1xx status is
    informational (never C{end_stream}); the final head follows.
    C{end_stream}: the response has no body.
    """

    stream_id: int
    status: int
    reason: bytes
    headers: HeaderList
    end_stream: bool


@attrs.frozen
class DataReceived:
    """
    A chunk of the peer's body.  Acknowledge C{len(data)} once consumed.
    C{end_stream}: this is the last chunk (no L{StreamEnded} follows).
    """

    stream_id: int
    data: bytes
    end_stream: bool


@attrs.frozen
class StreamEnded:
    """
    The peer's body on C{stream_id} ended by an C{END} frame.
    """

    stream_id: int


@attrs.frozen
class StreamReset:
    """
    The peer reset C{stream_id} (or, on the edge, a go-away refused it with
    L{ErrorCode.REFUSED_STREAM}): the stream is closed both ways.
    C{code} is an L{ErrorCode}, or a plain L{int} this side does not know.
    """

    stream_id: int
    code: int
    message: bytes


@attrs.frozen
class WindowOpened:
    """
    A WINDOW_UPDATE grew the send window of C{stream_id}, or of the whole
    session when C{stream_id} is 0: resume senders paused on it.
    """

    stream_id: int


@attrs.frozen
class GoAwayReceived:
    """
    The peer is going away: no new stream may be opened on this session;
    streams up to C{last_stream_id} go on to their end.
    """

    last_stream_id: int
    code: int
    message: bytes


Event = Union[
    RequestReceived,
    ResponseReceived,
    DataReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
    GoAwayReceived,
]


# --------------------------------------------------------------------------
# Stream bookkeeping


class _Stream:
    """
    A live stream (not both ways ended, not reset).

    send_window: credit for our DATA; recv_window: credit the peer still
    has; unacked: delivered, not yet acknowledged; pending: acknowledged,
    not yet announced by a WINDOW_UPDATE; local_head/remote_head: the final
    head was sent/received (a request head counts for the side it opened);
    local_closed/remote_closed: our/peer's body ended.
    """

    __slots__ = (
        "send_window",
        "recv_window",
        "unacked",
        "pending",
        "local_head",
        "remote_head",
        "local_closed",
        "remote_closed",
    )

    def __init__(
        self, send_window: int, recv_window: int, local_head: bool, remote_head: bool
    ) -> None:
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0
        self.pending = 0
        self.local_head = local_head
        self.remote_head = remote_head
        self.local_closed = False
        self.remote_closed = False


#: How many closed stream ids are remembered, to tell frames that are late
#: (ignored) from frames that break the protocol (STREAM_CLOSED).  Older
#: ids at or below the highest id ever opened are treated leniently: their
#: frames are ignored (DATA credited back to the session window).
CLOSED_STREAMS_REMEMBERED = 1024

# Values of Session._closed: may late frames of the stream be ignored?
_IGNORE = True  # this side reset it (or refused it): the peer may lag
_STRICT = False  # the peer ended or reset it: it must send nothing more


class Session:
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
        self._streams: dict[int, _Stream] = {}
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
        self._error: Optional[ProtocolError] = None
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
        return self._error is not None or (
            self._go_away_sent and self._go_away_received and not self._streams
        )

    @property
    def go_away_sent(self) -> bool:
        return self._go_away_sent

    @property
    def go_away_received(self) -> bool:
        return self._go_away_received

    @property
    def error(self) -> Optional[ProtocolError]:
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
        messages: list[bytes] = []
        run: list[bytes] = []
        size = 0

        def end_run() -> None:
            nonlocal size
            if run:
                messages.append(run[0] if len(run) == 1 else encode_batch(run))
                run.clear()
                size = 0

        for frame in out:
            n = len(frame)
            if n > BATCH_FRAME_MAX:
                end_run()
                messages.append(frame)
                continue
            if size + n > BATCH_MAX:
                end_run()
            run.append(frame)
            size += n + 4
        end_run()
        return messages

    def _sending_stream(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"stream {stream_id} is not open")
        if stream.local_closed:
            raise StreamClosedError(f"stream {stream_id}: this side's body ended")
        return stream

    def _close_local(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[stream_id]
            self._remember(stream_id, _STRICT)

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
            message = encode(
                RequestHead(stream_id, method, target, list(headers), end_stream)
            )
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._highest = stream_id
        stream = _Stream(
            self.peer.stream_window, self.local.stream_window, True, False
        )
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
            message = encode(
                ResponseHead(stream_id, status, reason, list(headers), end_stream)
            )
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._outbox.append(message)
        stream.local_head = final
        if end_stream:
            self._close_local(stream_id, stream)

    def send_data(
        self,
        stream_id: int,
        data: "bytes | bytearray | memoryview",
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
                f"stream {stream_id}: {size} bytes offered, "
                f"send window is {min(stream.send_window, self._send_window)}"
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
            self._outbox.append(HEADER.pack(FrameType.END, 0, stream_id))
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
        self._outbox.append(HEADER.pack(FrameType.END, 0, stream_id))
        self._close_local(stream_id, stream)

    def reset_stream(
        self, stream_id: int, code: int = ErrorCode.CANCEL, message: bytes = b""
    ) -> None:
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
        self._remember(stream_id, _IGNORE)
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
            raise StreamError(
                f"acknowledging {n} bytes, only {self._recv_unacked} unacknowledged"
            )
        stream = self._streams.get(stream_id)
        if stream is not None:
            if n > stream.unacked:
                raise StreamError(
                    f"stream {stream_id}: acknowledging {n} bytes, "
                    f"only {stream.unacked} unacknowledged"
                )
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

    def _processed(self) -> int:
        """
        The last stream id a GOAWAY from this side carries: 0 on the edge;
        on the agent the highest stream id accepted, which stops growing once
        a first GOAWAY went out (later REQUEST_HEADs are refused).
        """
        if self._edge:
            return 0
        return self._go_away_last if self._go_away_sent else self._highest

    # ----------------------------------------------------------------------
    # Receiving

    def receive(self, message: bytes) -> list[Event]:
        """
        Process one binary WebSocket message from the peer.

        @return: the events it caused, in order (often none or one).
        @raise ProtocolError: the peer broke the protocol.  The session is
            then dead: L{data_to_send} holds a GOAWAY carrying the error
            code, L{closed} is true, every stream is gone, and later calls
            return no events.  Flush, then close the WebSocket with
            C{websocket_close_code(error.code)}.
        """
        if self._error is not None:
            return []
        try:
            if message[:1] != _BATCH_TYPE:
                frame = decode(message)
                return self._handlers[type(frame)](frame)
            if not self.local.batch:
                raise ProtocolError("BATCH frame, but this side did not announce batch")
            events: list[Event] = []
            handlers = self._handlers
            for inner in decode_batch(message):
                frame = decode(inner)
                events += handlers[type(frame)](frame)
            return events
        except ProtocolError as e:
            self._fail(e)
            raise

    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self._streams.clear()
        last = self._processed()
        text = error.message.encode("utf-8", "replace")[:MAX_MESSAGE]
        self._outbox.append(encode(GoAway(last, error.code, text)))

    def _remember(self, stream_id: int, ignore: bool) -> None:
        closed = self._closed
        closed[stream_id] = ignore
        if len(closed) > CLOSED_STREAMS_REMEMBERED:
            closed.popitem(last=False)

    def _receiving(self, stream_id: int, what: str) -> _Stream | None:
        """
        The live stream a frame C{what} from the peer is for; L{None} when
        the frame is to be ignored (see L{_not_live}).

        @raise ProtocolError: the stream is unknown, or the peer already
            ended its side of it.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            self._not_live(stream_id, what)
            return None
        if stream.remote_closed:
            raise ProtocolError(
                f"{what} on stream {stream_id} after its end", ErrorCode.STREAM_CLOSED
            )
        return stream

    def _not_live(self, stream_id: int, what: str) -> None:
        """
        A frame C{what} arrived for C{stream_id}, which is not live.
        Return if it is to be ignored; raise if it breaks the protocol.
        """
        if stream_id > self._highest:
            raise ProtocolError(f"{what} on stream {stream_id}, never opened")
        if self._closed.get(stream_id, _IGNORE) is _STRICT:
            raise ProtocolError(
                f"{what} on closed stream {stream_id}", ErrorCode.STREAM_CLOSED
            )

    def _wrong_direction(self, frame: Union[RequestHead, ResponseHead]) -> list[Event]:
        kind = "REQUEST_HEAD" if type(frame) is RequestHead else "RESPONSE_HEAD"
        raise ProtocolError(f"the {self.role} cannot receive {kind}")

    def _on_request_head(self, frame: RequestHead) -> list[Event]:
        stream_id = frame.stream_id
        if stream_id <= self._highest:
            raise ProtocolError(
                f"REQUEST_HEAD on stream {stream_id}, "
                f"not above the last one ({self._highest})"
            )
        self._highest = stream_id
        if self._go_away_sent:
            # Refused: the edge learns it from our GOAWAY's last stream id.
            self._remember(stream_id, _IGNORE)
            return []
        stream = _Stream(
            self.peer.stream_window, self.local.stream_window, False, True
        )
        stream.remote_closed = frame.end_stream
        self._streams[stream_id] = stream
        return [
            RequestReceived(
                stream_id, frame.method, frame.target, frame.headers, frame.end_stream
            )
        ]

    def _on_response_head(self, frame: ResponseHead) -> list[Event]:
        stream_id = frame.stream_id
        stream = self._receiving(stream_id, "RESPONSE_HEAD")
        if stream is None:
            return []
        if stream.remote_head:
            raise ProtocolError(f"a second final RESPONSE_HEAD on stream {stream_id}")
        if frame.status >= 200:
            stream.remote_head = True
        elif frame.end_stream:
            raise ProtocolError(f"informational head ending stream {stream_id}")
        if frame.end_stream:
            stream.remote_closed = True
            if stream.local_closed:
                del self._streams[stream_id]
                self._remember(stream_id, _STRICT)
        return [
            ResponseReceived(
                stream_id, frame.status, frame.reason, frame.headers, frame.end_stream
            )
        ]

    def _on_data(self, frame: Data) -> list[Event]:
        stream_id = frame.stream_id
        size = len(frame.data)
        if size > self.local.max_frame_payload:
            raise ProtocolError(
                f"DATA of {size} bytes, more than max_frame_payload "
                f"{self.local.max_frame_payload}",
                ErrorCode.FRAME_TOO_LARGE,
            )
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError(
                "DATA beyond the session receive window", ErrorCode.FLOW_CONTROL_ERROR
            )
        stream = self._streams.get(stream_id)
        if stream is None:
            self._not_live(stream_id, "DATA")
            if size:
                self._credit_session(size)
            return []
        if stream.remote_closed:
            raise ProtocolError(
                f"DATA on stream {stream_id} after its end", ErrorCode.STREAM_CLOSED
            )
        if not stream.remote_head:
            raise ProtocolError(f"DATA before the response head on stream {stream_id}")
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(
                f"DATA beyond the receive window of stream {stream_id}",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        stream.unacked += size
        self._recv_unacked += size
        if frame.end_stream:
            stream.remote_closed = True
            if stream.local_closed:
                del self._streams[stream_id]
                self._remember(stream_id, _STRICT)
        elif not size:
            return []
        return [DataReceived(stream_id, frame.data, frame.end_stream)]

    def _on_end(self, frame: End) -> list[Event]:
        stream_id = frame.stream_id
        stream = self._receiving(stream_id, "END")
        if stream is None:
            return []
        if not stream.remote_head:
            raise ProtocolError(f"END before the response head on stream {stream_id}")
        stream.remote_closed = True
        if stream.local_closed:
            del self._streams[stream_id]
            self._remember(stream_id, _STRICT)
        return [StreamEnded(stream_id)]

    def _on_reset(self, frame: Reset) -> list[Event]:
        stream_id = frame.stream_id
        if self._streams.pop(stream_id, None) is None:
            if stream_id > self._highest:
                raise ProtocolError(f"RESET on stream {stream_id}, never opened")
            return []
        self._remember(stream_id, _STRICT)
        return [StreamReset(stream_id, frame.code, frame.message)]

    def _on_window_update(self, frame: WindowUpdate) -> list[Event]:
        stream_id = frame.stream_id
        if stream_id == 0:
            self._send_window += frame.increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolError(
                    "session send window above 2^31-1", ErrorCode.FLOW_CONTROL_ERROR
                )
            return [WindowOpened(0)]
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._highest:
                raise ProtocolError(
                    f"WINDOW_UPDATE on stream {stream_id}, never opened"
                )
            return []
        if stream.local_closed:
            return []
        stream.send_window += frame.increment
        if stream.send_window > MAX_WINDOW:
            raise ProtocolError(
                f"send window of stream {stream_id} above 2^31-1",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        return [WindowOpened(stream_id)]

    def _on_go_away(self, frame: GoAway) -> list[Event]:
        last = frame.last_stream_id
        if self._edge:
            if last > self._highest:
                raise ProtocolError(
                    f"GOAWAY names stream {last}, above the last opened "
                    f"({self._highest})"
                )
            if last > self._peer_last_stream_id:
                raise ProtocolError("GOAWAY raised its last stream id")
            self._peer_last_stream_id = last
        self._go_away_received = True
        events: list[Event] = [GoAwayReceived(last, frame.code, frame.message)]
        if self._edge:
            refused = [sid for sid in self._streams if sid > last]
            for sid in refused:
                del self._streams[sid]
                self._remember(sid, _IGNORE)
                events.append(
                    StreamReset(sid, ErrorCode.REFUSED_STREAM, b"refused: going away")
                )
        return events
