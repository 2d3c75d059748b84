"""
Bytes both ways between a viewer's connection and a byte stream to an agent:
what a WebSocket (any HTTP/1.1 C{Upgrade}) after its C{101}
(L{netbore.edge.bytestream.UpgradeExchange}) and a TCP tunnel's connection
(L{netbore.edge.tcp.TcpConnection}) share.

L{ByteRelay} is the session's stream and the viewer's connection's
protocol (or its switched-to handler) at once:

  - agent to viewer: the agent's bytes are written to the viewer's
    transport and acknowledged at once, or, while it is full, once it
    drains (this object is its producer): at most a stream window waits
    in its buffer.  A viewer that takes nothing for C{--send-timeout} is
    cut and its stream reset.
  - viewer to agent: bytes go out as DATA while the stream's window
    allows; beyond it they are held (C{backlog}) and the connection is not
    read until the window opens; a full WebSocket toward the agent pauses
    reading too (L{upload_paused}).
  - ends: the agent's C{END} shuts the viewer's write side (its whole
    connection, once the viewer's side has ended too); the viewer's end of
    data (C{readConnectionLost} on a half-closeable connection, else a
    clean close) is an C{END} toward the agent once its held bytes are
    sent; a cut connection or a C{RESET} aborts the other side.
  - an idle timeout (no bytes either way) applies only when
    C{--stream-idle-timeout} is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..protocol.frames import ErrorCode

if TYPE_CHECKING:
    from ..writes import WriteBatch
    from .agents import EdgeSession
    from .router import TunnelRouter

__all__ = ["BYTES", "DONE", "ByteRelay"]

log = Logger()

# States: waiting for an answer (an upgrade's); relaying an ordinary
# response (an upgrade the origin refused); bytes both ways; over.
WAITING, RESPONSE, BYTES, DONE = range(4)


@implementer(IPushProducer)
class ByteRelay:
    """
    A viewer connection's bytes and its byte stream (see the module's
    docstring).  Subclasses set C{state}, C{transport}, C{writes},
    C{session} and C{stream_id} once the stream carries bytes.
    """

    stream_id = 0
    session: EdgeSession | None = None
    transport: Any = None
    writes: WriteBatch
    #: (the session's DATA handler reads it) whether the stream stays
    #: registered after the agent's C{END_STREAM} on DATA (L{ended}'s answer).
    keeps_after_end = False
    #: (the drain reads a handed-over channel's C{requests}) a byte stream
    #: is never idle.
    requests = (None,)

    def __init__(self, router: TunnelRouter) -> None:
        self.router = router
        self.state = WAITING
        self.write_paused = False  # the viewer's transport is full
        self.unacked = 0  # agent bytes written while it was full
        self.backlog = b""  # viewer bytes beyond the stream's window
        self.upload_blocked = False
        self.sent_end = self.got_end = False

    # -- timers --------------------------------------------------------------------

    def _active(self) -> None:
        """Bytes moved: the idle clock (if any) starts again."""
        idle = self.router.idle_timeouts
        if idle is not None:
            idle.start(self)

    def idle_timed_out(self) -> None:
        if self.state is BYTES:
            log.info("byte stream idle for {timeout} s: closed", timeout=self.router.idle_timeouts.timeout)  # type: ignore[union-attr]
            self._cut()

    def send_timed_out(self) -> None:
        if self.state is not DONE:
            log.info(
                "viewer took no bytes for {timeout} s: stream {stream_id} reset",
                timeout=self.router.send_timeouts.timeout,
                stream_id=self.stream_id,
            )
            self._cut()

    def _cut(self) -> None:
        state = self.state
        self._reset(ErrorCode.CANCEL)
        if state is BYTES:
            if self.transport is not None:
                self.transport.abortConnection()
        else:
            self._abort_viewer()

    def _abort_viewer(self) -> None:
        """Cut the viewer before the stream carried bytes."""
        if self.transport is not None:
            self.transport.abortConnection()

    def _reset(self, code: int) -> None:
        self._stop_clocks()
        self.state = DONE
        self._closed()
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, code)

    def _stop_clocks(self) -> None:
        router = self.router
        router.timeouts.stop(self)
        router.send_timeouts.stop(self)
        if router.idle_timeouts is not None:
            router.idle_timeouts.stop(self)

    # -- the tunnel's count of byte streams (--max-byte-streams) ------------------

    #: The tunnel id this stream counts against (C{router.byte_streams}), while it does.
    counted: str | None = None

    def _count(self, tunnel_id: str) -> bool:
        """
        Count this stream against its tunnel's C{--max-byte-streams}; false
        (and counted as refused) when the tunnel has that many already.
        """
        router = self.router
        streams = router.byte_streams
        n = streams.get(tunnel_id, 0)
        if n >= router.config.max_byte_streams:
            router.byte_streams_refused += 1
            log.info(
                "byte stream refused: tunnel {tunnel_id} has {n} open (--max-byte-streams)",
                tunnel_id=tunnel_id,
                n=n,
            )
            return False
        streams[tunnel_id] = n + 1
        self.counted = tunnel_id
        return True

    def _closed(self) -> None:
        """The stream is over: it no longer counts (idempotent)."""
        tunnel_id, self.counted = self.counted, None
        if tunnel_id is not None:
            streams = self.router.byte_streams
            n = streams[tunnel_id] - 1
            if n:
                streams[tunnel_id] = n
            else:
                del streams[tunnel_id]

    # -- the agent's side (the session's stream) ---------------------------------

    def _relay(self, data: bytes, end_stream: bool) -> int:
        """Agent bytes on a byte stream: what to acknowledge now."""
        transport = self.transport
        if transport is None:
            return len(data)
        self._active()
        self.writes.write(transport, data)
        return self._written(len(data), end_stream)

    def _written(self, n: int, end_stream: bool) -> int:
        """C{n} agent bytes went to the viewer: what to acknowledge now."""
        if end_stream:
            self.ended()
        if self.write_paused:
            self.unacked += n
            return 0
        return n

    def received(self, data: bytes, end_stream: bool) -> int:
        if self.state is BYTES:
            return self._relay(data, end_stream)
        return len(data)

    def ended(self) -> bool:
        """
        The agent's C{END}: whether the session must keep the stream (a byte
        stream whose viewer still sends: its window updates must reach it).
        """
        if self.state is BYTES and not self.got_end:
            self.got_end = True
            transport = self.transport
            if transport is not None:
                self.writes.flush(transport)
                if self.sent_end or not hasattr(transport, "loseWriteConnection"):
                    self._lose(transport)
                else:
                    transport.loseWriteConnection()
            if self.sent_end and not self.backlog:
                self._done()  # (the viewer's END went before)
        keep = self.keeps_after_end = self.state is BYTES and self.session is not None
        return keep

    def _lose(self, transport: Any) -> None:
        transport.unregisterProducer()  # (else a paused one keeps it open)
        transport.loseConnection()

    def _done(self) -> None:
        """Both directions ended cleanly."""
        self._stop_clocks()
        self.state = DONE
        self._closed()
        self.session = None

    def reset(self, code: int) -> None:
        state, self.state = self.state, DONE
        self.session = None
        self._stop_clocks()
        if state is not DONE:
            self._closed()
        if state is BYTES and self.transport is not None:
            self.transport.abortConnection()

    def upload_paused(self) -> None:
        if self.state is BYTES and not self.upload_blocked and self.transport is not None:
            self.upload_blocked = True
            if not self.backlog:
                self.transport.pauseProducing()

    def window_opened(self) -> None:
        # (a viewer that closed behind its backlog still has it sent, then END)
        if self.state is not BYTES or (self.transport is None and not self.sent_end):
            return
        backlog, self.backlog = self.backlog, b""
        if backlog:
            self._send(backlog)
            if self.backlog:
                return
        if self.upload_blocked:
            self.upload_blocked = False
            if self.transport is not None:
                self.transport.resumeProducing()
        if backlog and self.sent_end:
            self._send_end()

    # -- the viewer's connection ---------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._active()
        if self.backlog:
            self.backlog += data
        elif self.state is BYTES:
            self._send(data)

    def _send(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        n = session.send_data(self.stream_id, data)
        if n < len(data):
            self.backlog = data[n:]
            if not self.upload_blocked and self.transport is not None:
                self.transport.pauseProducing()
                self.upload_blocked = True

    def readConnectionLost(self) -> None:
        """The viewer has no more to send (its write side is shut)."""
        if self.state is BYTES and not self.sent_end:
            self.sent_end = True
            if not self.backlog:
                self._send_end()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.transport = None
        if self.state is not BYTES:
            self._stop_clocks()
            self._closed()
            return
        if reason.check(ConnectionDone) is not None:
            self._stop_clocks()
            if not self.sent_end:
                self.sent_end = True
                if not self.backlog:
                    self._send_end()
        else:
            self._reset(ErrorCode.CANCEL)

    def _send_end(self) -> None:
        session = self.session
        if session is not None:
            session.send_end(self.stream_id)
            if self.got_end:
                session.streams.pop(self.stream_id, None)
        if self.got_end:
            transport = self.transport
            if transport is not None:
                self._lose(transport)
            self._done()

    def loseConnection(self) -> None:
        if self.transport is not None:
            self._lose(self.transport)

    # -- IPushProducer: the viewer's transport, full or drained ---------------

    def pauseProducing(self) -> None:
        self.write_paused = True
        if self.state is not DONE:
            self.router.send_timeouts.start(self)

    def resumeProducing(self) -> None:
        self.write_paused = False
        self.router.send_timeouts.stop(self)
        n, self.unacked = self.unacked, 0
        session = self.session
        if n and session is not None:
            session.acknowledge(self.stream_id, n)

    def stopProducing(self) -> None:
        pass
