"""
The agents' WebSocket endpoint, C{/connect}: authentication at the opening
handshake, the edge's hello, and one L{EdgeSession} per agent connection,
attached to its tunnel.  Everything else about the connection (dispatch,
failure isolation, credit, backpressure, closing, batched writes) is the
shared L{netbore.websocket.TunnelWebSocket}.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._types import Reactor
from ..auth.tokens import EPHEMERAL, TokenAuthority, TokenError
from ..protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    Hello,
    ResponseReceived,
    Settings,
    StreamClosedError,
    StreamEnded,
    StreamError,
    StreamReset,
    encode_hello,
)
from ..protocol.errors import CLOSE_TUNNEL_DELETED
from ..websocket import TunnelWebSocket, set_tunnel_options
from ..writes import WriteBatch
from .agentca import AgentCA, peer_certificate
from .clientaddr import TrustedProxies
from .config import EdgeConfig
from .exchange import AgentEvents
from .limits import ConnectionLimits
from .ratelimit import AuthFailureLimiter

if TYPE_CHECKING:
    from .exchange import ViewerExchange
    from .registry import IRegistry, Tunnel

__all__ = ["AgentEndpoint", "EdgeSession"]

log = Logger()

_BEARER_PREFIX = "bearer."


def _token_from(request: ConnectionRequest) -> str | None:
    """
    The token from C{Authorization: Bearer}, a C{bearer.<jwt>} subprotocol
    or the C{nb_token} query parameter, in that order.
    """
    headers: dict[str, str] = request.headers
    protocols: list[str] = request.protocols
    params: dict[str, list[str]] = request.params
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for proto in protocols:
        if proto.startswith(_BEARER_PREFIX):
            return proto[len(_BEARER_PREFIX) :]
    values = parse_qs(urlsplit(request.path).query).get("nb_token") or params.get("nb_token")
    if values:
        return values[0]
    return None


class EdgeSession(AgentEvents, TunnelWebSocket["ViewerExchange"], WebSocketServerProtocol):  # type: ignore[misc]  # (autobahn's own bases disagree)
    """
    One agent's WebSocket connection: what the shared L{TunnelWebSocket}
    leaves to the edge (authentication, the edge's hello, attaching to the
    tunnel) and the stream API the viewer exchanges use.
    """

    role = "edge"
    peer_role = "agent"
    factory: EdgeSessionFactory

    def __init__(self) -> None:
        super().__init__()
        self.tunnel: Tunnel | None = None
        self.agent_id: str | None = None
        self.session_id = secrets.token_urlsafe(9)
        self.attached = False
        self.peer_host = ""
        self.handle(ResponseReceived, self._on_response)
        self.handle(DataReceived, self._on_data)
        self.handle(StreamEnded, self._on_ended)
        self.handle(StreamReset, self._on_reset)
        self.handle(GoAwayReceived, self._on_go_away)

    # -- opening handshake ---------------------------------------------------

    def onConnect(self, request: ConnectionRequest) -> str | None:
        return self.guard_opening(self._authenticate, request)

    def _authenticate(self, request: ConnectionRequest) -> str | None:
        endpoint = self.factory.endpoint
        # The budget is the control API's too: the same key for one client
        # (autobahn's request.peer reads "tcp4:..." where twisted.web has the
        # bare address).
        peer = getattr(self.transport.getPeer(), "host", None) if self.transport is not None else None
        forwarded = request.headers.get("x-forwarded-for")
        self.peer_host = endpoint.proxies.client(
            peer if isinstance(peer, str) else "unknown", [forwarded] if forwarded is not None else None
        )
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
            raise ConnectionDeny(401, f"token refused: {e}") from None
        tunnel = endpoint.registry.get(claims.sub)
        if tunnel is None or tunnel.name != claims.name:
            raise ConnectionDeny(403, "tunnel unknown or deleted: create it again")
        ca = endpoint.agent_ca
        refusal = ca.check(peer_certificate(self.transport), tunnel.owner) if ca is not None else None
        if refusal is not None:
            endpoint.limiter.failed(self.peer_host)
            raise ConnectionDeny(403, f"{refusal.code}: {refusal.message}")
        self.tunnel = tunnel
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def opened(self) -> None:
        # Idle-tunnel memory (bench/scale.py): autobahn keeps the parsed
        # opening handshake for the life of the connection, the token twice
        # over (Authorization and Sec-WebSocket-Protocol).  Nothing reads it
        # after the handshake.
        self.http_headers = {}
        self.http_request_data = b""
        self.http_request_params = {}
        self.websocket_protocols = []

    def local_settings(self) -> Settings:
        return self.factory.endpoint.settings

    def hello_received(self, hello: Hello) -> None:
        endpoint = self.factory.endpoint
        tunnel = self.tunnel
        assert tunnel is not None
        self.agent_id = hello.agent_id or self.session_id
        self.sendMessage(
            encode_hello(
                Hello(
                    version=PROTOCOL_VERSION,
                    role="edge",
                    settings=endpoint.settings,
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

    def _on_ended(self, event: StreamEnded) -> None:
        # The agent is done with the stream; it is forgotten unless its
        # exchange still sends (a byte stream's viewer direction: its window
        # updates must reach it).
        stream_id = event.stream_id
        exchange = self.streams.pop(stream_id, None)
        if exchange is not None and exchange.ended():
            self.streams[stream_id] = exchange

    def _on_reset(self, event: StreamReset) -> None:
        exchange = self.streams.pop(event.stream_id, None)
        if exchange is not None:
            exchange.reset(event.code)

    def _on_go_away(self, event: GoAwayReceived) -> None:
        log.info("agent {agent_id} is going away", agent_id=self.agent_id)
        self.factory.endpoint.detach(self)

    def stream_failed(self, stream: ViewerExchange) -> None:
        # The viewer gets a 502 (or a cut connection once the response began).
        stream.reset(ErrorCode.INTERNAL_ERROR)

    def stream_lost(self, stream: ViewerExchange) -> None:
        stream.reset(ErrorCode.CANCEL)

    def pause_streams(self) -> None:
        # The transport toward the agent is over its high-water mark (an
        # agent that reads slowly, or not at all): the viewers whose bodies
        # feed it stop being read at once; resume_streams' window broadcast
        # resumes them once it drains (issue 10, item 2).
        for stream_id, exchange in list(self.streams.items()):
            try:
                exchange.upload_paused()
            except Exception:
                log.failure("error pausing stream {stream_id}; it is reset", stream_id=stream_id)
                self.reset_failed_stream(stream_id)

    # -- the stream API the viewer exchanges use -------------------------------

    def send_data(self, stream_id: int, data: bytes) -> int:
        """
        Send what the stream's window takes of C{data} (none while the
        WebSocket's transport is full); how much that was.
        """
        session = self.session
        if session is None or self.paused:
            return 0
        # (short because of the session's window: the stream is woken by
        # the session's next update, see Session.send_window)
        n = session.send_some(stream_id, data) if data else 0
        if n:
            if not self.flush_pending:
                self.flush()
        return n

    def send_end(self, stream_id: int) -> None:
        session = self.session
        if session is not None:
            try:
                session.send_end(stream_id)
            except StreamError as e:
                # The agent reset the stream meanwhile; its RESET is on the
                # way to the exchange.
                log.debug("END on stream {stream_id} not sent: {why}", stream_id=stream_id, why=str(e))
                return
            if not self.flush_pending:
                self.flush()

    def reset(self, stream_id: int, code: int) -> None:
        self.streams.pop(stream_id, None)
        session = self.session
        if session is not None:
            session.reset_stream(stream_id, ErrorCode(code))
            if not self.flush_pending:
                self.flush()

    def acknowledge(self, stream_id: int, n: int) -> None:
        session = self.session
        if session is not None:
            session.acknowledge(stream_id, n)
            if not self.flush_pending:
                self.flush()

    def stream_count(self) -> int:
        return len(self.streams)

    def open_bytes(
        self,
        exchange: Any,
        upgrade: tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None,
        metadata: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        """
        Open a byte stream for C{exchange} (a L{netbore.edge.byterelay.ByteRelay}):
        with an upgrade request C{(method, target, headers)}, or raw with
        C{metadata}; raises as L{Session.open_upgrade} and
        L{Session.open_byte_stream}.
        """
        session = self.session
        if session is None:
            raise StreamClosedError("the session is closed")
        if upgrade is not None:
            stream_id = session.open_upgrade(*upgrade)
        else:
            stream_id = session.open_byte_stream(metadata or ())
        self.streams[stream_id] = exchange
        if not self.flush_pending:
            self.flush()
        return stream_id

    # -- ending ------------------------------------------------------------------

    def go_away(self, message: str = "edge going away") -> None:
        if self.session is not None:
            self.session.go_away(ErrorCode.NO_ERROR, message.encode())
            self.flush()

    def abandon(self, message: str) -> None:
        """
        Give this session up at once: its streams fail now (their viewers
        get 502, or a cut connection if the response had begun), and the
        connection is aborted without waiting for a close handshake.
        """
        self.factory.endpoint.detach(self)
        self.drop_streams()
        self.go_away(message)
        self.dropConnection(abort=True)

    def peer_name(self) -> str:
        return self.agent_id or self.peer_host

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        # The connection was a viewer connection's, counted by the caps.
        limits = self.factory.endpoint.limits
        if limits is not None:
            limits.release(self.transport)
        super().connectionLost(reason)

    def connection_closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self.attached:
            self.attached = False
            self.factory.endpoint.detach(self)


class EdgeSessionFactory(WebSocketServerFactory):
    """
    The agents' WebSocket factory: autobahn's options set for the tunnel,
    the process's write batch as C{writes}.
    """

    protocol = EdgeSession  # type: ignore[assignment]

    def __init__(self, endpoint: AgentEndpoint, reactor: Reactor, writes: WriteBatch | None = None) -> None:
        super().__init__(reactor=reactor)
        self.endpoint = endpoint
        self.writes = writes if writes is not None else WriteBatch()
        config = endpoint.config
        set_tunnel_options(
            self,
            max_frame_payload=config.max_frame_payload,
            heartbeat_interval=config.heartbeat_interval,
            heartbeat_timeout=config.heartbeat_timeout,
            open_handshake_timeout=10,
        )


class _UpgradeResource(WebSocketResource):
    """
    autobahn's resource, letting go of twisted.web's objects once the
    connection is the WebSocket's: the HTTP channel would stay registered as
    the transport's producer (where the session registers its own) and keep
    its idle timeout (and with them the upgrade request and its headers) for
    as long as the connection lives, about 3 KiB per idle tunnel.
    """

    def render(self, request: Any) -> Any:
        channel = request.channel
        transport = channel.transport
        if transport is not None:
            # (before the handshake: the session registers in onOpen)
            transport.unregisterProducer()
        result = super().render(request)
        if channel.transport is None and transport is not None:
            channel.setTimeout(None)
            channel.requests = []
        return result


class AgentEndpoint:
    """
    The edge's side of all agent sessions.

    @param writes: the process's write batch (the one the viewers' site
        uses, so that frames and viewer bytes of one event leave together);
        a batch of its own if not given.
    """

    def __init__(
        self,
        config: EdgeConfig,
        registry: IRegistry,
        authority: TokenAuthority,
        limiter: AuthFailureLimiter,
        reactor: Reactor,
        writes: WriteBatch | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.authority = authority
        self.limiter = limiter
        self.proxies = TrustedProxies(config.trusted_proxies)
        self.reactor = reactor
        self.settings = Settings(
            stream_window=config.stream_window,
            session_window=config.session_window,
            max_frame_payload=config.max_frame_payload,
            byte_streams=True,
        )
        self.factory = EdgeSessionFactory(self, reactor, writes)
        self.sessions: set[EdgeSession] = set()
        #: The site's connection caps (set by the site's builder), released
        #: by a session whose connection autobahn took over.
        self.limits: ConnectionLimits | None = None
        #: C{--agent-ca}: sessions need a client certificate naming the tunnel's owner.
        self.agent_ca: AgentCA | None = None

    def resource(self) -> WebSocketResource:
        return _UpgradeResource(self.factory)

    def attach(self, tunnel: Tunnel, session: EdgeSession) -> None:
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
                log.info("agent {agent_id} of tunnel {name} disconnected", agent_id=session.agent_id, name=tunnel.name)

    def tunnel_deleted(self, tunnel: Tunnel) -> None:
        for session in list(tunnel.sessions):
            if isinstance(session, EdgeSession):
                self.detach(session)
                session.go_away("tunnel deleted")
                session.send_close(CLOSE_TUNNEL_DELETED, "tunnel deleted")

    def go_away_all(self) -> None:
        for session in list(self.sessions):
            session.go_away()
