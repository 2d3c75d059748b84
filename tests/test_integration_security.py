"""
Issue 10 items 3, 5, 12 and 13 and the secret files' modes, against real
C{twistd -n netbore-edge} processes on loopback, over real sockets.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import procs

pytestmark = pytest.mark.integration

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789"


def exchange(
    port: int,
    raw: bytes,
    *,
    source: str = "127.0.0.1",
    then: list[bytes] | None = None,
    timeout: float = 5,
) -> tuple[int, dict[str, Any], bytes]:
    """
    Send C{raw} (and each of C{then}) on a new connection from C{source};
    read the answer until the edge closes the connection.  (status, JSON
    body or {}, everything read.)
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
        s.sendall(raw)
        for more in then or []:
            s.sendall(more)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = dechunk(body)
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        parsed = {}
    return status, parsed, data


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2 :]
    return out


def post(
    port: int,
    path: str,
    body: bytes = b"{}",
    *,
    authorization: bytes | None = None,
    headers: bytes = b"",
    source: str = "127.0.0.1",
    proxy_line: bytes = b"",
) -> tuple[int, dict[str, Any]]:
    auth = b"Authorization: " + authorization + b"\r\n" if authorization is not None else b""
    raw = (
        proxy_line + b"POST " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(body) + auth + headers + b"Connection: close\r\n\r\n" + body
    )
    status, parsed, _ = exchange(port, raw, source=source)
    return status, parsed


def connect(port: int, token: bytes, *, source: str = "127.0.0.1", headers: bytes = b"") -> int:
    """
    A WebSocket opening handshake at /connect with C{token}; its status.
    """
    raw = (
        b"GET /connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: netbore.v1\r\nAuthorization: Bearer " + token + b"\r\n" + headers + b"\r\n"
    )
    return exchange(port, raw, source=source)[0]


def keys_file(tmp: Path, text: str) -> Path:
    path = tmp / "api-keys"
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[procs.Edge]:
    tmp = tmp_path_factory.mktemp("security")
    keys = keys_file(tmp, f"alice {ALICE} admin\nbob {BOB}\n")
    started = procs.start_edge(
        tmp,
        "--allow-anonymous",
        "--api-keys-file",
        str(keys),
        "--auth-failures-per-minute",
        "3",
        "--trusted-proxy",
        "127.0.0.1",
    )
    yield started
    started.stop()


# -- item 5: bodies over the limit, refused at once --------------------------------


@pytest.mark.parametrize("path", ["/tunnels/create", "/auth/token", "/connect", "/nowhere"])
def test_a_huge_content_length_gets_413_before_the_body_is_sent(edge: procs.Edge, path: str) -> None:
    raw = b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        path.encode(),
        10**12,
    )
    started = time.monotonic()
    status, body, data = exchange(edge.port, raw, timeout=10)
    assert time.monotonic() - started < 3
    assert status == 413, data
    assert body == {"error": "payload_too_large", "message": "request body is larger than 65536 bytes"}
    assert b"\r\nconnection: close\r\n" in data.lower()


@pytest.mark.parametrize("chunks", [5, 40])
@pytest.mark.parametrize("path", ["/tunnels/create", "/connect"])
def test_a_chunked_body_past_the_limit_gets_413(edge: procs.Edge, path: str, chunks: int) -> None:
    """
    The 413 reaches a client that goes on sending (40 chunks: 640 KiB)
    rather than a reset: the edge reads and drops the rest for a while.
    """
    head = b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"  # 16 KiB each; the fifth passes 64 KiB
    status, body, data = exchange(edge.port, head % path.encode(), then=[chunk] * chunks, timeout=10)
    assert status == 413, data
    assert body["error"] == "payload_too_large"


# -- item 12: bad input is a 4xx with the JSON error ---------------------------------


