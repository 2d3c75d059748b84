"""
The tunnel WebSocket's options and limits, the same on both ends:
autobahn's protocol options (L{set_tunnel_options}, with the one
message-size formula L{max_message_size}), the close-reason limit
(L{close_reason}), and the capability checks of the batched C{sendData}
(L{send_data_known}) and of the adapter's own binary frames
(L{send_message_known}).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from autobahn.websocket.protocol import WebSocketProtocol

from ..protocol import max_message_size

__all__ = ["MAX_CLOSE_REASON", "close_reason", "send_data_known", "send_message_known", "set_tunnel_options"]

#: A close frame's payload is at most 125 bytes: the code, then the reason.
MAX_CLOSE_REASON = 123

#: The names autobahn's C{sendData} reads (autobahn 24.4 to 26.x).
_SEND_DATA_NAMES = frozenset(
    {
        "STATE_CONNECTING",
        "STATE_OPEN",
        "STATE_PROXY_CONNECTING",
        "WebSocketProtocol",
        "_trigger",
        "append",
        "debug",
        "hltype",
        "hlval",
        "len",
        "log",
        "logOctets",
        "logTxOctets",
        "outgoingOctetsWireLevel",
        "peer",
        "preopenOutgoingOctetsWireLevel",
        "sendData",
        "send_queue",
        "state",
        "trafficStats",
        "transport",
        "write",
    }
)


#: The names autobahn's C{sendMessage} and C{sendFrame} read (autobahn 26.x).
_SEND_MESSAGE_NAMES = frozenset(
    {
        "Disconnected",
        "Exception",
        "PayloadExceededError",
        "STATE_OPEN",
        "WebSocketProtocol",
        "_perMessageCompress",
        "autoFragmentSize",
        "bool",
        "bytes",
        "compress_message_data",
        "end_compress_message",
        "int",
        "join",
        "len",
        "log",
        "maxMessagePayloadSize",
        "outgoingOctetsAppLevel",
        "outgoingOctetsWebSocketLevel",
        "outgoingWebSocketMessages",
        "sendFrame",
        "start_compress_message",
        "state",
        "track",
        "trackedTimings",
        "trafficStats",
        "type",
        "warn",
        "wasMaxMessagePayloadSizeExceeded",
    }
)
_SEND_FRAME_NAMES = frozenset(
    {
        "Exception",
        "FrameHeader",
        "applyMask",
        "create_xor_masker",
        "factory",
        "getrandbits",
        "isServer",
        "join",
        "len",
        "logFrames",
        "logTxFrame",
        "maskClientFrames",
        "maskServerFrames",
        "outgoingWebSocketFrames",
        "pack",
        "process",
        "random",
        "range",
        "sendData",
        "struct",
        "to_bytes",
        "trafficStats",
    }
)


def send_message_known() -> bool:
    """
    Do autobahn's C{sendMessage} and C{sendFrame} read exactly what they
    did when L{TunnelWebSocket}'s own binary frames were written after
    them (so that its frames, and the traffic counts it keeps, are what
    autobahn's would be)?
    """
    message = getattr(WebSocketProtocol.sendMessage, "__code__", None)
    frame = getattr(WebSocketProtocol.sendFrame, "__code__", None)
    return (
        message is not None
        and frame is not None
        and frozenset(message.co_names) == _SEND_MESSAGE_NAMES
        and frozenset(frame.co_names) == _SEND_FRAME_NAMES
    )


def send_data_known() -> bool:
    """
    Does autobahn's C{sendData} read exactly what L{TunnelWebSocket}'s
    batched C{sendData} relies on?
    """
    code = getattr(WebSocketProtocol.sendData, "__code__", None)
    return code is not None and frozenset(code.co_names) == _SEND_DATA_NAMES


def close_reason(text: str) -> str:
    """
    C{text} cut to what a WebSocket close frame carries: 123 UTF-8 bytes,
    on a character boundary.
    """
    data = text.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON:
        return text
    return data[:MAX_CLOSE_REASON].decode("utf-8", "ignore")


def _refuse_compression(offers: object) -> None:
    return None


def set_tunnel_options(
    factory: WebSocketServerFactory | WebSocketClientFactory,
    *,
    max_frame_payload: int,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    open_handshake_timeout: float,
) -> None:
    """
    Set the autobahn options both ends use (DESIGN.md: autobahn's defaults
    are unlimited sizes and no auto-ping): messages bounded by
    L{max_message_size} of this side's C{max_frame_payload} (what it
    announced it receives), auto-ping, handshake timeouts, no compression,
    no fragmentation, C{TCP_NODELAY}.
    """
    limit = max_message_size(max_frame_payload)
    common: dict[str, Any] = dict(
        autoPingInterval=heartbeat_interval,
        autoPingTimeout=heartbeat_timeout,
        autoPingRestartOnAnyTraffic=True,
        maxFramePayloadSize=limit,
        maxMessagePayloadSize=limit,
        autoFragmentSize=0,
        openHandshakeTimeout=open_handshake_timeout,
        closeHandshakeTimeout=2,
        tcpNoDelay=True,
    )
    if isinstance(factory, WebSocketServerFactory):
        factory.setProtocolOptions(perMessageCompressionAccept=_refuse_compression, **common)
    else:
        factory.setProtocolOptions(perMessageCompressionOffers=[], **common)
