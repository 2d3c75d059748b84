"""
Tests for L{netbore.agent.session}: the agent's autobahn client against an
in-memory autobahn edge (C{twisted.test.iosim}), with the real sans-IO
sessions on both sides and a fake origin endpoint.  No sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim

from netbore import protocol as S
from netbore.agent.forwarder import OriginForwarder
from netbore.agent.origin import OriginPool
from netbore.agent.session import AgentSessionFactory, AgentSessionProtocol, SessionClosed
from netbore.protocol import SUBPROTOCOL, ErrorCode, Hello, Settings, decode_hello, encode_hello
from netbore.writes import WriteBatch

from .test_agent_forwarder import Attempt, FakeOrigin

EDGE_SETTINGS = Settings(stream_window=64 * 1024, session_window=1024 * 1024, max_frame_payload=16 * 1024)


class FakeEdge(WebSocketServerProtocol):
    """
    The edge's side, as small as a test needs: answers the hello (or not,
    or badly), then drives a real edge L{S.Session}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.request: ConnectionRequest | None = None
        self.agent_hello: Hello | None = None
        self.session: S.Session | None = None
        self.events: list[Any] = []
        self.closed: tuple[bool, int | None, str | None] | None = None

    def onConnect(self, request: ConnectionRequest) -> str | None:
        self.request = request
        deny = self.factory.deny
        if deny:
            raise ConnectionDeny(deny, "no")
        return self.factory.select

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.agent_hello is None:
            assert not isBinary
            self.agent_hello = decode_hello(payload, expected_role="agent")
            reply = self.factory.reply
            if reply == "good":
                self.sendMessage(
                    encode_hello(
                        Hello(
                            version=1,
                            role="edge",
                            settings=EDGE_SETTINGS,
                            tunnel_id="t1",
                            public_url="http://app.tunnel.test",
                            session_id="s1",
                        )
                    ).encode(),
                    isBinary=False,
                )
                self.session = S.Session("edge", EDGE_SETTINGS, self.agent_hello.settings)
            elif reply == "garbage":
                self.sendMessage(b"{not json", isBinary=False)
            elif reply == "binary":
                self.sendMessage(b"\x00\x01", isBinary=True)
            return
        assert isBinary and self.session is not None
        self.events.extend(self.session.receive(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = (wasClean, code, reason)

    def flush(self) -> None:
        assert self.session is not None
        for message in self.session.data_to_send():
            self.sendMessage(message, isBinary=True)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def body(self, stream_id: int) -> bytes:
        return b"".join(e.data for e in self.of(S.DataReceived) if e.stream_id == stream_id)


class Harness:
    def __init__(
        self,
        reply: str = "good",
        select: str | None = SUBPROTOCOL,
        deny: int = 0,
        settings: Settings | None = None,
        writes: WriteBatch | None = None,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.origin = FakeOrigin()
        self.forwarder = OriginForwarder(self.clock, "http://127.0.0.1:3000", pool=OriginPool(self.origin, self.clock))
        self.ready: list[Hello] = []
        self.closed: list[SessionClosed] = []
        self.factory = AgentSessionFactory(
            "ws://edge.test:8080/connect",
            "tok.en.jwt",
            "agent-1",
            self.forwarder,
            self.clock,
            settings=settings if settings is not None else Settings(),
            heartbeat_interval=5,
            heartbeat_timeout=3,
            on_ready=self.ready.append,
            on_closed=self.closed.append,
            tunnel_id="t1",
            open_handshake_timeout=7,
            writes=writes,
        )
        server_factory = WebSocketServerFactory("ws://edge.test:8080/connect")
        server_factory.protocol = FakeEdge
        server_factory.reply = reply  # type: ignore[attr-defined]
        server_factory.select = select  # type: ignore[attr-defined]
        server_factory.deny = deny  # type: ignore[attr-defined]
        addr = IPv4Address("TCP", "127.0.0.1", 8080)
        self.client: AgentSessionProtocol = self.factory.buildProtocol(addr)
        self.edge: FakeEdge = server_factory.buildProtocol(addr)
        self.client_io = iosim.makeFakeClient(self.client)
        self.server_io = iosim.makeFakeServer(self.edge)
        self.pump = iosim.connect(self.edge, self.server_io, self.client, self.client_io, clock=self.clock)

    def flush(self) -> None:
        self.pump.flush()

    def edge_request(self, method: bytes = b"GET", target: bytes = b"/x", end_stream: bool = True) -> int:
        assert self.edge.session is not None
        sid = self.edge.session.send_request_head(method, target, [(b"host", b"app.tunnel.test")], end_stream)
        self.edge.flush()
        self.flush()
        return sid

    def respond(self, index: int, body: bytes = b"hello", length: Any = None) -> Attempt:
        """
        Accept origin connection C{index} and answer with C{body}, of
        C{length} (default: the body's, C{"chunked"}: unknown).
        """
        attempt = self.origin.attempts[index]
        if attempt.protocol is None:
            attempt.accept()
        if length == "chunked":
            framing = b"Transfer-Encoding: chunked\r\n"
            payload = b"%X\r\n%s\r\n" % (len(body), body) if body else b""
        else:
            framing = b"Content-Length: %d\r\n" % (len(body) if length is None else length)
            payload = body
        attempt.respond(b"HTTP/1.1 200 OK\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n" + framing + b"\r\n" + payload)
        self.flush()
        return attempt


def test_handshake_authenticates_and_exchanges_hellos() -> None:
    h = Harness()
    req = h.edge.request
    assert req is not None
    assert req.headers["authorization"] == "Bearer tok.en.jwt"
    assert req.protocols == [SUBPROTOCOL, "bearer.tok.en.jwt"]
    hello = h.edge.agent_hello
    assert hello is not None
    assert (hello.role, hello.agent_id, hello.tunnel_id) == ("agent", "agent-1", "t1")
    assert hello.settings == Settings()
    assert [x.public_url for x in h.ready] == ["http://app.tunnel.test"]
    assert h.factory.current is h.client
    assert h.closed == []


def test_protocol_options_are_explicit() -> None:
    h = Harness()
    f = h.factory
    assert (f.autoPingInterval, f.autoPingTimeout) == (5, 3)
    assert f.openHandshakeTimeout == 7
    assert f.perMessageCompressionOffers == []
    # Room for a request head (256 KiB) but bounded.
    assert 256 * 1024 < f.maxMessagePayloadSize <= 1024 * 1024
    assert f.maxFramePayloadSize == f.maxMessagePayloadSize


def test_request_is_forwarded_and_answered() -> None:
    h = Harness()
    sid = h.edge_request(target=b"/a%2Fb?c=%20")
    (attempt,) = h.origin.attempts
    attempt.accept()
    assert attempt.head()[0] == b"GET /a%2Fb?c=%20 HTTP/1.1"
    h.respond(0, b"hello", length=10)
    (head,) = h.edge.of(S.ResponseReceived)
    assert head.status == 200 and not head.end_stream
    assert [v for n, v in head.headers if n.lower() == b"set-cookie"] == [b"a", b"b"]
    assert h.edge.body(sid) == b"hello"
    # Not over until the origin's body ends.
    assert h.edge.of(S.StreamEnded) == []
    assert list(h.client.streams) == [sid]


def test_response_body_end_reaches_the_edge() -> None:
    h = Harness()
    sid = h.edge_request()
    response = h.respond(0, b"abc", length="chunked")
    response.respond(b"0\r\n\r\n")
    h.flush()
    assert h.edge.body(sid) == b"abc"
    assert h.edge.of(S.StreamEnded) == [S.StreamEnded(sid)]
    assert h.client.streams == {}


def test_response_follows_the_edge_window() -> None:
    h = Harness()
    sid = h.edge_request()
    body = b"q" * (EDGE_SETTINGS.stream_window + 5000)
    # (Ten bytes are still to come: the origin connection stays busy.)
    response = h.respond(0, body, length=len(body) + 10)
    assert len(h.edge.body(sid)) == EDGE_SETTINGS.stream_window
    assert response.transport.paused
    # Frames are cut to the edge's max_frame_payload.
    assert max(len(e.data) for e in h.edge.of(S.DataReceived)) <= EDGE_SETTINGS.max_frame_payload
    assert h.edge.session is not None
    h.edge.session.acknowledge(sid, EDGE_SETTINGS.stream_window)
    h.edge.flush()
    h.flush()
    assert h.edge.body(sid) == body
    assert not response.transport.paused


def test_edge_reset_cancels_origin_request() -> None:
    h = Harness()
    sid = h.edge_request()
    assert h.edge.session is not None
    h.edge.session.reset_stream(sid, ErrorCode.CANCEL)
    h.edge.flush()
    h.flush()
    assert h.origin.attempts[0].cancelled
    assert h.client.streams == {}


def test_origin_failure_resets_stream_and_session_survives() -> None:
    h = Harness()
    sid = h.edge_request()
    h.origin.attempts[0].refuse(ConnectionRefusedError())
    h.flush()
    (reset,) = h.edge.of(S.StreamReset)
    assert (reset.stream_id, reset.code) == (sid, ErrorCode.ORIGIN_UNREACHABLE)
    h.edge_request()
    assert len(h.origin.attempts) == 2
    assert h.closed == []


def test_upload_is_acknowledged_as_origin_takes_it() -> None:
    h = Harness()
    sid = h.edge_request(b"POST", b"/up", end_stream=False)
    assert h.edge.session is not None
    window = h.edge.session.send_window(sid)
    assert window == Settings().stream_window
    h.edge.session.send_data(sid, b"u" * window)
    h.edge.flush()
    h.flush()
    # Nobody took it yet: the edge's window stays used up.
    assert h.edge.session.send_window(sid) == 0

    attempt = h.origin.attempts[0].accept()
    h.flush()
    assert attempt.body().count(b"u") == window
    assert h.edge.session.send_window(sid) == window


@pytest.mark.parametrize("reply", ["garbage", "binary"])
def test_bad_edge_hello_closes_with_protocol_error(reply: str) -> None:
    h = Harness(reply=reply)
    assert h.ready == []
    (closed,) = h.closed
    assert closed.code == 4001 and closed.protocol_error and not closed.ready
    assert h.edge.closed is not None and h.edge.closed[1] == 4001


def test_edge_not_selecting_subprotocol_is_refused() -> None:
    h = Harness(select=None)
    assert h.edge.agent_hello is None
    (closed,) = h.closed
    assert closed.code == 4001 and closed.protocol_error


def test_refused_handshake_reports_http_status() -> None:
    h = Harness(deny=401)
    (closed,) = h.closed
    assert closed.http_status == 401
    assert not closed.ready


def test_edge_silent_after_hello_times_out() -> None:
    h = Harness(reply="none")
    assert h.closed == []
    h.clock.advance(7)
    h.flush()
    (closed,) = h.closed
    assert closed.protocol_error and closed.code == 4001


def test_text_after_hello_is_a_protocol_error() -> None:
    h = Harness()
    h.edge_request()
    h.edge.sendMessage(b"hi", isBinary=False)
    h.flush()
    (closed,) = h.closed
    assert closed.code == 4001 and closed.ready
    assert h.origin.attempts[0].cancelled


def test_bad_frame_closes_session_aborts_streams_without_raising() -> None:
    h = Harness()
    h.edge_request()
    response = h.respond(0, b"partial", length=100)
    h.edge.sendMessage(b"\xff\x00\x00\x00\x00\x01junk", isBinary=True)
    h.flush()
    # The agent told the edge why (GOAWAY) before closing with 4001.
    assert h.edge.of(S.GoAwayReceived)[-1].code != ErrorCode.NO_ERROR
    (closed,) = h.closed
    assert closed.code == 4001 and closed.protocol_error
    assert h.edge.closed is not None and h.edge.closed[1] == 4001
    assert response.transport.aborted
    assert h.client.streams == {}
    assert h.factory.current is None


def test_edge_go_away_finishes_in_flight_then_closes() -> None:
    h = Harness()
    sid = h.edge_request()
    assert h.edge.session is not None
    h.edge.session.go_away(ErrorCode.NO_ERROR, b"replaced")
    h.edge.flush()
    h.flush()
    assert h.closed == [] and not h.origin.attempts[0].cancelled
    h.respond(0, b"done")
    h.flush()
    assert h.edge.body(sid) == b"done"
    (closed,) = h.closed
    assert closed.go_away and closed.code == 1000


def test_drain_sends_go_away_and_closes_when_idle() -> None:
    h = Harness()
    h.edge_request()
    fired: list[object] = []
    h.client.drain().addCallback(fired.append)
    h.flush()
    assert h.edge.of(S.GoAwayReceived)
    assert fired == [] and h.closed == []
    h.respond(0, b"ok")
    h.flush()
    assert fired == [None]
    assert h.closed[0].code == 1000


def test_close_aborts_in_flight_requests() -> None:
    h = Harness()
    h.edge_request()
    h.edge_request()
    response = h.respond(0, b"part", length=10)
    h.client.close()
    h.flush()
    assert response.transport.aborted
    assert h.origin.attempts[1].cancelled
    assert len(h.closed) == 1


def test_transport_backpressure_pauses_origin_reads() -> None:
    h = Harness()
    h.edge_request()
    response = h.respond(0, b"a", length=100)
    producer = h.client_io.producer
    assert producer is not None
    producer.pauseProducing()
    assert response.transport.paused
    # A stream opened while paused starts paused too.
    h.edge_request()
    response2 = h.respond(1, b"b", length=100)
    assert response2.transport.paused
    producer.resumeProducing()
    assert not response.transport.paused and not response2.transport.paused


def test_heartbeat_timeout_closes_the_session() -> None:
    import txaio

    h = Harness()
    old = txaio.config.loop
    txaio.config.loop = h.clock
    try:
        # Autobahn's timers were made with the global loop; rebuild them.
        h.factory._batched_timer = txaio.make_batched_timer(bucket_seconds=0.2, chunk_size=1000)
        h.client.autoPingPendingCall = None
        h.client._sendAutoPing()
        # The pong never comes back: nothing is pumped.
        h.clock.advance(3.5)
        h.flush()
    finally:
        txaio.config.loop = old
    (closed,) = h.closed
    assert not closed.was_clean
    assert "ping" in closed.reason.lower()


def test_a_bug_handling_one_stream_resets_only_that_stream() -> None:
    h = Harness()

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    h.forwarder.forward = broken  # type: ignore[method-assign]
    sid = h.edge_request()
    (reset,) = h.edge.of(S.StreamReset)
    assert (reset.stream_id, reset.code) == (sid, ErrorCode.INTERNAL_ERROR)
    assert h.closed == []


def test_frames_written_during_a_read_leave_together_through_the_injected_batch() -> None:
    writes = WriteBatch()
    h = Harness(writes=writes)
    assert h.factory.writes is writes and h.client.writes is writes
    sid = h.edge_request(b"POST", b"/up", end_stream=False)
    writes.hold()  # as inside a read (an origin's or the edge's)
    try:
        h.client.send_response_head(sid, 200, b"OK", [])
        h.client.send_data(sid, b"body")
        h.client.drain()
        assert h.client_io.stream == []  # nothing handed to the transport yet
    finally:
        writes.release()
    assert len(h.client_io.stream) == 1  # one write for all of it
    h.flush()
    assert h.edge.body(sid) == b"body" and h.edge.of(S.GoAwayReceived)