@pytest.mark.parametrize(
    "body, authorization",
    [
        (b"[" * 30_000 + b"]" * 30_000, None),
        (b'{"recreate_token_ttl_seconds": 1' + b"0" * 399 + b"}", None),
        (b"{}", b"Bearer \xff\xfe\xfd-not-utf-8"),
    ],
)
def test_bad_input_is_a_4xx_never_a_500(edge: procs.Edge, body: bytes, authorization: bytes | None) -> None:
    # (Its own address behind the trusted proxy: a 401 counts against it.)
    xff = b"X-Forwarded-For: 198.51.100.%d\r\n" % (len(body) % 200)
    for path in ["/tunnels/create", "/auth/token"]:
        status, answer = post(edge.port, path, body, authorization=authorization, headers=xff)
        assert 400 <= status < 500, (path, status, answer)
        assert set(answer) == {"error", "message"}
    log = edge.log()
    assert "Traceback" not in log and "control API request failed" not in log


# -- item 13: one budget per address; trusted proxies; PROXY protocol --------------


def test_connect_and_the_control_api_share_one_failed_auth_budget(edge: procs.Edge) -> None:
    # 127.0.0.2 is not a trusted proxy: it is the client.
    for _ in range(3):
        assert connect(edge.port, b"not-a-token", source="127.0.0.2") == 401
    status, body = post(edge.port, "/auth/token", authorization=b"Bearer wrong-key", source="127.0.0.2")
    assert (status, body["error"]) == (429, "rate_limited")
    # ... and the other way round, for another address.
    for _ in range(3):
        assert post(edge.port, "/auth/token", authorization=b"Bearer wrong-key", source="127.0.0.3")[0] == 401
    assert connect(edge.port, b"not-a-token", source="127.0.0.3") == 429


def test_behind_a_trusted_proxy_each_client_has_its_budget(edge: procs.Edge) -> None:
    one = b"X-Forwarded-For: 203.0.113.1, 198.51.100.1\r\n"  # 203.0.113.1 is what the client claimed
    for _ in range(3):
        assert post(edge.port, "/auth/token", authorization=b"Bearer wrong", headers=one)[0] == 401
    assert post(edge.port, "/auth/token", authorization=b"Bearer wrong", headers=one)[0] == 429
    assert connect(edge.port, b"bad", headers=one) == 429
    # Another client behind the same proxy is not limited ...
    other = b"X-Forwarded-For: 198.51.100.2\r\n"
    assert post(edge.port, "/auth/token", authorization=f"Bearer {ALICE}".encode(), headers=other)[0] == 200
    # ... and from an untrusted peer the field is ignored: its own address counts.
    spoofing = {"authorization": b"Bearer wrong", "headers": other, "source": "127.0.0.4"}
    for _ in range(3):
        assert post(edge.port, "/auth/token", **spoofing)[0] == 401  # type: ignore[arg-type]
    assert post(edge.port, "/auth/token", **spoofing)[0] == 429  # type: ignore[arg-type]
    assert post(edge.port, "/auth/token", authorization=f"Bearer {ALICE}".encode(), headers=other)[0] == 200


def test_the_proxy_protocol_gives_the_client_address(tmp_path: Path) -> None:
    """
    C{--listen haproxy:tcp:...}: the client address is the PROXY header's,
    for the failed-auth budget and in the forwarding fields the origin
    gets.  (The agent uses a plain listener: the PROXY one wants the
    header on every connection.)
    """
    proxied = procs.free_port()
    origin = procs.start_origin(tmp_path)
    edge = agent = None
    try:
        edge = procs.start_edge(
            tmp_path, "--auth-failures-per-minute", "2", "--allow-anonymous",
            "--listen", f"haproxy:tcp:{proxied}:interface=127.0.0.1",
        )  # fmt: skip
        procs.wait_for(lambda: procs._listening(proxied), 10, "the PROXY listener")
        agent = procs.start_agent(tmp_path, edge, origin.url, "--name", "app")
        line = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 %d\r\n" % proxied
        for _ in range(2):
            assert post(proxied, "/auth/token", authorization=b"Bearer wrong", proxy_line=line)[0] == 401
        assert post(proxied, "/auth/token", authorization=b"Bearer wrong", proxy_line=line)[0] == 429
        other = b"PROXY TCP4 203.0.113.8 127.0.0.1 5555 %d\r\n" % proxied
        assert post(proxied, "/auth/token", authorization=b"Bearer wrong", proxy_line=other)[0] == 401
        # The viewer path: the origin sees the PROXY header's client.
        raw = line + f"GET /echo HTTP/1.1\r\nHost: {agent.host}\r\nConnection: close\r\n\r\n".encode()
        status, echoed, data = exchange(proxied, raw, timeout=10)
        assert status == 200, data
        headers = dict((name.lower(), value) for name, value in echoed["headers"])
        assert headers["x-forwarded-for"] == "203.0.113.7"
        assert headers["x-netbore-client-ip"] == "203.0.113.7"
    finally:
        for proc in (agent, edge, origin):
            if proc is not None:
                proc.stop()


