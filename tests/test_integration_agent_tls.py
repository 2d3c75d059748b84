"""
The agent's TLS with real processes and real handshakes on loopback: a
real edge on an C{ssl:} listener, real agents that trust the right CA or
not, and an C{https} origin signed by a private CA.  Certificates are
made in the test (L{tests.tls_certs}).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from . import procs
from .tls_certs import CA, Issued

pytestmark = pytest.mark.integration

#: An HTTPS origin: answers every GET with 200 "hello over tls".
_HTTPS_ORIGIN = textwrap.dedent(
    """
    import http.server, ssl, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = b"hello over tls"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("listening", flush=True)
    server.serve_forever()
    """
)


def tls_edge(tmp_path: Path, issued: Issued, *args: str, port: int | None = None) -> procs.Edge:
    port = port or procs.free_port()
    return procs.Edge(
        tmp_path,
        "--allow-anonymous",
        *args,
        port=port,
        domain="tunnel.localhost",
        listen=f"ssl:{port}:interface=127.0.0.1:{issued.listen_args}",
    )


def refused(agent: procs.Agent, line: str) -> None:
    """
    C{agent} logs C{line} (again and again: it keeps trying) and its
    tunnel never becomes ready.
    """
    procs.wait_for(lambda: agent.log().count(line) >= 2, 30, f"the agent to log twice: {line}")
    assert agent.state().get("state") != "ready"
    assert "tunnel ready" not in agent.log()


def test_agent_verifies_the_edge_and_says_why_it_refuses(tmp_path: Path, origin: procs.Origin) -> None:
    ca, other_ca = CA(tmp_path, "edge"), CA(tmp_path, "other")
    issued = ca.issue("tunnel.localhost", "*.tunnel.localhost", "127.0.0.1")
    names = "tunnel.localhost, *.tunnel.localhost, 127.0.0.1"
    edge = tls_edge(tmp_path, issued)
    agents: list[procs.Agent] = []

    def agent(*args: str, url: str | None = None, wait: bool = False) -> procs.Agent:
        made = procs.Agent(
            tmp_path,
            edge,
            origin.url,
            "--backoff-base",
            "0.2",
            "--backoff-cap",
            "0.5",
            *args,
            wait=wait,
            control_url=url or f"https://127.0.0.1:{edge.port}",
        )
        agents.append(made)
        return made

    try:
        # The right CA: the control API over https, the tunnel over wss,
        # with TLS 1.3 asked for (the edge offers it).
        good = agent("--ca-cert", str(ca.path), "--tls-min", "1.3", wait=True)
        assert good.state()["public_url"].startswith("https://")
        assert f"tunnel ready: {good.state()['public_url']}" in good.log()
        good.stop()

        # Another CA.
        wrong = agent("--ca-cert", str(other_ca.path))
        refused(
            wrong,
            f"cannot reach the control API at https://127.0.0.1:{edge.port}: the edge's certificate "
            f"(issued by CN=netbore edge CA) is not signed by a trusted CA (--ca-cert {other_ca.path})",
        )
        # No CA given: the system's CAs do not know ours either.
        system = agent()
        refused(system, "is not signed by a trusted CA (the system's CAs; give the edge's CA with --ca-cert)")
        # A name the certificate is not for.
        other_name = agent("--ca-cert", str(ca.path), url=f"https://localhost:{edge.port}")
        refused(
            other_name,
            f"cannot reach the control API at https://localhost:{edge.port}: "
            f"the edge's certificate is for {names}, not localhost",
        )
        for a in agents:
            a.stop()
    finally:
        for a in agents:
            a.stop()
        edge.stop()

    # The wss connection checks the same: the control API's name is in the
    # certificate, the advertised WebSocket's is not.
    port = procs.free_port()
    edge = tls_edge(tmp_path, issued, "--advertise-url", f"wss://localhost:{port}/connect", port=port)
    ws = None
    try:
        ws = agent("--ca-cert", str(ca.path))
        refused(
            ws,
            f"session to wss://localhost:{edge.port}/connect failed: "
            f"the edge's certificate is for {names}, not localhost",
        )
    finally:
        if ws is not None:
            ws.stop()
        edge.stop()


def test_agent_refuses_an_expired_edge_certificate(tmp_path: Path, origin: procs.Origin) -> None:
    ca = CA(tmp_path, "edge")
    issued = ca.issue("127.0.0.1", expired=True)
    when = issued.certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    edge = tls_edge(tmp_path, issued)
    agent = procs.Agent(
        tmp_path,
        edge,
        origin.url,
        "--ca-cert",
        str(ca.path),
        "--backoff-base",
        "0.2",
        "--backoff-cap",
        "0.5",
        wait=False,
        control_url=f"https://127.0.0.1:{edge.port}",
    )
    try:
        refused(agent, f"the edge's certificate expired on {when}")
    finally:
        agent.stop()
        edge.stop()


def test_origin_ca_cert_for_an_https_origin(tmp_path: Path) -> None:
    ca = CA(tmp_path, "origin")
    issued = ca.issue("127.0.0.1")
    port = procs.free_port()
    https_origin = procs.Proc(
        "https-origin",
        [sys.executable, "-c", _HTTPS_ORIGIN, str(port), str(issued.cert), str(issued.key)],
        tmp_path / "https-origin.log",
    )
    edge = procs.Edge(tmp_path, "--allow-anonymous")
    agents: list[procs.Agent] = []
    try:
        procs.wait_for(lambda: "listening" in https_origin.log() or not https_origin.alive(), 15, "the origin")
        assert https_origin.alive(), https_origin.log()
        url = f"https://127.0.0.1:{port}"

        trusting = procs.Agent(tmp_path, edge, url, "--origin-ca-cert", str(ca.path), "--name", "trusting")
        agents.append(trusting)
        status, _, body = procs.request(edge.port, "GET", "/", host=trusting.host)
        assert (status, body) == (200, b"hello over tls")

        untrusting = procs.Agent(tmp_path, edge, url, "--name", "untrusting")
        agents.append(untrusting)
        status, _, _ = procs.request(edge.port, "GET", "/", host=untrusting.host)
        assert status == 502
        line = (
            f"cannot reach the origin {url}: the origin's certificate (issued by CN=netbore origin CA) "
            "is not signed by a trusted CA (the system's CAs; give the origin's CA with --origin-ca-cert)"
        )
        procs.wait_for(lambda: line in untrusting.log(), 10, "the agent to say why")
    finally:
        for a in agents:
            a.stop()
        edge.stop()
        https_origin.stop()
