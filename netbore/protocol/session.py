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
on I{or thrown it away} (after a reset, for instance).  That returns the
I{stream's} credit: bytes not acknowledged stall their own stream only.
The I{session's} credit goes back as the bytes are delivered (the stream
holds them under its own window, as HTTP/2 servers do), so a stalled
consumer never holds the window the other streams share.  DATA the
session drops itself (late frames on a stream this side reset) is
credited back automatically and never delivered.

A session WINDOW_UPDATE wakes only the streams whose sender found the
session's window shut (L{Session.send_some} short because of it, or
L{Session.send_window} 0 because of it): a L{WindowOpened} for each, so
its cost is theirs, not every open stream's.

The class is split in modules: the receiving half (one handler per frame
type) is L{netbore.protocol._receive}, with its events in
L{netbore.protocol._events}; the sending half (heads, DATA, END, the queue
of messages) is L{netbore.protocol._encode} beside the encoders; opening
byte streams is L{netbore.protocol.bytestreams}; this module holds the
session's state, acknowledging, resetting and going away.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ._encode import Sending, encode
from ._events import BytesOpened
from ._frames import (
    MAX_MESSAGE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    BytesOpen,
    Data,
    End,
    GoAway,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
)
from ._receive import (
    DataReceived,
    Event,
    GoAwayReceived,
    Receiving,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowOpened,
)
from ._streams import CLOSED_STREAMS_REMEMBERED, IGNORE, STRICT, StreamState
from .bytestreams import ByteStreams
from .errors import ErrorCode, ProtocolError, StreamError
from .handshake import ROLES, Settings

