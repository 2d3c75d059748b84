"""
Tests for L{netbore.testing}: a whole tunnel in memory (edge, agent session,
origin), driven by raw HTTP/1.1 viewers.  No sockets.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
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
