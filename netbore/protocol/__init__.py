"""
The netbore tunnel wire protocol, sans-IO: bytes in, events out.

No Twisted, no sockets, no clock.  See C{docs/protocol.rst} for the
specification; the shells (C{netbore.edge}, C{netbore.agent}) move WebSocket
messages in and out of a L{Session}, and pump a stream's bytes under its
credit with L{SendQueue} and L{ReceiveCredit}.  Byte streams (TCP
connections, upgraded HTTP connections) are opened with
L{Session.open_byte_stream} and L{Session.open_upgrade}
(L{netbore.protocol.bytestreams}).
"""

from .bytestreams import OPEN_RAW, OPEN_UPGRADE, BytesOpen, encode_bytes_open
from .credit import ReceiveCredit, SendQueue
from .errors import (
    ByteStreamsNotSupported,
    ErrorCode,
    FlowControlError,
    ProtocolError,
    StreamClosedError,
    StreamError,
    UnsupportedVersion,
    websocket_close_code,
)
from .frames import (
    FLAG_END_STREAM,
    MAX_HEAD_PAYLOAD,
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
    decode_batch,
    encode,
    encode_batch,
    max_message_size,
)
from .handshake import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    SUPPORTED_VERSIONS,
    Hello,
    Settings,
    clamp_peer,
    decode_hello,
    encode_hello,
)
from .session import (
    BytesOpened,
    DataReceived,
    Event,
    GoAwayReceived,
    RequestReceived,
    ResponseReceived,
    Session,
    StreamEnded,
    StreamReset,
    WindowOpened,
)

__all__ = [
    "FLAG_END_STREAM",
    "MAX_HEAD_PAYLOAD",
    "OPEN_RAW",
    "OPEN_UPGRADE",
    "PROTOCOL_VERSION",
    "SUBPROTOCOL",
    "SUPPORTED_VERSIONS",
    "ByteStreamsNotSupported",
    "BytesOpen",
    "BytesOpened",
    "Data",
    "DataReceived",
    "End",
    "ErrorCode",
    "Event",
    "FlowControlError",
    "Frame",
    "FrameType",
    "GoAway",
    "GoAwayReceived",
    "Hello",
    "ProtocolError",
    "ReceiveCredit",
    "RequestHead",
    "RequestReceived",
    "Reset",
    "ResponseHead",
    "ResponseReceived",
    "SendQueue",
    "Session",
    "Settings",
    "StreamClosedError",
    "StreamEnded",
    "StreamError",
    "StreamReset",
    "UnsupportedVersion",
    "WindowOpened",
    "WindowUpdate",
    "clamp_peer",
    "decode",
    "decode_batch",
    "decode_hello",
    "encode",
    "encode_batch",
    "encode_bytes_open",
    "encode_hello",
    "max_message_size",
    "websocket_close_code",
]
