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
    bytes flow untouched both ways, as L{netbore.edge.byterelay.ByteRelay}
    carries them (backpressure both ways, half-close, the send timeout, the
    optional idle timeout: a WebSocket may stay quiet for long).
  - any other status: an ordinary response, relayed as is.

A tunnel whose agents do not announce C{byte_streams} gets the
C{upgrade_not_supported} page (502) and a log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from ..http1 import response_head
from ..protocol.errors import ByteStreamsNotSupported, StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .byterelay import BYTES, DONE, RESPONSE, WAITING, ByteRelay
from .header_rules import head_problem

if TYPE_CHECKING:
    from .registry import Tunnel
    from .router import TunnelRouter
    from .viewer import ViewerProtocol

__all__ = ["UpgradeExchange"]

log = Logger()

Fields = list[tuple[bytes, bytes]]

#: The hop-by-hop fields an upgrade must carry on.
_UPGRADE_FIELDS = frozenset({b"connection", b"upgrade"})


class UpgradeExchange(ByteRelay):
    """
    One viewer's upgrade request and what follows it (see the module's
    docstring).
    """

    error: pages.ViewerError | None = None

    def __init__(self, router: TunnelRouter, viewer: ViewerProtocol, label: str) -> None:
        super().__init__(router)
        self.viewer = viewer
        error: pages.ViewerError | None
        if router.draining:
            error = pages.OFFLINE
        else:
            tunnel = router.registry.by_name(label)
            if tunnel is None or tunnel.tcp_port is not None:
                error = pages.NOT_FOUND
            elif not self._count(tunnel.tunnel_id):
                error = pages.TOO_MANY_STREAMS
            else:
                error = self._open(tunnel)
        if error is None:
            router.timeouts.start(self)
        else:
            self.error = error
            self.state = DONE
            self._closed()

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
                self.stream_id = session.open_bytes(self, (head.method, head.target, fields))
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
        if self.state is WAITING:
            self._reset(ErrorCode.TIMEOUT)
            self.viewer.error_page(pages.TIMEOUT)

    def _abort_viewer(self) -> None:
        self.viewer.abort()

    # -- the agent's side (the session's stream) ---------------------------------

    def response_head(self, status: int, reason: bytes, headers: Fields, end_stream: bool) -> None:
        if self.state is not WAITING:
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
            self._reset(ErrorCode.PROTOCOL_ERROR)
            self.viewer.error_page(pages.INVALID_RESPONSE)
            return
        from .exchange import response_fields

        self.state = RESPONSE
        self._closed()  # (an ordinary response: no byte stream to count)
        forwarded, length = response_fields(headers, self.tunnel.public_hostname)
        self.viewer.respond(status, reason, forwarded, length)
        if end_stream:
            self.ended()

    def _switch(self, reason: bytes, headers: Fields) -> None:
        viewer = self.viewer
        self.state = BYTES
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
        if state is BYTES:
            return self._relay(data, end_stream)
        if state is not RESPONSE:
            return len(data)
        self.viewer.write_body(data)
        return self._written(len(data), end_stream)

    def ended(self) -> bool:
        if self.state is RESPONSE:
            self.state = DONE
            self.viewer.finish()
            return False
        return super().ended()

    def reset(self, code: int) -> None:
        state = self.state
        super().reset(code)
        if state is WAITING:
            from .exchange_ends import _RESET_PAGES

            self.viewer.error_page(_RESET_PAGES.get(code, pages.OFFLINE))
        elif state is RESPONSE:
            self.viewer.abort()
