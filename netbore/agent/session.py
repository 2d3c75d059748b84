"""
The agent's tunnel session: an autobahn WebSocket client around the sans-IO
L{netbore.protocol.session.Session}.

This module is a thin adapter.  Frames go in through L{Session.receive};
the resulting events are dispatched by type to the L{OriginForwarder}'s
streams; whatever the session wants to send is flushed as binary WebSocket
messages after every batch of work.  Nothing the edge sends can raise into
the reactor: a protocol violation closes the WebSocket with
C{websocket_close_code(error.code)} (4001 for PROTOCOL_ERROR: autobahn lets
an application send only 1000 and 3000-4999, not 1002).

Backpressure toward the edge: the protocol registers a push producer with
its transport.  When the transport's write buffer is full, every origin
response being read is paused, and resumed when the buffer drains (as
L{twisted.protocols.portforward} does for one pipe).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from netbore.agent.forwarder import OriginForwarder, OriginStream
from netbore.headers import Header
from netbore.protocol import session as S
from netbore.protocol.errors import ErrorCode, ProtocolError, StreamError, websocket_close_code
from netbore.protocol.frames import HEADER_SIZE, MAX_HEAD_PAYLOAD
from netbore.wsio import BatchedWebSocket
from netbore.protocol.handshake import (
    MAX_HELLO_SIZE,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    Hello,
    Settings,
    decode_hello,
    encode_hello,
)

__all__ = [
    "AgentSessionFactory",
    "AgentSessionProtocol",
    "SessionClosed",
]

log = Logger()

#: The close code for an orderly end.  An application may only send 1000
#: or 3000-4999 (autobahn refuses 1001/1002 from application code), so
#: protocol errors close with L{websocket_close_code} (4000 + error code).
CLOSE_NORMAL = 1000

_MAX_CLOSE_REASON = 120


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
    code: Optional[int]
    reason: str
    ready: bool
    http_status: Optional[int] = None
    go_away: bool = False
    protocol_error: bool = False


def _message_limit(settings: Settings) -> int:
    """
    The largest WebSocket message the edge may send us: a DATA frame of our
    own max payload, a request head, or the hello.
    """
    return max(settings.max_frame_payload, MAX_HEAD_PAYLOAD, MAX_HELLO_SIZE) + HEADER_SIZE + 1024


@implementer(IPushProducer)
class _Backpressure:
    """
    Registered with the WebSocket's transport: its write buffer being full
    pauses every origin read, its draining resumes them.
    """

    def __init__(self, protocol: AgentSessionProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.pause_origins()

    def resumeProducing(self) -> None:
        self._protocol.resume_origins()

    def stopProducing(self) -> None:
        # The connection is going; onClose aborts the streams.
        pass


class AgentSessionProtocol(BatchedWebSocket, WebSocketClientProtocol):  # type: ignore[misc]  # (autobahn's own bases disagree)
    """
    One WebSocket connection to the edge, carrying many streams.

    Also the L{netbore.agent.forwarder.StreamSink} of its streams.
    """

    factory: AgentSessionFactory

    def __init__(self) -> None:
        super().__init__()
        self.session: S.Session | None = None
        self.hello: Hello | None = None
        self.streams: dict[int, OriginStream] = {}
        self.going_away = False
        self.closed = False
        self._go_away_received = False
        self._protocol_error = False
        self._sent_close: tuple[int, str] | None = None
        self._origins_paused = False
        self._in_batch = False
        self._hello_timer: Any = None  # an IDelayedCall
        self._closed_waiters: list[Deferred[None]] = []
        self._handlers: dict[type, Callable[[Any], None]] = {
            S.RequestReceived: self._on_request,
            S.DataReceived: self._on_data,
            S.StreamEnded: self._on_ended,
            S.StreamReset: self._on_reset,
            S.WindowOpened: self._on_window,
            S.GoAwayReceived: self._on_go_away,
        }

    # -- WebSocket callbacks ---------------------------------------------------

    def onConnect(self, response: ConnectionResponse) -> None:
        log.debug("WebSocket to the edge upgraded: {peer}", peer=response.peer)

    def onOpen(self) -> None:
        factory = self.factory
        if self.websocket_protocol_in_use != SUBPROTOCOL:
            self._fail(
                ProtocolError(f"the edge did not select the {SUBPROTOCOL} subprotocol")
            )
            return
        self.registerProducer(_Backpressure(self), True)
        hello = Hello(
            version=PROTOCOL_VERSION,
            role="agent",
            settings=factory.settings,
            agent_id=factory.agent_id,
            tunnel_id=factory.tunnel_id,
        )
        self.sendMessage(encode_hello(hello).encode("utf-8"), isBinary=False)
        self._hello_timer = factory.reactor.callLater(
            factory.open_handshake_timeout, self._hello_timed_out
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.closed:
            return
        session = self.session
        if session is None:
            self._on_hello(payload, isBinary)
            return
        if not isBinary:
            self._fail(ProtocolError("text message after the hello"))
            return
        try:
            events = session.receive(payload)
        except ProtocolError as e:
            self._fail(e, queued=True)
            return
        self._in_batch = True
        try:
            handlers = self._handlers
            for event in events:
                try:
                    handlers[type(event)](event)
                except Exception:
                    # A bug of ours must not take the session down, nor
                    # escape into the reactor: drop that one stream.
                    stream_id = getattr(event, "stream_id", 0)
                    log.failure(
                        "error handling {event} on stream {stream_id}",
                        event=type(event).__name__,
                        stream_id=stream_id,
                    )
                    gone = self.streams.pop(stream_id, None)
                    if gone is not None:
                        gone.abort()
                    if stream_id:
                        self.reset_stream(stream_id, ErrorCode.INTERNAL_ERROR, b"agent error")
        finally:
            self._in_batch = False
        self.flush()
        self._maybe_close_after_drain()

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self.closed:
            return
        self.closed = True
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.abort()
        if streams:
            log.info("session closed: {n} in-flight requests aborted", n=len(streams))
        self.session = None
        status = self._refused_status()
        if self._sent_close is not None:
            # We closed: report our code and reason, not the edge's echo.
            code, reason = self._sent_close
        closed = SessionClosed(
            was_clean=bool(wasClean),
            code=code,
            reason=reason or "",
            ready=self.hello is not None,
            http_status=status,
            go_away=self._go_away_received,
            protocol_error=self._protocol_error,
        )
        log.info(
            "session to the edge closed: code={code} reason={reason}",
            code=code,
            reason=closed.reason,
        )
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)
        self.factory.session_closed(self, closed)

    def _refused_status(self) -> int | None:
        line = getattr(self, "http_status_line", None)
        if not line or self.hello is not None:
            return None
        parts = str(line).split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[1] != "101":
            return int(parts[1])
        return None

    # -- handshake ---------------------------------------------------------------

    def _on_hello(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self._fail(ProtocolError("expected the edge's hello as a text message"))
            return
        try:
            hello = decode_hello(payload, expected_role="edge")
        except ProtocolError as e:
            self._fail(e)
            return
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        self._hello_timer = None
        self.hello = hello
        self.session = S.Session("agent", self.factory.settings, hello.settings)
        log.info(
            "session {session_id} ready for {public_url}",
            session_id=hello.session_id,
            public_url=hello.public_url,
        )
        self.factory.session_ready(self, hello)

    def _hello_timed_out(self) -> None:
        self._hello_timer = None
        if self.session is None and not self.closed:
            self._fail(ProtocolError("the edge did not answer the hello in time"))

    # -- events from the edge -----------------------------------------------------

    def _on_request(self, event: Any) -> None:
        stream_id: int = event.stream_id
        if self.going_away:
            self.reset_stream(stream_id, ErrorCode.REFUSED_STREAM, b"agent going away")
            return
        stream = self.factory.forwarder.forward(
            self, stream_id, event.method, event.target, event.headers, event.end_stream
        )
        if not stream.finished:
            self.streams[stream_id] = stream
            if self._origins_paused:
                stream.pause_sending()

    def _on_data(self, event: Any) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            # A stream we already finished: nobody reads this, give the
            # credit straight back.
            if event.data:
                self.acknowledge(event.stream_id, len(event.data))
            return
        stream.data_received(event.data, event.end_stream)

    def _on_ended(self, event: Any) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.end_received()

    def _on_reset(self, event: Any) -> None:
        gone = self.streams.pop(event.stream_id, None)
        if gone is not None:
            gone.reset_received(event.code, event.message)
        self._maybe_close_after_drain()

    def _on_window(self, event: Any) -> None:
        if event.stream_id == 0:
            for stream in list(self.streams.values()):
                stream.window_opened()
        else:
            one = self.streams.get(event.stream_id)
            if one is not None:
                one.window_opened()

    def _on_go_away(self, event: Any) -> None:
        log.info(
            "edge sent go-away ({code}: {message}); finishing {n} in-flight requests",
            code=event.code,
            message=event.message,
            n=len(self.streams),
        )
        self._go_away_received = True
        self.going_away = True
        self._maybe_close_after_drain()

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
            self.going_away = True
            if self.session is not None:
                self._call(self.session.go_away, ErrorCode.NO_ERROR, message)
                self.flush()
        self._maybe_close_after_drain()
        return d

    def close(self, reason: str = "agent closing") -> None:
        """
        Close now; in-flight requests are aborted.
        """
        if not self.closed:
            self._send_close(CLOSE_NORMAL, reason)

    def _maybe_close_after_drain(self) -> None:
        if self.going_away and not self.streams and not self.closed:
            self._send_close(CLOSE_NORMAL, "drained")

    def _fail(self, error: ProtocolError, queued: bool = False) -> None:
        """
        The edge broke the protocol: say so (GOAWAY when a session exists)
        and close the WebSocket with 4000 + the error code (4001 for
        PROTOCOL_ERROR; see L{websocket_close_code}).

        @param queued: the error came from L{Session.receive}, which has
            already queued a GOAWAY carrying it.
        """
        log.warn("protocol error on the session to the edge: {error}", error=str(error))
        self._protocol_error = True
        if self.session is not None and not queued:
            try:
                self.session.go_away(error.code, str(error).encode("utf-8")[:_MAX_CLOSE_REASON])
            except (StreamError, ProtocolError):
                pass
        self.flush()
        self._send_close(websocket_close_code(error.code), str(error))

    def _send_close(self, code: int, reason: str) -> None:
        reason = reason.encode("utf-8")[:_MAX_CLOSE_REASON].decode("utf-8", "ignore")
        if self._sent_close is None:
            self._sent_close = (code, reason)
        self.sendClose(code, reason)

    # -- flushing ---------------------------------------------------------------------

    def flush_frames(self) -> None:
        """
        Send every frame the session has queued (see L{BatchedWebSocket.flush}).
        """
        session = self.session
        if session is None or self.closed:
            return
        for message in session.data_to_send():
            self.sendMessage(message, isBinary=True)

    def _after(self) -> None:
        if not self._in_batch:
            self.flush()

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """
        Call a session method for a stream; a stream that is already gone
        on the session's side (reset by the edge, session closing) is not
        an error worth more than a debug line.
        """
        try:
            return method(*args)
        except StreamError as e:
            log.debug("session refused {method}: {error}", method=method.__name__, error=str(e))
            return None

    # -- the StreamSink the origin streams use ------------------------------------------

    def send_response_head(
        self,
        stream_id: int,
        status: int,
        reason: bytes,
        headers: list[Header],
        end_stream: bool = False,
    ) -> None:
        if self.session is None:
            return
        try:
            self.session.send_response_head(stream_id, status, reason, headers, end_stream)
        except StreamError as e:
            # E.g. a header the wire cannot carry: the viewer gets a 502.
            log.info(
                "cannot send the response head of stream {stream_id}: {error}",
                stream_id=stream_id,
                error=str(e),
            )
            self._call(
                self.session.reset_stream,
                stream_id,
                ErrorCode.INTERNAL_ERROR,
                b"response head not encodable",
            )
        self._after()

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False
    ) -> None:
        if self.session is not None:
            self._call(self.session.send_data, stream_id, data, end_stream)
            self._after()

    def send_end(self, stream_id: int) -> None:
        if self.session is not None:
            self._call(self.session.send_end, stream_id)
            self._after()

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        if self.session is not None:
            self._call(self.session.reset_stream, stream_id, code, message)
            self._after()

    def acknowledge(self, stream_id: int, n: int) -> None:
        if self.session is not None:
            self._call(self.session.acknowledge, stream_id, n)
            self._after()

    def send_window(self, stream_id: int) -> int:
        if self.session is None:
            return 0
        window = self._call(self.session.send_window, stream_id)
        return int(window) if window is not None else 0

    def max_data_payload(self) -> int:
        hello = self.hello
        return hello.settings.max_frame_payload if hello is not None else 1024

    def stream_finished(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if not self._in_batch:
            # (inside a batch, onMessage checks once the batch is flushed)
            self._maybe_close_after_drain()

    # -- backpressure -----------------------------------------------------------------

    def pause_origins(self) -> None:
        if self._origins_paused:
            return
        self._origins_paused = True
        for stream in list(self.streams.values()):
            stream.pause_sending()

    def resume_origins(self) -> None:
        if not self._origins_paused:
            return
        self._origins_paused = False
        for stream in list(self.streams.values()):
            if not self._origins_paused:
                stream.resume_sending()


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
    """

    protocol = AgentSessionProtocol  # type: ignore[assignment]

    def __init__(
        self,
        url: str,
        token: str,
        agent_id: str,
        forwarder: OriginForwarder,
        reactor: Any,
        settings: Settings | None = None,
        heartbeat_interval: float = 10.0,
        heartbeat_timeout: float = 10.0,
        on_ready: Callable[[Hello], object] | None = None,
        on_closed: Callable[[SessionClosed], object] | None = None,
        tunnel_id: str | None = None,
        open_handshake_timeout: float = 10.0,
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
        self.settings = settings if settings is not None else Settings()
        self.open_handshake_timeout = open_handshake_timeout
        self.on_ready = on_ready
        self.on_closed = on_closed
        #: The connection whose session is up, if any.
        self.current: AgentSessionProtocol | None = None
        limit = _message_limit(self.settings)
        self.setProtocolOptions(
            autoPingInterval=heartbeat_interval,
            autoPingTimeout=heartbeat_timeout,
            autoPingRestartOnAnyTraffic=True,
            maxFramePayloadSize=limit,
            maxMessagePayloadSize=limit,
            autoFragmentSize=0,
            openHandshakeTimeout=open_handshake_timeout,
            closeHandshakeTimeout=2,
            perMessageCompressionOffers=[],
            tcpNoDelay=True,
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

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        # Only reached with reactor.connectTCP/connectSSL; endpoints report
        # the failure through their Deferred instead.
        log.info("cannot reach the edge: {reason}", reason=reason.getErrorMessage())
        if self.on_closed is not None:
            try:
                self.on_closed(
                    SessionClosed(
                        was_clean=False, code=None, reason=reason.getErrorMessage(), ready=False
                    )
                )
            except Exception:
                log.failure("on_closed callback failed")
