"""
TCP tunnels' connections on the edge in memory (issue 11, TCP tunnels):
netbore.edge.tcp's L{TcpConnection} on a tunnel's public port, a real agent
session run with C{--tcp} and a local echo service, on netbore.testing's
InMemoryTunnel.  (Half-close needs real sockets: see
C{tests/test_integration_tcp.py}.)
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from netbore.agent.tcp import TcpForwarder
from netbore.edge.config import EdgeConfig
from netbore.edge.tcp import TcpConnection, tcp_factory
from netbore.protocol import ErrorCode, Settings
from netbore.testing import LOOPBACK, ORIGIN_PORT, InMemoryTunnel

from .test_agent_tcp import Echo

PORT = 20001


class Client(Protocol):
    """A TCP client of the tunnel's public port."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = reason


@pytest.fixture
def seen() -> list[Echo]:
    return []


def build(seen: list[Echo], **config: object) -> InMemoryTunnel:
    settings = attrs.evolve(EdgeConfig(domain="tunnel.test", allow_anonymous=True), **config)
    t = InMemoryTunnel.build(origin=Factory.forProtocol(lambda: Echo(seen)), config=settings)
    assert t.agent is not None
    t.agent.forwarder = TcpForwarder(t.reactor, f"{LOOPBACK}:{ORIGIN_PORT}")  # the agent's --tcp
    # The tunnel holds a public port, as a TCP create makes it (netbore.edge.tcp_create).
    tunnel = t.edge.registry.by_name("app")
    assert tunnel is not None
    tunnel.protocol, tunnel.tcp_port = "tcp", PORT
    t.edge.registry.add(tunnel)
    t.network.listen(PORT, tcp_factory(t.edge.site.router, PORT))
    return t


@pytest.fixture
def tunnel(seen: list[Echo]) -> Iterator[InMemoryTunnel]:
    t = build(seen)
    yield t
    t.close()


def connect(tunnel: InMemoryTunnel) -> Client:
    client = Client()
    tunnel.network.connect(PORT, client)
    tunnel.pump()
    return client


def test_bytes_both_ways_with_the_peer_as_metadata(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    forwarder = tunnel.agent.forwarder  # type: ignore[union-attr]
    opened: list[object] = []
    open_stream = forwarder.open
    forwarder.open = lambda session, event: (opened.append(event), open_stream(session, event))[1]
    client = connect(tunnel)
    (event,) = opened
    peer = client.transport.getHost()  # type: ignore[union-attr]
    assert event.headers == [(b"peer", f"{peer.host}:{peer.port}".encode())]  # type: ignore[attr-defined]
    data = bytes(range(256)) * (4 * 4096 + 7)  # ~4 MiB, beyond every window
    client.transport.write(data)  # type: ignore[union-attr]
    tunnel.pump()
    (echo,) = seen
    assert echo.got == data and client.received == data
    assert tunnel.edge.site.router.byte_streams == {tunnel.created["tunnel_id"]: 1}
    # The client's close is an END: the agent shuts the service's write side
    # (iosim's loseWriteConnection does nothing: the service closes here).
    client.transport.loseConnection()  # type: ignore[union-attr]
    tunnel.pump()
    (stream,) = tunnel.agent.current.streams.values()  # type: ignore[union-attr]
    assert stream.got_end and tunnel.edge.site.router.byte_streams
    echo.transport.loseConnection()  # type: ignore[union-attr]
    tunnel.pump()
    assert tunnel.edge.site.router.byte_streams == {} and not tunnel.agent.current.streams  # type: ignore[union-attr]


def test_http_for_the_tcp_tunnels_name_is_not_found(tunnel: InMemoryTunnel) -> None:
    assert tunnel.get("/").status == 404


def test_max_byte_streams_per_tunnel(seen: list[Echo]) -> None:
    tunnel = build(seen, max_byte_streams=2)
    try:
        first, second, third = connect(tunnel), connect(tunnel), connect(tunnel)
        assert first.lost is None and second.lost is None
        assert third.lost is not None and len(seen) == 2  # closed before any byte; never dialled
        assert tunnel.edge.site.router.byte_streams_refused == 1
        first.transport.loseConnection()  # type: ignore[union-attr]
        seen[0].transport.loseConnection()  # type: ignore[union-attr]
        tunnel.pump()
        fourth = connect(tunnel)
        fourth.transport.write(b"room again")  # type: ignore[union-attr]
        tunnel.pump()
        assert fourth.received == b"room again"
    finally:
        tunnel.close()


def test_no_agent_connected_closes_the_connection(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    tunnel.disconnect_agent()
    client = connect(tunnel)
    assert client.lost is not None and not seen


def test_an_agent_without_byte_streams_closes_the_connection(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:

    tunnel.disconnect_agent()
    old = tunnel.connect_agent("old-agent", settings=Settings())  # byte_streams not announced, as before issue 11
    assert old.current is not None
    client = connect(tunnel)
    assert client.lost is not None and not seen
    assert tunnel.edge.site.router.byte_streams == {}


def test_the_agents_reset_cuts_the_connection(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    client = connect(tunnel)
    agent = tunnel.agent.current  # type: ignore[union-attr]
    ((stream_id, stream),) = agent.streams.items()
    stream._fail(ErrorCode.ORIGIN_RESET, b"TCP connection broke")  # (as a broken local connection does)
    tunnel.pump()
    assert client.lost is not None
    assert tunnel.edge.site.router.byte_streams == {}


def test_the_connection_caps_apply(seen: list[Echo]) -> None:
    tunnel = build(seen, max_connections_per_ip=1)
    try:
        factory = tcp_factory(tunnel.edge.site.router, PORT)
        from twisted.internet.address import IPv4Address

        addr = IPv4Address("TCP", "192.0.2.9", 50000)
        assert isinstance(factory.buildProtocol(addr), TcpConnection)
        assert factory.buildProtocol(addr) is None  # over the per-address cap: closed at once
    finally:
        tunnel.close()
