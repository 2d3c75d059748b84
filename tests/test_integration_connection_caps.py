"""
Connection caps and running out of file descriptors (issue 10, item 10),
with real processes: a real edge, agent and origin on loopback.

  - Over C{--max-connections-per-ip}, a new connection gets a 429 page and
    is closed, while the connections already open are served.
  - With the edge's descriptor limit lowered under it (C{prlimit}), a flood
    of connections runs it into C{EMFILE}: a kept-alive viewer connection
    still gets its answers meanwhile, and new connections succeed again
    once the flood's descriptors are freed.
"""

from __future__ import annotations

import http.client
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import procs
from .procs import Agent, Edge, Origin, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    proc = procs.start_origin(tmp_path)
    yield proc
    proc.stop()


def _get(conn: http.client.HTTPConnection, host: str, n: int = 1000) -> int:
    conn.putrequest("GET", f"/bytes/{n}", skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    assert len(body) == n or response.status != 200
    return response.status


def _open(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (TimeoutError, ConnectionResetError):
        return data


def _start(tmp: Path, origin: Origin, *edge_args: str) -> tuple[Edge, Agent]:
    edge = procs.start_edge(tmp, "--allow-anonymous", *edge_args)
    try:
        agent = procs.start_agent(tmp, edge, origin.url, "--name", "app")
    except BaseException:
        edge.stop()
        raise
    return edge, agent


def test_over_the_per_address_cap_429_and_the_open_connections_go_on(tmp_path: Path, origin: Origin) -> None:
    edge, agent = _start(tmp_path, origin, "--max-connections-per-ip", "12")
    flood: list[socket.socket] = []
    kept = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    try:
        assert _get(kept, agent.host) == 200
        # The agent's WebSocket and the kept-alive viewer are two of the 12.
        for _ in range(10):
            flood.append(_open(edge.port))
        time.sleep(0.3)
        over = _open(edge.port)
        answer = _read_all(over)
        over.close()
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:200]
        assert b"too_many_connections" in answer
        # The connections already open are served meanwhile.
        assert _get(kept, agent.host) == 200
        # Another address has its own count.
        other = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10, source_address=("127.0.0.2", 0))
        assert _get(other, agent.host) == 200
        other.close()
        # Room again once some close.
        for sock in flood[:3]:
            sock.close()
        del flood[:3]
        time.sleep(0.3)
        fresh = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        assert _get(fresh, agent.host) == 200
        fresh.close()
        assert edge.alive(), edge.log()
    finally:
        kept.close()
        for sock in flood:
            sock.close()
        agent.stop()
        edge.stop()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_file_descriptors_the_edge_keeps_serving_what_it_has(tmp_path: Path, origin: Origin) -> None:
    edge, agent = _start(tmp_path, origin)
    flood: list[socket.socket] = []
    kept = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    try:
        assert _get(kept, agent.host) == 200
        time.sleep(0.3)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # Lower the running edge's limit to a few more than it has open: the
        # connection caps, computed from the old limit, do not step in.
        limit = _open_fds(edge.pid) + 8
        resource.prlimit(edge.pid, resource.RLIMIT_NOFILE, (limit, hard))
        for i in range(40):
            flood.append(_open(edge.port, f"127.0.0.{2 + i % 8}"))
        wait_for(lambda: "EMFILE" in edge.log(), 10, "the edge to run out of descriptors")
        assert _open_fds(edge.pid) <= limit
        # The kept-alive viewer connection is still served, again and again.
        for _ in range(5):
            assert _get(kept, agent.host, 100000) == 200
        # Flood connections beyond the limit were closed (EOF), not left hanging.
        closed = 0
        for sock in flood:
            sock.settimeout(0.2)
            try:
                if sock.recv(1) == b"":
                    closed += 1
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 40 - 8
        for sock in flood:
            sock.close()
        flood.clear()
        time.sleep(0.5)
        # Descriptors freed: new connections succeed again.
        fresh = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        assert _get(fresh, agent.host) == 200
        fresh.close()
        assert _get(kept, agent.host) == 200
        assert edge.alive(), edge.log()
    finally:
        kept.close()
        for sock in flood:
            sock.close()
        agent.stop()
        edge.stop()
