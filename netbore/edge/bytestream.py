"""
HTTP/1.1 Upgrade (WebSocket) pass-through on the edge: a viewer's request
with C{Connection: upgrade} and no body becomes a byte stream
(L{netbore.protocol.Session.open_upgrade}) instead of an ordinary exchange.

L{UpgradeExchange} stands where a L{netbore.edge.exchange.ViewerExchange}
would: the viewer connection's exchange until the answer, the agent
session's stream.  The answer:

  - C{101 Switching Protocols}: its head (with the origin's fields, e.g.
    the accepted subprotocol and extensions) goes to the viewer as is, and
    the viewer connection is switched over
    (L{netbore.edge.viewer.ViewerProtocol.switch_protocols}): from then on
    bytes flow untouched both ways.  Backpressure: the viewer's bytes beyond
    the stream's send window are held and its reading paused until the
    window opens; the agent's bytes are acknowledged once the viewer's
    transport takes them (this object is its producer).  Half-close: the
    agent's C{END} shuts the viewer's write side; the viewer closing
    cleanly is an C{END} toward the agent; a cut connection or a C{RESET}
    aborts the other side.  A viewer whose connection takes none of the
    agent's bytes for C{--send-timeout} is closed and its stream reset; an
    idle timeout (no bytes either way) applies only when
    C{--stream-idle-timeout} is set: a WebSocket may stay quiet for long.
  - any other status: an ordinary response, relayed as is.

A tunnel whose agents do not announce C{byte_streams} gets the
C{upgrade_not_supported} page (502) and a log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..http1 import response_head
from ..protocol.errors import ByteStreamsNotSupported, StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .header_rules import head_problem

if TYPE_CHECKING:
    from .agents import EdgeSession
    from .registry import Tunnel
    from .router import TunnelRouter
    from .viewer import ViewerProtocol

__all__ = ["UpgradeExchange"]

log = Logger()

Fields = list[tuple[bytes, bytes]]

#: The hop-by-hop fields an upgrade must carry on.
_UPGRADE_FIELDS = frozenset({b"connection", b"upgrade"})

# States: waiting for the answer; relaying an ordinary response; bytes both ways; over.
_WAITING, _RESPONSE, _BYTES, _DONE = range(4)


@implementer(IPushProducer)
class UpgradeExchange:
    """
    One viewer's upgrade request and what follows it (see the module's
    docstring).
    """

    stream_id = 0
    session: EdgeSession | None = None
    error: pages.ViewerError | None = None
    transport: Any = None
    #: (twisted.web's handed-over channel has them; the drain reads it) a
    #: byte stream is never idle.
    requests = (None,)

    def __init__(self, router: TunnelRouter, viewer: ViewerProtocol, label: str) -> None:
        self.router = router
        self.viewer = viewer
        self.state = _WAITING
        self.write_paused = False  # the viewer's transport is full
        self.unacked = 0  # agent bytes written while it was full
        self.backlog = b""  # viewer bytes beyond the stream's window
        self.upload_blocked = False
        self.sent_end = self.got_end = False
        error: pages.ViewerError | None
        if router.draining:
            error = pages.OFFLINE
        else:
            tunnel = router.registry.by_name(label)
            error = pages.NOT_FOUND if tunnel is None else self._open(tunnel)
        if error is None:
            router.timeouts.start(self)
        else:
            self.error = error
            self.state = _DONE

    def _open(self, tunnel: Tunnel) -> pages.ViewerError | None:
        from .exchange import request_fields  # (exchange imports the viewer, which imports this)

        self.tunnel = tunnel
        viewer = self.viewer
        head = viewer.head
        assert head is not None
        fields = [field for field in head.headers if field[0] in _UPGRADE_FIELDS]
        fields += request_fields(
            head.headers, head.connection, head.host, viewer.client_ip, viewer.secure, viewer.proxy_ip
        )
        unsupported = False
        sessions: list[Any] = sorted(tunnel.sessions, key=lambda s: s.stream_count())
        for session in sessions:
            try:
                self.stream_id = session.open_upgrade(self, head.method, head.target, fields)
            except ByteStreamsNotSupported:
                unsupported = True
                continue
            except StreamClosedError:
                continue
            except StreamError as e:
                log.info("upgrade request head not forwardable: {why}", why=str(e))
                return pages.HEAD_TOO_LARGE
            self.session = session
            return None
        if unsupported:
            log.info(
                "upgrade to {upgrade} refused: the agent of tunnel {name} does not take byte streams",
                upgrade=(head.header(b"upgrade") or b"?").decode("latin-1"),
                name=tunnel.public_hostname,
            )
            return pages.UPGRADE_NOT_SUPPORTED
        return pages.OFFLINE

    # -- the viewer's request (the viewer connection's exchange) ---------------

    def body_received(self, data: bytes) -> None:
        pass  # (an upgrade request has no body)

    def body_complete(self) -> None:
        error = self.error
        if error is not None:
            self.viewer.error_page(error)

    def viewer_gone(self) -> None:
        """The viewer left before the answer, or during an ordinary response."""
        self._reset(ErrorCode.CANCEL)

    def timed_out(self) -> None:
        if self.state is _WAITING:
            self._reset(ErrorCode.TIMEOUT)
            self.viewer.error_page(pages.TIMEOUT)

    def _active(self) -> None:
        """Bytes moved: the idle clock (if any) starts again."""
        idle = self.router.idle_timeouts
        if idle is not None:
            idle.start(self)

    def idle_timed_out(self) -> None:
        if self.state is _BYTES:
            log.info("upgraded connection idle for {timeout} s: closed", timeout=self.router.idle_timeouts.timeout)  # type: ignore[union-attr]
            self._cut()

    def send_timed_out(self) -> None:
        if self.state is not _DONE:
            log.info(
                "viewer took no bytes for {timeout} s: stream {stream_id} reset",
                timeout=self.router.send_timeouts.timeout,
                stream_id=self.stream_id,
            )
            self._cut()

    def _cut(self) -> None:
        state = self.state
        self._reset(ErrorCode.CANCEL)
        if state is _BYTES:
            if self.transport is not None:
                self.transport.abortConnection()
        else:
            self.viewer.abort()

    def _reset(self, code: int) -> None:
        self._stop_clocks()
        self.state = _DONE
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, code)

    # -- the agent's side (the session's stream) ---------------------------------

    def response_head(self, status: int, reason: bytes, headers: Fields, end_stream: bool) -> None:
        if self.state is not _WAITING:
            return
        self.router.timeouts.stop(self)
        why = head_problem(b"GET", status, reason, headers)
        if why is not None:
            # The rules of every response head (netbore.edge.header_rules): not passed on.
            self.router.refused_heads += 1
            log.warn("upgrade's response head refused on stream {stream_id}: {why}", stream_id=self.stream_id, why=why)
            self._reset(ErrorCode.PROTOCOL_ERROR)
            self.viewer.error_page(pages.INVALID_RESPONSE)
            return
        if status == 101 and not end_stream:
            self._switch(reason, headers)
            return
        if status < 200:
            self.state = _DONE
            self.viewer.error_page(pages.INVALID_RESPONSE)
            return
        from .exchange import response_fields

        self.state = _RESPONSE
        forwarded, length = response_fields(headers, self.tunnel.public_hostname)
        self.viewer.respond(status, reason, forwarded, length)
        if end_stream:
            self.ended()

    def _switch(self, reason: bytes, headers: Fields) -> None:
        viewer = self.viewer
        self.state = _BYTES
        self._active()
        self.transport = viewer.transport
        self.writes = viewer.site.writes
        self.writes.write(self.transport, response_head(101, reason or b"Switching Protocols", headers, False, None))
        rest = viewer.switch_protocols(self)
        if rest:
            self.dataReceived(rest)

    def received(self, data: bytes, end_stream: bool) -> int:
        """Agent bytes: what to acknowledge now is returned."""
        state = self.state
        if state is _BYTES:
            if self.transport is None:
                return len(data)
            self._active()
            self.writes.write(self.transport, data)
        elif state is _RESPONSE:
            self.viewer.write_body(data)
        else:
            return len(data)
        if end_stream:
            self.ended()
        if self.write_paused:
            self.unacked += len(data)
            return 0
        return len(data)

    def ended(self) -> bool:
        """
        The agent's END: whether the session must keep the stream (a byte
        stream whose viewer still sends: its window updates must reach it).
        """
        state = self.state
        if state is _RESPONSE:
            self.state = _DONE
            self.viewer.finish()
        elif state is _BYTES:
            self.got_end = True
            transport = self.transport
            if transport is not None:
                self.writes.flush(transport)
                if hasattr(transport, "loseWriteConnection"):
                    transport.loseWriteConnection()
                else:
                    transport.unregisterProducer()  # (else a paused one keeps it open)
                    transport.loseConnection()
        return self.state is _BYTES and not self.sent_end and self.session is not None

    def _stop_clocks(self) -> None:
        router = self.router
        router.timeouts.stop(self)
        router.send_timeouts.stop(self)
        if router.idle_timeouts is not None:
            router.idle_timeouts.stop(self)

    def reset(self, code: int) -> None:
        state, self.state = self.state, _DONE
        self.session = None
        self._stop_clocks()
        if state is _WAITING:
            from .exchange_ends import _RESET_PAGES

            self.viewer.error_page(_RESET_PAGES.get(code, pages.OFFLINE))
        elif state is _RESPONSE:
            self.viewer.abort()
        elif state is _BYTES and self.transport is not None:
            self.transport.abortConnection()

    def upload_paused(self) -> None:
        if self.state is _BYTES and not self.upload_blocked and self.transport is not None:
            self.upload_blocked = True
            if not self.backlog:
                self.transport.pauseProducing()

    def window_opened(self) -> None:
        # (a viewer that closed behind its backlog still has it sent, then END)
        if self.state is not _BYTES or (self.transport is None and not self.sent_end):
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

    # -- the viewer's connection once switched ---------------------------------

    def dataReceived(self, data: bytes) -> None:
        self._active()
        if self.backlog:
            self.backlog += data
        elif self.state is _BYTES:
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

    def connectionLost(self, reason: Failure) -> None:
        self.transport = None
        self._stop_clocks()
        if self.state is not _BYTES:
            return
        if reason.check(ConnectionDone) is not None:
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
            self.state = _DONE
            self.session = None

    def loseConnection(self) -> None:
        if self.transport is not None:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    # -- IPushProducer: the viewer's transport, full or drained ---------------

    def pauseProducing(self) -> None:
        self.write_paused = True
        if self.state is not _DONE:
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
