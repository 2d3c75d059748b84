"""
Encoding: frames into the bytes of one binary WebSocket message, and the
session's sending half (L{Sending}).  L{encode} takes any frame object
(L{ValueError}: values the wire cannot carry); the hot path's encoders
(L{encode_request_head}, L{encode_response_head}, L{encode_data}) take the
fields themselves.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable

from ._batch import data_to_send
from ._frames import (
    BAD_TARGET,
    BAD_TEXT,
    BAD_TOKEN,
    FLAG_END_STREAM,
    HEADER,
    MAX_HEAD_PAYLOAD,
    MAX_MESSAGE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    U16,
    U16_MAX,
    U32,
    U32U32,
    Data,
    End,
    Frame,
    FrameType,
    GoAway,
    Headers,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
    bad_header,
)
from ._streams import CLOSED_STREAMS_REMEMBERED, STRICT, StreamState
from .errors import FlowControlError, ProtocolError, StreamClosedError, StreamError
from .handshake import Settings

__all__ = ["Sending", "encode", "encode_data", "encode_request_head", "encode_response_head"]

# CPython 3.11 compiles a method call on a name bound by an import
# (HEADER.pack, BAD_TOKEN.search) to an attribute load that builds a bound
# method on every call, about 30 ns each.  The encoders call these
# module-level bound methods instead.
_pack_header = HEADER.pack
_pack_u16 = U16.pack
_pack_u32 = U32.pack
_pack_u32u32 = U32U32.pack
_bad_token = BAD_TOKEN.search
_bad_target = BAD_TARGET.search
_bad_text = BAD_TEXT.search


def _field(value: bytes, what: str) -> bytes:
    if len(value) > U16_MAX:
        raise ValueError(f"{what} is longer than {U16_MAX} bytes")
    return _pack_u16(len(value)) + value


def _header_block(headers: Headers, parts: list[bytes]) -> None:
    if len(headers) > U16_MAX:
        raise ValueError(f"more than {U16_MAX} headers")
    names = [h[0] for h in headers]
    if not all(names) or _bad_token(b"".join(names)) or _bad_text(b"".join([h[1] for h in headers])):
        # (bad_header's quick test, inline: it runs for every head sent and
        # a call into _frames would cost a module crossing per request;
        # bad_header itself names the culprit.)
        bad = bad_header(headers)
        if bad is not None:
            bad_name, name = bad
            raise ValueError(f"invalid header name {name!r}" if bad_name else f"invalid value for header {name!r}")
    pack = _pack_u16
    parts.append(pack(len(headers)))
    try:
        for name, value in headers:
            parts += (pack(len(name)), name, pack(len(value)), value)
    except struct.error:
        # A field longer than a u16 can say: name it.
        for name, value in headers:
            _field(name, "a header name")
            _field(value, "a header value")
        raise


def _check_stream_id(stream_id: int) -> None:
    if not 0 < stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream id {stream_id} out of range 1..{MAX_STREAM_ID}")


def _head(ftype: int, stream_id: int, end_stream: bool, parts: list[bytes]) -> bytes:
    payload = b"".join(parts)
    if len(payload) > MAX_HEAD_PAYLOAD:
        raise ValueError(f"head larger than {MAX_HEAD_PAYLOAD} bytes")
    return _pack_header(ftype, FLAG_END_STREAM if end_stream else 0, stream_id) + payload


def encode_request_head(
    stream_id: int, method: bytes, target: bytes, headers: Headers, end_stream: bool = False
) -> bytes:
    """
    Encode one REQUEST_HEAD frame without building a L{RequestHead}.

    @raise ValueError: as L{encode}.
    """
    _check_stream_id(stream_id)
    if not method or _bad_token(method):
        raise ValueError(f"invalid method {method!r}")
    if not target or _bad_target(target):
        raise ValueError(f"invalid request target {target!r}")
    parts = [_field(method, "the method"), _field(target, "the target")]
    _header_block(headers, parts)
    return _head(FrameType.REQUEST_HEAD, stream_id, end_stream, parts)


def encode_response_head(
    stream_id: int, status: int, reason: bytes, headers: Headers, end_stream: bool = False
) -> bytes:
    """
    Encode one RESPONSE_HEAD frame without building a L{ResponseHead}.

    @raise ValueError: as L{encode}.
    """
    _check_stream_id(stream_id)
    if not 100 <= status <= 999:
        raise ValueError(f"status {status} out of range 100..999")
    if _bad_text(reason):
        raise ValueError(f"invalid reason phrase {reason!r}")
    parts = [_pack_u16(status), _field(reason, "the reason phrase")]
    _header_block(headers, parts)
    return _head(FrameType.RESPONSE_HEAD, stream_id, end_stream, parts)


def _encode_request_head(frame: RequestHead) -> bytes:
    return encode_request_head(frame.stream_id, frame.method, frame.target, frame.headers, frame.end_stream)


def _encode_response_head(frame: ResponseHead) -> bytes:
    return encode_response_head(frame.stream_id, frame.status, frame.reason, frame.headers, frame.end_stream)


def encode_data(stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False) -> bytes:
    """
    Encode one DATA frame without building a L{Data}: the header and the
    payload are concatenated once.  C{data} may be any bytes-like object
    (a C{memoryview} slice avoids an intermediate copy).
    """
    return _pack_header(FrameType.DATA, FLAG_END_STREAM if end_stream else 0, stream_id) + data


def _encode_data(frame: Data) -> bytes:
    _check_stream_id(frame.stream_id)
    return encode_data(frame.stream_id, frame.data, frame.end_stream)


def _encode_end(frame: End) -> bytes:
    _check_stream_id(frame.stream_id)
    return _pack_header(FrameType.END, 0, frame.stream_id)


def _check_message(code: int, message: bytes) -> None:
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"error code {code} out of range")
    if len(message) > MAX_MESSAGE:
        raise ValueError(f"message longer than {MAX_MESSAGE} bytes")


def _encode_reset(frame: Reset) -> bytes:
    _check_stream_id(frame.stream_id)
    _check_message(frame.code, frame.message)
    return _pack_header(FrameType.RESET, 0, frame.stream_id) + _pack_u32(frame.code) + frame.message


def _encode_window_update(frame: WindowUpdate) -> bytes:
    if not 0 <= frame.stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream id {frame.stream_id} out of range")
    if not 1 <= frame.increment <= MAX_WINDOW:
        raise ValueError(f"window increment {frame.increment} out of range")
    return _pack_header(FrameType.WINDOW_UPDATE, 0, frame.stream_id) + _pack_u32(frame.increment)


def _encode_go_away(frame: GoAway) -> bytes:
    if not 0 <= frame.last_stream_id <= MAX_STREAM_ID:
        raise ValueError(f"last stream id {frame.last_stream_id} out of range")
    _check_message(frame.code, frame.message)
    return _pack_header(FrameType.GOAWAY, 0, 0) + _pack_u32u32(frame.last_stream_id, frame.code) + frame.message


_ENCODERS: dict[type, Callable[..., bytes]] = {
    RequestHead: _encode_request_head,
    ResponseHead: _encode_response_head,
    Data: _encode_data,
    End: _encode_end,
    Reset: _encode_reset,
    WindowUpdate: _encode_window_update,
    GoAway: _encode_go_away,
}


def encode(frame: Frame) -> bytes:
    """
    One frame as the bytes of one binary WebSocket message.

    @raise ValueError: a value the wire cannot carry (a stream id, status,
        increment or length out of range; a method, target, header name or
        value with forbidden characters).
    """
    try:
        encoder = _ENCODERS[type(frame)]
    except KeyError:
        raise TypeError(f"not a frame: {frame!r}") from None
    return encoder(frame)


class Sending:
    """
    The sending half of L{netbore.protocol.session.Session}: heads, DATA,
    END and the queue of messages (L{data_to_send}), here beside the
    encoders they call (each call between modules costs on every request,
    see C{bench/trace.py}).  A base class of L{Session}, not used alone: it
    reads and writes the state L{Session.__init__} sets up.

    @ivar outbox: the frames queued since the last L{data_to_send} (read
        it, never change it: a shell may look whether there is anything to
        send without a call).
    """

    # Set up by Session.__init__.
    local: Settings
    peer: Settings
    outbox: list[bytes]
    _edge: bool
    _streams: dict[int, StreamState]
    _closed: OrderedDict[int, bool]
    _highest: int
    _send_window: int
    _session_blocked: dict[int, None]
    _wait_for_session: Callable[[int], None]  # (Session's)
    _upgrading: set[int]
    _accept_upgrade: Callable[[int, StreamState], None]  # (ByteStreams', netbore.protocol.bytestreams)
    _go_away_sent: bool
    _go_away_received: bool
    _error: ProtocolError | None

    #: (defined with BATCH packing, in netbore.protocol._batch: one call fewer per flush)
    data_to_send = data_to_send

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
            # (Receiving._remember, inline)
            closed = self._closed
            closed[stream_id] = STRICT
            if len(closed) > CLOSED_STREAMS_REMEMBERED:
                closed.popitem(last=False)

    def _next_stream_id(self) -> int:
        """(edge) The id of a new stream; raises as L{send_request_head}."""
        if not self._edge:
            raise StreamError("only the edge opens streams")
        if self._error is not None:
            raise StreamClosedError("the session failed")
        if self._go_away_received or self._go_away_sent:
            raise StreamClosedError("the session is going away: no new streams")
        stream_id = self._highest + 1
        if stream_id > MAX_STREAM_ID:
            raise StreamClosedError("stream ids used up: open a new session")
        return stream_id

    def send_request_head(
        self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]], end_stream: bool = False
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
        stream_id = self._next_stream_id()
        try:
            message = encode_request_head(stream_id, method, target, list(headers), end_stream)
        except ValueError as e:
            raise StreamError(str(e)) from None
        self._highest = stream_id
        stream = StreamState()
        stream.send_window = self.peer.stream_window
        stream.recv_window = self.local.stream_window
        stream.unacked = stream.pending = 0
        stream.local_head = True
        stream.remote_head = stream.remote_closed = False
        stream.local_closed = end_stream
        self._streams[stream_id] = stream
        self.outbox.append(message)
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
        self.outbox.append(message)
        stream.local_head = final
        if status == 101 and stream_id in self._upgrading:
            self._accept_upgrade(stream_id, stream)
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
                # (encode_data, inline: once per DATA frame)
                self.outbox.append(_pack_header(FrameType.DATA, FLAG_END_STREAM if end_stream else 0, stream_id) + data)
            else:
                view = memoryview(data)
                last = size - limit
                append = self.outbox.append
                for offset in range(0, size, limit):
                    append(
                        encode_data(
                            stream_id,
                            view[offset : offset + limit],
                            end_stream and offset >= last,
                        )
                    )
        elif end_stream:
            self.outbox.append(_pack_header(FrameType.END, 0, stream_id))
        if end_stream:
            self._close_local(stream_id, stream)

    def send_some(self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False) -> int:
        """
        L{send_data} of what the send window takes of C{data} (nothing when
        it is shut, or the stream is not open); the stream's body ends with
        it if C{end_stream} and all of C{data} was taken.  Empty C{data}
        with C{end_stream} ends the body.

        @return: how many bytes were taken.
        @raise StreamClosedError: as L{send_data}, for empty C{data}.
        @raise StreamError: as L{send_data}.
        """
        n = len(data)
        if n:
            stream = self._streams.get(stream_id)
            if stream is None or stream.local_closed:
                return 0
            window = stream.send_window
            session = self._send_window
            if session < window:
                if session < n:
                    # Short because of the session: woken by its next update.
                    self._wait_for_session(stream_id)
                window = session
            if window < n:
                if window <= 0:
                    return 0
                data = data[:window]
                n = window
                end_stream = False
        self.send_data(stream_id, data, end_stream)
        return n

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
        self.outbox.append(_pack_header(FrameType.END, 0, stream_id))
        self._close_local(stream_id, stream)
