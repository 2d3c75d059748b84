"""
Encoding: frames into the bytes of one binary WebSocket message.

L{encode} takes any frame object and raises L{ValueError} for values the
wire cannot carry.  The session's hot path skips the frame objects:
L{encode_request_head}, L{encode_response_head} and L{encode_data} take
the fields themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

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

__all__ = ["encode", "encode_data", "encode_request_head", "encode_response_head"]

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
