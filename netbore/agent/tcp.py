"""
TCP tunnels on the agent (issue 11): on an agent run with C{--tcp
HOST:PORT}, each C{BYTES_OPEN} in C{RAW} mode (L{netbore.protocol.BytesOpened}
with C{upgrade=False}: a viewer's connection to the tunnel's public port)
dials HOST:PORT, a new connection per stream, and relays the bytes both
ways.

L{TcpStream} is L{netbore.agent.upgrade.UpgradeStream} started in its
bytes state, with no head to send or read: the same backpressure both ways
(the edge's bytes acknowledged once the local connection's transport takes
them; the local connection not read beyond L{netbore.agent.upgrade.HIGH_WATER}
held for a shut window), half-close (the edge's C{END} shuts the local
connection's write side; the local end of data is an C{END} toward the edge
once what was read is sent) and reset (a C{RESET} aborts the connection).
What differs:

  - the edge may send bytes (and its C{END}) at once, before the dial
    completes: they are held unacknowledged (so at most a stream window)
    and written when the connection is made;
  - a dial that fails resets the stream with C{ORIGIN_UNREACHABLE} (and a
    log line); a connection that breaks (not a clean end) with
    C{ORIGIN_RESET}.

L{TcpForwarder} stands where an agent serving HTTP has its
L{netbore.agent.forwarder.OriginForwarder}: it opens the L{TcpStream}s and
refuses every HTTP stream (a request, an upgrade) with
C{ORIGIN_UNREACHABLE}, which the edge shows as a 502: a TCP tunnel serves
no HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from netbore._types import Reactor
from netbore.agent.config import tcp_address
from netbore.agent.forwarder import OriginForwarder, OriginStream, StreamSink
from netbore.agent.metrics import OriginCounts, origin_error
from netbore.agent.origin import origin_endpoint
from netbore.agent.upgrade import _BYTES, UpgradeStream
from netbore.http1 import Header
from netbore.protocol import BytesOpened
from netbore.protocol.errors import ErrorCode

if TYPE_CHECKING:
    from netbore.agent.session import AgentSessionProtocol

__all__ = ["NOT_HTTP", "TcpForwarder", "TcpStream"]

log = Logger()

#: The reset message of an HTTP stream sent to a TCP tunnel's agent.
NOT_HTTP = b"a TCP tunnel: no HTTP service here"


class TcpStream(UpgradeStream):
    """
    One viewer's TCP connection: a raw byte stream and the connection to
    the local address dialled for it (see the module's docstring).
    """

    def __init__(
        self, sink: AgentSessionProtocol, stream_id: int, address: str, counts: OriginCounts | None = None
    ) -> None:
        super().__init__(sink, stream_id, b"", counts)
        self.state = _BYTES
        self.address = address
        #: The edge's bytes that came before the connection was made.
        self.early: list[bytes] | None = []

    def _unreachable(self, failure: Failure) -> None:
        if not self.finished:
            self.counts.errors[origin_error(failure)] += 1  # (no request: not an unanswered one)
            log.warn(
                "cannot reach the TCP service at {address}: {why}", address=self.address, why=failure.getErrorMessage()
            )
            self._fail(ErrorCode.ORIGIN_UNREACHABLE, b"TCP service unreachable")

    def connectionMade(self) -> None:
        super().connectionMade()
        early, self.early = self.early or [], None
        transport: Any = self.transport
        if self.finished or transport is None:
            return
        for data in early:
            self._write(transport, data)
        if self.got_end:
            self.end_received()  # (the edge's END came before the connection)

    def data_received(self, data: bytes, end_stream: bool) -> None:
        if self.early is not None and not self.finished:
            self.early.append(data)  # (acknowledged once written)
            if end_stream:
                self.end_received()
            return
        super().data_received(data, end_stream)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if not (self.finished or self.eof_in or reason.check(ConnectionDone)):
            self.transport = None
            self.counts.errors[origin_error(reason)] += 1
            log.info("the connection to {address} broke: {why}", address=self.address, why=reason.getErrorMessage())
            self._fail(ErrorCode.ORIGIN_RESET, b"TCP connection broke")
            return
        super().connectionLost(reason)


class TcpForwarder:
    """
    A TCP tunnel agent's handler of new streams (see the module's
    docstring): the L{netbore.agent.session.AgentSessionFactory}'s
    C{forwarder}.

    @param address: C{HOST:PORT} (L{netbore.agent.config.tcp_address}).
    """

    def __init__(
        self, reactor: Reactor, address: str, connect_timeout: float = 10.0, counts: OriginCounts | None = None
    ) -> None:
        host, port = tcp_address(address)
        self.address = address
        self.endpoint = origin_endpoint(reactor, "tcp", host, port, connect_timeout)
        #: Failed connections to the TCP service (L{netbore.agent.metrics});
        #: a TCP tunnel has no requests to count.
        self.counts = counts if counts is not None else OriginCounts()

    def forward(
        self,
        sink: StreamSink,
        stream_id: int,
        method: bytes,
        target: bytes,
        headers: Sequence[Header],
        end_stream: bool,
    ) -> OriginStream:
        """An HTTP request: refused (the edge answers the viewer 502)."""
        return OriginForwarder._refused(sink, stream_id, ErrorCode.ORIGIN_UNREACHABLE, NOT_HTTP)

    def open(self, session: AgentSessionProtocol, event: BytesOpened) -> None:
        """A byte stream: dial for a raw one; refuse an upgrade as HTTP."""
        stream_id = event.stream_id
        if event.upgrade:
            session.reset_stream(stream_id, ErrorCode.ORIGIN_UNREACHABLE, NOT_HTTP)
            return
        stream = TcpStream(session, stream_id, self.address, self.counts)
        session.streams[stream_id] = stream
        if session.paused:
            stream.pause_sending()
        stream.connect(self.endpoint)

    def close(self) -> defer.Deferred[None]:
        """(as L{OriginForwarder.close}) Nothing is kept between streams."""
        return defer.succeed(None)
