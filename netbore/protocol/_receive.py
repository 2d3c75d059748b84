"""
The receiving half of L{netbore.protocol.session.Session}: the events of
an exchange (heads, DATA, END; the others are in
L{netbore.protocol._events}), and the handlers that turn each received
frame into events (one handler per frame type, dispatched by a dict), with
L{decode_batch} and DATA read in place (every call between modules costs
on every request, see C{bench/trace.py}).  What a request never meets
(protocol errors, RESET, GOAWAY, frames in the wrong direction) is in
L{netbore.protocol.session}.

L{Receiving} is a base class of L{Session}, not used alone: it reads and
writes the session state that L{Session.__init__} sets up.  Import the
events from L{netbore.protocol.session} or L{netbore.protocol}.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._events import BytesOpened, GoAwayReceived, StreamReset, WindowOpened
from ._frames import (
    BAD_TARGET,
    BAD_TEXT,
    BAD_TOKEN,
    FLAG_END_STREAM,
    HEADER,
    HEADER_SIZE,
    MAX_HEAD_PAYLOAD,
    U16,
    U32,
    End,
    FrameType,
    decode,
)
from ._streams import CLOSED_STREAMS_REMEMBERED, IGNORE, STRICT, StreamState
from .errors import ErrorCode, ProtocolError
from .handshake import Settings

__all__ = [
    "CLOSED_STREAMS_REMEMBERED",
    "BytesOpened",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "RequestReceived",
    "ResponseReceived",
    "StreamEnded",
    "StreamReset",
    "WindowOpened",
]

_BATCH_TYPE = bytes([FrameType.BATCH])
_DATA_TYPE = bytes([FrameType.DATA])
_REQUEST_HEAD_TYPE = bytes([FrameType.REQUEST_HEAD])
_RESPONSE_HEAD_TYPE = bytes([FrameType.RESPONSE_HEAD])
_HEAD_MAX = HEADER_SIZE + MAX_HEAD_PAYLOAD
_unpack_u16 = U16.unpack_from
_bad_token = BAD_TOKEN.search
_bad_target = BAD_TARGET.search
_bad_text = BAD_TEXT.search
_unpack_header = HEADER.unpack_from  # (see _encode's note on CPython 3.11)
_pack_header = HEADER.pack

HeaderList = list[tuple[bytes, bytes]]


# --------------------------------------------------------------------------
# Events (those of an exchange; the others are in netbore.protocol._events)


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


Event = (
    RequestReceived
    | ResponseReceived
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowOpened
    | GoAwayReceived
    | BytesOpened
)


class Receiving:
    """
    Receiving frames: L{receive} and one handler per frame type.
    """

    # Set up by Session.__init__.
    role: str
    local: Settings
    peer: Settings
    _edge: bool
    _streams: dict[int, StreamState]
    _closed: OrderedDict[int, bool]
    outbox: list[bytes]
    _highest: int
    _send_window: int
    _recv_window: int
    _session_pending: int
    _session_threshold: int
    _go_away_sent: bool
    _go_away_last: int
    _go_away_received: bool
    _peer_last_stream_id: int
    _error: ProtocolError | None
    _upgrading: set[int]  # (edge: BYTES_OPEN upgrades not answered yet; agent: not yet accepted)
    _handlers: dict[type, Callable[[Any], list[Event]]]

    if TYPE_CHECKING:

        def _credit_session(self, n: int) -> None: ...

        def _fail(self, error: ProtocolError) -> None: ...

        def _not_live(self, stream_id: int, what: str) -> None: ...

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
                return self._frame(message)
            if not self.local.batch:
                raise ProtocolError("BATCH frame, but this side did not announce batch")
            events: list[Event] = []
            for inner in decode_batch(message):
                events += self._frame(inner)
            return events
        except ProtocolError as e:
            self._fail(e)
            raise

    def _frame(self, message: bytes) -> list[Event]:
        # DATA, and a head as this side receives it, are read here (no call
        # into _frames, no frame object): DATA with decode's checks, inline;
        # a head when it is well-formed (else decode says what is wrong).
        # The other frames are decoded by decode and handled by type.
        kind = message[:1]
        if kind == _DATA_TYPE and len(message) >= HEADER_SIZE:
            ftype, flags, stream_id = _unpack_header(message)
            if flags & ~FLAG_END_STREAM:
                raise ProtocolError(f"DATA frame with flags 0x{flags:02x}")
            if stream_id == 0:
                raise ProtocolError("DATA frame on stream 0")
            return self._on_data(stream_id, bytes(message[HEADER_SIZE:]), bool(flags))
        if type(message) is bytes and HEADER_SIZE + 4 <= len(message) <= _HEAD_MAX:
            try:
                if kind == _RESPONSE_HEAD_TYPE and self._edge:
                    ftype, flags, stream_id = _unpack_header(message)
                    (status,) = _unpack_u16(message, HEADER_SIZE)
                    reason, offset = _field(message, HEADER_SIZE + 2)
                    headers = _header_block(message, offset)
                    if stream_id and not flags & ~FLAG_END_STREAM and 100 <= status <= 999 and headers is not None:
                        if not _bad_text(reason):
                            return self._on_response_head(stream_id, status, reason, headers, bool(flags))
                elif kind == _REQUEST_HEAD_TYPE and not self._edge:
                    ftype, flags, stream_id = _unpack_header(message)
                    method, offset = _field(message, HEADER_SIZE)
                    target, offset = _field(message, offset)
                    headers = _header_block(message, offset)
                    if stream_id and not flags & ~FLAG_END_STREAM and method and target and headers is not None:
                        if not _bad_token(method) and not _bad_target(target):
                            return self._on_request_head(stream_id, method, target, headers, bool(flags))
            except struct.error:
                pass  # (truncated: decode says so)
        frame = decode(message)
        return self._handlers[type(frame)](frame)

    def _remember(self, stream_id: int, ignore: bool) -> None:
        closed = self._closed
        closed[stream_id] = ignore
        if len(closed) > CLOSED_STREAMS_REMEMBERED:
            closed.popitem(last=False)

    def _receiving(self, stream_id: int, what: str) -> StreamState | None:
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
            raise ProtocolError(f"{what} on stream {stream_id} after its end", ErrorCode.STREAM_CLOSED)
        return stream

    def _on_request_head(
        self, stream_id: int, method: bytes, target: bytes, headers: HeaderList, end_stream: bool
    ) -> list[Event]:
        if stream_id <= self._highest:
            raise ProtocolError(f"REQUEST_HEAD on stream {stream_id}, not above the last one ({self._highest})")
        self._highest = stream_id
        if self._go_away_sent:
            # Refused: the edge learns it from our GOAWAY's last stream id.
            self._remember(stream_id, IGNORE)
            return []
        stream = StreamState()
        stream.send_window = self.peer.stream_window
        stream.recv_window = self.local.stream_window
        stream.unacked = stream.pending = 0
        stream.local_head = stream.local_closed = False
        stream.remote_head = True
        stream.remote_closed = end_stream
        self._streams[stream_id] = stream
        return [RequestReceived(stream_id, method, target, headers, end_stream)]

    def _on_response_head(
        self, stream_id: int, status: int, reason: bytes, headers: HeaderList, end_stream: bool
    ) -> list[Event]:
        stream = self._receiving(stream_id, "RESPONSE_HEAD")
        if stream is None:
            return []
        if stream.remote_head:
            raise ProtocolError(f"a second final RESPONSE_HEAD on stream {stream_id}")
        if status >= 200:
            stream.remote_head = True
        elif end_stream:
            raise ProtocolError(f"informational head ending stream {stream_id}")
        elif status == 101 and stream_id in self._upgrading:
            # The agent took the upgrade: the stream carries bytes both ways
            # from now on (see netbore.protocol.bytestreams).
            self._upgrading.discard(stream_id)
            stream.remote_head = True
            stream.local_closed = False
        if end_stream:
            stream.remote_closed = True
            if stream.local_closed:
                del self._streams[stream_id]
                self._remember(stream_id, STRICT)
        return [ResponseReceived(stream_id, status, reason, headers, end_stream)]

    def _on_data(self, stream_id: int, data: bytes, end_stream: bool) -> list[Event]:
        size = len(data)
        if size > self.local.max_frame_payload:
            raise ProtocolError(
                f"DATA of {size} bytes, more than max_frame_payload {self.local.max_frame_payload}",
                ErrorCode.FRAME_TOO_LARGE,
            )
        self._recv_window -= size
        if self._recv_window < 0:
            raise ProtocolError("DATA beyond the session receive window", ErrorCode.FLOW_CONTROL_ERROR)
        stream = self._streams.get(stream_id)
        if stream is None:
            self._not_live(stream_id, "DATA")
            if size:
                self._credit_session(size)
            return []
        if stream.remote_closed:
            raise ProtocolError(f"DATA on stream {stream_id} after its end", ErrorCode.STREAM_CLOSED)
        if not stream.remote_head:
            raise ProtocolError(f"DATA before the response head on stream {stream_id}")
        stream.recv_window -= size
        if stream.recv_window < 0:
            raise ProtocolError(
                f"DATA beyond the receive window of stream {stream_id}",
                ErrorCode.FLOW_CONTROL_ERROR,
            )
        stream.unacked += size
        # The stream holds them under its own window: the session's credit goes back now (inline).
        pending = self._session_pending + size
        if pending >= self._session_threshold:
            self._recv_window += pending
            self._session_pending = 0
            self.outbox.append(_pack_header(FrameType.WINDOW_UPDATE, 0, 0) + U32.pack(pending))
        else:
            self._session_pending = pending
        if end_stream:
            stream.remote_closed = True
            if stream.local_closed:
                del self._streams[stream_id]
                self._remember(stream_id, STRICT)
        elif not size:
            return []
        return [DataReceived(stream_id, data, end_stream)]

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
            self._remember(stream_id, STRICT)
        return [StreamEnded(stream_id)]


def _field(message: bytes, offset: int) -> tuple[bytes, int]:
    # A u16-length field; past the end, the offset says so (see _header_block).
    (length,) = _unpack_u16(message, offset)
    offset += 2
    return message[offset : offset + length], offset + length


def _header_block(message: bytes, offset: int) -> HeaderList | None:
    """
    The header block ending a head frame, when it is well-formed and the
    wire allows its fields; else L{None} (L{decode} then says what is
    wrong).  Truncated: C{struct.error}.
    """
    (count,) = _unpack_u16(message, offset)
    offset += 2
    headers: HeaderList = []
    append = headers.append
    for _ in range(count):
        name, offset = _field(message, offset)
        value, offset = _field(message, offset)
        append((name, value))
    if offset != len(message):
        return None
    names = [h[0] for h in headers]
    if not all(names) or _bad_token(b"".join(names)) or _bad_text(b"".join([h[1] for h in headers])):
        return None
    return headers


def decode_batch(message: bytes | bytearray | memoryview) -> list[bytes]:
    """
    The frames in a BATCH message (not yet decoded).

    @raise ProtocolError: flags or a stream id set, an empty batch, a
        length running past the end, a frame shorter than a header, or a
        BATCH inside a BATCH.
    """
    if type(message) is not bytes:
        message = bytes(message)
    size = len(message)
    if size < HEADER_SIZE:
        raise ProtocolError(f"frame shorter than its {HEADER_SIZE}-byte header")
    ftype, flags, stream_id = _unpack_header(message)
    if ftype != FrameType.BATCH:
        raise ProtocolError(f"expected a BATCH frame, not type {ftype}")
    if flags:
        raise ProtocolError(f"BATCH frame with flags 0x{flags:02x}")
    if stream_id:
        raise ProtocolError(f"BATCH frame on stream {stream_id}")
    frames = []
    offset = HEADER_SIZE
    unpack = U32.unpack_from
    while offset < size:
        if offset + 4 > size:
            raise ProtocolError("truncated BATCH frame")
        (length,) = unpack(message, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise ProtocolError("truncated BATCH frame")
        if length < HEADER_SIZE:
            raise ProtocolError("frame in a BATCH shorter than its header")
        if message[offset] == FrameType.BATCH:
            raise ProtocolError("BATCH frame inside a BATCH")
        frames.append(message[offset:end])
        offset = end
    if not frames:
        raise ProtocolError("empty BATCH frame")
    return frames
