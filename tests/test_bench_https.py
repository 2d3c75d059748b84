"""
Tests for the HTTPS row of the benchmark (issue 12, C{bench/https.py}): the
throwaway certificates, the load generator's TLS side (real handshakes on
loopback, verified by name against the generated CA), the netbore edge's
C{ssl:} listener and nginx's TLS config as the paths render them, the
C{--https} option, and the table with its ratios.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import load
from bench.https import DOMAIN, TLS_OF, Certs, NetboreTls, NginxTls, make_certs, render_https, tls_host
from bench.load import Target, download, healthy, run_load
from bench.origins import _nginx_common
from bench.run import parse_args
from netbore.edge.tls_listen import is_ssl, split_description

BODY = os.urandom(200_000)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


def _serve(listener: socket.socket, context: ssl.SSLContext) -> None:
    """A TLS HTTP/1.1 server: /13 answers Hello, World!, anything else L{BODY}; one request per connection."""
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                body = b"Hello, World!" if head.startswith(b"GET /13 ") else BODY
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except (OSError, ssl.SSLError):
            pass


@pytest.fixture
def tls_server(certs: Certs) -> Iterator[int]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(certs.cert), str(certs.key))
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_serve, args=(listener, context), daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


# ------------------------------------------------------------ certificates


def test_certificates_written_private(certs: Certs) -> None:
    """The CA, the key and the certificate exist, readable by their owner only."""
    for path in (certs.ca, certs.key, certs.cert):
        assert path.read_bytes().startswith(b"-----BEGIN ")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.integration
def test_handshake_verified_by_name(certs: Certs, tls_server: int) -> None:
    """
    A real TLS handshake on loopback: the bench's client verifies the
    certificate against the generated CA by the tunnel's name (the SNI), and
    a 200 kB download through it has the right SHA-256.
    """
    target = Target(tls_server, tls_host(tls_server), str(certs.ca))
    assert target.scheme == "https"
    assert target.server_name == f"bench.{DOMAIN}"
    assert healthy(target)
    result = download(target, "/big", hashlib.sha256(BODY).hexdigest(), len(BODY), 10)
    assert result.sha_ok and result.bytes == len(BODY)


@pytest.mark.integration
def test_handshake_by_address(certs: Certs, tls_server: int) -> None:
    """The certificate also names 127.0.0.1 (the agent's --control-url)."""
    assert healthy(Target(tls_server, f"127.0.0.1:{tls_server}", str(certs.ca)))


@pytest.mark.integration
def test_wrong_ca_refused(certs: Certs, tls_server: int, tmp_path: Path) -> None:
    """Against another CA the handshake fails: the figures are never those of an unverified path."""
    other = make_certs(tmp_path / "other")
    assert not healthy(Target(tls_server, tls_host(tls_server), str(other.ca)))


def test_plain_target_stays_plain() -> None:
    target = Target(80, "127.0.0.1:80")
    assert target.scheme == "http" and target.tls() is None


@pytest.mark.integration
def test_builtin_generator_speaks_tls(certs: Certs, tls_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without wrk, the built-in generator completes TLS requests (one per connection here)."""
    monkeypatch.setattr(load.shutil, "which", lambda name: None)
    result = run_load(Target(tls_server, tls_host(tls_server), str(certs.ca)), "/13", 1, 0.5)
    assert result.tool != "wrk" and result.requests >= 1


def test_wrk_gets_an_https_url(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        raise RuntimeError("stop")

    monkeypatch.setattr(load.subprocess, "run", fake)
    with pytest.raises(RuntimeError):
        load._wrk(Target(4443, tls_host(4443), str(certs.ca)), "/13", 50, 1, 1)
    assert seen[0][-1] == "https://127.0.0.1:4443/13"
    assert f"Host: bench.{DOMAIN}:4443" in seen[0]


# ------------------------------------------------------------------- paths


def test_netbore_tls_edge_and_agent(certs: Certs) -> None:
    """The edge listens on ssl: with the generated key and certificate; the agent trusts the CA over https."""
    NetboreTls.certs = certs
    peer = NetboreTls()
    listen = peer.listen(8443)
    assert is_ssl(listen)
    args, params = split_description(listen)
    assert args[1:] == ["8443"]
    assert params == {"interface": "127.0.0.1", "privateKey": str(certs.key), "certKey": str(certs.cert)}
    assert peer.domain == DOMAIN
    assert peer.control_url(8443) == "https://127.0.0.1:8443"
    agent = peer.agent_args(9000)
    assert agent[agent.index("--ca-cert") + 1] == str(certs.ca)
    assert "--origin" in agent and "http://127.0.0.1:9000" in agent
    target = peer.target(f"https://bench.{DOMAIN}:8443/", 8443)
    assert target == Target(8443, f"bench.{DOMAIN}:8443", str(certs.ca))


def test_nginx_tls_config(certs: Certs, tmp_path: Path) -> None:
    """nginx terminates TLS (1.2 and 1.3) with the same certificate and proxies to the same origin."""
    NginxTls.certs = certs
    peer = NginxTls()
    body = peer.config(8444, 9000)
    assert "listen 127.0.0.1:8444 ssl backlog=4096;" in body
    assert f"ssl_certificate {certs.cert};" in body
    assert f"ssl_certificate_key {certs.key};" in body
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in body
    assert "server 127.0.0.1:9000;" in body and "proxy_pass http://origin;" in body
    assert peer.target(8444) == Target(8444, f"bench.{DOMAIN}:8444", str(certs.ca))
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    conf = tmp_path / "nginx.conf"
    conf.write_text(_nginx_common(tmp_path) + body + "}\n")
    done = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_only_names_the_plain_paths() -> None:
    """--only netbore nginx-proxy selects their TLS twins in the HTTPS run."""
    assert TLS_OF == {"netbore": "netbore-tls", "nginx-proxy": "nginx-tls"}


def test_https_option() -> None:
    assert parse_args([]).https == "on"
    assert parse_args(["--https", "only"]).https == "only"
    with pytest.raises(SystemExit):
        parse_args(["--https", "maybe"])


# ------------------------------------------------------------------- table


MED: dict[str, dict[str, dict[str, Any]]] = {
    "direct": {
        "small_c50": {"rps": 30000.0, "p50_ms": 0.7, "p99_ms": 8.0},
        "download_100m": {"mb_s": 1000.0},
        "totals": {"errors": 0, "failures": 0, "restarts": 0, "sha_ok": True},
    },
    "netbore-tls": {
        "small_c50": {"rps": 2000.0, "p50_ms": 24.0, "p99_ms": 56.0, "cpu_us_per_req": 500.0},
        "download_100m": {"mb_s": 60.0},
        "totals": {"errors": 0, "failures": 0, "restarts": 0, "sha_ok": True},
    },
    "nginx-tls": {
        "small_c50": {"rps": 10000.0, "p50_ms": 4.0, "p99_ms": 10.0, "cpu_us_per_req": 62.5},
        "download_100m": {"mb_s": 300.0},
        "totals": {"errors": 0, "failures": 0, "restarts": 0, "sha_ok": False},
    },
}
LABELS = {"direct": "direct", "netbore-tls": "netbore TLS", "nginx-tls": "nginx TLS"}


def _row(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(label))
    return line[len(label) :].split()


def test_table_ratios() -> None:
    """netbore TLS: ×direct and ×nginx TLS; nginx TLS: ×direct only; CPU per request: ×nginx TLS only."""
    table = render_https(MED, LABELS)
    header = next(x for x in table.splitlines() if x.startswith("metric")).split()
    assert header == ["metric", "direct", "netbore", "TLS", "×direct", "×nginx", "TLS", "nginx", "TLS", "×direct"]
    assert _row(table, "13 B c=50: req/s") == ["30.0k", "2,000", "0.07", "0.20", "10.0k", "0.33"]
    assert _row(table, "13 B c=50: p50 ms") == ["0.70", "24.0", "34.29", "6.00", "4.00", "5.71"]
    assert _row(table, "CPU per request, c=50: µs") == ["500", "8.00", "62"]
    assert _row(table, "100 MiB download: MB/s") == ["1,000", "60.0", "0.06", "0.20", "300", "0.30"]
    assert _row(table, "SHA-256 checks passed") == ["yes", "yes", "NO"]


def test_table_without_nginx() -> None:
    """nginx not installed: direct and netbore TLS only, no ×nginx TLS column."""
    med = {k: v for k, v in MED.items() if k != "nginx-tls"}
    table = render_https(med, LABELS)
    assert "×nginx" not in table
    assert _row(table, "13 B c=50: req/s") == ["30.0k", "2,000", "0.07"]
