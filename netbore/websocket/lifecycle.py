"""
L{TunnelLifecycle}: the cold part of the tunnel WebSocket shared by both
roles (L{netbore.websocket.adapter.TunnelWebSocket} is its hot part): the
role's hooks, the opening handshake and the hello exchange, failure of one
stream or of the whole session, backpressure from the transport, and
closing.  Nothing here runs per request in the steady state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, ParamSpec, Protocol, TypeVar

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .._types import Clock
from ..protocol import (
    ErrorCode,
    Event,
    Hello,
    ProtocolError,
    Session,
    Settings,
    StreamError,
    clamp_peer,
    decode_hello,
    websocket_close_code,
)
from ..writes import WriteBatch
from .batched import BatchedWebSocket, TransportProducer
from .options import close_reason

__all__ = ["TunnelFactory", "TunnelLifecycle", "TunnelStream"]

log = Logger()


class TunnelStream(Protocol):
    """
    What the adapter calls on every stream, whatever its role.
    """

    def window_opened(self) -> None: ...


class TunnelFactory(Protocol):
    """
    What the adapter reads of its autobahn factory.
    """

    @property
    def reactor(self) -> Clock: ...

    @property
    def writes(self) -> WriteBatch: ...

    @property
    def openHandshakeTimeout(self) -> float: ...

    @property
    def isServer(self) -> bool: ...


StreamT = TypeVar("StreamT", bound=TunnelStream)
H = TypeVar("H")
R = TypeVar("R")
P = ParamSpec("P")


class TunnelLifecycle(BatchedWebSocket, Generic[StreamT]):
    """
    Mixin for an autobahn Twisted WebSocket protocol carrying a tunnel
    session: everything but the per-message hot path (see the module's
    docstring).  A role subclass sets L{role} and L{peer_role} and
    implements the hooks below.

    @ivar session: the sans-IO session, once the hellos are exchanged.
    @ivar peer_hello: the peer's hello.
    @ivar streams: the live streams by id.
    @ivar paused: the WebSocket's transport asked the streams to pause.
    @ivar dispatching: events of one message are being handled.
    @ivar reading: a read of this connection is being handled (its frames
        are flushed at its end).
    @ivar watch_events: call L{events_handled} after each message's events.
    """

    role: ClassVar[str]
    peer_role: ClassVar[str]
    # autobahn's, as this mixin uses them.
    factory: TunnelFactory
    sendMessage: Callable[..., None]
    registerProducer: Callable[[object, bool], None]

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.peer_hello: Hello | None = None
        self.streams: dict[int, StreamT] = {}
        #: Read from the peer since the last sample (the one store per read,
        #: in L{TunnelWebSocket.dataReceived}; no clock call per read).
        self.heard = False
        #: The reactor's time when a sample last found L{heard} set
        #: (C{netbore.edge.sessiontimes.sample}); L{None}: never.
        self.last_read: float | None = None
        self.closed = False
        self.paused = False
        self.dispatching = False
        self.protocol_error = False
        self.sent_close: tuple[int, str] | None = None
        self._hello_timer: IDelayedCall | None = None
        self._handlers: dict[type, Callable[[Event], None]] = {}
        self.flush_pending = False
        self.reading = False
        self.watch_events = False
        self._flush_later = self.flush_frames

    # -- the role's part ---------------------------------------------------

    def opened(self) -> None:
        """
        The WebSocket is open; the peer's hello is awaited.
        """

    def local_settings(self) -> Settings:
        """
        The settings this side announces (and receives under).
        """
        raise NotImplementedError

    def hello_received(self, hello: Hello) -> None:
        """
        The peer's hello came and L{session} is up.
        """
        raise NotImplementedError

    def stream_failed(self, stream: StreamT) -> None:
        """
        Handling an event of C{stream} raised; it is forgotten and reset
        toward the peer.  Tell it so it lets its source go and acknowledges
        what it holds.
        """
        raise NotImplementedError

    def stream_lost(self, stream: StreamT) -> None:
        """
        The session is gone (closed, abandoned): tell C{stream}.
        """
        raise NotImplementedError

    def pause_streams(self) -> None:
        """
        The WebSocket's transport is full: pause what feeds it.  By default
        nothing: the role's sending methods look at L{paused} and take no
        more bytes, which stops a stream at its next send.
        """

    def resume_streams(self) -> None:
        """
        The transport drained.  By default, every stream is told its window
        opened.
        """
        self.broadcast_window()

    def connection_closed(self, was_clean: bool, code: int | None, reason: str | None) -> None:
        """
        The WebSocket closed; the streams have been told already.
        """

    def flush(self) -> None:
        """
        Send what the session has queued (see L{TunnelWebSocket.flush}).
        """
        raise NotImplementedError

    def events_handled(self) -> None:
        """
        The events of one message are handled (when L{watch_events} is set).
        """

    def peer_name(self) -> str:
        """
        Who the peer is, for logs.
        """
        return ""

    # -- opening -------------------------------------------------------------

    def guard_opening(self, opening: Callable[[H], R], handshake: H) -> R:
        """
        Run the role's C{onConnect} part: a L{ConnectionDeny} refuses the
        handshake as meant; anything else is logged with its Failure, and
        refuses it with 500.
        """
        try:
            return opening(handshake)
        except ConnectionDeny:
            raise
        except Exception:
            log.failure("opening handshake with the {peer_role} failed", peer_role=self.peer_role)
            raise ConnectionDeny(ConnectionDeny.INTERNAL_SERVER_ERROR, "internal error") from None

    def onOpen(self) -> None:
        try:
            self.registerProducer(TransportProducer(self), True)
        except RuntimeError:
            # (a producer of the connection's previous owner still there)
            log.failure("cannot register with the tunnel's transport")
        factory = self.factory
        self._hello_timer = factory.reactor.callLater(factory.openHandshakeTimeout, self._hello_timed_out)
        self.opened()

    def _hello_timed_out(self) -> None:
        self._hello_timer = None
        if self.session is None and not self.closed:
            self.fail(ProtocolError(f"the {self.peer_role} sent no hello in time"))

    def _on_hello(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self.fail(ProtocolError(f"expected the {self.peer_role}'s hello as a text message"))
            return
        try:
            hello = decode_hello(payload, expected_role=self.peer_role)
        except ProtocolError as e:
            self.fail(e)
            return
        self._cancel_hello_timer()
        self.peer_hello = hello
        try:
            local = self.local_settings()
            # Never send (and so buffer) more than our own windows, whatever
            # the peer announces (issue 10, item 2).
            self.session = Session(self.role, local, clamp_peer(local, hello.settings))
            self.hello_received(hello)
        except Exception:
            self.internal_error("starting the session")

    def _cancel_hello_timer(self) -> None:
        timer, self._hello_timer = self._hello_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _event_failed(self, event: Event) -> None:
        stream_id: int = getattr(event, "stream_id", 0)
        log.failure(
            "error handling {event} on stream {stream_id}; that stream is reset",
            event=type(event).__name__,
            stream_id=stream_id,
        )
        if not stream_id:
            return
        self.reset_failed_stream(stream_id)

    def reset_failed_stream(self, stream_id: int) -> None:
        """
        A bug of ours broke C{stream_id}: forget it, tell it, and reset it
        toward the peer.  The session and its other streams go on.
        """
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            try:
                self.stream_failed(stream)
            except Exception:
                log.failure("stream {stream_id} failed to clean up", stream_id=stream_id)
        session = self.session
        if session is not None:
            self.call(session.reset_stream, stream_id, ErrorCode.INTERNAL_ERROR, b"internal error")
            self.flush()

    def broadcast_window(self) -> None:
        """
        Tell every stream its send window may have grown (a session window
        update, or the transport drained); one that raises is reset alone.
        """
        for stream_id, stream in list(self.streams.items()):
            try:
                stream.window_opened()
            except Exception:
                log.failure("error resuming stream {stream_id}; it is reset", stream_id=stream_id)
                self.reset_failed_stream(stream_id)

    def call(self, method: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
        """
        Call a session method for a stream; one the session has already
        closed is not an error worth more than a debug line.
        """
        try:
            return method(*args, **kwargs)
        except StreamError as e:
            log.debug("session refused {method}: {error}", method=method.__name__, error=str(e))
            return None

    # -- backpressure ----------------------------------------------------------

    def transport_paused(self) -> None:
        if not self.paused:
            self.paused = True
            self.pause_streams()

    def transport_resumed(self) -> None:
        if self.paused:
            self.paused = False
            self.resume_streams()

    # -- closing ----------------------------------------------------------------

    def fail(self, error: ProtocolError, queued: bool = False) -> None:
        """
        The peer broke the protocol: say so with a GOAWAY (when a session
        exists and L{Session.receive} has not queued one already, C{queued})
        and close with C{4000 + error.code}.
        """
        log.warn(
            "protocol error on the session with the {peer_role} {peer}: {message}",
            peer_role=self.peer_role,
            peer=self.peer_name(),
            message=str(error),
        )
        self.protocol_error = True
        session = self.session
        if session is not None and not queued:
            try:
                session.go_away(error.code, str(error).encode("utf-8"))
            except (StreamError, ProtocolError):
                pass
        self.flush()
        self.send_close(websocket_close_code(error.code), str(error))

    def internal_error(self, what: str) -> None:
        """
        A bug of ours broke the whole session (not one stream): log it with
        its Failure and close with C{4000 + INTERNAL_ERROR}, never letting
        it escape into the reactor.
        """
        log.failure("{what} failed; closing the session", what=what)
        self.send_close(websocket_close_code(ErrorCode.INTERNAL_ERROR), "internal error")

    def send_close(self, code: int, reason: str) -> None:
        """
        Close the WebSocket with C{code} and C{reason} (cut to fit).
        """
        reason = close_reason(reason)
        if self.sent_close is None:
            self.sent_close = (code, reason)
        self.sendClose(code, reason)

    def drop_streams(self) -> int:
        """
        Tell every stream the session is gone and forget them; how many.
        """
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            try:
                self.stream_lost(stream)
            except Exception:
                log.failure("stream failed to clean up after its session")
        return len(streams)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_hello_timer()
        n = self.drop_streams()
        if n:
            log.info("session closed: {n} in-flight streams failed", n=n)
        self.session = None
        self.connection_closed(wasClean, code, reason)
