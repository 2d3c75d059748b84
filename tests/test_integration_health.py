"""
Issue 13 (health): a real C{twistd} edge's C{/readyz} is 200, turns 503
once SIGTERM starts its drain, and is 200 again after a restart.

While the edge drains its listeners are closed (and the control host
closes each connection after one response), so the check after the
signal is a request whose head was half sent before it and is finished
after; a slow download through a real agent keeps the drain going.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .procs import Agent, Edge, Origin, Proc
from .test_integration_lifecycle import MiB, _slow_download

pytestmark = pytest.mark.integration


def _readyz(conn: http.client.HTTPConnection) -> tuple[int, dict[str, Any], str | None]:
    conn.request("GET", "/readyz", headers={"Host": "localhost"})
    response = conn.getresponse()
    return response.status, json.loads(response.read()), response.getheader("Cache-Control")


def test_readyz_is_503_while_draining_and_200_after_a_restart(tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        origin = Origin(tmp_path)
        procs.append(origin)
        edge = Edge(tmp_path, "--allow-anonymous", "--drain-timeout", "20")
        procs.append(edge)
        agent = Agent(tmp_path, edge, origin.url, "--name", "drain")
        procs.append(agent)

        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        assert _readyz(conn) == (200, {"status": "ok"}, "no-store")
        conn.close()

        started = threading.Event()
        out: dict[str, Any] = {}
        host = f"drain.localhost:{edge.port}"
        viewer = threading.Thread(target=_slow_download, args=(edge.port, host, 20 * MiB, started, out), daemon=True)
        viewer.start()
        assert started.wait(15)
        late = socket.create_connection(("127.0.0.1", edge.port), timeout=10)
        late.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n")
        time.sleep(0.2)
        edge.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert edge.alive()  # still draining the download
        late.sendall(b"\r\n")
        answer = http.client.HTTPResponse(late)
        answer.begin()
        body = json.loads(answer.read())
        late.close()
        assert viewer.is_alive()
        assert (answer.status, body["status"], body["reason"]) == (503, "unavailable", "draining")
        assert answer.getheader("Cache-Control") == "no-store"
        viewer.join(25)
        edge.popen.wait(15)

        again = Edge(tmp_path, "--allow-anonymous", port=edge.port, data_dir=edge.data_dir)
        procs.append(again)
        conn = http.client.HTTPConnection("127.0.0.1", again.port, timeout=10)
        assert _readyz(conn) == (200, {"status": "ok"}, "no-store")
        conn.close()
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)
