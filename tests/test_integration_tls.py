"""
Real TLS end to end: an edge listening with C{ssl:}, an agent that trusts
the edge's private CA through C{--ca-cert} (C{https} control API, C{wss}
tunnel), and a viewer that verifies the certificate of the public name.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from . import procs

pytestmark = pytest.mark.integration


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """
    A private CA and a server certificate for C{tunnel.localhost},
    C{*.tunnel.localhost} and C{127.0.0.1}; (ca.pem, key.pem, cert.pem).
    (OpenSSL refuses a wildcard directly under a one-label name such as
    C{*.localhost}, so the tunnels live one level deeper.)
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("netbore test CA"))
        .issuer_name(_name("netbore test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("tunnel.localhost"),
                    x509.DNSName("*.tunnel.localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, key_pem, cert_pem = directory / "ca.pem", directory / "key.pem", directory / "cert.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_pem.chmod(0o600)
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem, key_pem, cert_pem


def test_tls_edge_wss_agent_and_verified_viewer(tmp_path: Path, origin: procs.Origin) -> None:
    ca, key, cert = make_pki(tmp_path)
    port = procs.free_port()
    edge = procs.Edge(
        tmp_path,
        "--allow-anonymous",
        port=port,
        domain="tunnel.localhost",
        listen=f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        agent = procs.Agent(
            tmp_path,
            edge,
            origin.url,
            "--name",
            "secure",
            "--ca-cert",
            str(ca),
            control_url=f"https://127.0.0.1:{port}",
        )
        state = agent.wait_ready()
        assert state["public_url"] == f"https://secure.tunnel.localhost:{port}"
        assert f"session to wss://127.0.0.1:{port}/connect" not in agent.log()  # no failed attempt
        assert f"tunnel ready: https://secure.tunnel.localhost:{port} -> {origin.url}" in agent.log()

        context = ssl.create_default_context(cafile=str(ca))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        # Verify the certificate for the public name, as a browser would.
        conn.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=10),
            server_hostname="secure.tunnel.localhost",
        )
        conn.request("GET", "/echo?tls=1", headers={"Host": f"secure.tunnel.localhost:{port}"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 200
        assert b'"target": "/echo?tls=1"' in body
        assert b'["X-Forwarded-Proto", "https"]' in body

        # The agent refuses an edge whose certificate it cannot verify.
        agent.stop()
        untrusting = procs.Agent(
            tmp_path,
            edge,
            origin.url,
            "--name",
            "secure2",
            wait=False,
            control_url=f"https://127.0.0.1:{port}",
        )
        procs.wait_for(
            lambda: "cannot reach the control API" in untrusting.log(), 20, "the agent to refuse the edge's certificate"
        )
        assert untrusting.state().get("state") != "ready"
        untrusting.stop()
    finally:
        edge.stop()
