"""
Tests for L{netbore.testing}: a whole tunnel in memory (edge, agent session,
origin), driven by raw HTTP/1.1 viewers.  No sockets.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from netbore.testing import EDGE_PORT, ORIGIN_PORT, InMemoryTunnel


class Echo(resource.Resource):
    """
    C{POST}: answers the request body, with its method and length in
    headers.
    """

    isLeaf = True

    def render_POST(self, request: IRequest) -> bytes:
        body: bytes = request.content.read()
        request.setHeader(b"X-Method", request.method)
        request.setHeader(b"X-Length", str(len(body)).encode())
        return body


class Chunked(resource.Resource):
    """
    C{GET}: a body in three writes and no length, so twisted.web frames it
    with chunked coding.
    """

    isLeaf = True

    def render_GET(self, request: IRequest) -> int:
        for part in (b"one ", b"two ", b"three"):
            request.write(part)
        request.finish()
        return server.NOT_DONE_YET


def web_origin() -> server.Site:
    root = resource.Resource()
    root.putChild(b"echo", Echo())
    root.putChild(b"chunked", Chunked())
    # Its own clock: nothing of the origin's should run on the global reactor.
    return server.Site(root, reactor=MemoryReactorClock())


def test_a_get_reaches_the_origin_through_edge_and_agent(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    assert tunnel.host == "app.tunnel.test"
    assert len(tunnel.hellos) == 1 and tunnel.hellos[0].tunnel_id == tunnel.created["tunnel_id"]
    assert tunnel.agent is not None and tunnel.agent.current is not None
    response = tunnel.get("/13")
    assert (response.status, response.body) == (200, b"Hello, World!")
    assert response.header("content-length") == "13"
    # The agent authenticated with the edge's own token: the session the
    # edge attached is the one our agent opened.
    assert tunnel.network.accepted[ORIGIN_PORT] == 1


def test_keep_alive_viewer_and_origin_connections_are_reused(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    before = tunnel.network.accepted[EDGE_PORT]
    viewer = tunnel.viewer()
    for _ in range(3):
        response = tunnel.get("/13", viewer=viewer)
        assert (response.status, response.body) == (200, b"Hello, World!")
    assert tunnel.network.accepted[EDGE_PORT] == before + 1
    assert tunnel.network.accepted[ORIGIN_PORT] == 1
    assert not viewer.lost and viewer.received == b""


def test_a_post_body_reaches_the_origin(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"), origin=web_origin())
    body = b"x" * 100_000
    response = tunnel.request(
        b"POST /echo HTTP/1.1\r\nHost: app.tunnel.test\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert response.status == 200
    assert response.header("x-method") == "POST"
    assert response.header("x-length") == str(len(body))
    assert response.body == body


def test_a_chunked_request_body_reaches_the_origin(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"), origin=web_origin())
    response = tunnel.request(
        b"POST /echo HTTP/1.1\r\nHost: app.tunnel.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert response.status == 200
    assert response.body == b"hello world"


def test_a_chunked_response_reaches_the_viewer(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"), origin=web_origin())
    viewer = tunnel.viewer()
    response = tunnel.get("/chunked", viewer=viewer)
    assert response.status == 200
    assert response.body == b"one two three"
    assert response.header("content-length") is None
    assert response.header("transfer-encoding") == "chunked"
    assert b"\r\n0\r\n\r\n" in response.raw
    # The connection is still good for the next request.
    assert tunnel.get("/chunked", viewer=viewer).body == b"one two three"


def test_an_unknown_name_is_404(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    response = tunnel.request(b"GET /13 HTTP/1.1\r\nHost: nobody.tunnel.test\r\nAccept: application/json\r\n\r\n")
    assert response.status == 404
    assert response.header("content-type").startswith("application/json")  # type: ignore[union-attr]
    assert json.loads(response.body)["error"]
    assert tunnel.network.accepted[ORIGIN_PORT] == 0


def test_a_known_name_without_its_agent_is_502(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    assert tunnel.get("/13").status == 200
    tunnel.disconnect_agent()
    assert len(tunnel.closes) == 1 and tunnel.closes[0].ready
    assert tunnel.agent is not None and tunnel.agent.current is None
    response = tunnel.get("/13", headers=[("Accept", "application/json")])
    assert response.status == 502
    assert json.loads(response.body)["error"]


def test_an_origin_nobody_listens_on_is_502(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    del tunnel.network.listeners[ORIGIN_PORT]
    viewer = tunnel.viewer()
    viewer.send(b"GET /13 HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
    tunnel.pump()
    assert viewer.received == b""
    # HostnameEndpoint gives up on the last address after its 0.3 s step.
    tunnel.advance(1)
    response = viewer.response()
    assert response.status == 502
    assert response.header("x-netbore-error") == "origin_unreachable"


def test_a_viewer_gets_the_control_api_on_the_edge_name(tmp_path: Path) -> None:
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"))
    response = tunnel.request(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: tunnel.test\r\nConnection: close\r\n\r\n")
    assert response.status == 200
    assert json.loads(response.body)["keys"]


def test_close_removes_a_temporary_key_directory() -> None:
    tunnel = InMemoryTunnel.build()
    data_dir = Path(tunnel.edge.config.data_dir)
    assert data_dir.is_dir()
    assert tunnel.get("/13").status == 200
    tunnel.close()
    assert not data_dir.exists()


def test_unit_tests_cannot_open_inet_sockets(no_inet_sockets: list[str]) -> None:
    # tests/conftest.py: this is why the harness above exists.
    with socket.socket() as s:
        with pytest.raises(OSError, match="unit tests open no sockets"):
            s.bind(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET6) as s:
        with pytest.raises(OSError, match="unit tests open no sockets"):
            s.connect_ex(("::1", 9))
    left, right = socket.socketpair()  # still allowed
    left.close()
    right.close()
    assert no_inet_sockets == ["socket.bind(('127.0.0.1', 0),)", "socket.connect_ex(('::1', 9),)"]
    no_inet_sockets.clear()  # or this test fails at teardown, as it should


# -- the forwarder's loopback cases (tests/test_agent_forwarder_loopback.py),
# -- end to end through edge and agent, in memory -----------------------------


class Origin(resource.Resource):
    """
    What the origin saw (C{/echo}, as JSON), a slow chunked body, repeated
    C{Set-Cookie}, a 204, and a response that never ends (C{/hang}).
    """

    isLeaf = True

    def __init__(self, clock: MemoryReactorClock) -> None:
        super().__init__()
        self.clock = clock
        self.lost: list[Deferred[None]] = []

    def render(self, request: server.Request) -> Any:
        path = request.path
        if path.startswith(b"/echo"):
            assert request.content is not None
            body = request.content.read()
            request.setHeader(b"Content-Type", b"application/json")
            headers = [
                [n.decode().lower(), v.decode("latin-1")]
                for n, vs in request.requestHeaders.getAllRawHeaders()
                for v in vs
            ]
            sha = hashlib.sha256(body).hexdigest()
            uri = request.uri.decode("latin-1")
            return json.dumps(
                {"method": request.method.decode(), "uri": uri, "headers": headers, "sha256": sha}
            ).encode()
        if path == b"/chunked":
            request.write(b"first,")
            self.clock.callLater(0.01, request.write, b"second,")
            self.clock.callLater(0.02, lambda: (request.write(b"third"), request.finish()))
            return server.NOT_DONE_YET
        if path == b"/cookies":
            for value in (b"a=1; Path=/", b"b=2", b"c=3; HttpOnly"):
                request.responseHeaders.addRawHeader(b"Set-Cookie", value)
            return b"cookies"
        if path == b"/empty":
            request.setResponseCode(204)
            return b""
        if path == b"/hang":
            lost: Deferred[None] = Deferred()
            request.notifyFinish().addBoth(lambda _: lost.callback(None))
            self.lost.append(lost)
            request.write(b"x" * 1000)
            return server.NOT_DONE_YET
        request.setResponseCode(404)
        return b"no"


def origin_tunnel(tmp_path: Path) -> tuple[InMemoryTunnel, Origin]:
    reactor = MemoryReactorClock()
    reactor.advance(1_800_000_000)
    origin = Origin(reactor)
    tunnel = InMemoryTunnel.build(str(tmp_path / "data"), origin=server.Site(origin, reactor=reactor), reactor=reactor)
    return tunnel, origin


def test_the_origin_sees_the_public_name_and_forwarding_headers(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    response = tunnel.get(
        "/echo", headers=[("X-Forwarded-For", "192.0.2.9"), ("Connection", "keep-alive, x-drop"), ("X-Drop", "1")]
    )
    assert response.status == 200
    got = json.loads(response.body)
    assert got["method"] == "GET"
    headers = got["headers"]
    assert ["host", "app.tunnel.test"] in headers
    # The viewer's own X-Forwarded-For, then the viewer's address.
    assert ["x-forwarded-for", "192.0.2.9, 127.0.0.1"] in headers
    assert ["x-forwarded-host", "app.tunnel.test"] in headers
    assert ["x-netbore-client-ip", "127.0.0.1"] in headers
    names = [n for n, _ in headers]
    assert "x-drop" not in names  # named in Connection: hop-by-hop


def test_a_percent_encoded_target_reaches_the_origin_byte_exact(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    viewer = tunnel.viewer()
    for target in ("/echo/a%2Fb/%7Euser/caf%C3%A9;p=1?q=%20x&y=a+b&z=%2F&e=", "/echo/x?", "/echo//double"):
        response = tunnel.get(target, viewer=viewer)
        assert json.loads(response.body)["uri"] == target


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_larger_than_a_stream_window_is_uploaded_whole(tmp_path: Path, chunked: bool) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    body = bytes(range(256)) * 12 * 1024  # 3 MiB: more than one 2 MiB stream window
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:1000], body[1000:])) + b"0\r\n\r\n"
        head = b"Transfer-Encoding: chunked"
    else:
        framed, head = body, b"Content-Length: %d" % len(body)
    response = tunnel.request(b"POST /echo HTTP/1.1\r\nHost: app.tunnel.test\r\n%s\r\n\r\n%s" % (head, framed))
    assert response.status == 200
    assert json.loads(response.body)["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_slow_chunked_response_arrives_whole(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    viewer = tunnel.viewer()
    viewer.send(b"GET /chunked HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
    tunnel.pump()
    assert b"first," in viewer.received and b"third" not in viewer.received
    tunnel.advance(0.01)
    tunnel.advance(0.01)
    response = viewer.response()
    assert response.body == b"first,second,third"
    assert response.header("content-length") is None


def test_head_has_the_length_a_get_would_have_and_no_body(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    viewer = tunnel.viewer()
    response = tunnel.request(b"HEAD /cookies HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n", viewer)
    assert (response.status, response.body, response.header("content-length")) == (200, b"", "7")
    # Nothing followed the head: the connection serves the next request.
    assert viewer.received == b""
    assert tunnel.get("/cookies", viewer=viewer).body == b"cookies"


def test_204_has_no_body(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    viewer = tunnel.viewer()
    response = tunnel.get("/empty", viewer=viewer)
    assert (response.status, response.body) == (204, b"")
    assert viewer.received == b""


def test_repeated_set_cookie_fields_survive_in_order(tmp_path: Path) -> None:
    tunnel, _ = origin_tunnel(tmp_path)
    response = tunnel.get("/cookies")
    assert [v for n, v in response.headers if n.lower() == "set-cookie"] == ["a=1; Path=/", "b=2", "c=3; HttpOnly"]
    assert response.body == b"cookies"


def test_a_viewer_who_goes_away_aborts_the_origin_request(tmp_path: Path) -> None:
    tunnel, origin = origin_tunnel(tmp_path)
    viewer = tunnel.viewer()
    viewer.send(b"GET /hang HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n")
    tunnel.pump()
    assert b"x" * 1000 in viewer.received
    (lost,) = origin.lost
    assert not lost.called
    viewer.close()
    tunnel.pump()
    assert lost.called
