"""
TCP tunnels on the edge: every connection accepted on a tunnel's public
port becomes a raw byte stream (L{netbore.protocol.Session.open_byte_stream},
with the viewer's address as its C{peer} metadata) to one of the tunnel's
agents, which dials its local address.

L{TcpConnection} is the connection's protocol and the stream at once; the
bytes both ways are L{netbore.edge.byterelay.ByteRelay}'s (backpressure
both ways under the stream's window, the send timeout, the optional idle
timeout).  It is half-closeable: a viewer that shuts its write side sends
an C{END} toward the agent and still receives the rest; the agent's C{END}
shuts the viewer's write side; the connection closes once both have ended.

A connection is closed at once, and the refusal logged, when the edge is
draining, the port's tunnel is gone or has no agent, its agent does not
take byte streams, the tunnel has C{--max-byte-streams} open, or the
connection caps (C{--max-connections}, C{--max-connections-per-ip}) are
reached: a TCP client sees its connection end before any byte.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..protocol.errors import ByteStreamsNotSupported, StreamClosedError
from .byterelay import BYTES, DONE, ByteRelay

if TYPE_CHECKING:
    from .limits import ConnectionLimits
    from .router import TunnelRouter

__all__ = ["TcpConnection", "TcpTunnelFactory", "tcp_factory"]

log = Logger()


@implementer(IHalfCloseableProtocol)
class TcpConnection(ByteRelay, Protocol):
    """
    One connection to a TCP tunnel's public port (see the module's docstring).
    """

    #: The connection caps this connection counts against, if any.
    limits: ConnectionLimits | None = None

    def __init__(self, router: TunnelRouter, port: int) -> None:
        ByteRelay.__init__(self, router)
        self.port = port
        self.writes = router.writes

    def connectionMade(self) -> None:
        transport: Any = self.transport
        peer = transport.getPeer()
        if self.limits is not None:
            self.limits.bind(transport, peer.host)
        why = self._open(peer)
        if why is not None:
            log.info("TCP connection to port {port} refused: {why}", port=self.port, why=why)
            self.state = DONE
            transport.loseConnection()
            return
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        self._active()

    def _open(self, peer: Any) -> str | None:
        """Open the byte stream; why not, when it cannot be."""
        router = self.router
        if router.draining:
            return "the edge is shutting down"
        tunnel = router.registry.by_port(self.port)
        if tunnel is None:
            return "no tunnel holds it"
        if not tunnel.sessions:
            return f"tunnel {tunnel.name}'s agent is not connected"
        if not self._count(tunnel.tunnel_id):
            return f"tunnel {tunnel.name} has --max-byte-streams open"
        metadata = [(b"peer", f"{peer.host}:{peer.port}".encode())]
        why = f"tunnel {tunnel.name}'s agent is going away"
        for session in sorted(tunnel.sessions, key=lambda s: s.stream_count()):
            try:
                self.stream_id = session.open_bytes(self, None, metadata)
            except ByteStreamsNotSupported:
                why = f"tunnel {tunnel.name}'s agent does not take byte streams (update it)"
                continue
            except StreamClosedError:
                continue
            self.session = session
            self.state = BYTES
            return None
        self._closed()
        return why

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self.limits is not None:
            self.limits.release(self.transport)
        ByteRelay.connectionLost(self, reason)


class TcpTunnelFactory(Factory):
    """
    The factory of the connections to one public port: each gets a
    L{TcpConnection}, within the edge's connection caps.
    """

    noisy = False

    def __init__(self, router: TunnelRouter, port: int) -> None:
        self.router = router
        self.port = port

    def buildProtocol(self, addr: Any) -> Protocol | None:
        limits = self.router.limits
        if limits is not None and limits.admit(str(getattr(addr, "host", ""))) is not None:
            return None  # (the reactor closes a connection it gets no protocol for)
        connection = TcpConnection(self.router, self.port)
        connection.limits = limits
        connection.factory = self
        return connection


def tcp_factory(router: TunnelRouter, port: int) -> Factory:
    """The factory of the connections to the tunnel holding public C{port}."""
    return TcpTunnelFactory(router, port)
