"""
Tests for L{netbore.edge.agents}: the agents' WebSocket endpoint, driven by
a minimal autobahn client over C{twisted.test.iosim}.  No sockets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.test import iosim
from twisted.web import server

from netbore import protocol as S
from netbore.auth import EPHEMERAL, MANAGEMENT, TokenAuthority, load_keyring
from netbore.edge.agents import AgentEndpoint, EdgeSession
from netbore.edge.config import EdgeConfig
from netbore.edge.ratelimit import AuthFailureLimiter
from netbore.edge.registry import InMemoryRegistry, Tunnel, TunnelState
from netbore.protocol import SUBPROTOCOL, Data, ErrorCode, Hello, Settings, decode_hello, encode, encode_hello
from netbore.websocket import TransportProducer
from netbore.writes import WriteBatch

AGENT_SETTINGS = Settings()


class FakeAgent(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.opened = False
        self.edge_hello: Hello | None = None
        self.session: S.Session | None = None
        self.events: list[Any] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onConnect(self, response: ConnectionResponse) -> None:
        self.protocol_selected = response.protocol

    def onOpen(self) -> None:
        self.opened = True
        hello = Hello(version=1, role="agent", settings=AGENT_SETTINGS, agent_id=self.factory.agent_id)
        self.sendMessage(encode_hello(hello).encode(), isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.edge_hello is None:
            self.edge_hello = decode_hello(payload, expected_role="edge")
            self.session = S.Session("agent", AGENT_SETTINGS, self.edge_hello.settings)
            return
        assert self.session is not None
        self.events.extend(self.session.receive(payload))

    def flush(self) -> None:
        assert self.session is not None
        for message in self.session.data_to_send():
            self.sendMessage(message, isBinary=True)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)


class Harness:
    def __init__(self, tmp_path: Path, per_minute: int = 3) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_800_000_000)
        self.config = EdgeConfig(domain="tunnel.test", heartbeat_interval=5, heartbeat_timeout=5)
        self.registry = InMemoryRegistry(clock=self.clock, grace=30)
        self.authority = TokenAuthority(load_keyring(str(tmp_path / "data")), issuer="netbore:test", clock=self.clock)
        self.limiter = AuthFailureLimiter(self.clock, per_minute)
        self.writes = WriteBatch()
        self.endpoint = AgentEndpoint(
            self.config, self.registry, self.authority, self.limiter, self.clock, writes=self.writes
        )
        now = self.clock.seconds()
        self.tunnel = Tunnel(
            tunnel_id="t1",
            name="app",
            public_hostname="app.tunnel.test",
            public_url="http://app.tunnel.test",
            owner=None,
            edge_id="edge-1",
            created_at=now,
            expires_at=now + 600,
            held_until=now + 600,
        )
        self.registry.add(self.tunnel)

    def token(self, tunnel_id: str = "t1", name: str = "app") -> str:
        return self.authority.issue(EPHEMERAL, tunnel_id, 600, name=name)[0]

    def connect(
        self, token: str | None, agent_id: str = "agent-1", how: str = "header"
    ) -> tuple[FakeAgent, EdgeSession, iosim.IOPump]:
        headers = {}
        protocols = [SUBPROTOCOL]
        url = "ws://tunnel.test/connect"
        if token is not None and how == "header":
            headers["Authorization"] = f"Bearer {token}"
        elif token is not None and how == "subprotocol":
            protocols.append("bearer." + token)
        elif token is not None and how == "query":
            url += "?nb_token=" + token
        factory = WebSocketClientFactory(url, protocols=protocols, headers=headers)
        factory.protocol = FakeAgent
        factory.agent_id = agent_id  # type: ignore[attr-defined]
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        agent: FakeAgent = factory.buildProtocol(addr)
        edge: EdgeSession = self.endpoint.factory.buildProtocol(addr)
        pump = iosim.connect(edge, iosim.makeFakeServer(edge), agent, iosim.makeFakeClient(agent), clock=self.clock)
        pump.flush()
        return agent, edge, pump


def test_each_token_carrier_is_accepted_and_the_tunnel_becomes_active(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for how in ("header", "subprotocol", "query"):
        agent, edge, pump = h.connect(h.token(), agent_id=f"agent-{how}", how=how)
        assert agent.opened, how
        assert agent.protocol_selected == SUBPROTOCOL
        assert agent.edge_hello is not None
        assert (agent.edge_hello.tunnel_id, agent.edge_hello.public_url) == ("t1", "http://app.tunnel.test")
    assert h.tunnel.state == TunnelState.ACTIVE
    assert len(h.tunnel.sessions) == 3


def test_missing_or_bad_tokens_are_refused_before_any_frame(tmp_path: Path) -> None:
    h = Harness(tmp_path, per_minute=3)
    agent, edge, pump = h.connect(None)
    assert not agent.opened and agent.edge_hello is None
    assert agent.closed is not None and "401" in (agent.closed[2] or "")
    management = h.authority.issue(MANAGEMENT, "alice", 600, role="user")[0]
    agent, edge, pump = h.connect(management)  # a management token is not an ephemeral token
    assert not agent.opened and agent.closed is not None and "401" in (agent.closed[2] or "")
    agent, edge, pump = h.connect(h.token() + "x")  # tampered
    assert not agent.opened
    # Three failures a minute from this address: now even a good token waits.
    agent, edge, pump = h.connect(h.token())
    assert not agent.opened and agent.closed is not None and "429" in (agent.closed[2] or "")
    h.clock.advance(61)
    agent, edge, pump = h.connect(h.token())
    assert agent.opened
    assert h.tunnel.state == TunnelState.ACTIVE


def test_token_for_an_unknown_tunnel_is_forbidden(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token("gone", "gone"))
    assert not agent.opened and agent.closed is not None and "403" in (agent.closed[2] or "")
    agent, edge, pump = h.connect(h.token("t1", "other"))  # name does not match the tunnel
    assert not agent.opened and agent.closed is not None and "403" in (agent.closed[2] or "")


def test_protocol_violation_closes_only_that_session(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    assert h.tunnel.state == TunnelState.ACTIVE
    # DATA on a stream the edge never opened.
    agent.sendMessage(encode(Data(7, b"x" * 10, False)), isBinary=True)
    pump.flush()
    h.clock.advance(3)
    pump.flush()
    assert agent.closed is not None
    assert agent.closed[1] == 4000 + ErrorCode.PROTOCOL_ERROR
    # The GOAWAY naming the error left before the close frame, although the
    # edge's frames of that read are flushed only when the read is done.
    assert [type(e) for e in agent.events] == [S.GoAwayReceived]
    assert agent.events[0].code == ErrorCode.PROTOCOL_ERROR
    assert h.tunnel.state == TunnelState.DOWN
    assert h.tunnel.sessions == []


def test_text_after_hello_is_a_protocol_error(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    agent.sendMessage(b"{}", isBinary=False)
    pump.flush()
    h.clock.advance(3)
    pump.flush()
    assert agent.closed is not None and agent.closed[1] == 4001


class RecordingExchange:
    def __init__(self) -> None:
        self.heads: list[int] = []

    def response_head(self, status: int, reason: bytes, headers: Any, end_stream: bool) -> None:
        self.heads.append(status)

    def reset(self, code: int) -> None:
        self.heads.append(-code)


def test_informational_heads_are_not_taken_for_the_response(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    exchange = RecordingExchange()
    sid = edge.open_stream(exchange, b"GET", b"/", [(b"host", b"app.tunnel.test")], True)  # type: ignore[arg-type]
    pump.flush()
    assert agent.session is not None
    agent.session.send_response_head(sid, 103, b"Early Hints", [(b"link", b"</a.css>; rel=preload")])
    agent.session.send_response_head(sid, 200, b"OK", [], end_stream=True)
    agent.flush()
    pump.flush()
    assert exchange.heads == [200]


def test_a_reconnecting_agent_replaces_its_old_session(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    old_agent, old_edge, old_pump = h.connect(h.token(), agent_id="laptop")
    in_flight = RecordingExchange()
    old_edge.open_stream(in_flight, b"GET", b"/", [(b"host", b"app.tunnel.test")], True)  # type: ignore[arg-type]
    other, _, _ = h.connect(h.token(), agent_id="server")
    new_agent, new_edge, new_pump = h.connect(h.token(), agent_id="laptop")
    # The old connection is cut at once (it may be half-open): its
    # in-flight stream fails now, not after a close-handshake timeout.
    assert in_flight.heads == [-ErrorCode.CANCEL]
    old_pump.flush()
    assert old_agent.closed is not None
    assert old_edge not in h.tunnel.sessions
    assert len(h.tunnel.sessions) == 2 and new_edge in h.tunnel.sessions
    assert {s.agent_id for s in h.tunnel.sessions} == {"laptop", "server"}
    assert h.tunnel.state == TunnelState.ACTIVE


def test_deleting_the_tunnel_closes_its_sessions(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    h.writes.hold()  # as inside a read: the GOAWAY's flush is deferred
    try:
        h.endpoint.tunnel_deleted(h.tunnel)
    finally:
        h.writes.release()
    pump.flush()
    h.clock.advance(3)
    pump.flush()
    assert agent.closed is not None and agent.closed[1] == 4100
    assert [type(e) for e in agent.events] == [S.GoAwayReceived]  # before the close
    assert h.tunnel.sessions == []


def test_frames_written_during_a_read_leave_together_when_it_ends(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    h.writes.hold()
    try:
        edge.go_away("first")  # a session frame: its flush is deferred
        edge.sendMessage(b"\x07\x00\x00\x00\x00\x00" + b"\x00" * 8, isBinary=True)  # a raw GOAWAY
        assert edge.transport.stream == []  # nothing handed to the transport yet
    finally:
        h.writes.release()
    assert len(edge.transport.stream) == 1  # one write for both messages
    pump.flush()
    assert [type(e) for e in agent.events] == [S.GoAwayReceived, S.GoAwayReceived]


def test_after_the_upgrade_the_session_is_its_transport_s_producer(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    site = server.Site(h.endpoint.resource(), reactor=h.clock)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()  # refuses a second producer, as TCP does
    transport.protocol = channel  # (autobahn hands the transport over through it)
    channel.makeConnection(transport)
    assert transport.producer is not None  # the HTTP channel
    channel.dataReceived(
        b"GET /connect HTTP/1.1\r\nHost: tunnel.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: " + SUBPROTOCOL.encode() + b"\r\n"
        b"Authorization: Bearer " + h.token().encode() + b"\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    session = transport.protocol
    assert isinstance(session, EdgeSession)
    assert isinstance(transport.producer, TransportProducer) and transport.streaming