__all__ = [
    "CLOSED_STREAMS_REMEMBERED",
    "BytesOpened",
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


class Session(Sending, Receiving, ByteStreams):
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
        self.outbox: list[bytes] = []
        # Edge: the last stream id it allocated; agent: the highest stream
        # id of a REQUEST_HEAD it received.  Ids above were never opened.
        self._highest = 0
        self._send_window = peer.session_window
        self._recv_window = local.session_window
        self._session_pending = 0
        #: The streams whose sender found the session send window shut, in
        #: order: a session WINDOW_UPDATE wakes these, and only these.
        self._session_blocked: dict[int, None] = {}
        # Credit goes back once half of what the peer may have in flight
        # arrived: the smaller of our windows and its own (it never sends
        # beyond its own: clamp_peer), else a peer with smaller windows waits forever.
        self._stream_threshold = max(1, min(local.stream_window, peer.stream_window) // 2)
        self._session_threshold = max(1, min(local.session_window, peer.session_window) // 2)
        self._go_away_sent = False
        self._go_away_last = 0  # the last stream id of our first GOAWAY
        self._go_away_received = False
        self._peer_last_stream_id = MAX_STREAM_ID
        self._error: ProtocolError | None = None
        self._upgrading: set[int] = set()
        wrong = self._wrong_direction
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            RequestHead: wrong
            if self._edge
            else lambda f: self._on_request_head(f.stream_id, f.method, f.target, f.headers, f.end_stream),
            ResponseHead: (lambda f: self._on_response_head(f.stream_id, f.status, f.reason, f.headers, f.end_stream))
            if self._edge
            else wrong,
            Data: lambda frame: self._on_data(frame.stream_id, frame.data, frame.end_stream),
            End: self._on_end,
            Reset: self._on_reset,
            WindowUpdate: self._on_window_update,
            GoAway: self._on_go_away,
            BytesOpen: self._on_bytes_open,
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

        A stream told 0 because the session's window is shut (its own is
        not) is woken by the next session WINDOW_UPDATE (a L{WindowOpened}
        of its own), as is one that L{send_some} could not take all of
        because of the session's window.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        window = self._send_window
        if window < stream.send_window:
            if window <= 0:
                self._wait_for_session(stream_id)
            return window
        return stream.send_window

    def _wait_for_session(self, stream_id: int) -> None:
        """
        C{stream_id}'s sender found the session send window shut: wake it
        (a L{WindowOpened} of its own) at the next session WINDOW_UPDATE.
        Streams gone meanwhile are dropped when there are many of them.
        """
        blocked = self._session_blocked
        blocked[stream_id] = None
        if len(blocked) > 2 * len(self._streams) + 64:
            streams = self._streams
            self._session_blocked = {sid: None for sid in blocked if sid in streams}

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
        self.outbox.append(frame)

    def acknowledge(self, stream_id: int, n: int) -> None:
        """
        The application consumed (wrote on, or discarded) C{n} bytes
        delivered on C{stream_id}.  That is the stream's credit, returned to
        the peer in batches: a WINDOW_UPDATE for the stream (while the peer's
        body on it goes on) once half the local C{stream_window} is waiting.
        The session's credit does not wait for this: it went back as the
        bytes were delivered (the stream holds them under its own window),
        in a WINDOW_UPDATE for stream 0 once half the local
        C{session_window} had come in.  Acknowledging bytes of a stream that
        has since closed or been reset does nothing.

        @raise StreamError: C{n} is negative, or more than was delivered on
            the (live) stream and not yet acknowledged.
        """
        if n <= 0:
            if n < 0:
                raise StreamError(f"cannot acknowledge {n} bytes")
            return
        if self._error is not None:
            return
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
                    self.outbox.append(encode(WindowUpdate(stream_id, pending)))
                else:
                    stream.pending = pending
        elif stream_id > self._highest or stream_id <= 0:
            raise StreamError(f"stream {stream_id} was never opened")

    def _credit_session(self, n: int) -> None:
        pending = self._session_pending + n
        if pending >= self._session_threshold:
            self._recv_window += pending
            self._session_pending = 0
            self.outbox.append(encode(WindowUpdate(0, pending)))
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
        self.outbox.append(frame)

    # ----------------------------------------------------------------------
    # Receiving: what a GET never meets (the hot half is netbore.protocol._receive)

    def _processed(self) -> int:
        """
        The last stream id a GOAWAY from this side carries: 0 on the edge;
        on the agent the highest stream id accepted, which stops growing once
        a first GOAWAY went out (later REQUEST_HEADs are refused).
        """
        if self._edge:
            return 0
        return self._go_away_last if self._go_away_sent else self._highest

    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self._streams.clear()
        last = self._processed()
        text = error.message.encode("utf-8", "replace")[:MAX_MESSAGE]
        self.outbox.append(encode(GoAway(last, error.code, text)))

    def _wrong_direction(self, frame: RequestHead | ResponseHead) -> list[Event]:
        kind = "REQUEST_HEAD" if type(frame) is RequestHead else "RESPONSE_HEAD"
        raise ProtocolError(f"the {self.role} cannot receive {kind}")

    def _on_reset(self, frame: Reset) -> list[Event]:
        stream_id = frame.stream_id
        if self._streams.pop(stream_id, None) is None:
            if stream_id > self._highest:
                raise ProtocolError(f"RESET on stream {stream_id}, never opened")
            return []
        self._remember(stream_id, STRICT)
        return [StreamReset(stream_id, frame.code, frame.message)]

    def _on_go_away(self, frame: GoAway) -> list[Event]:
        last = frame.last_stream_id
        if self._edge:
            if last > self._highest:
                raise ProtocolError(f"GOAWAY names stream {last}, above the last opened ({self._highest})")
            if last > self._peer_last_stream_id:
                raise ProtocolError("GOAWAY raised its last stream id")
            self._peer_last_stream_id = last
        self._go_away_received = True
        events: list[Event] = [GoAwayReceived(last, frame.code, frame.message)]
        if self._edge:
            refused = [sid for sid in self._streams if sid > last]
            for sid in refused:
                del self._streams[sid]
                self._remember(sid, IGNORE)
                events.append(StreamReset(sid, ErrorCode.REFUSED_STREAM, b"refused: going away"))
        return events

    def _not_live(self, stream_id: int, what: str) -> None:
        """
        A frame C{what} arrived for C{stream_id}, which is not live.
        Return if it is to be ignored; raise if it breaks the protocol.
        """
        if stream_id > self._highest:
            raise ProtocolError(f"{what} on stream {stream_id}, never opened")
        if self._closed.get(stream_id, IGNORE) is STRICT:
            raise ProtocolError(f"{what} on closed stream {stream_id}", ErrorCode.STREAM_CLOSED)

    def _on_window_update(self, frame: WindowUpdate) -> list[Event]:
        stream_id = frame.stream_id
        if stream_id == 0:
            self._send_window += frame.increment
            if self._send_window > MAX_WINDOW:
                raise ProtocolError("session send window above 2^31-1", ErrorCode.FLOW_CONTROL_ERROR)
            # Only the streams that found the session's window shut are
            # woken: the work is theirs, not every open stream's.
            blocked = self._session_blocked
            if not blocked:
                return []
            self._session_blocked = {}
            streams = self._streams
            return [WindowOpened(sid) for sid in blocked if sid in streams]
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._highest:
                raise ProtocolError(f"WINDOW_UPDATE on stream {stream_id}, never opened")
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
