"""
Tests for C{bench/tcp_bulk.py}, issue 11's TCP bulk benchmark: the sink and
source server with its client (a short, long or altered transfer is never
counted as a speed), the netbore TCP path's reading of its C{public_url},
and the table with its ratios to direct and to OpenSSH.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.load import Target
from bench.report import render, render_tcp
from bench.tcp_bulk import NetboreTcp, SshLocal, TcpBulk, download, free_range, probe, serve, upload, verdict

SIZE = 256 * 1024


def _start(target: Callable[..., None], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


@pytest.fixture
def payload(tmp_path: Path) -> tuple[bytes, Path]:
    data = os.urandom(SIZE)
    path = tmp_path / "100m"
    path.write_bytes(data)
    return data, path


@pytest.fixture
def server(payload: tuple[bytes, Path]) -> Iterator[Target]:
    """The real server on a loopback port, in a thread, shut down after the test."""
    listener = socket.create_server(("127.0.0.1", 0))
    _start(serve, listener, payload[1])
    port = listener.getsockname()[1]
    yield Target(port, f"127.0.0.1:{port}")
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def _fake(answer: Callable[[socket.socket, bytes], None]) -> Target:
    """A one-connection server that reads the command line and answers with C{answer(conn, rest)}."""
    listener = socket.create_server(("127.0.0.1", 0))

    def once() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                buf = b""
                while b"\n" not in buf:
                    buf += conn.recv(64)
                answer(conn, buf.partition(b"\n")[2])

    _start(once)
    port = listener.getsockname()[1]
    return Target(port, f"127.0.0.1:{port}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.integration
def test_download_and_upload_move_every_byte(server: Target, payload: tuple[bytes, Path]) -> None:
    data = payload[0]
    probe(server)
    down = download(server, SIZE, _sha(data), 10)
    assert (down.bytes, down.sha_ok) == (SIZE, True) and down.mb_s > 0
    part = download(server, 1000, _sha(data[:1000]), 10)
    assert part.sha_ok
    up = upload(server, data, SIZE, _sha(data), 10)
    assert (up.bytes, up.sha_ok) == (SIZE, True) and up.mb_s > 0
    # twice in a row: the server's reused buffer holds the second upload alone
    other = os.urandom(SIZE)
    assert upload(server, other, SIZE, _sha(other), 10).sha_ok


@pytest.mark.integration
def test_an_upload_the_server_did_not_get_whole_fails_its_check(server: Target, payload: tuple[bytes, Path]) -> None:
    data = payload[0]
    # the server hashes what it got: a different digest than the client's is a failed check
    assert not upload(server, data, SIZE, _sha(data[:-1] + b"x"), 10).sha_ok


@pytest.mark.integration
def test_a_short_download_is_an_error_not_a_speed() -> None:
    target = _fake(lambda conn, rest: conn.sendall(b"x" * 1000))
    with pytest.raises(ConnectionError, match="closed after 1000 of 2000 bytes"):
        download(target, 2000, _sha(b"x" * 2000), 5)


@pytest.mark.integration
def test_a_download_with_bytes_beyond_the_size_is_an_error() -> None:
    target = _fake(lambda conn, rest: conn.sendall(b"x" * 2001))
    with pytest.raises(ConnectionError, match="more than 0 bytes"):
        download(target, 2000, _sha(b"x" * 2000), 5)


@pytest.mark.integration
def test_altered_bytes_fail_the_sha256_check() -> None:
    target = _fake(lambda conn, rest: conn.sendall(b"y" * 2000))
    result = download(target, 2000, _sha(b"x" * 2000), 5)
    assert not result.sha_ok


@pytest.mark.integration
def test_an_upload_answered_without_a_digest_fails() -> None:
    data = b"z" * 5000

    def ack_only(conn: socket.socket, rest: bytes) -> None:
        got = len(rest)
        while got < len(data):
            got += len(conn.recv(65536))
        conn.sendall(b"OK\n")

    assert not upload(_fake(ack_only), data, len(data), _sha(data), 5).sha_ok


@pytest.mark.integration
def test_a_probe_that_gets_no_pong_raises(server: Target) -> None:
    with pytest.raises(ConnectionError):
        probe(_fake(lambda conn, rest: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")))
    probe(server)


def test_the_netbore_path_connects_to_the_tunnel_port_of_its_public_url() -> None:
    path = NetboreTcp()
    assert path.target("tcp://localhost:20007", 8080) == Target(20007, "127.0.0.1:20007")
    with pytest.raises(RuntimeError, match="public_url"):
        path.target("http://abc.localhost:8080", 8080)
    assert path.agent_args(5432) == ["--tcp", "127.0.0.1:5432"]
    assert SshLocal.forward == "-L" and SshLocal.name == "ssh-L"


@pytest.mark.integration
def test_the_edge_gets_a_range_of_free_loopback_ports() -> None:
    args = NetboreTcp().edge_args()
    assert args[0] == "--tcp-ports" and args[2:] == ["--tcp-interface", "127.0.0.1"]
    first, last = map(int, args[1].split("-"))
    assert last - first == NetboreTcp.ports - 1
    for port in range(first, last + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert free_range(1) > 0


def _med(up: dict[str, float], down: dict[str, float]) -> dict[str, dict[str, dict[str, object]]]:
    med: dict[str, dict[str, dict[str, object]]] = {}
    for peer in up:
        med[peer] = {"tcp_upload": {"mb_s": up[peer]}, "tcp_download": {"mb_s": down[peer]}}
        if peer != "direct":
            med[peer]["tcp_upload"]["cpu_s"] = 1.0
        med[peer]["totals"] = {"failures": 0, "restarts": 0, "sha_ok": True}
    return med


LABELS = {"direct": "direct", "netbore": "netbore", "ssh-L": "OpenSSH -L", "ssh-R": "OpenSSH -R"}


def test_the_table_gives_ratios_to_direct_and_netbore_s_to_each_openssh() -> None:
    med = _med(
        {"direct": 1000.0, "netbore": 300.0, "ssh-L": 200.0, "ssh-R": 150.0},
        {"direct": 800.0, "netbore": 400.0, "ssh-L": 400.0, "ssh-R": 500.0},
    )
    lines = render_tcp(med, LABELS, "100 MiB").splitlines()
    header = lines[1].split()
    assert header == ["metric", "direct", "netbore", "×direct", "×ssh", "-L", "×ssh", "-R"] + [
        "OpenSSH",
        "-L",
        "×direct",
        "OpenSSH",
        "-R",
        "×direct",
    ]
    upload_row = next(line for line in lines if line.startswith("TCP 100 MiB upload, client→server: MB/s"))
    assert upload_row.split()[-9:] == ["1,000", "300", "0.30", "1.50", "2.00", "200", "0.20", "150", "0.15"]
    cpu_row = next(line for line in lines if line.startswith("tunnel CPU, upload: s"))
    assert cpu_row.split()[4:] == ["1.00"] * 5  # netbore, ×ssh -L, ×ssh -R, OpenSSH -L, OpenSSH -R
    assert "SHA-256 checks passed" in lines[-2]


def test_the_requirement_is_met_only_against_the_faster_openssh_both_ways() -> None:
    met = _med({"netbore": 300.0, "ssh-L": 200.0, "ssh-R": 300.0}, {"netbore": 501.0, "ssh-L": 400.0, "ssh-R": 500.0})
    assert [line.endswith(": met") for line in verdict(met)] == [True, True]
    short = _med({"netbore": 300.0, "ssh-L": 200.0, "ssh-R": 301.0}, {"netbore": 501.0, "ssh-L": 400.0, "ssh-R": 500.0})
    lines = verdict(short)
    assert lines[0].endswith("NOT met") and "1.00× OpenSSH's best (301)" in lines[0]
    assert lines[1].endswith(": met")
    missing = _med({"ssh-L": 200.0}, {"ssh-L": 400.0})
    assert all("not measured" in line for line in verdict(missing))


@pytest.mark.integration
def test_a_failed_transfer_is_counted_and_never_a_speed() -> None:
    class Dead(NetboreTcp):
        name = "netbore"

        def start(self, env: object, origin_port: int) -> Target:
            return Target(1, "127.0.0.1:1")

    bulk = TcpBulk(env=None, payload=b"p" * 100, size=100, timeout=1)  # type: ignore[arg-type]
    path = Dead()
    out = bulk.run([(path, Target(1, "127.0.0.1:1"))], rounds=1)
    assert out["medians"]["netbore"]["totals"] == {"failures": 2, "restarts": 2, "sha_ok": False, "rounds": 1}
    assert all(math.isnan(r["mb_s"]) for test in ("tcp_upload", "tcp_download") for r in out["rounds"]["netbore"][test])
    assert any("NOT met" in line or "not measured" in line for line in out["verdict"])


def test_the_http_table_keeps_its_columns() -> None:
    row: dict[str, Any] = {"rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0}
    med: dict[str, dict[str, dict[str, Any]]] = {
        p: {"small_c1": dict(row), "totals": {"errors": 0}} for p in ("direct", "netbore", "nginx-proxy", "ssh-R")
    }
    header = render(med, {p: p for p in med}, [1]).splitlines()[1].split()
    assert header == ["metric", "direct", "netbore", "×direct", "×nginx", "nginx-proxy", "×direct", "ssh-R"] + [
        "×direct",
        "×nginx",
    ]
