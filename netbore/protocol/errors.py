"""
Error codes and exceptions of the tunnel protocol.

Two families, never mixed:

  - L{ProtocolError}: the I{peer} broke the protocol (or sent bytes that are
    not the protocol).  Raised by L{decode}, L{decode_hello} and
    L{Session.receive}.  The session is dead: the shell flushes
    L{Session.data_to_send} (which then holds a C{GOAWAY} carrying the
    error) and closes the WebSocket with L{websocket_close_code}.

  - L{StreamError} (a L{ValueError}) and its subclasses: I{this} side used
    the API wrongly (sending on a closed stream, beyond the send window,
    the wrong role's frame, an unencodable header).  Nothing was queued;
    the session is unharmed.
"""

from __future__ import annotations

import enum

__all__ = [
    "CLOSE_NORMAL",
    "CLOSE_TUNNEL_DELETED",
    "ByteStreamsNotSupported",
    "ErrorCode",
    "FlowControlError",
    "ProtocolError",
    "StreamClosedError",
    "StreamError",
    "UnsupportedVersion",
    "websocket_close_code",
]


class ErrorCode(enum.IntEnum):
    """
    Reasons carried by C{RESET} and C{GOAWAY} frames and by L{ProtocolError}.

    A received code this side does not know is kept as a plain L{int} and
    treated like L{INTERNAL_ERROR}.
    """

    NO_ERROR = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2
    FLOW_CONTROL_ERROR = 3
    STREAM_CLOSED = 4
    FRAME_TOO_LARGE = 5
    REFUSED_STREAM = 6
    CANCEL = 7
    ORIGIN_UNREACHABLE = 8
    ORIGIN_RESET = 9
    TIMEOUT = 10


class ProtocolError(Exception):
    """
    The peer violated the protocol; the whole session must be closed.

    @ivar code: the L{ErrorCode} to report to the peer (C{GOAWAY}) and to
        close the WebSocket with (L{websocket_close_code}).
    @ivar message: text for logs and for the peer.
    """

    def __init__(self, message: str = "", code: ErrorCode = ErrorCode.PROTOCOL_ERROR) -> None:
        super().__init__(message, code)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class UnsupportedVersion(ProtocolError):
    """
    The peer's hello named a protocol version this side does not speak.

    @ivar version: the version the peer asked for.
    @ivar supported: the versions this side speaks.
    """

    def __init__(self, version: object, supported: tuple[int, ...]) -> None:
        names = ", ".join(str(v) for v in supported)
        super().__init__(f"unsupported protocol version {version!r}; supported versions: {names}")
        self.version = version
        self.supported = supported


class StreamError(ValueError):
    """
    This side misused the L{Session} API (a local bug, never the peer's
    fault).  Nothing was queued and the session is unharmed.
    """


class StreamClosedError(StreamError):
    """
    The stream is unknown, reset or already ended in the sending direction,
    or the session no longer accepts new streams (go-away, protocol error).
    """


class ByteStreamsNotSupported(StreamError):
    """
    A byte stream was asked for towards a peer whose hello did not announce
    C{"byte_streams": true} (an agent from before byte streams): nothing was
    sent.  The edge refuses the viewer's upgrade or TCP connection instead.
    """


class FlowControlError(StreamError):
    """
    More data was offered to L{Session.send_data} than
    L{Session.send_window} allows; wait for a L{WindowOpened} event.
    """


#: WebSocket close codes.  autobahn lets applications send only 1000 and
#: 3000-4999: protocol errors close with 4000 + the protocol's error code
#: (L{websocket_close_code}), a deleted tunnel's sessions with 4100.
CLOSE_NORMAL = 1000
CLOSE_TUNNEL_DELETED = 4100


def websocket_close_code(code: int) -> int:
    """
    The WebSocket close code for an L{ErrorCode}: C{1000} (normal closure)
    for L{ErrorCode.NO_ERROR}, else C{4000 + code} (private-use range).
    """
    if code == ErrorCode.NO_ERROR:
        return CLOSE_NORMAL
    return 4000 + min(int(code), 999)
