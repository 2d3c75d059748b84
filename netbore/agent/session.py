"""
The agent's tunnel session: an autobahn WebSocket client to the edge,
carrying the streams the L{OriginForwarder} forwards to the origin.

What both ends share (the hello exchange, the event dispatch table,
per-event failure isolation, credit back for dead streams, window
broadcasts, backpressure from the WebSocket's transport, closing with
4000 + the protocol's error code, batched writes) is
L{netbore.websocket.TunnelWebSocket}.  This module keeps the agent's part:
its hello, handing requests to the forwarder (and pausing the origin reads
while the tunnel's transport is full), draining, and reporting how each
session ended (L{SessionClosed}) to the reconnect policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConnector
from twisted.logger import Logger
from twisted.python.failure import Failure

from netbore._types import Reactor
from netbore.agent.forwarder import OriginForwarder, OriginRequests, OriginStream
from netbore.agent.upgrade import UpgradeRequests
from netbore.http1 import Header
from netbore.protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    BytesOpened,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    Hello,
    ProtocolError,
    RequestReceived,
    Settings,
    StreamEnded,
    StreamError,
    StreamReset,
    encode_hello,
)
from netbore.protocol.errors import CLOSE_NORMAL
from netbore.websocket import TunnelWebSocket, set_tunnel_options
from netbore.writes import WriteBatch

if TYPE_CHECKING:
    from netbore.agent.tcp import TcpForwarder

__all__ = ["AgentSessionFactory", "AgentSessionProtocol", "SessionClosed"]

log = Logger()


@attrs.frozen
class SessionClosed:
    """
    Why a session ended, for the reconnect policy.

    @ivar ready: the handshake completed (the tunnel was served) before the
        end; C{False} means the connection or handshake failed.
    @ivar http_status: the HTTP status of a refused WebSocket opening
        handshake (401/403: the token is no good; get a new one), else
        L{None}.
    @ivar go_away: the edge sent GOAWAY (it is draining or replaced us).
    @ivar protocol_error: one side found the other broke the protocol.
    """

    was_clean: bool
    code: int | None
    reason: str
    ready: bool
    http_status: int | None = None
    go_away: bool = False
    protocol_error: bool = False


def _refused(error: StreamError) -> None:
    # A stream the session has closed already: not worth more than a debug line.
    log.debug("session refused a stream call: {error}", error=str(error))


class AgentSessionProtocol(UpgradeRequests, OriginRequests, TunnelWebSocket[OriginStream], WebSocketClientProtocol):  # type: ignore[misc]  # (autobahn's own bases disagree)
    """
    One WebSocket connection to the edge, carrying many streams: what the
    shared L{TunnelWebSocket} leaves to the agent (its hello, forwarding
    requests, draining, reporting how the session ended).

    Also the L{netbore.agent.forwarder.StreamSink} of its streams.
    """

    role = "agent"
    peer_role = "edge"
    factory: AgentSessionFactory

    def __init__(self) -> None:
        super().__init__()
        self.going_away = False
        self._go_away_received = False
        self._closed_waiters: list[Deferred[None]] = []
        self.handle(RequestReceived, self._on_request)
        self.handle(DataReceived, self._on_data)
        self.handle(StreamEnded, self._on_ended)
        self.handle(StreamReset, self._on_reset)
        self.handle(GoAwayReceived, self._on_go_away)
        self.handle(BytesOpened, self._on_bytes_open)

    @property
    def hello(self) -> Hello | None:
        """
        The edge's hello, once it came.
        """
        return self.peer_hello

    # -- handshake -----------------------------------------------------------

    def onConnect(self, response: ConnectionResponse) -> None:
        self.guard_opening(self._upgraded, response)

    def _upgraded(self, response: ConnectionResponse) -> None:
        log.debug("WebSocket to the edge upgraded: {peer}", peer=response.peer)

    def opened(self) -> None:
        factory = self.factory
        if self.websocket_protocol_in_use != SUBPROTOCOL:
            self.fail(ProtocolError(f"the edge did not select the {SUBPROTOCOL} subprotocol"))
            return
        hello = Hello(
            version=PROTOCOL_VERSION,
            role="agent",
            settings=factory.settings,
            agent_id=factory.agent_id,
            tunnel_id=factory.tunnel_id,
        )
        self.sendMessage(encode_hello(hello).encode("utf-8"), isBinary=False)

    def local_settings(self) -> Settings:
        return self.factory.settings

    def hello_received(self, hello: Hello) -> None:
        log.info(
            "session {session_id} ready for {public_url}",
            session_id=hello.session_id,
            public_url=hello.public_url,
        )
        self.factory.session_ready(self, hello)

    # -- events from the edge -----------------------------------------------------

    def _on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self.credit_back(event)
            return
        stream.data_received(event.data, event.end_stream)

    def _on_ended(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.end_received()

    def _on_reset(self, event: StreamReset) -> None:
        gone = self.streams.pop(event.stream_id, None)
        if gone is not None:
            gone.reset_received(event.code, event.message)

    def _on_go_away(self, event: GoAwayReceived) -> None:
        log.info(
            "edge sent go-away ({code}: {message}); finishing {n} in-flight requests",
            code=event.code,
            message=event.message,
            n=len(self.streams),
        )
        self._go_away_received = True
        self.going_away = self.watch_events = True

    def events_handled(self) -> None:
        self._maybe_close_after_drain()

    def stream_failed(self, stream: OriginStream) -> None:
        stream.abort()

    def stream_lost(self, stream: OriginStream) -> None:
        stream.abort()

    def pause_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.pause_sending()

    def resume_streams(self) -> None:
        for stream in list(self.streams.values()):
            if self.paused:
                return
            stream.resume_sending()

    # -- draining and closing -------------------------------------------------------

    def drain(self, message: bytes = b"agent shutting down") -> Deferred[None]:
        """
        Stop taking new streams (tell the edge with GOAWAY), let in-flight
        requests finish, then close.  The result fires once the WebSocket
        is closed; the caller bounds the wait (L{close} to cut it short).
        """
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
            return d
        self._closed_waiters.append(d)
        if not self.going_away:
            self.going_away = self.watch_events = True
            if self.session is not None:
                self.call(self.session.go_away, ErrorCode.NO_ERROR, message)
                self.flush()
        self._maybe_close_after_drain()
        return d

    def close(self, reason: str = "agent closing") -> None:
        """
        Close now; in-flight requests are aborted.
        """
        if not self.closed:
            self.send_close(CLOSE_NORMAL, reason)

    def _maybe_close_after_drain(self) -> None:
        if self.going_away and not self.streams and not self.closed:
            self.send_close(CLOSE_NORMAL, "drained")

    def connection_closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        status = self._refused_status()
        if self.sent_close is not None:
            # We closed: report our code and reason, not the edge's echo.
            code, reason = self.sent_close
        closed = SessionClosed(
            was_clean=bool(was_clean),
            code=code,
            reason=reason or "",
            ready=self.peer_hello is not None,
            http_status=status,
            go_away=self._go_away_received,
            protocol_error=self.protocol_error,
        )
        log.info("session to the edge closed: code={code} reason={reason}", code=code, reason=closed.reason)
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)
        self.factory.session_closed(self, closed)

    def _refused_status(self) -> int | None:
        line = getattr(self, "http_status_line", None)
        if not line or self.peer_hello is not None:
            return None
        parts = str(line).split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
            return int(parts[1])
        return None

    # -- the StreamSink the origin streams use ------------------------------------------

    def _after(self) -> None:
        if not self.flush_pending:
            self.flush()

    def _forget(self, stream_id: int) -> None:
        """The stream's last frame was sent: it is over here."""
        if self.streams.pop(stream_id, None) is not None and self.going_away and not self.dispatching:
            # (while dispatching, events_handled checks once per message)
            self._maybe_close_after_drain()

    def send_response_head(
        self, stream_id: int, status: int, reason: bytes, headers: list[Header], end_stream: bool = False
    ) -> None:
        session = self.session
        if session is None:
            return
        try:
            session.send_response_head(stream_id, status, reason, headers, end_stream)
        except StreamError as e:
            # E.g. a header the wire cannot carry: the viewer gets a 502.
            log.info("cannot send the response head of stream {stream_id}: {error}", stream_id=stream_id, error=str(e))
            self.call(session.reset_stream, stream_id, ErrorCode.INTERNAL_ERROR, b"response head not encodable")
        if not self.flush_pending:
            # (the adapter's flush, inline: this runs in an origin connection's read)
            writes = self.writes
            if writes.holds:
                self.flush_pending = True
                writes.defer(self._flush_later)
            else:
                self.flush()
        if end_stream:
            self._forget(stream_id)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """
        Send what the stream's window takes of C{data} (none while the
        tunnel's transport is full, see L{pause_streams}); how much that
        was.  The stream ends with it if C{end_stream} and all was taken.
        """
        session = self.session
        if session is None or self.paused:
            return 0
        try:
            n = session.send_some(stream_id, data, end_stream)
        except StreamError as e:
            _refused(e)
            n = len(data)
        if not self.flush_pending:
            self.flush()
        if end_stream and n == len(data):
            self._forget(stream_id)
        return n

    def send_end(self, stream_id: int, forget: bool = True) -> None:
        session = self.session
        if session is not None:
            try:
                session.send_end(stream_id)
            except StreamError as e:
                _refused(e)
            self._after()
            if forget:  # (a byte stream's END is a half-close: it goes on)
                self._forget(stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        session = self.session
        if session is not None:
            try:
                session.reset_stream(stream_id, code, message)
            except StreamError as e:
                _refused(e)
            self._after()
            self._forget(stream_id)

    def acknowledge(self, stream_id: int, n: int) -> None:
        session = self.session
        if session is not None:
            try:
                session.acknowledge(stream_id, n)
            except StreamError as e:
                _refused(e)
            self._after()

    def send_window(self, stream_id: int) -> int:
        """How many DATA bytes C{stream_id} may send now (none while the transport is full)."""
        session = self.session
        if session is None or self.paused:
            return 0
        return session.send_window(stream_id)

    def max_data_payload(self) -> int:
        hello = self.peer_hello
        return hello.settings.max_frame_payload if hello is not None else 1024

    def stream_finished(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if not self.dispatching:  # (while dispatching, events_handled checks once per message)
            self._maybe_close_after_drain()


class AgentSessionFactory(WebSocketClientFactory):
    """
    Makes the WebSocket connection to the edge for one tunnel.

    @param url: the edge's C{ws://} or C{wss://} connect URL (a candidate's
        C{edge_url}).
    @param token: the ephemeral token; sent as C{Authorization: Bearer} and
        as a C{bearer.<token>} subprotocol offer (DESIGN.md), beside
        C{netbore.v1}.
    @param on_ready: called with the edge's L{Hello} when the session is
        up (the tunnel is being served).
    @param on_closed: called with a L{SessionClosed} when a connection made
        by this factory ends, ready or not.
    @param writes: the process's write batch (the one the forwarder's
        origin connections use, so that the frames and origin bytes of one
        event leave together); a batch of its own if not given.
    """

    protocol = AgentSessionProtocol  # type: ignore[assignment]

    def __init__(
        self,
        url: str,
        token: str,
        agent_id: str,
        forwarder: OriginForwarder | TcpForwarder,
        reactor: Reactor,
        settings: Settings | None = None,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 10.0,
        on_ready: Callable[[Hello], object] | None = None,
        on_closed: Callable[[SessionClosed], object] | None = None,
        tunnel_id: str | None = None,
        open_handshake_timeout: float = 10.0,
        writes: WriteBatch | None = None,
    ) -> None:
        super().__init__(
            url,
            protocols=[SUBPROTOCOL, "bearer." + token],
            headers={"Authorization": f"Bearer {token}"},
            reactor=reactor,
        )
        self.agent_id = agent_id
        self.tunnel_id = tunnel_id
        self.forwarder = forwarder
        self.settings = settings if settings is not None else Settings(byte_streams=True)
        self.open_handshake_timeout = open_handshake_timeout
        self.on_ready = on_ready
        self.on_closed = on_closed
        #: The connection whose session is up, if any.
        self.current: AgentSessionProtocol | None = None
        self.writes = writes if writes is not None else WriteBatch()
        set_tunnel_options(
            self,
            max_frame_payload=self.settings.max_frame_payload,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            open_handshake_timeout=open_handshake_timeout,
        )

    def session_ready(self, protocol: AgentSessionProtocol, hello: Hello) -> None:
        self.current = protocol
        if self.on_ready is not None:
            try:
                self.on_ready(hello)
            except Exception:
                log.failure("on_ready callback failed")

    def session_closed(self, protocol: AgentSessionProtocol, closed: SessionClosed) -> None:
        if self.current is protocol:
            self.current = None
        if self.on_closed is not None:
            try:
                self.on_closed(closed)
            except Exception:
                log.failure("on_closed callback failed")

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        # Only reached with reactor.connectTCP/connectSSL; endpoints report
        # the failure through their Deferred instead.
        log.info("cannot reach the edge: {reason}", reason=reason.getErrorMessage())
        if self.on_closed is not None:
            try:
                self.on_closed(SessionClosed(was_clean=False, code=None, reason=reason.getErrorMessage(), ready=False))
            except Exception:
                log.failure("on_closed callback failed")
