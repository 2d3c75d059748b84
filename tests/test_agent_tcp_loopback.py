"""
The agent's TCP byte streams against a real loopback TCP service (issue 11,
TCP tunnels): the agent's session and the edge's run in memory (as in
C{test_agent_tcp.py}); the connection the agent dials for each stream is a
real socket, so that half-close is a real C{shutdown(SHUT_WR)} each way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from zope.interface import implementer

from netbore.agent.tcp import TcpForwarder
from netbore.testing import InMemoryTunnel

from .test_agent_tcp import edge_session, open_raw

reactor: Any = _reactor

pytestmark = pytest.mark.integration


@implementer(IHalfCloseableProtocol)
class Digest(Protocol):
    """Reads to the end (the peer's FIN), then answers the SHA-256 of it all and closes."""

    def connectionMade(self) -> None:
        self.hash = hashlib.sha256()

    def dataReceived(self, data: bytes) -> None:
        self.hash.update(data)

    def readConnectionLost(self) -> None:
        self.transport.write(self.hash.hexdigest().encode())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


@implementer(IHalfCloseableProtocol)
class Banner(Protocol):
    """Sends a banner and shuts its write side at once; then reads to the end."""

    got: list[bytes]

    def connectionMade(self) -> None:
        self.transport.write(b"SSH-2.0-banner\r\n")  # type: ignore[union-attr]
        self.transport.loseWriteConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.got.append(data)

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]

    def writeConnectionLost(self) -> None:
        pass


async def until(tunnel: InMemoryTunnel, done: Callable[[], bool], seconds: float = 10.0) -> None:
    """Pump the in-memory side while the real reactor runs, until C{done()}."""
    for _ in range(int(seconds / 0.005)):
        tunnel.pump()
        if done():
            return
        await deferLater(reactor, 0.005, lambda: None)
    raise AssertionError("timed out")


async def with_service(factory: Factory[Any]) -> tuple[InMemoryTunnel, Any]:
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    tunnel = InMemoryTunnel.build()
    assert tunnel.agent is not None
    tunnel.agent.forwarder = TcpForwarder(reactor, f"127.0.0.1:{port.getHost().port}")
    return tunnel, port


@pytest_twisted.ensureDeferred
async def test_viewer_half_close_through_a_real_socket() -> None:
    tunnel, port = await with_service(Factory.forProtocol(Digest))
    try:
        stream_id, end = open_raw(tunnel)
        data = bytes(range(256)) * 4096 * 3  # 3 MiB: beyond a stream window
        session = edge_session(tunnel)
        sent = 0

        def progress() -> bool:
            nonlocal sent
            sent += session.send_data(stream_id, data[sent:])
            return sent == len(data)

        await until(tunnel, progress)
        session.send_end(stream_id)
        # The service saw the FIN (its digest is the answer), then closed: an END.
        await until(tunnel, lambda: end.got_end)
        assert end.data == hashlib.sha256(data).hexdigest().encode() and end.reset_code is None
        await until(tunnel, lambda: stream_id not in tunnel.agent.current.streams)  # type: ignore[union-attr]
    finally:
        tunnel.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_service_half_close_through_a_real_socket() -> None:
    got: list[bytes] = []

    def banner() -> Banner:
        protocol = Banner()
        protocol.got = got
        return protocol

    tunnel, port = await with_service(Factory.forProtocol(banner))
    try:
        stream_id, end = open_raw(tunnel)
        await until(tunnel, lambda: end.got_end)
        assert end.data == b"SSH-2.0-banner\r\n"
        # The other direction goes on after the service's FIN.
        session = edge_session(tunnel)
        assert session.send_data(stream_id, b"client hello") == len(b"client hello")
        session.send_end(stream_id)
        await until(tunnel, lambda: b"".join(got) == b"client hello")
        await until(tunnel, lambda: stream_id not in tunnel.agent.current.streams)  # type: ignore[union-attr]
        assert end.reset_code is None
    finally:
        tunnel.close()
        await port.stopListening()