def test_a_trusted_proxys_client_and_scheme_reach_the_origin(tmp_path: Path) -> None:
    origin = procs.start_origin(tmp_path)
    edge = agent = None
    try:
        edge = procs.start_edge(tmp_path, "--allow-anonymous", "--trusted-proxy", "127.0.0.0/30")
        agent = procs.start_agent(tmp_path, edge, origin.url, "--name", "app")
        fields = b"X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
        for source, client, forwarded_for, proto in [
            ("127.0.0.1", "203.0.113.9", "6.6.6.6, 203.0.113.9, 127.0.0.1", "https"),
            ("127.0.0.5", "127.0.0.5", "6.6.6.6, 203.0.113.9, 127.0.0.5", "http"),  # not trusted
        ]:
            raw = f"GET /echo HTTP/1.1\r\nHost: {agent.host}\r\nConnection: close\r\n".encode() + fields + b"\r\n"
            status, echoed, data = exchange(edge.port, raw, source=source, timeout=10)
            assert status == 200, data
            headers = dict((name.lower(), value) for name, value in echoed["headers"])
            assert headers["x-netbore-client-ip"] == client
            assert headers["x-forwarded-for"] == forwarded_for
            assert headers["x-forwarded-proto"] == proto
    finally:
        for proc in (agent, edge, origin):
            if proc is not None:
                proc.stop()


# -- item 3: refresh re-checks the keys file; SIGHUP re-reads it -------------------


def test_sighup_reloads_the_keys_and_a_removed_key_can_neither_refresh_nor_be_used(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, f"alice {ALICE}\nbob {BOB} admin\n")
    edge = procs.start_edge(tmp_path, "--api-keys-file", str(keys))
    try:
        status, body = post(edge.port, "/auth/token", authorization=f"Bearer {BOB}".encode())
        assert status == 200, body
        bob = body["management_token"]
        keys.write_text(f"alice {ALICE} admin\n")
        edge.signal(signal.SIGHUP)
        procs.wait_for(lambda: "API keys file" in edge.log() and "reloaded: 1 keys" in edge.log(), 10, "the reload")
        refreshed = post(edge.port, "/auth/token", authorization=f"Bearer {bob}".encode())
        assert (refreshed[0], refreshed[1]["error"]) == (401, "unauthorized"), refreshed
        direct = post(edge.port, "/auth/token", authorization=f"Bearer {BOB}".encode())
        assert (direct[0], direct[1]["error"]) == (401, "unauthorized"), direct
        status, body = post(edge.port, "/auth/token", authorization=f"Bearer {ALICE}".encode())
        assert status == 200
        # A broken file is logged and the keys loaded before stay.
        keys.write_text("alice\n")
        edge.signal(signal.SIGHUP)
        procs.wait_for(lambda: "API keys file not reloaded" in edge.log(), 10, "the refused reload")
        assert post(edge.port, "/auth/token", authorization=f"Bearer {ALICE}".encode())[0] == 200
        assert edge.alive()
    finally:
        edge.stop()


# -- secret files readable by others ----------------------------------------------


def test_the_edge_refuses_to_start_with_a_keys_file_others_may_read(tmp_path: Path) -> None:
    keys = keys_file(tmp_path, f"alice {ALICE}\n")
    keys.chmod(0o644)
    env = dict(os.environ, PYTHONPATH=str(procs.ROOT))
    port = procs.free_port()
    cmd = procs.TWISTD + [
        "netbore-edge", "--listen", f"tcp:{port}:interface=127.0.0.1",
        "--data-dir", str(tmp_path / "data"), "--api-keys-file", str(keys),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, cwd=str(tmp_path))
    assert done.returncode == 1
    expected = (
        f"netbore-edge: refusing to start: API keys file {keys} is accessible by group or others (mode 0644); "
        f"run: chmod 600 {keys}"
    )
    assert expected in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
