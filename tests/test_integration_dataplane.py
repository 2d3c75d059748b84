"""
The data plane end to end (issue 3, "Must show"): real C{twistd} edge and
agent processes and the sample origin on loopback, real HTTP clients
(http.client, raw sockets, curl).

One edge, agent and origin are shared by most tests (module fixtures); the
tests that must kill or freeze an agent, or measure memory from a clean
idle state, start their own.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netbore.demo.origin import pattern

from . import procs
from .procs import Agent, Edge, Origin, request, wait_for

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
BIG = 100 * MiB
RESPONSE_TIMEOUT = 2.0


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataplane")


def _stopping(*started: procs.Proc) -> None:
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def origin(tmp: Path) -> Iterator[Origin]:
    proc = procs.start_origin(tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def edge(tmp: Path) -> Iterator[Edge]:
    proc = procs.start_edge(
        tmp, "--allow-anonymous", "--response-timeout", str(RESPONSE_TIMEOUT), data_dir=tmp / "edge-main"
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(tmp: Path, edge: Edge, origin: Origin) -> Iterator[Agent]:
    proc = procs.start_agent(tmp, edge, origin.url, "--name", "app")
    yield proc
    proc.stop()


def get(
    edge: Edge, agent: Agent, target: str, method: str = "GET", **kw: Any
) -> tuple[int, list[tuple[str, str]], bytes]:
    return request(edge.port, method, target, host=agent.host, **kw)


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


def echoed(body: bytes) -> dict[str, Any]:
    return dict(json.loads(body))


def hits(origin: Origin) -> dict[str, int]:
    status, _, body = request(origin.port, "GET", "/hits", host="origin")
    assert status == 200
    return dict(json.loads(body))


# -- methods, headers, bodies -----------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_pass_with_body_intact(edge: Edge, agent: Agent, method: str) -> None:
    body = (method.encode() + b" body \x00\xff ") * 1000 if method not in ("GET", "OPTIONS") else None
    status, headers, data = get(edge, agent, "/echo?m=" + method, method, body=body)
    assert status == 200
    assert header(headers, "content-type") == ["application/json"]
    seen = echoed(data)
    assert seen["method"] == method
    assert seen["target"] == "/echo?m=" + method
    assert seen["length"] == len(body or b"")
    assert seen["sha256"] == hashlib.sha256(body or b"").hexdigest()


def test_response_headers_as_the_origin_sent_them(edge: Edge, agent: Agent, origin: Origin) -> None:
    for target in ("/bytes/5000", "/bytes/5000?chunked=1", "/cookies", "/plain", "/status/201"):
        direct = request(origin.port, "GET", target, host=agent.host)
        tunnelled = get(edge, agent, target)
        assert tunnelled[0] == direct[0], target
        assert tunnelled[2] == direct[2], target
        # Field order across names carries no meaning (and Twisted's Headers
        # groups by name); the order of one name's values does.
        assert _fields(tunnelled[1]) == _fields(direct[1]), target


def _fields(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = [(n.lower(), v) for n, v in headers if n.lower() != "date"]
    return sorted(kept, key=lambda h: h[0])  # stable: values of one name keep their order


def test_head(edge: Edge, agent: Agent) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    try:
        conn.request("HEAD", "/bytes/12345", headers={"Host": agent.host})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == "12345"
        assert response.read() == b""
        # Nothing stray was sent after the head: the connection still works.
        conn.request("GET", "/bytes/10", headers={"Host": agent.host})
        again = conn.getresponse()
        assert again.status == 200
        assert again.read() == pattern(10)
    finally:
        conn.close()


def test_chunked_response(edge: Edge, agent: Agent) -> None:
    status, headers, data = get(edge, agent, "/bytes/300000?chunked=1")
    assert status == 200
    assert header(headers, "transfer-encoding") == ["chunked"]
    assert header(headers, "content-length") == []
    assert data == pattern(300000)


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(edge: Edge, agent: Agent, code: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    try:
        conn.request("GET", f"/status/{code}", headers={"Host": agent.host})
        response = conn.getresponse()
        assert response.status == code
        assert response.getheader("transfer-encoding") is None
        assert response.read() == b""
        conn.request("GET", "/echo?after", headers={"Host": agent.host})
        again = conn.getresponse()
        assert again.status == 200
        assert echoed(again.read())["target"] == "/echo?after"
    finally:
        conn.close()


def test_set_cookies_in_order(edge: Edge, agent: Agent) -> None:
    status, headers, _ = get(edge, agent, "/cookies")
    assert status == 200
    assert header(headers, "set-cookie") == ["a=1; Path=/", "b=2; Path=/", "c=3; Path=/; HttpOnly"]


def test_target_byte_exact(edge: Edge, agent: Agent) -> None:
    for target in ("/echo/a%2Fb%20c?x=1&y=%41&z", "/echo/%7e%7E;p?q=a+b&q=%2B#", "/echo?", "/echo//x/../y"):
        status, _, data = get(edge, agent, target)
        assert status == 200, target
        assert echoed(data)["target"] == target


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl(edge: Edge, agent: Agent) -> None:
    url = f"http://{agent.host}/echo/a%2Fb%20c?x=1&y=%41&z"
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--path-as-is",
            "--max-time",
            "10",
            "--connect-to",
            f"{agent.host}:127.0.0.1:{edge.port}",
            "-H",
            "X-Forwarded-For: 198.51.100.7",
            "--data-binary",
            "hello from curl",
            url,
        ],
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    seen = echoed(out.stdout)
    assert seen["method"] == "POST"
    assert seen["target"] == "/echo/a%2Fb%20c?x=1&y=%41&z"
    assert seen["sha256"] == hashlib.sha256(b"hello from curl").hexdigest()
    headers = dict((n.lower(), v) for n, v in seen["headers"])
    assert headers["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"
    assert headers["host"] == agent.host

    head = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--max-time",
            "10",
            "--connect-to",
            f"{agent.host}:127.0.0.1:{edge.port}",
            f"http://{agent.host}/cookies",
        ],
        capture_output=True,
        timeout=20,
    )
    assert head.returncode == 0, head.stderr
    cookies = [
        line.split(b":", 1)[1].strip() for line in head.stdout.splitlines() if line.lower().startswith(b"set-cookie:")
    ]
    assert cookies == [b"a=1; Path=/", b"b=2; Path=/", b"c=3; Path=/; HttpOnly"]


def test_forwarding_headers(edge: Edge, agent: Agent) -> None:
    status, _, data = get(
        edge,
        agent,
        "/echo",
        headers=[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),  # spoofed: the edge sets its own
            ("X-Forwarded-Host", "evil.example"),
            ("X-Netbore-Client-IP", "10.0.0.1"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
        ],
    )
    assert status == 200
    headers = [(n.lower(), v) for n, v in echoed(data)["headers"]]
    assert header(headers, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert header(headers, "x-forwarded-proto") == ["http"]
    assert header(headers, "x-forwarded-host") == [agent.host]
    assert header(headers, "x-netbore-client-ip") == ["127.0.0.1"]
    assert header(headers, "x-multi") == ["1", "2"]
    assert header(headers, "host") == [agent.host]

    status, _, data = get(edge, agent, "/echo")
    headers = [(n.lower(), v) for n, v in echoed(data)["headers"]]
    assert header(headers, "x-forwarded-for") == ["127.0.0.1"]


def test_hop_by_hop_removed_from_requests(edge: Edge, agent: Agent) -> None:
    status, _, data = get(
        edge,
        agent,
        "/echo",
        headers=[
            ("Connection", "keep-alive, X-Viewer-Hop"),
            ("X-Viewer-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("X-End", "kept"),
        ],
    )
    assert status == 200
    names = [n.lower() for n, _ in echoed(data)["headers"]]
    for hop in ("x-viewer-hop", "keep-alive", "proxy-connection", "te"):
        assert hop not in names
    assert "x-end" in names


def test_hop_by_hop_removed_from_responses(edge: Edge, agent: Agent) -> None:
    status, headers, data = get(edge, agent, "/hop")
    assert status == 200
    assert data == b"hop\n"
    assert header(headers, "keep-alive") == []
    assert header(headers, "x-end-to-end") == ["kept"]


def test_response_fields_named_in_connection_removed(edge: Edge, agent: Agent) -> None:
    status, headers, data = get(edge, agent, "/hop")
    assert status == 200
    assert header(headers, "x-origin-hop") == []
    assert header(headers, "keep-alive") == []
    assert header(headers, "x-end-to-end") == ["kept"]


def test_host_header_rewrite(tmp: Path, edge: Edge, agent: Agent, origin: Origin) -> None:
    rewriting = procs.start_agent(tmp, edge, origin.url, "--name", "rewrite", "--host-header", "rewrite")
    try:
        status, _, data = request(edge.port, "GET", "/echo", host=rewriting.host)
        assert status == 200
        headers = [(n.lower(), v) for n, v in echoed(data)["headers"]]
        assert header(headers, "host") == [f"127.0.0.1:{origin.port}"]
        assert header(headers, "x-forwarded-host") == [rewriting.host]
    finally:
        rewriting.stop()


# -- concurrency and big bodies -----------------------------------------------------


def test_200_concurrent_requests(edge: Edge, agent: Agent) -> None:
    n = 200
    results: dict[int, Any] = {}
    barrier = threading.Barrier(n, timeout=20)

    def one(i: int) -> None:
        try:
            barrier.wait()
            target = f"/bytes/{1000 + 997 * i}" if i % 2 else f"/echo?i={i}"
            results[i] = (target, get(edge, agent, target, timeout=30))
        except Exception as e:  # reported by the assertions below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n
    for i, result in sorted(results.items()):
        assert not isinstance(result, Exception), (i, result)
        target, (status, _, data) = result
        assert status == 200, (i, data[:200])
        if i % 2:
            assert data == pattern(1000 + 997 * i), i
        else:
            assert echoed(data)["target"] == target


def _pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    block = pattern(64 * 1024)  # the origin's pattern repeats every 64 KiB
    whole, rest = divmod(n, len(block))
    for _ in range(whole):
        digest.update(block)
    digest.update(block[:rest])
    return digest.hexdigest()


def test_100_MiB_download(edge: Edge, agent: Agent, record_property: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=30)
    try:
        started = time.monotonic()
        conn.request("GET", f"/bytes/{BIG}", headers={"Host": agent.host})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == str(BIG)
        digest = hashlib.sha256()
        received = 0
        while True:
            chunk = response.read(256 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert received == BIG
    assert digest.hexdigest() == _pattern_sha256(BIG)
    record_property("download_MBps", round(BIG / MiB / elapsed, 1))
    print(f"100 MiB download: {BIG / MiB / elapsed:.1f} MiB/s")


def test_100_MiB_upload(edge: Edge, agent: Agent, record_property: Any) -> None:
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(BIG // MiB):
            block[:8] = i.to_bytes(8, "big")
            piece = bytes(block)
            digest.update(piece)
            yield piece

    started = time.monotonic()
    status, _, data = get(edge, agent, "/upload", "POST", body=body(), timeout=60)
    elapsed = time.monotonic() - started
    assert status == 200, data[:300]
    seen = echoed(data)
    assert seen["length"] == BIG
    assert seen["sha256"] == digest.hexdigest()
    record_property("upload_MBps", round(BIG / MiB / elapsed, 1))
    print(f"100 MiB upload: {BIG / MiB / elapsed:.1f} MiB/s")


def test_slow_upload_longer_than_the_response_timeout(edge: Edge, agent: Agent) -> None:
    # The origin answers once it has the whole body; the response timeout
    # counts from then (and from the origin's progress), not from the
    # request's first byte.
    piece = b"s" * (64 * 1024)
    pieces = 48  # 3 MiB at about 1 MiB/s: longer than RESPONSE_TIMEOUT

    def body() -> Iterator[bytes]:
        for _ in range(pieces):
            time.sleep(1 / 16)
            yield piece

    started = time.monotonic()
    status, _, data = get(edge, agent, "/upload", "POST", body=body(), timeout=30)
    assert time.monotonic() - started > RESPONSE_TIMEOUT + 0.5
    assert status == 200, data[:300]
    assert echoed(data)["sha256"] == hashlib.sha256(piece * pieces).hexdigest()


# -- streaming, viewer going away --------------------------------------------------------


def _raw_get(port: int, host: str, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def test_streamed_response_arrives_piece_by_piece(edge: Edge, agent: Agent, record_property: Any) -> None:
    count, interval = 5, 0.6
    started = time.monotonic()
    sock = _raw_get(edge.port, agent.host, f"/sse?count={count}&interval={interval}")
    arrivals: dict[int, float] = {}
    data = b""
    try:
        while b"\r\n0\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
            for i in range(count):
                if i not in arrivals and b"data: event %d\n\n" % i in data:
                    arrivals[i] = time.monotonic() - started
    finally:
        sock.close()
    total = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"content-type: text/event-stream" in data.lower()
    assert sorted(arrivals) == list(range(count))
    # The origin needs (count - 1) * interval = 2.4 s; the first event is
    # out at once and each later one about an interval after the last.
    assert arrivals[0] < 0.5, arrivals
    assert total >= (count - 1) * interval - 0.1
    assert arrivals[count - 2] < total - interval / 2, arrivals
    record_property("first_sse_event_s", round(arrivals[0], 4))
    print(f"first SSE event after {arrivals[0] * 1000:.1f} ms, last after {total:.2f} s")


def test_response_head_reaches_the_viewer_before_any_body(edge: Edge, agent: Agent) -> None:
    interval = 1.5
    started = time.monotonic()
    sock = _raw_get(edge.port, agent.host, f"/stream?count=2&interval={interval}&head_first=1")
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head_at = time.monotonic() - started
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"chunk 0" not in data
        while b"chunk 0" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        first_at = time.monotonic() - started
    finally:
        sock.close()
    assert head_at < 0.5, head_at
    assert first_at >= interval - 0.1, first_at


def test_viewer_disconnect_aborts_origin(edge: Edge, agent: Agent, origin: Origin) -> None:
    before = hits(origin)["aborted"]
    sock = _raw_get(edge.port, agent.host, f"/bytes/{1024 * MiB}")
    received = 0
    while received < 2 * MiB:
        chunk = sock.recv(65536)
        assert chunk
        received += len(chunk)
    sock.close()
    wait_for(lambda: hits(origin)["aborted"] > before, 10, "the origin to see its connection closed")


# -- errors ---------------------------------------------------------------------------


def test_unknown_name_404(edge: Edge) -> None:
    host = f"nosuchname.localhost:{edge.port}"
    status, headers, data = request(edge.port, "GET", "/x", host=host)
    assert status == 404
    assert header(headers, "content-type")[0].startswith("text/html")
    assert b"<html" in data and b"404" in data
    assert header(headers, "x-netbore-error") == ["tunnel_not_found"]

    status, headers, data = request(edge.port, "GET", "/x", host=host, headers={"Accept": "application/json"})
    assert status == 404
    assert header(headers, "content-type") == ["application/json"]
    assert json.loads(data)["error"] == "tunnel_not_found"


def test_unknown_name_with_a_large_upload(edge: Edge) -> None:
    def body() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * MiB

    status, _, data = request(edge.port, "POST", "/x", host=f"nosuchname.localhost:{edge.port}", body=body())
    assert status == 404


def test_origin_down_502(tmp: Path, edge: Edge) -> None:
    dead = procs.start_agent(tmp, edge, f"http://127.0.0.1:{procs.free_port()}", "--name", "down")
    try:
        status, headers, data = request(edge.port, "GET", "/", host=dead.host, headers={"Accept": "application/json"})
        assert status == 502
        assert json.loads(data)["error"] == "origin_unreachable"
    finally:
        dead.stop()


def test_origin_silent_504(edge: Edge, agent: Agent) -> None:
    started = time.monotonic()
    status, headers, _ = get(edge, agent, "/silent", timeout=20)
    elapsed = time.monotonic() - started
    assert status == 504
    assert header(headers, "x-netbore-error") == ["origin_timeout"]
    assert RESPONSE_TIMEOUT - 0.1 <= elapsed < RESPONSE_TIMEOUT + 2
    # The edge reset the stream and the agent aborted the origin request.
    status, _, data = get(edge, agent, "/echo?alive")
    assert status == 200


@pytest.fixture(scope="module")
def heartbeat_edge(tmp: Path) -> Iterator[Edge]:
    proc = procs.start_edge(
        tmp,
        "--allow-anonymous",
        "--heartbeat-interval",
        "1",
        "--heartbeat-timeout",
        "1",
        "--response-timeout",
        "30",
        data_dir=tmp / "edge-heartbeat",
    )
    yield proc
    proc.stop()


def test_agent_killed_502(tmp: Path, heartbeat_edge: Edge, origin: Origin) -> None:
    agent = procs.start_agent(
        tmp, heartbeat_edge, origin.url, "--name", "killed", "--heartbeat-interval", "1", "--heartbeat-timeout", "1"
    )
    try:
        host = agent.host
        assert request(heartbeat_edge.port, "GET", "/echo", host=host)[0] == 200
        agent.kill()
        started = time.monotonic()
        status, headers, _ = request(heartbeat_edge.port, "GET", "/echo", host=host, timeout=10)
        assert status == 502
        assert time.monotonic() - started < 2 + 1
        assert header(headers, "x-netbore-error") == ["tunnel_offline"]
    finally:
        agent.kill()
        agent.stop()


def test_agent_frozen_502_within_heartbeat_bound(tmp: Path, heartbeat_edge: Edge, origin: Origin) -> None:
    agent = procs.start_agent(
        tmp, heartbeat_edge, origin.url, "--name", "frozen", "--heartbeat-interval", "1", "--heartbeat-timeout", "1"
    )
    try:
        host = agent.host
        assert request(heartbeat_edge.port, "GET", "/echo", host=host)[0] == 200
        agent.signal(signal.SIGSTOP)
        started = time.monotonic()
        # The request goes to the frozen agent's session; the edge finds the
        # session dead within interval + timeout and answers 502.
        status, _, _ = request(heartbeat_edge.port, "GET", "/echo", host=host, timeout=10)
        elapsed = time.monotonic() - started
        assert status == 502
        assert elapsed < 1 + 1 + 1.5, elapsed
        status, _, _ = request(heartbeat_edge.port, "GET", "/echo", host=host, timeout=10)
        assert status == 502
    finally:
        agent.kill()
        agent.stop()


# -- memory under a slow viewer ---------------------------------------------------------


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_slow_viewer_memory_bounded(tmp: Path, origin: Origin, record_property: Any) -> None:
    fresh_edge = procs.start_edge(tmp, "--allow-anonymous", data_dir=tmp / "edge-memory")
    fresh_agent = None
    try:
        fresh_agent = procs.start_agent(tmp, fresh_edge, origin.url, "--name", "slow")
        # Warm both up with a small exchange, then take the idle figures.
        assert request(fresh_edge.port, "GET", "/bytes/100000", host=fresh_agent.host)[0] == 200
        time.sleep(0.5)
        idle = {"edge": _rss(fresh_edge.pid), "agent": _rss(fresh_agent.pid)}
        peak = dict(idle)

        sock = socket.socket()
        # A small receive buffer so the kernel does not soak up the stream.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", fresh_edge.port))
        sock.sendall(f"GET /bytes/{BIG} HTTP/1.1\r\nHost: {fresh_agent.host}\r\n\r\n".encode())
        started = time.monotonic()
        received = 0
        rate = MiB  # bytes a second
        try:
            while time.monotonic() - started < 9:
                due = started + received / rate
                if time.monotonic() < due:
                    time.sleep(due - time.monotonic())
                chunk = sock.recv(32 * 1024)
                assert chunk
                received += len(chunk)
                peak["edge"] = max(peak["edge"], _rss(fresh_edge.pid))
                peak["agent"] = max(peak["agent"], _rss(fresh_agent.pid))
        finally:
            sock.close()
        elapsed = time.monotonic() - started
        for name in ("edge", "agent"):
            record_property(f"{name}_rss_idle_MiB", round(idle[name] / MiB, 1))
            record_property(f"{name}_rss_peak_MiB", round(peak[name] / MiB, 1))
        print(
            f"slow viewer read {received / MiB:.1f} MiB in {elapsed:.1f} s; RSS idle/peak: "
            + ", ".join(f"{n} {idle[n] / MiB:.1f}/{peak[n] / MiB:.1f} MiB" for n in idle)
        )
        assert 6 * MiB < received < 12 * MiB
        assert peak["edge"] < idle["edge"] + 64 * MiB
        assert peak["agent"] < idle["agent"] + 64 * MiB
    finally:
        if fresh_agent is not None:
            fresh_agent.stop()
        fresh_edge.stop()
