"""
The agents' WebSocket endpoint, C{/connect}: authentication at the opening
handshake, the versioned hello, and one L{EdgeSession} per agent connection
driving the sans-IO L{netbore.protocol.session.Session}.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger

from ..protocol import frames as F
from ..protocol import session as S
from ..protocol.errors import StreamClosedError, StreamError, websocket_close_code
from ..protocol.frames import max_message_size
from ..protocol.handshake import PROTOCOL_VERSION, SUBPROTOCOL, Hello, Settings, decode_hello, encode_hello
from ..auth.tokens import EPHEMERAL, TokenAuthority, TokenError
from ..wsio import BatchedWebSocket
from .config import EdgeConfig
from .ratelimit import AuthFailureLimiter

if TYPE_CHECKING:
    from .registry import InMemoryRegistry, Tunnel
    from .exchange import ViewerExchange

__all__ = ["AgentEndpoint", "EdgeSession"]

log = Logger()

#: WebSocket close codes.  autobahn lets applications send only 1000 and
#: 3000-4999; protocol errors close with 4000 + the protocol's error code
#: (L{websocket_close_code}), a deleted tunnel with 4100.
CLOSE_NORMAL = 1000
CLOSE_TUNNEL_DELETED = 4100

_BEARER_PREFIX = "bearer."


def _token_from(request: ConnectionRequest) -> str | None:
    """
    The token from C{Authorization: Bearer}, a C{bearer.<jwt>} subprotocol
    or the C{nb_token} query parameter, in that order.
    """
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for proto in request.protocols:
        if proto.startswith(_BEARER_PREFIX):
            return proto[len(_BEARER_PREFIX):]
    values = parse_qs(urlsplit(request.path).query).get("nb_token") or request.params.get("nb_token")
    if values:
        return values[0]
    return None


class EdgeSession(BatchedWebSocket, WebSocketServerProtocol):  # type: ignore[misc]  # (autobahn's own bases disagree)
    """
    One agent's WebSocket connection.
    """

    factory: "EdgeSessionFactory"

    def __init__(self) -> None:
        super().__init__()
        self.tunnel: Tunnel | None = None
        self.agent_id: str | None = None
        self.session_id = secrets.token_urlsafe(9)
        self.protocol: S.Session | None = None
        self.streams: dict[int, ViewerExchange] = {}
        self.attached = False
        self.peer_host = ""
        self._handlers: dict[type, Callable[[Any], None]] = {
            S.ResponseReceived: self._on_response,
            S.DataReceived: self._on_data,
            S.StreamEnded: self._on_ended,
            S.StreamReset: self._on_reset,
            S.WindowOpened: self._on_window,
            S.GoAwayReceived: self._on_go_away,
        }

    # -- opening handshake ---------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> str | None:
        endpoint = self.factory.endpoint
        self.peer_host = request.peer.rsplit(":", 1)[0].removeprefix("tcp:").strip("[]")
        retry = endpoint.limiter.check(self.peer_host)
        if retry is not None:
            raise ConnectionDeny(429, f"too many failed authentications; retry in {int(retry) + 1} s")
        token = _token_from(request)
        if token is None:
            endpoint.limiter.failed(self.peer_host)
            raise ConnectionDeny(401, "missing token: send Authorization: Bearer <ephemeral_token>")
        try:
            claims = endpoint.authority.verify(token, EPHEMERAL)
        except TokenError as e:
            endpoint.limiter.failed(self.peer_host)
            raise ConnectionDeny(401, f"token refused: {e}")
        tunnel = endpoint.registry.get(claims.sub)
        if tunnel is None or tunnel.name != claims.name:
            raise ConnectionDeny(403, "tunnel unknown or deleted: create it again")
        self.tunnel = tunnel
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def onOpen(self) -> None:
        # Idle-tunnel memory (bench/scale.py): autobahn keeps the parsed
        # opening handshake for the life of the connection, the token twice
        # over (Authorization and Sec-WebSocket-Protocol).  Nothing reads it
        # after the handshake.
        self.http_headers = {}
        self.http_request_data = b""
        self.http_request_params = {}
        self.websocket_protocols = []

    # -- messages --------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        protocol = self.protocol
        if protocol is None:
            self._on_hello(payload, isBinary)
            return
        if not isBinary:
            self._fail(F.ProtocolError("text message after the hello"))
            return
        try:
            events = protocol.receive(payload)
        except F.ProtocolError as e:
            self._fail(e)
            return
        handlers = self._handlers
        for event in events:
            handlers[type(event)](event)
        self.flush()

    def _on_hello(self, payload: bytes, isBinary: bool) -> None:
        endpoint = self.factory.endpoint
        tunnel = self.tunnel
        assert tunnel is not None
        if isBinary:
            self._fail(F.ProtocolError("expected the hello as a text message"))
            return
        try:
            hello = decode_hello(payload)
        except F.ProtocolError as e:
            self._fail(e)
            return
        if hello.role != "agent":
            self._fail(F.ProtocolError("hello role must be 'agent'"))
            return
        local = endpoint.settings
        self.agent_id = hello.agent_id or self.session_id
        self.protocol = S.Session("edge", local, hello.settings)
        self.sendMessage(
            encode_hello(
                Hello(
                    version=PROTOCOL_VERSION,
                    role="edge",
                    settings=local,
                    tunnel_id=tunnel.tunnel_id,
                    public_url=tunnel.public_url,
                    session_id=self.session_id,
                )
            ).encode(),
            isBinary=False,
        )
        endpoint.attach(tunnel, self)
        self.attached = True

    # -- events from the agent --------------------------------------------------

    def _on_response(self, event: Any) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is not None:
            if event.status < 200:
                # Informational (1xx): the final head follows; twisted.web
                # cannot relay interim responses to the viewer.
                return
            if event.end_stream:
                del self.streams[event.stream_id]
            exchange.response_head(event.status, event.reason, event.headers, event.end_stream)

    def _on_data(self, event: Any) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is None:
            # Nobody reads it (viewer gone): give the credit straight back.
            if self.protocol is not None:
                self.protocol.acknowledge(event.stream_id, len(event.data))
            return
        if event.end_stream:
            del self.streams[event.stream_id]
        exchange.data(event.data, event.end_stream)

    def _on_ended(self, event: Any) -> None:
        exchange = self.streams.pop(event.stream_id, None)
        if exchange is not None:
            exchange.ended()

    def _on_reset(self, event: Any) -> None:
        dropped = self.streams.pop(event.stream_id, None)
        if dropped is not None:
            dropped.reset(event.code)

    def _on_window(self, event: Any) -> None:
        if event.stream_id == 0:
            for exchange in list(self.streams.values()):
                exchange.window_opened()
        else:
            one = self.streams.get(event.stream_id)
            if one is not None:
                one.window_opened()

    def _on_go_away(self, event: Any) -> None:
        log.info("agent {agent_id} is going away", agent_id=self.agent_id)
        self.factory.endpoint.detach(self)

    # -- the stream API the viewer exchanges use -------------------------------

    def open_stream(
        self, exchange: "ViewerExchange", method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> int:
        if self.protocol is None:
            raise StreamClosedError("the session is closed")
        stream_id = self.protocol.send_request_head(method, target, headers, end_stream)
        self.streams[stream_id] = exchange
        self.flush()
        return stream_id

    def send_data(self, stream_id: int, data: bytes) -> int:
        protocol = self.protocol
        if protocol is None:
            return 0
        n = min(len(data), protocol.send_window(stream_id))
        if n:
            protocol.send_data(stream_id, data[:n] if n < len(data) else data)
            self.flush()
        return n

    def send_end(self, stream_id: int) -> None:
        if self.protocol is not None:
            try:
                self.protocol.send_end(stream_id)
            except StreamError as e:
                # The agent reset the stream meanwhile; its RESET is on the
                # way to the exchange.
                log.debug("END on stream {stream_id} not sent: {why}", stream_id=stream_id, why=str(e))
                return
            self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.streams.pop(stream_id, None)
        if self.protocol is not None:
            self.protocol.reset_stream(stream_id, F.ErrorCode(code))
            self.flush()

    def acknowledge(self, stream_id: int, n: int) -> None:
        if self.protocol is not None:
            self.protocol.acknowledge(stream_id, n)
            self.flush()

    def stream_count(self) -> int:
        return len(self.streams)

    def flush_frames(self) -> None:
        protocol = self.protocol
        if protocol is None:
            return
        for message in protocol.data_to_send():
            self.sendMessage(message, isBinary=True)

    # -- ending ------------------------------------------------------------------

    def go_away(self, message: str = "edge going away") -> None:
        if self.protocol is not None:
            self.protocol.go_away(F.ErrorCode.NO_ERROR, message.encode())
            self.flush()

    def abandon(self, message: str) -> None:
        """
        Give this session up at once: its streams fail now (their viewers
        get 502, or a cut connection if the response had begun), and the
        connection is aborted without waiting for a close handshake.
        """
        self.factory.endpoint.detach(self)
        streams, self.streams = self.streams, {}
        for exchange in streams.values():
            exchange.reset(F.ErrorCode.CANCEL)
        self.go_away(message)
        self.dropConnection(abort=True)

    def _fail(self, error: F.ProtocolError) -> None:
        log.warn(
            "protocol error from agent {agent_id}: {message}",
            agent_id=self.agent_id,
            message=str(error),
        )
        if self.protocol is not None:
            try:
                self.protocol.go_away(error.code, str(error).encode()[:120])
                self.flush()
            except Exception:
                pass
        self.sendClose(websocket_close_code(error.code), str(error)[:120])

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.attached:
            self.attached = False
            self.factory.endpoint.detach(self)
        streams, self.streams = self.streams, {}
        for exchange in streams.values():
            exchange.reset(F.ErrorCode.CANCEL)
        self.protocol = None


class EdgeSessionFactory(WebSocketServerFactory):
    protocol = EdgeSession  # type: ignore[assignment]

    def __init__(self, endpoint: "AgentEndpoint", reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.endpoint = endpoint
        config = endpoint.config
        self.setProtocolOptions(
            autoPingInterval=config.heartbeat_interval,
            autoPingTimeout=config.heartbeat_timeout,
            autoPingRestartOnAnyTraffic=True,
            maxFramePayloadSize=max_message_size(config.max_frame_payload),
            maxMessagePayloadSize=max_message_size(config.max_frame_payload),
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
            perMessageCompressionAccept=lambda offers: None,
            tcpNoDelay=True,
        )


class _UpgradeResource(WebSocketResource):
    """
    autobahn's resource, letting go of twisted.web's objects once the
    connection is the WebSocket's: the HTTP channel stays registered as the
    TCP transport's producer and keeps its idle timeout (and with them the
    upgrade request and its headers) for as long as the connection lives,
    about 3 KiB per idle tunnel.
    """

    def render(self, request: Any) -> Any:
        channel = request.channel
        result = super().render(request)
        transport = getattr(request, "transport", None)
        if channel.transport is None and transport is not None:
            if getattr(transport, "producer", None) is channel:
                transport.unregisterProducer()
            channel.setTimeout(None)
            channel.requests = []
        return result


class AgentEndpoint:
    """
    The edge's side of all agent sessions.
    """

    def __init__(
        self,
        config: EdgeConfig,
        registry: "InMemoryRegistry",
        authority: TokenAuthority,
        limiter: AuthFailureLimiter,
        reactor: Any,
    ) -> None:
        self.config = config
        self.registry = registry
        self.authority = authority
        self.limiter = limiter
        self.reactor = reactor
        self.settings = Settings(
            stream_window=config.stream_window,
            session_window=config.session_window,
            max_frame_payload=config.max_frame_payload,
        )
        self.factory = EdgeSessionFactory(self, reactor)
        self.sessions: set[EdgeSession] = set()

    def resource(self) -> WebSocketResource:
        return _UpgradeResource(self.factory)

    def attach(self, tunnel: "Tunnel", session: EdgeSession) -> None:
        # A new session from the same agent replaces the old one at once (a
        # reconnect after a half-open connection must not wait for the old
        # one's heartbeat to fail).
        for old in list(tunnel.sessions):
            if isinstance(old, EdgeSession) and old.agent_id == session.agent_id:
                self.detach(old)
                # The agent only reconnects when it believes the old
                # connection dead, so do not wait for a close handshake it
                # may never answer: in-flight streams fail now, not after
                # the close timeout.
                old.abandon("replaced by a new session of the same agent")
        self.sessions.add(session)
        self.registry.attach_session(tunnel, session)
        log.info(
            "tunnel {name} active: agent {agent_id} session {session_id}",
            name=tunnel.name,
            agent_id=session.agent_id,
            session_id=session.session_id,
        )

    def detach(self, session: EdgeSession) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            session.attached = False
            tunnel = session.tunnel
            if tunnel is not None:
                self.registry.detach_session(tunnel, session)
                log.info(
                    "agent {agent_id} of tunnel {name} disconnected", agent_id=session.agent_id, name=tunnel.name
                )

    def tunnel_deleted(self, tunnel: "Tunnel") -> None:
        for session in list(tunnel.sessions):
            if isinstance(session, EdgeSession):
                self.detach(session)
                session.go_away("tunnel deleted")
                session.sendClose(CLOSE_TUNNEL_DELETED, "tunnel deleted")

    def go_away_all(self) -> None:
        for session in list(self.sessions):
            session.go_away()
