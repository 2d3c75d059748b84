"""
The agent's client certificate (C{--client-cert}, C{--client-key}, and
C{client_cert}/C{client_key} in the YAML): parsed and checked, loaded by
the service for the edge only, and presented in a real (in-memory) TLS
handshake to the edge's own listener asking for one (C{--agent-ca}), whose
check then passes; without one the handshake still succeeds and the check
says a certificate is required.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from netbore.agent.service import AgentService
from netbore.agent.tap import makeService
from netbore.agent.tls import PeerTLS, load_client_certificate
from netbore.edge.agentca import AgentCA, peer_certificate
from netbore.edge.tls import CertificateFiles, ListenerCertificates, request_client_certificates

from .test_agent_tap import ORIGIN, options, parse
from .test_agent_tls import Recorder, handshake
from .tls_certs import CA


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    yield
    request_client_certificates(None)


def test_options(tmp_path: Path) -> None:
    ca = CA(tmp_path, "agents")
    alice = ca.issue_client("alice")
    assert (parse("--origin", ORIGIN).client_cert, parse("--origin", ORIGIN).client_key) == (None, None)
    config = parse("--origin", ORIGIN, "--client-cert", str(alice.cert), "--client-key", str(alice.key))
    assert (config.client_cert, config.client_key) == (str(alice.cert), str(alice.key))
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(f"origin: {ORIGIN}\nclient_cert: {alice.cert}\nclient_key: {alice.key}\n")
    config = parse("--config", str(config_file))
    assert (config.client_cert, config.client_key) == (str(alice.cert), str(alice.key))
    with pytest.raises(usage.UsageError, match="client-cert and client-key go together"):
        parse("--origin", ORIGIN, "--client-cert", str(alice.cert))
    with pytest.raises(usage.UsageError, match="--client-key: no such file"):
        parse("--origin", ORIGIN, "--client-cert", str(alice.cert), "--client-key", str(tmp_path / "nope"))


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    ca = CA(tmp_path, "agents")
    alice, bob = ca.issue_client("alice"), ca.issue_client("bob")
    with pytest.raises(ValueError, match=f"--client-key {bob.key} is not the key of --client-cert {alice.cert}"):
        load_client_certificate(str(alice.cert), str(bob.key))
    with pytest.raises(ValueError, match=f"--client-cert {alice.key}: not a PEM certificate"):
        load_client_certificate(str(alice.key), str(alice.key))


def test_the_service_presents_it_to_the_edge_only(tmp_path: Path) -> None:
    ca = CA(tmp_path, "agents")
    alice = ca.issue_client("alice")
    parsed = options("--origin", ORIGIN, "--client-cert", str(alice.cert), "--client-key", str(alice.key))
    agent = makeService(parsed, reactor=MemoryReactorClock())
    assert isinstance(agent, AgentService)
    assert agent.edge_tls.client_cert is not None
    assert agent.edge_tls.client_cert.digest("sha256") == load_client_certificate(
        str(alice.cert), str(alice.key)
    ).digest("sha256")


def _edge(tmp_path: Path, ca: CA, agents: CA) -> ListenerCertificates:
    request_client_certificates([agents.certificate])
    server = ca.issue("edge.example")
    return ListenerCertificates(CertificateFiles(key=str(server.key), cert=str(server.cert)))


def _received(server: Recorder) -> bytes | None:
    cert = peer_certificate(server.transport)
    return cert.public_bytes(serialization.Encoding.DER) if cert is not None else None


def test_a_handshake_with_the_edge_presents_the_certificate(tmp_path: Path) -> None:
    ca, agents = CA(tmp_path, "edge"), CA(tmp_path, "agents")
    alice = agents.issue_client("alice")
    listener = _edge(tmp_path, ca, agents)
    tls = PeerTLS("edge", str(ca.path), "--ca-cert", client=(str(alice.cert), str(alice.key)))
    client, server = handshake(tls, "edge.example", listener)  # type: ignore[arg-type]
    assert client.lost is None and server.data == b"hello from the client"
    assert _received(server) == alice.certificate.public_bytes(serialization.Encoding.DER)
    clock = Clock()
    clock.advance(alice.certificate.not_valid_before_utc.timestamp() + 600)
    check = AgentCA(clock, str(agents.path)).check
    assert check(peer_certificate(server.transport), "alice") is None
    # Without a certificate: the viewer's case, the TLS layer still lets it in.
    client, server = handshake(PeerTLS("edge", str(ca.path), "--ca-cert"), "edge.example", listener)  # type: ignore[arg-type]
    assert client.lost is None and server.data == b"hello from the client"
    assert _received(server) is None
    refusal = check(peer_certificate(server.transport), "alice")
    assert refusal is not None and refusal.code == "client_certificate_required"
