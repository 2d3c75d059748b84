"""
Mutual TLS for agents with real processes and real handshakes on loopback:
a real edge on an C{ssl:} listener with C{--agent-ca}, C{--agent-crl} and
an API keys file of two accounts, and real agents with and without client
certificates.  A viewer without a certificate reaches the tunnel on the
same port; the C{/connect} handshake without a certificate is refused
(403) before any tunnel frame; a serial revoked by SIGHUP is refused.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from . import procs
from .tls_certs import CA, Issued

pytestmark = pytest.mark.integration

ALICE_KEY = "alice-key-0123456789"


def client_context(ca: CA, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def https(
    port: int, method: str, path: str, context: ssl.SSLContext, host: str, body: Any = None, token: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=15)
    headers = {"Host": host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def websocket_opening(port: int, context: ssl.SSLContext, token: str) -> bytes:
    """The edge's whole answer to a /connect opening handshake (no cert of ours)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(
                (
                    f"GET /connect HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: netbore.v1\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n"
                ).encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            return answer


def test_mutual_tls_for_agents(tmp_path: Path, origin: procs.Origin) -> None:
    edge_ca, agents_ca, other_ca = CA(tmp_path, "edge"), CA(tmp_path, "agents"), CA(tmp_path, "other")
    server = edge_ca.issue("tunnel.localhost", "*.tunnel.localhost", "127.0.0.1")
    alice, bob = agents_ca.issue_client("alice"), agents_ca.issue_client("bob")
    keys = tmp_path / "api-keys"
    keys.write_text(f"alice {ALICE_KEY}\nbob bob-key-0123456789\n")
    keys.chmod(0o600)
    key_file = tmp_path / "alice.key"
    key_file.write_text(ALICE_KEY + "\n")
    key_file.chmod(0o600)
    crl = tmp_path / "revoked.txt"
    crl.write_text("# nothing revoked yet\n")
    port = procs.free_port()
    edge = procs.Edge(
        tmp_path,
        "--api-keys-file",
        str(keys),
        "--agent-ca",
        str(agents_ca.path),
        "--agent-crl",
        str(crl),
        port=port,
        domain="tunnel.localhost",
        listen=f"ssl:{port}:interface=127.0.0.1:{server.listen_args}",
    )
    agents: list[procs.Agent] = []

    def agent(*args: str, wait: bool = False) -> procs.Agent:
        made = procs.Agent(
            tmp_path,
            edge,
            origin.url,
            "--ca-cert",
            str(edge_ca.path),
            "--api-key-file",
            str(key_file),
            "--backoff-base",
            "0.2",
            "--backoff-cap",
            "0.5",
            *args,
            wait=wait,
            control_url=f"https://127.0.0.1:{edge.port}",
        )
        agents.append(made)
        return made

    def refused(made: procs.Agent, line: str) -> None:
        procs.wait_for(lambda: line in made.log(), 30, f"the agent to log: {line}")
        assert made.state().get("state") != "ready" and "tunnel ready" not in made.log()
        made.stop()

    try:
        # The matching certificate: the tunnel works, and a viewer without
        # a certificate gets its page on the same port.
        good = agent("--client-cert", str(alice.cert), "--client-key", str(alice.key), wait=True)
        host = good.host
        status, body = https(edge.port, "GET", "/", client_context(edge_ca), host)
        assert status == 200 and body, body

        # /connect without a certificate: refused by the WebSocket handshake.
        with_cert = client_context(edge_ca, alice)
        status, answer = https(edge.port, "POST", "/auth/token", with_cert, "127.0.0.1", token=ALICE_KEY)
        assert status == 200
        management = json.loads(answer)["management_token"]
        status, answer = https(edge.port, "POST", "/tunnels/create", with_cert, "127.0.0.1", {}, token=management)
        assert status == 201, answer
        opening = websocket_opening(edge.port, client_context(edge_ca), json.loads(answer)["ephemeral_token"])
        assert opening.startswith(b"HTTP/1.1 403 client_certificate_required"), opening
        assert b"101" not in opening.split(b"\r\n", 1)[0]

        # No certificate, another CA, another account: refused, and said so.
        refused(agent(), "client_certificate_required")
        foreign = other_ca.issue_client("alice")
        refused(
            agent("--client-cert", str(foreign.cert), "--client-key", str(foreign.key)), "client_certificate_refused"
        )
        refused(
            agent("--client-cert", str(bob.cert), "--client-key", str(bob.key)),
            "the client certificate names account 'bob'",
        )

        # Revoked: the certificate that worked is refused after SIGHUP.
        crl.write_text(f"{alice.certificate.serial_number:x}\n")
        edge.signal(signal.SIGHUP)
        procs.wait_for(lambda: "mutual TLS: reloaded" in edge.log(), 15, "the edge to reload --agent-crl")
        good.stop()
        refused(agent("--client-cert", str(alice.cert), "--client-key", str(alice.key)), "is revoked")
    finally:
        for made in agents:
            made.stop()
        edge.stop()
