"""
Issue 10's viewer-facing rules end to end: a real C{twistd} edge and agent
on loopback, an origin in this process (http.server, in a thread) that
records what reaches it, real sockets as viewers.

Cookie tossing (item 6), the fields a viewer may not remove or spoof (item
15), the targets a tunnel does not serve (answered at once, never after a
502's retries) and C{100 Continue} only for a tunnel that exists.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from . import procs
from .procs import Agent, Edge, request

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[list[tuple[str, str]]]  # every request's headers, in order

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(list(self.headers.items()))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        host = self.headers["Host"].rsplit(":", 1)[0]
        self.send_response(200)
        self.send_header("Set-Cookie", "host_only=1; Path=/")
        self.send_header("Set-Cookie", "tossed=1; Domain=localhost; Path=/")
        self.send_header("Set-Cookie", "tossed_too=1; Path=/; domain=.LOCALHOST")
        self.send_header("Set-Cookie", f"own=1; Domain={host}")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_OPTIONS = do_POST = do_PUT = do_CONNECT = do_GET  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[str, list[list[tuple[str, str]]]]]:
    seen: list[list[tuple[str, str]]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("viewer-rules")


@pytest.fixture(scope="module")
def edge(tmp: Path) -> Iterator[Edge]:
    proc = procs.start_edge(tmp, "--allow-anonymous")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(tmp: Path, edge: Edge, origin: tuple[str, list[Any]]) -> Iterator[Agent]:
    proc = procs.start_agent(tmp, edge, origin[0], "--name", "app")
    yield proc
    proc.stop()


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send C{data} on a new connection; what comes back until the edge closes or C{timeout}."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Content-Length: " in out:
                head, _, body = out.partition(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
                if len(body) >= length:
                    break
        return out


def test_a_tunnel_cannot_set_cookies_for_the_other_tunnels(edge: Edge, agent: Agent) -> None:
    status, headers, body = request(edge.port, "GET", "/", host=agent.host)
    assert (status, body) == (200, b"ok")
    cookies = [v for n, v in headers if n.lower() == "set-cookie"]
    host = agent.host.rsplit(":", 1)[0]
    assert cookies == ["host_only=1; Path=/", "tossed=1; Path=/", "tossed_too=1; Path=/", f"own=1; Domain={host}"]


def test_the_origin_gets_host_and_the_edge_s_forwarding_fields_whatever_the_viewer_sends(
    edge: Edge, agent: Agent, origin: tuple[str, list[list[tuple[str, str]]]]
) -> None:
    seen = origin[1]
    before = len(seen)
    status, _, _ = request(
        edge.port,
        "GET",
        "/",
        host=agent.host,
        headers=[
            ("Connection", "host, x-netbore-client-ip, x-forwarded-for"),
            ("X_Netbore_Client_IP", "10.6.6.6"),
            ("X-Forwarded_For", "10.6.6.6"),
        ],
    )
    assert status == 200
    (fields,) = seen[before:]
    names = {n.lower(): v for n, v in fields}
    assert names["host"] == agent.host
    assert names["x-netbore-client-ip"] == "127.0.0.1"
    assert names["x-forwarded-for"] == "127.0.0.1"
    assert all("10.6.6.6" not in v for _, v in fields), fields


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET http://app.localhost/ HTTP/1.1", b"400"),
        (b"OPTIONS * HTTP/1.1", b"400"),
        (b"CONNECT / HTTP/1.1", b"405"),
        (b"CONNECT app.localhost:443 HTTP/1.1", b"400"),  # authority-form: not a request line the edge reads
    ],
)
def test_targets_a_tunnel_does_not_serve_are_answered_at_once(
    edge: Edge, agent: Agent, origin: tuple[str, list[Any]], line: bytes, status: bytes
) -> None:
    before = len(origin[1])
    started = time.monotonic()
    out = raw(edge.port, line + b"\r\nHost: " + agent.host.encode() + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 " + status + b" "), out[:200]
    assert time.monotonic() - started < 2  # not a 502 after the agent's retries
    assert len(origin[1]) == before  # never forwarded


def test_no_100_continue_before_the_tunnel_is_found(edge: Edge, agent: Agent) -> None:
    head = b"PUT /up HTTP/1.1\r\nHost: nosuch.%s\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    out = raw(edge.port, head % edge.domain.encode())
    assert out.startswith(b"HTTP/1.1 404 "), out[:200]
    assert b"100 Continue" not in out
    # A tunnel that exists: 100 first, then the origin's answer.
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as s:
        s.sendall(
            b"PUT /up HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n" % agent.host.encode()
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        assert s.recv(100).startswith(b"HTTP/1.1 200 ")
