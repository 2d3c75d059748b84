"""
L{TunnelWebSocket}: what the edge's and the agent's autobahn protocols
share around the sans-IO L{netbore.protocol.Session}.

  - The hello exchange: the peer's hello (text, the first message) is
    checked for its role and starts the L{Session}; the role's part
    (authentication, attaching, reporting) plugs in through
    L{TunnelWebSocket.opened} and L{TunnelWebSocket.hello_received}.  A
    peer silent past C{openHandshakeTimeout} is failed.
  - Dispatch: each event the session returns goes to its handler through a
    table (event class -> handler, L{TunnelWebSocket.handle}).  An exception in
    a handler is logged with its Failure and resets that event's stream
    only (L{ErrorCode.INTERNAL_ERROR}); the session and its other streams
    go on.
  - Credit: DATA for a stream that is gone still returns its bytes to the
    session window (L{TunnelWebSocket.credit_back}); a session window
    update wakes every stream (L{WindowOpened} for stream 0).
  - Backpressure, both ways: a push producer registered with the
    WebSocket's transport pauses the streams feeding it when its buffer is
    full (L{TunnelWebSocket.pause_streams}), and resumes them when it
    drains; streams opened meanwhile start paused.  The other way, each
    stream's window toward its consumer bounds what the tunnel delivers.
  - Closing: close reasons cut to 123 UTF-8 bytes on a character boundary
    (L{close_reason}); protocol errors send a GOAWAY, then close with
    C{4000 + code}; C{onConnect} failures are logged with their Failure.
  - Writes go through the process's L{WriteBatch}
    (L{netbore.websocket.batched}): the frames queued while one read is
    handled leave in one C{send()} at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, ParamSpec, Protocol, TypeVar, cast

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .._types import Clock
from ..protocol import (
    DataReceived,
    ErrorCode,
    Event,
    Hello,
    ProtocolError,
    Session,
    Settings,
    StreamError,
    WindowOpened,
    decode_hello,
    websocket_close_code,
)
from ..writes import WriteBatch
from .batched import OPEN, BatchedWebSocket, TransportProducer
from .options import close_reason

__all__ = ["TunnelFactory", "TunnelStream", "TunnelWebSocket"]

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


StreamT = TypeVar("StreamT", bound=TunnelStream)
E = TypeVar("E", bound=Event)
H = TypeVar("H")
R = TypeVar("R")
P = ParamSpec("P")


class TunnelWebSocket(BatchedWebSocket, Generic[StreamT]):
    """
    Mixin for an autobahn Twisted WebSocket protocol (first among the
    bases) carrying a tunnel session.  A role subclass sets L{role} and
    L{peer_role}, registers its event handlers with L{handle} and implements
    the hooks below.

    @ivar session: the sans-IO session, once the hellos are exchanged.
    @ivar peer_hello: the peer's hello.
    @ivar streams: the live streams by id.
    @ivar paused: the WebSocket's transport asked the streams to pause.
    @ivar dispatching: events of one message are being handled.
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
        self.closed = False
        self.paused = False
        self.dispatching = False
        self.protocol_error = False
        self.sent_close: tuple[int, str] | None = None
        self._hello_timer: IDelayedCall | None = None
        self._handlers: dict[type, Callable[[Event], None]] = {}
        self.flush_pending = False
        self._flush_later = self.flush_frames
        self.handle(WindowOpened, self._on_window)

    def handle(self, kind: type[E], handler: Callable[[E], None]) -> None:
        """
        Handle the session's events of class C{kind} with C{handler}.
        """
        # (the table only ever hands a handler events of its own class)
        self._handlers[kind] = cast(Callable[[Event], None], handler)

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
            self.session = Session(self.role, self.local_settings(), hello.settings)
            self.hello_received(hello)
        except Exception:
            self.internal_error("starting the session")

    def _cancel_hello_timer(self) -> None:
        timer, self._hello_timer = self._hello_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- messages ------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            if not self.closed:
                self._on_hello(payload, isBinary)
            return
        if not isBinary:
            self.fail(ProtocolError("text message after the hello"))
            return
        try:
            events = session.receive(payload)
        except ProtocolError as e:
            # (the session has queued a GOAWAY carrying it)
            self.fail(e, queued=True)
            return
        except Exception:
            self.internal_error("receiving a message")
            return
        handlers = self._handlers
        self.dispatching = True
        try:
            for event in events:
                try:
                    handlers[type(event)](event)
                except Exception:
                    self._event_failed(event)
        finally:
            self.dispatching = False
        if not self.flush_pending:
            self.flush()
        self.events_handled()

    def events_handled(self) -> None:
        """
        The events of one message are handled (their frames flushed).
        """

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

    def credit_back(self, event: DataReceived) -> None:
        """
        DATA for a stream that is gone: nobody reads it, so its bytes go
        straight back to the session window (else the session leaks it).
        """
        session = self.session
        if session is not None and event.data:
            self.call(session.acknowledge, event.stream_id, len(event.data))

    def _on_window(self, event: WindowOpened) -> None:
        stream_id = event.stream_id
        if stream_id == 0:
            self.broadcast_window()
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.window_opened()

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

    # -- writes ------------------------------------------------------------------

    def flush_frames(self) -> None:
        """
        Send every frame the session has queued, now (if still open).
        """
        self.flush_pending = False
        session = self.session
        if session is None or self.state != OPEN:
            return
        for message in session.data_to_send():
            self.sendMessage(message, isBinary=True)
