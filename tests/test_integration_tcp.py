"""
TCP tunnels end to end (issue 11, "Must show"): real C{twistd} edge and
agent processes, a TCP echo origin (L{tests.tcp_echo}) and plain sockets as
the clients, all on loopback.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from . import procs
from .procs import Agent, Edge, Proc, free_port, request, wait_for
from .tcp_echo import TRAILER

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class EchoOrigin(Proc):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        super().__init__(
            "tcp-echo", [sys.executable, "-m", "tests.tcp_echo", str(self.port)], tmp / f"tcp-echo-{self.port}.log"
        )
        wait_for(lambda: procs._listening(self.port) or not self.alive(), 15, "the echo origin to listen")
        assert self.alive(), self.log()
        self.address = f"127.0.0.1:{self.port}"


def port_range() -> tuple[int, int]:
    first = free_port()
    return first, first + 7


def tcp_port(agent: Agent) -> int:
    url = agent.state()["public_url"]
    assert url.startswith("tcp://localhost:"), url
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tcp")


@pytest.fixture(scope="module")
def origin(tmp: Path) -> Iterator[EchoOrigin]:
    proc = EchoOrigin(tmp)
    yield proc
    proc.stop()


def start_tcp_edge(tmp: Path) -> Edge:
    """An edge handing out TCP tunnels' ports on loopback."""
    first, last = port_range()
    return procs.start_edge(tmp, "--allow-anonymous", "--tcp-ports", f"{first}-{last}", "--tcp-interface", "127.0.0.1")


@pytest.fixture(scope="module")
def edge(tmp: Path) -> Iterator[Edge]:
    proc = start_tcp_edge(tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(tmp: Path, edge: Edge, origin: EchoOrigin) -> Iterator[Agent]:
    proc = procs.start_agent(tmp, edge, "", "--name", "echo", tcp=origin.address)
    yield proc
    proc.stop()


# -- clients ---------------------------------------------------------------------------


def connect(port: int, timeout: float = 30) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def echo_through(port: int, chunks: Iterator[bytes] | list[bytes]) -> tuple[str, int, str, int, bytes]:
    """
    Send C{chunks} on a new connection (from a thread), shut the write
    side, read to the end; (sent SHA-256, sent length, received SHA-256
    without the trailer, received length, the trailer).
    """
    sock = connect(port)
    sent = hashlib.sha256()
    sent_n = 0

    def send() -> None:
        nonlocal sent_n
        for chunk in chunks:
            sock.sendall(chunk)
            sent.update(chunk)
            sent_n += len(chunk)
        sock.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    received = hashlib.sha256()
    n = 0
    tail = b""
    while True:
        data = sock.recv(1024 * 1024)
        if not data:
            break
        # Hash all but the last len(TRAILER) bytes as they come.
        tail += data
        keep = len(TRAILER)
        if len(tail) > keep:
            received.update(tail[:-keep])
            n += len(tail) - keep
            tail = tail[-keep:]
    sender.join(30)
    sock.close()
    return sent.hexdigest(), sent_n, received.hexdigest(), n, tail


def random_chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    block = os.urandom(size)
    for i in range(total // size):
        yield i.to_bytes(8, "big") + block[8:]


# -- tests -------------------------------------------------------------------------------


def test_the_agent_reports_a_tcp_url(agent: Agent, origin: EchoOrigin, edge: Edge) -> None:
    port = tcp_port(agent)
    assert f"tunnel ready: tcp://localhost:{port} -> {origin.address}" in agent.log()


def test_one_hundred_mib_each_way(agent: Agent) -> None:
    sent, sent_n, received, n, trailer = echo_through(tcp_port(agent), random_chunks(100 * MiB))
    assert sent_n == n == 100 * MiB
    assert received == sent
    assert trailer == TRAILER


def test_half_close_the_client_still_receives_the_rest(agent: Agent) -> None:
    # The origin writes its trailer only after it saw the client's EOF.
    sock = connect(tcp_port(agent))
    sock.sendall(b"hello, half-closed world\n")
    sock.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data == b"hello, half-closed world\n" + TRAILER


def test_one_hundred_concurrent_connections(agent: Agent) -> None:
    port = tcp_port(agent)

    def one(i: int) -> bool:
        payload = [i.to_bytes(4, "big") * 16384]  # 64 KiB of this connection's own bytes
        sent, sent_n, received, n, trailer = echo_through(port, payload)
        return sent == received and n == sent_n and trailer == TRAILER

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, range(100)))
    assert all(results), results.count(False)


def test_http_for_a_tcp_tunnels_name_is_not_found(agent: Agent, edge: Edge) -> None:
    status, _, _ = request(edge.port, "GET", "/", host="echo.localhost")
    assert status == 404


def test_restart_with_the_state_file_keeps_the_port_and_delete_releases_it(
    tmp: Path, edge: Edge, origin: EchoOrigin
) -> None:
    state = tmp / "restarted-agent.json"
    first = procs.start_agent(tmp, edge, "", "--name", "kept", tcp=origin.address, state_file=state)
    try:
        port = tcp_port(first)
    finally:
        first.stop()
    again = procs.start_agent(tmp, edge, "", tcp=origin.address, state_file=state)
    try:
        assert tcp_port(again) == port
        assert echo_through(port, [b"still here"])[2:4] == (hashlib.sha256(b"still here").hexdigest(), 10)
        recreate = again.state()["recreate_token"]
        tunnel_id = again.state()["tunnel_id"]
    finally:
        again.stop()
    status, body = procs.call(edge, "POST", "/tunnels/delete", {"tunnel_id": tunnel_id, "recreate_token": recreate})
    assert status == 200, body
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
