"""
What a frame is, and how one message is read into one: the frame types,
flags, header layout and limits, the frozen frame classes, the characters a
head may hold, and L{decode}.

Decoding lives beside the classes it builds (a decoded frame is made where
it is defined); encoding is in L{netbore.protocol._encode} and BATCH in
L{netbore.protocol._batch}.  Import all of them from
L{netbore.protocol.frames} or L{netbore.protocol}.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable

import attrs

from .errors import ErrorCode, ProtocolError

__all__ = [
    "BAD_TARGET",
    "BAD_TEXT",
    "BAD_TOKEN",
    "FLAG_END_STREAM",
    "HEADER",
    "HEADER_SIZE",
    "MAX_HEAD_PAYLOAD",
    "MAX_MESSAGE",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "OPEN_RAW",
    "OPEN_UPGRADE",
    "U16",
    "U16_MAX",
    "U32",
    "U32U32",
    "BytesOpen",
    "Data",
    "End",
    "Frame",
    "FrameType",
    "GoAway",
    "Headers",
    "RequestHead",
    "Reset",
    "ResponseHead",
    "WindowUpdate",
    "bad_header",
    "decode",
    "max_message_size",
]


class FrameType(enum.IntEnum):
    REQUEST_HEAD = 1  # edge -> agent
    RESPONSE_HEAD = 2  # agent -> edge
    DATA = 3
    END = 4
    RESET = 5
    WINDOW_UPDATE = 6
    GOAWAY = 7
    BATCH = 8  # several frames in one message; see encode_batch
    BYTES_OPEN = 9  # edge -> agent: opens a byte stream (see netbore.protocol.bytestreams)


#: Allowed on REQUEST_HEAD, RESPONSE_HEAD and DATA: the sender's body ends
#: with this frame.  Every other flag bit, and this bit on other frames,
#: must be zero.
FLAG_END_STREAM = 0x1

HEADER = struct.Struct("!BBI")
HEADER_SIZE = HEADER.size  # 6

#: Largest stream id and largest window (and window increment).
MAX_STREAM_ID = 2**32 - 1
MAX_WINDOW = 2**31 - 1

#: Largest payload of a REQUEST_HEAD or RESPONSE_HEAD (independent of the
#: negotiated max_frame_payload, which bounds DATA only).
MAX_HEAD_PAYLOAD = 256 * 1024

#: Largest message text of RESET and GOAWAY that L{encode} accepts.
MAX_MESSAGE = 4096

U16 = struct.Struct("!H")
U32 = struct.Struct("!I")
U32U32 = struct.Struct("!II")
U16_MAX = 0xFFFF

# Characters that may not appear in a method or header name (token-ish:
# no controls that break HTTP/1.1 framing, no whitespace, no colon) ...
BAD_TOKEN = re.compile(rb"[\x00\t\n\r :]")
# ... in a request target (no whitespace, it sits in the request line) ...
BAD_TARGET = re.compile(rb"[\x00\t\n\r ]")
# ... and in a header value or reason phrase.
BAD_TEXT = re.compile(rb"[\x00\n\r]")

Headers = list[tuple[bytes, bytes]]


@attrs.frozen
class RequestHead:
    """
    Edge to agent: opens stream C{stream_id} with a viewer's request line and
    headers.  C{end_stream}: the request has no body.
    """

    stream_id: int
    method: bytes
    target: bytes
    headers: Headers
    end_stream: bool = False


@attrs.frozen
class ResponseHead:
    """
    Agent to edge: the origin's status line and headers for C{stream_id}.
    A 1xx status is informational: a further ResponseHead follows.
    """

    stream_id: int
    status: int
    reason: bytes
    headers: Headers
    end_stream: bool = False


@attrs.frozen
class Data:
    """
    A chunk of the sender's body on C{stream_id}; flow controlled.
    """

    stream_id: int
    data: bytes
    end_stream: bool = False


@attrs.frozen
class End:
    """
    The sender's body on C{stream_id} ends (no more DATA from it).
    """

    stream_id: int


@attrs.frozen
class Reset:
    """
    Abort C{stream_id} in both directions with an L{ErrorCode}.
    """

    stream_id: int
    code: int
    message: bytes = b""


@attrs.frozen
class WindowUpdate:
    """
    The receiver can take C{increment} more DATA bytes on C{stream_id}
    (0: on the whole session).
    """

    stream_id: int
    increment: int


@attrs.frozen
class GoAway:
    """
    The sender opens or accepts no new streams; streams up to
    C{last_stream_id} (that the sender received from its peer) go on.
    """

    last_stream_id: int
    code: int
    message: bytes = b""


#: The modes of a BYTES_OPEN: a byte stream at once (a TCP connection), or
#: an HTTP request without a body that becomes one if answered with 101.
OPEN_RAW = 0
OPEN_UPGRADE = 1


@attrs.frozen
class BytesOpen:
    """
    Edge to agent: opens C{stream_id} as a byte stream; sent only to a peer
    that announced C{byte_streams}.  L{OPEN_RAW}: bytes flow both ways at
    once; C{headers} are metadata (e.g. C{peer}), C{method} and C{target}
    are empty.  L{OPEN_UPGRADE}: an HTTP request head without a body; the
    stream carries bytes once the agent answers C{101}, else it is an
    ordinary exchange whose request has ended.
    """

    stream_id: int
    mode: int
    headers: Headers
    method: bytes = b""
    target: bytes = b""


Frame = RequestHead | ResponseHead | Data | End | Reset | WindowUpdate | GoAway | BytesOpen


def max_message_size(max_frame_payload: int) -> int:
    """
    The largest binary WebSocket message a side must accept when it
    announced C{max_frame_payload}: a full DATA frame or the largest head.
    Give it to autobahn as C{maxMessagePayloadSize} (and
    C{maxFramePayloadSize}); the hello (text) is far smaller.
    """
    return HEADER_SIZE + max(max_frame_payload, MAX_HEAD_PAYLOAD)


def _as_code(code: int) -> int:
    """
    An L{ErrorCode} when C{code} is one, else the plain integer.
    """
    try:
        return ErrorCode(code)
    except ValueError:
        return code


def bad_header(headers: Headers) -> tuple[bool, bytes] | None:
    """
    The first header the wire refuses, as (its name is bad, its name), or
    L{None}.  The hot path is one regex call for all names and one for all
    values; the field-by-field scan runs only to find the culprit.
    """
    names = [h[0] for h in headers]
    if all(names) and not BAD_TOKEN.search(b"".join(names)) and not BAD_TEXT.search(b"".join([h[1] for h in headers])):
        return None
    for name, value in headers:
        if not name or BAD_TOKEN.search(name):
            return True, name
        if BAD_TEXT.search(value):
            return False, name
    return None  # (not reached)


# --------------------------------------------------------------------------
# Decoding
#
# Each decoder gets (flags, stream id, whole message) and reads the payload
# from offset HEADER_SIZE.  They raise ProtocolError; struct.error from a
# truncated payload is turned into one by decode().


def _no_flags(ftype: FrameType, flags: int) -> None:
    if flags:
        raise ProtocolError(f"{ftype.name} frame with flags 0x{flags:02x}")


def _stream_frame(ftype: FrameType, stream_id: int) -> None:
    if stream_id == 0:
        raise ProtocolError(f"{ftype.name} frame on stream 0")


def _end_stream_flag(ftype: FrameType, flags: int) -> bool:
    if flags & ~FLAG_END_STREAM:
        raise ProtocolError(f"{ftype.name} frame with flags 0x{flags:02x}")
    return bool(flags)


def _read_field(message: bytes, offset: int) -> tuple[bytes, int]:
    (length,) = U16.unpack_from(message, offset)
    offset += 2
    end = offset + length
    if end > len(message):
        raise ProtocolError("truncated field")
    return message[offset:end], end


def _read_header_block(message: bytes, offset: int) -> Headers:
    unpack = U16.unpack_from
    (count,) = unpack(message, offset)
    offset += 2
    size = len(message)
    headers: Headers = []
    append = headers.append
    for _ in range(count):
        # (unpack_from past the end raises struct.error: a truncated frame)
        (length,) = unpack(message, offset)
        offset += 2
        name = message[offset : offset + length]
        offset += length
        (length,) = unpack(message, offset)
        offset += 2
        value = message[offset : offset + length]
        offset += length
        append((name, value))
    if offset > size:
        raise ProtocolError("truncated field")
    if offset != size:
        raise ProtocolError("trailing bytes after the header block")
    bad = bad_header(headers)
    if bad is not None:
        bad_name, name = bad
        raise ProtocolError(
            f"invalid header name {name[:64]!r}" if bad_name else f"invalid value for header {name[:64]!r}"
        )
    return headers


def _check_head_size(ftype: FrameType, message: bytes) -> None:
    if len(message) - HEADER_SIZE > MAX_HEAD_PAYLOAD:
        raise ProtocolError(
            f"{ftype.name} larger than {MAX_HEAD_PAYLOAD} bytes",
            ErrorCode.FRAME_TOO_LARGE,
        )


def _decode_request_head(flags: int, stream_id: int, message: bytes) -> RequestHead:
    ftype = FrameType.REQUEST_HEAD
    end_stream = _end_stream_flag(ftype, flags)
    _stream_frame(ftype, stream_id)
    _check_head_size(ftype, message)
    method, offset = _read_field(message, HEADER_SIZE)
    target, offset = _read_field(message, offset)
    if not method or BAD_TOKEN.search(method):
        raise ProtocolError(f"invalid method {method[:64]!r}")
    if not target or BAD_TARGET.search(target):
        raise ProtocolError(f"invalid request target {target[:64]!r}")
    headers = _read_header_block(message, offset)
    return RequestHead(stream_id, method, target, headers, end_stream)


def _decode_response_head(flags: int, stream_id: int, message: bytes) -> ResponseHead:
    ftype = FrameType.RESPONSE_HEAD
    end_stream = _end_stream_flag(ftype, flags)
    _stream_frame(ftype, stream_id)
    _check_head_size(ftype, message)
    (status,) = U16.unpack_from(message, HEADER_SIZE)
    if not 100 <= status <= 999:
        raise ProtocolError(f"status {status} out of range 100..999")
    reason, offset = _read_field(message, HEADER_SIZE + 2)
    if BAD_TEXT.search(reason):
        raise ProtocolError(f"invalid reason phrase {reason[:64]!r}")
    headers = _read_header_block(message, offset)
    return ResponseHead(stream_id, status, reason, headers, end_stream)


def _decode_data(flags: int, stream_id: int, message: bytes) -> Data:
    if flags & ~FLAG_END_STREAM:
        raise ProtocolError(f"DATA frame with flags 0x{flags:02x}")
    if stream_id == 0:
        raise ProtocolError("DATA frame on stream 0")
    return Data(stream_id, message[HEADER_SIZE:], bool(flags))


def _decode_end(flags: int, stream_id: int, message: bytes) -> End:
    _no_flags(FrameType.END, flags)
    _stream_frame(FrameType.END, stream_id)
    if len(message) != HEADER_SIZE:
        raise ProtocolError("END frame with a payload")
    return End(stream_id)


def _decode_reset(flags: int, stream_id: int, message: bytes) -> Reset:
    _no_flags(FrameType.RESET, flags)
    _stream_frame(FrameType.RESET, stream_id)
    (code,) = U32.unpack_from(message, HEADER_SIZE)
    return Reset(stream_id, _as_code(code), message[HEADER_SIZE + 4 :])


def _decode_window_update(flags: int, stream_id: int, message: bytes) -> WindowUpdate:
    _no_flags(FrameType.WINDOW_UPDATE, flags)
    if len(message) != HEADER_SIZE + 4:
        raise ProtocolError("WINDOW_UPDATE payload is not 4 bytes")
    (increment,) = U32.unpack_from(message, HEADER_SIZE)
    if not 1 <= increment <= MAX_WINDOW:
        raise ProtocolError(f"window increment {increment} out of range 1..2^31-1")
    return WindowUpdate(stream_id, increment)


def _decode_go_away(flags: int, stream_id: int, message: bytes) -> GoAway:
    _no_flags(FrameType.GOAWAY, flags)
    if stream_id != 0:
        raise ProtocolError(f"GOAWAY frame on stream {stream_id}")
    last_stream_id, code = U32U32.unpack_from(message, HEADER_SIZE)
    return GoAway(last_stream_id, _as_code(code), message[HEADER_SIZE + 8 :])


def _decode_bytes_open(flags: int, stream_id: int, message: bytes) -> BytesOpen:
    ftype = FrameType.BYTES_OPEN
    _no_flags(ftype, flags)
    _stream_frame(ftype, stream_id)
    _check_head_size(ftype, message)
    if len(message) == HEADER_SIZE:
        raise ProtocolError("truncated BYTES_OPEN frame")
    mode = message[HEADER_SIZE]
    if mode == OPEN_RAW:
        return BytesOpen(stream_id, mode, _read_header_block(message, HEADER_SIZE + 1))
    if mode != OPEN_UPGRADE:
        raise ProtocolError(f"BYTES_OPEN with unknown mode {mode}")
    method, offset = _read_field(message, HEADER_SIZE + 1)
    target, offset = _read_field(message, offset)
    if not method or BAD_TOKEN.search(method):
        raise ProtocolError(f"invalid method {method[:64]!r}")
    if not target or BAD_TARGET.search(target):
        raise ProtocolError(f"invalid request target {target[:64]!r}")
    return BytesOpen(stream_id, mode, _read_header_block(message, offset), method, target)


_DECODERS: dict[int, Callable[[int, int, bytes], Frame]] = {
    FrameType.REQUEST_HEAD: _decode_request_head,
    FrameType.RESPONSE_HEAD: _decode_response_head,
    FrameType.DATA: _decode_data,
    FrameType.END: _decode_end,
    FrameType.RESET: _decode_reset,
    FrameType.WINDOW_UPDATE: _decode_window_update,
    FrameType.GOAWAY: _decode_go_away,
    FrameType.BYTES_OPEN: _decode_bytes_open,
}


def decode(message: bytes | bytearray | memoryview) -> Frame:
    """
    The frame in one binary WebSocket message.

    @raise ProtocolError: for anything that is not exactly one valid frame
        (and for nothing else): short header, unknown type, undefined flags,
        stream id 0 where not allowed, truncated or trailing payload bytes,
        out-of-range values, forbidden characters in heads.  A head larger
        than L{MAX_HEAD_PAYLOAD} gives L{ErrorCode.FRAME_TOO_LARGE}.
    """
    if type(message) is not bytes:
        message = bytes(message)
    if len(message) < HEADER_SIZE:
        raise ProtocolError(f"frame shorter than its {HEADER_SIZE}-byte header")
    ftype, flags, stream_id = HEADER.unpack_from(message)
    try:
        decoder = _DECODERS[ftype]
    except KeyError:
        raise ProtocolError(f"unknown frame type {ftype}") from None
    try:
        return decoder(flags, stream_id, message)
    except struct.error:
        raise ProtocolError(f"truncated {FrameType(ftype).name} frame") from None
