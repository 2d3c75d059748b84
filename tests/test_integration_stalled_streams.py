"""
Byte streams whose reader stops (issue 11, "Must show"): a WebSocket peer
and a TCP peer that keep sending and never read.  Real C{twistd} edge and
agents, the WebSocket echo origin (L{tests.ws_origin}) and the TCP echo
origin (L{tests.tcp_echo}), raw sockets as the peers, all on loopback.

Each stalled peer offers 500 MiB; the echoes back up to it, so its stream's
window shuts and the bytes stop at its own socket: the edge's and the
agent's memory stays bounded (RSS growth under 20 MB), and another stream
of the same tunnel keeps its speed.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import procs
from .procs import Agent, Edge
from .test_integration_tcp import EchoOrigin, connect, echo_through, random_chunks, start_tcp_edge, tcp_port
from .test_integration_websocket import WsOrigin

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
OFFERED = 500 * MiB
#: The most a stalled peer's bytes may grow the edge's or an agent's RSS.
RSS_BOUND = 20 * MiB


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stalled")


@pytest.fixture(scope="module")
def edge(tmp: Path) -> Iterator[Edge]:
    proc = start_tcp_edge(tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tcp_agent(tmp: Path, edge: Edge) -> Iterator[Agent]:
    origin = EchoOrigin(tmp)
    proc = procs.start_agent(tmp, edge, "", tcp=origin.address)
    yield proc
    proc.stop()
    origin.stop()


@pytest.fixture(scope="module")
def ws_agent(tmp: Path, edge: Edge) -> Iterator[Agent]:
    origin = WsOrigin(tmp)
    proc = procs.start_agent(tmp, edge, origin.url, "--name", "wsstall")
    yield proc
    proc.stop()
    origin.stop()


# -- a raw WebSocket client: frames by hand, so that it can stop reading ----------------


def ws_connect(edge: Edge, host: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", edge.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def ws_frame(payload: bytes) -> bytes:
    """A binary frame, masked with the zero key (allowed; the payload stays as is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def ws_read_message(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = sock.recv(min(n - len(out), MiB))
            assert chunk, "connection closed"
            out += chunk
        return bytes(out)

    b0, b1 = exactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    assert b0 & 0x0F == 0x2 and not b1 & 0x80, (b0, b1)
    return exactly(n)


def ws_echo(edge: Edge, host: str, size: int) -> float:
    """Seconds to echo C{size} bytes in 256 KiB messages on a new WebSocket."""
    sock = ws_connect(edge, host)
    block = os.urandom(256 * 1024)
    started = time.monotonic()
    count = size // len(block)
    sender = threading.Thread(target=lambda: [sock.sendall(ws_frame(block)) for _ in range(count)], daemon=True)
    sender.start()
    for _ in range(count):
        assert ws_read_message(sock) == block
    elapsed = time.monotonic() - started
    sender.join(10)
    sock.close()
    return elapsed


# -- the stalled peer ------------------------------------------------------------------------


def offer(sock: socket.socket, chunks: Iterator[bytes]) -> int:
    """
    Send C{chunks} (500 MiB in all) without ever reading, until they are
    all sent or a send makes no progress for 3 s (the way is shut); how
    many bytes the socket took.
    """
    sock.settimeout(3)
    sent = 0
    deadline = time.monotonic() + 120
    for chunk in chunks:
        view = memoryview(chunk)
        try:
            while view:
                n = sock.send(view)
                view = view[n:]
                sent += n
        except TimeoutError:
            return sent
        if time.monotonic() > deadline:
            break
    return sent


def stalled_peer_holds_only_its_stream(
    edge: Edge, agent: Agent, stall: Callable[[], socket.socket], chunks: Iterator[bytes], other: Callable[[], float]
) -> None:
    alone = min(other() for _ in range(2))  # (the first warms both processes up)
    before = {p.name: rss(p.pid) for p in (edge, agent)}
    sock = stall()
    try:
        sent = offer(sock, chunks)
        during = other()
        after = {p.name: rss(p.pid) for p in (edge, agent)}
    finally:
        sock.close()
    growth = {name: after[name] - before[name] for name in before}
    print(
        f"offered {OFFERED >> 20} MiB, taken {sent / MiB:.1f} MiB; RSS growth {growth}; "
        f"other stream {alone:.3f} s alone, {during:.3f} s beside"
    )
    assert sent < OFFERED, "nothing held the stalled peer back"
    assert all(g < RSS_BOUND for g in growth.values()), growth
    assert during < 5 * alone + 0.5, (alone, during)


def test_a_tcp_peer_that_stops_reading(edge: Edge, tcp_agent: Agent) -> None:
    port = tcp_port(tcp_agent)

    def other() -> float:
        started = time.monotonic()
        sent, sent_n, received, n, _ = echo_through(port, random_chunks(8 * MiB))
        assert sent == received and n == sent_n
        return time.monotonic() - started

    stalled_peer_holds_only_its_stream(edge, tcp_agent, lambda: connect(port), random_chunks(OFFERED), other)


def test_a_websocket_peer_that_stops_reading(edge: Edge, ws_agent: Agent) -> None:
    host = ws_agent.host
    block = os.urandom(MiB)
    frames = (ws_frame(block) for _ in range(OFFERED // MiB))
    stalled_peer_holds_only_its_stream(
        edge, ws_agent, lambda: ws_connect(edge, host), frames, lambda: ws_echo(edge, host, 8 * MiB)
    )
