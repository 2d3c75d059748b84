"""
The origin forwarder against a real twisted.web origin on 127.0.0.1, with a
real sans-IO edge L{Session} on the other side: frames are moved between
the agent's and the edge's sessions in-process, no WebSocket.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.web import resource, server

from netbore.agent.forwarder import OriginForwarder, OriginStream
from netbore.protocol import session as S
from netbore.protocol.errors import ErrorCode
from netbore.protocol.handshake import Settings

reactor: Any = _reactor

# Every test here listens on 127.0.0.1 through the global reactor: not a
# unit test (DESIGN.md "Tests"; tests/conftest.py refuses sockets in those).
pytestmark = pytest.mark.integration

SETTINGS = Settings()
WINDOW = SETTINGS.stream_window
ONE_READ = 64 * 1024  # twisted.internet.tcp reads at most this much at once


# -- the origin ----------------------------------------------------------------


class Origin(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.lost: list[Deferred[None]] = []
        self.big = b""

    def render(self, request: server.Request) -> Any:
        path = request.path
        if path.startswith(b"/echo"):
            assert request.content is not None
            body = request.content.read()
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps(
                {
                    "method": request.method.decode(),
                    "uri": request.uri.decode("latin-1"),
                    "headers": [
                        [n.decode().lower(), v.decode("latin-1")]
                        for n, vs in request.requestHeaders.getAllRawHeaders()
                        for v in vs
                    ],
                    "length": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
            ).encode()
        if path == b"/chunked":
            request.write(b"first,")
            reactor.callLater(0.01, request.write, b"second,")
            reactor.callLater(0.02, lambda: (request.write(b"third"), request.finish()))
            return server.NOT_DONE_YET
        if path == b"/cookies":
            for value in (b"a=1; Path=/", b"b=2", b"c=3; HttpOnly"):
                request.responseHeaders.addRawHeader(b"Set-Cookie", value)
            return b"cookies"
        if path == b"/empty":
            request.setResponseCode(204)
            return b""
        if path == b"/big":
            return self.big
        if path == b"/hang":
            lost: Deferred[None] = Deferred()
            request.notifyFinish().addBoth(lambda r: lost.callback(None))
            self.lost.append(lost)
            request.write(b"x" * 1000)
            return server.NOT_DONE_YET
        request.setResponseCode(404)
        return b"no"


# -- the two sessions ------------------------------------------------------------


class EdgeStream:
    def __init__(self) -> None:
        self.head: S.ResponseReceived | None = None
        self.body = bytearray()
        self.received = 0
        self.reset: S.StreamReset | None = None
        self.done: Deferred[EdgeStream] = Deferred()
        self.first_data: Deferred[None] = Deferred()
        self.upload = b""
        self.upload_end = False

    def finish(self) -> None:
        if not self.done.called:
            self.done.callback(self)


class Loopback:
    """
    The agent's sans-IO session, used as the forwarder's L{StreamSink}, wired
    to an edge session that behaves like a viewer-facing edge.
    """

    def __init__(self, forwarder: OriginForwarder, auto_ack: bool = True) -> None:
        self.forwarder = forwarder
        self.agent = S.Session("agent", SETTINGS, SETTINGS)
        self.edge = S.Session("edge", SETTINGS, SETTINGS)
        self.streams: dict[int, OriginStream] = {}
        self.edge_streams: dict[int, EdgeStream] = {}
        self.auto_ack = auto_ack
        self._pumping = False
        self._agent_handlers: dict[type, Callable[[Any], None]] = {
            S.RequestReceived: self._on_request,
            S.DataReceived: self._on_data,
            S.StreamEnded: lambda e: self._stream(e.stream_id, lambda s: s.end_received()),
            S.StreamReset: self._on_reset,
            S.WindowOpened: self._on_agent_window,
        }

    # StreamSink (agent side).

    def send_response_head(
        self, stream_id: int, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None:
        self.agent.send_response_head(stream_id, status, reason, headers, end_stream)
        if end_stream:
            self.streams.pop(stream_id, None)
        self.pump()

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        n = min(len(data), self.agent.send_window(stream_id))
        if n < len(data):
            if not n:
                return 0
            data, end_stream = data[:n], False
        self.agent.send_data(stream_id, data, end_stream)
        if end_stream:
            self.streams.pop(stream_id, None)
        self.pump()
        return n

    def send_end(self, stream_id: int) -> None:
        self.agent.send_end(stream_id)
        self.streams.pop(stream_id, None)
        self.pump()

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        self.agent.reset_stream(stream_id, code, message)
        self.streams.pop(stream_id, None)
        self.pump()

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.agent.acknowledge(stream_id, n)
        self.pump()

    def send_window(self, stream_id: int) -> int:
        return self.agent.send_window(stream_id)

    def max_data_payload(self) -> int:
        return SETTINGS.max_frame_payload

    def stream_finished(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    # Agent-side dispatch.

    def _stream(self, stream_id: int, f: Callable[[OriginStream], None]) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            f(stream)

    def _on_request(self, e: S.RequestReceived) -> None:
        stream = self.forwarder.forward(self, e.stream_id, e.method, e.target, e.headers, e.end_stream)
        if not stream.finished:
            self.streams[e.stream_id] = stream

    def _on_data(self, e: S.DataReceived) -> None:
        stream = self.streams.get(e.stream_id)
        if stream is None:
            self.agent.acknowledge(e.stream_id, len(e.data))
        else:
            stream.data_received(e.data, e.end_stream)

    def _on_reset(self, e: S.StreamReset) -> None:
        stream = self.streams.pop(e.stream_id, None)
        if stream is not None:
            stream.reset_received(e.code, e.message)

    def _on_agent_window(self, e: S.WindowOpened) -> None:
        if e.stream_id == 0:
            for stream in list(self.streams.values()):
                stream.window_opened()
        else:
            self._stream(e.stream_id, lambda s: s.window_opened())

    # Edge side.

    def request(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = None,
    ) -> EdgeStream:
        edge_stream = EdgeStream()
        hdrs = [(b"host", b"app.tunnel.test")] + list(headers or [])
        sid = self.edge.send_request_head(method, target, hdrs, end_stream=body is None)
        self.edge_streams[sid] = edge_stream
        if body is not None:
            edge_stream.upload = body
            edge_stream.upload_end = True
            self._upload(sid)
        self.pump()
        return edge_stream

    def edge_reset(self, stream: EdgeStream) -> None:
        for sid, s in self.edge_streams.items():
            if s is stream:
                self.edge.reset_stream(sid, ErrorCode.CANCEL, b"viewer went away")
        self.pump()

    def edge_ack(self, stream: EdgeStream) -> None:
        for sid, s in self.edge_streams.items():
            if s is stream and s.received:
                n, s.received = s.received, 0
                self.edge.acknowledge(sid, n)
        self.pump()

    def _upload(self, sid: int) -> None:
        s = self.edge_streams[sid]
        while s.upload:
            n = min(len(s.upload), self.edge.send_window(sid), 100_000)
            if n <= 0:
                return
            chunk, s.upload = s.upload[:n], s.upload[n:]
            self.edge.send_data(sid, chunk, end_stream=s.upload_end and not s.upload)

    def _on_edge_event(self, e: Any) -> None:
        s = self.edge_streams.get(e.stream_id)
        if s is None:
            if isinstance(e, S.DataReceived):
                self.edge.acknowledge(e.stream_id, len(e.data))
            return
        if isinstance(e, S.ResponseReceived):
            s.head = e
            if e.end_stream:
                s.finish()
        elif isinstance(e, S.DataReceived):
            s.body += e.data
            if not s.first_data.called:
                s.first_data.callback(None)
            if self.auto_ack:
                self.edge.acknowledge(e.stream_id, len(e.data))
            else:
                s.received += len(e.data)
            if e.end_stream:
                s.finish()
        elif isinstance(e, S.StreamEnded):
            s.finish()
        elif isinstance(e, S.StreamReset):
            s.reset = e
            s.finish()
        elif isinstance(e, S.WindowOpened):
            ids = list(self.edge_streams) if e.stream_id == 0 else [e.stream_id]
            for sid in ids:
                if self.edge_streams[sid].upload:
                    self._upload(sid)

    def pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            moved = True
            while moved:
                moved = False
                for message in self.agent.data_to_send():
                    moved = True
                    for event in self.edge.receive(message):
                        self._on_edge_event(event)
                for message in self.edge.data_to_send():
                    moved = True
                    for event in self.agent.receive(message):
                        self._agent_handlers[type(event)](event)
        finally:
            self._pumping = False


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture
def origin() -> Any:
    site = server.Site(Origin())
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield site.resource, port.getHost().port
    port.stopListening()


@pytest.fixture
def forwarder(origin: Any) -> Any:
    fwd = OriginForwarder(reactor, f"http://127.0.0.1:{origin[1]}", connect_timeout=5)
    yield fwd
    fwd.close()


async def done(stream: EdgeStream, timeout: float = 10) -> EdgeStream:
    return await stream.done.addTimeout(timeout, reactor)


def header(stream: EdgeStream, name: bytes) -> list[bytes]:
    assert stream.head is not None
    return [v for n, v in stream.head.headers if n.lower() == name]


# -- tests -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_get(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    s = await done(loop.request(b"GET", b"/echo", [(b"x-forwarded-for", b"192.0.2.9"), (b"connection", b"close")]))
    assert s.head is not None and s.head.status == 200 and s.reset is None
    got = json.loads(bytes(s.body))
    assert got["method"] == "GET"
    headers = got["headers"]
    assert ["host", "app.tunnel.test"] in headers
    assert ["x-forwarded-for", "192.0.2.9"] in headers
    assert "connection" not in [n for n, _ in headers]
    assert header(s, b"content-length") == [str(len(s.body)).encode()]


@pytest_twisted.ensureDeferred
async def test_percent_encoded_target_is_byte_exact(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    for target in (b"/echo/a%2Fb/%7Euser/caf%C3%A9;p=1?q=%20x&y=a+b&z=%2F&e=", b"/echo/x?", b"/echo//double"):
        s = await done(loop.request(b"GET", target))
        assert json.loads(bytes(s.body))["uri"] == target.decode("latin-1")


@pytest.mark.parametrize("chunked", [False, True])
@pytest_twisted.ensureDeferred
async def test_post_with_body(forwarder: OriginForwarder, chunked: bool) -> None:
    loop = Loopback(forwarder)
    body = bytes(range(256)) * 4096  # 1 MiB: more than one stream window
    headers = [] if chunked else [(b"content-length", str(len(body)).encode())]
    s = await done(loop.request(b"POST", b"/echo", headers, body=body), timeout=20)
    got = json.loads(bytes(s.body))
    assert got["length"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()


@pytest_twisted.ensureDeferred
async def test_chunked_response(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    s = await done(loop.request(b"GET", b"/chunked"))
    assert bytes(s.body) == b"first,second,third"
    assert header(s, b"content-length") == []
    assert header(s, b"transfer-encoding") == []


@pytest_twisted.ensureDeferred
async def test_head(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    s = await done(loop.request(b"HEAD", b"/cookies"))
    assert s.head is not None and s.head.status == 200 and s.head.end_stream
    assert s.body == b""
    # The length the GET would have.
    assert header(s, b"content-length") == [b"7"]


@pytest_twisted.ensureDeferred
async def test_204(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    s = await done(loop.request(b"GET", b"/empty"))
    assert s.head is not None and s.head.status == 204 and s.head.end_stream
    assert s.body == b""


@pytest_twisted.ensureDeferred
async def test_set_cookies_in_order(forwarder: OriginForwarder) -> None:
    loop = Loopback(forwarder)
    s = await done(loop.request(b"GET", b"/cookies"))
    assert header(s, b"set-cookie") == [b"a=1; Path=/", b"b=2", b"c=3; HttpOnly"]
    assert bytes(s.body) == b"cookies"


@pytest_twisted.ensureDeferred
async def test_origin_refused() -> None:
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number = port.getHost().port
    await port.stopListening()
    fwd = OriginForwarder(reactor, f"http://127.0.0.1:{number}", connect_timeout=5)
    loop = Loopback(fwd)
    s = await done(loop.request(b"GET", b"/"))
    assert s.head is None
    assert s.reset is not None and s.reset.code == ErrorCode.ORIGIN_UNREACHABLE
    assert s.reset.message


@pytest_twisted.ensureDeferred
async def test_edge_reset_mid_download_closes_origin_connection(forwarder: OriginForwarder, origin: Any) -> None:
    loop = Loopback(forwarder)
    s = loop.request(b"GET", b"/hang")
    await s.first_data.addTimeout(10, reactor)
    (lost,) = origin[0].lost
    assert not lost.called
    loop.edge_reset(s)
    await lost.addTimeout(10, reactor)
    assert loop.streams == {}


@pytest_twisted.ensureDeferred
async def test_flow_control_bounds_agent_memory(forwarder: OriginForwarder, origin: Any) -> None:
    size = 10 * 1024 * 1024
    origin[0].big = b"z" * size
    loop = Loopback(forwarder, auto_ack=False)
    s = loop.request(b"GET", b"/big")
    await s.first_data.addTimeout(10, reactor)
    (stream,) = loop.streams.values()
    # Let the origin push as much as it can while the edge acknowledges
    # nothing.
    for _ in range(20):
        await deferLater(reactor, 0.01)
        assert len(s.body) <= WINDOW
        assert stream.buffered_bytes <= ONE_READ
    assert len(s.body) == WINDOW
    # Acknowledging lets the rest through, all of it.
    while not s.done.called:
        loop.edge_ack(s)
        await deferLater(reactor, 0)
        assert stream.buffered_bytes <= ONE_READ
    assert len(s.body) == size and s.reset is None
