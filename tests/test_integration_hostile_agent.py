"""
A hostile agent must not make the edge buffer without limit (issue 10,
item 2), with real processes: an agent that announces windows of 2^31-1
and then never reads (L{tests.hostile_agent}), a viewer uploading 300 MiB
to its tunnel, and a well-behaved tunnel on the same edge.

Two defences each suffice here and both are in place: the agent's windows
clamped to the edge's own (its sends stop at 2 MiB per stream), and the
WebSocket transport's producer pausing the viewer.  With neither, the edge
takes all 300 MiB (RSS 66 -> 377 MB when this was written).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import procs
from .procs import Edge, Origin, request, wait_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
UPLOAD = 300 * MiB


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    proc = procs.start_origin(tmp_path)
    yield proc
    proc.stop()


def test_hostile_agent_windows_do_not_make_the_edge_buffer(tmp_path: Path, origin: Origin) -> None:
    # (heartbeats slower than the test: a non-reading agent cannot answer
    # pings, and is dropped after --heartbeat-interval + --heartbeat-timeout)
    edge: Edge = procs.start_edge(
        tmp_path, "--allow-anonymous", "--response-timeout", "60", "--heartbeat-interval", "60"
    )
    started: list[procs.Proc] = []
    try:
        good = procs.start_agent(tmp_path, edge, origin.url, "--name", "good")
        started.append(good)
        ready = tmp_path / "hostile.ready"
        hostile = procs.Proc(
            "hostile",
            [sys.executable, "-m", "tests.hostile_agent", str(edge.port), "evil", str(ready)],
            tmp_path / "hostile.log",
        )
        started.append(hostile)
        wait_for(lambda: ready.exists() or not hostile.alive(), 20, "the hostile agent's session")
        assert hostile.alive(), hostile.log()
        evil_host = ready.read_text()
        # Warm up, then the idle figure.
        assert request(edge.port, "GET", "/bytes/100000", host=good.host)[0] == 200
        time.sleep(0.5)
        idle = peak = _rss(edge.pid)

        viewer = socket.socket()
        viewer.settimeout(10)
        viewer.connect(("127.0.0.1", edge.port))
        viewer.sendall(f"POST /upload HTTP/1.1\r\nHost: {evil_host}\r\nContent-Length: {UPLOAD}\r\n\r\n".encode())
        viewer.settimeout(0.2)
        chunk = b"x" * (256 * 1024)
        sent = 0
        last_progress = began = time.monotonic()
        other_ok: tuple[int, bytes] | None = None
        try:
            while time.monotonic() - began < 12 and sent < UPLOAD:
                try:
                    n = viewer.send(chunk)
                except TimeoutError:
                    n = 0
                if n:
                    sent += n
                    last_progress = time.monotonic()
                peak = max(peak, _rss(edge.pid))
                if other_ok is None and time.monotonic() - began > 4:
                    # Meanwhile another tunnel of the same edge serves as usual.
                    status, _, body = request(edge.port, "GET", "/bytes/1000000", host=good.host, timeout=10)
                    other_ok = (status, body)
            stalled_for = time.monotonic() - last_progress
        finally:
            viewer.close()
        print(f"viewer sent {sent / MiB:.1f} MiB; edge RSS idle {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
        assert peak - idle < 40 * 1000 * 1000, (idle, peak)
        # The viewer was paused: its upload stalled, far from complete.
        assert sent < UPLOAD // 4, sent
        assert stalled_for > 3, stalled_for
        assert other_ok is not None
        assert other_ok[0] == 200 and len(other_ok[1]) == 1000000
        assert edge.alive(), edge.log()
    finally:
        for proc in reversed(started):
            proc.stop()
        edge.stop()
