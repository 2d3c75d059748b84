"""
The frame codec: one binary WebSocket message is one frame, or a BATCH
of small frames (when the peer announced C{"batch": true} in its hello).

Every frame starts with a six-byte header, C{struct} format C{"!BBI"}::

    offset 0  u8   type       (L{FrameType})
    offset 1  u8   flags      (L{FLAG_END_STREAM} or 0)
    offset 2  u32  stream id  (big-endian; 0 = the session)
    offset 6  ...  payload    (its length is the message's length - 6)

The payload layouts are in C{docs/protocol.rst}; in short, all integers are
big-endian, a I{field} is a u16 length then that many bytes, and a I{header
block} is a u16 count then, per header, a name field and a value field.

L{decode} raises only L{ProtocolError}, whatever the bytes.  L{encode}
raises L{ValueError} for values the wire cannot carry.

The codec is split by what each part holds: the frame classes, limits and
L{decode} in C{_frames}, L{encode} in C{_encode}, BATCH in C{_batch}, the
encoder of BYTES_OPEN (a byte stream's opening) in C{bytestreams}.  This
module gathers their public names.
"""

from ._batch import BATCH_FRAME_MAX, BATCH_MAX, decode_batch, encode_batch
from ._encode import encode, encode_data, encode_request_head, encode_response_head
from ._frames import (
    FLAG_END_STREAM,
    HEADER,
    HEADER_SIZE,
    MAX_HEAD_PAYLOAD,
    MAX_MESSAGE,
    MAX_STREAM_ID,
    MAX_WINDOW,
    OPEN_RAW,
    OPEN_UPGRADE,
    BytesOpen,
    Data,
    End,
    Frame,
    FrameType,
    GoAway,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
    decode,
    max_message_size,
)
from .bytestreams import encode_bytes_open
from .errors import ErrorCode, ProtocolError

__all__ = [
    "BATCH_FRAME_MAX",
    "BATCH_MAX",
    "FLAG_END_STREAM",
    "HEADER",
    "HEADER_SIZE",
    "MAX_HEAD_PAYLOAD",
    "MAX_MESSAGE",
    "MAX_STREAM_ID",
    "MAX_WINDOW",
    "OPEN_RAW",
    "OPEN_UPGRADE",
    "BytesOpen",
    "Data",
    "End",
    "ErrorCode",
    "Frame",
    "FrameType",
    "GoAway",
    "ProtocolError",
    "RequestHead",
    "Reset",
    "ResponseHead",
    "WindowUpdate",
    "decode",
    "decode_batch",
    "encode",
    "encode_batch",
    "encode_bytes_open",
    "encode_data",
    "encode_request_head",
    "encode_response_head",
    "max_message_size",
]
