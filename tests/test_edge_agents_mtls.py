"""
Mutual TLS on C{/connect}: with C{--agent-ca}, the WebSocket handshake of
an agent whose client certificate is missing, not by the agent CA, revoked
or for another account than the tunnel's owner is refused with a 403 that
says why, before any tunnel frame, and counts against the failed-auth
budget.  (The certificate the TLS layer received is stubbed: the TLS layer
itself is tested in test_agentca.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from netbore.edge import agents
from netbore.edge.agentca import AgentCA
from netbore.edge.registry import TunnelState

from .test_edge_agents import Harness
from .tlscerts import TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("agents CA")


class Presented:
    certificate: x509.Certificate | None = None


@pytest.fixture
def presented(monkeypatch: pytest.MonkeyPatch) -> Presented:
    shown = Presented()
    monkeypatch.setattr(agents, "peer_certificate", lambda transport: shown.certificate)
    return shown


def harness(tmp_path: Path, ca: TestCA, crl: bytes | None = None, per_minute: int = 10) -> Harness:
    h = Harness(tmp_path, per_minute=per_minute)
    h.clock.advance(ca.now.timestamp() - h.clock.seconds())
    h.tunnel.owner = "alice"
    crl_path = None
    if crl is not None:
        crl_path = tmp_path / "crl"
        crl_path.write_bytes(crl)
    h.endpoint.agent_ca = AgentCA(h.clock, str(ca.write(tmp_path / "ca.pem")), str(crl_path) if crl_path else None)
    return h


def refused(h: Harness, why: str) -> None:
    agent, edge, pump = h.connect(h.token())
    assert not agent.opened and agent.edge_hello is None and agent.closed is not None
    assert "403" in (agent.closed[2] or "") and why in (agent.closed[2] or ""), agent.closed
    assert h.tunnel.state != TunnelState.ACTIVE


def test_refused_before_any_frame_unless_the_certificate_names_the_owner(
    tmp_path: Path, ca: TestCA, presented: Presented
) -> None:
    revoked = ca.issue_client("alice")
    h = harness(tmp_path, ca, crl=f"{revoked.cert.serial_number:x}\n".encode())
    refused(h, "client_certificate_required")
    presented.certificate = TestCA("other CA").issue_client("alice").cert
    refused(h, "client_certificate_refused")
    presented.certificate = revoked.cert
    refused(h, "revoked")
    presented.certificate = ca.issue_client("bob", account_uri="netbore:account:bob").cert
    refused(h, "client_certificate_mismatch")
    presented.certificate = ca.issue_client("alice", account_uri="netbore:account:alice").cert
    agent, edge, pump = h.connect(h.token())
    assert agent.opened and agent.edge_hello is not None
    assert h.tunnel.state == TunnelState.ACTIVE


def test_an_anonymous_tunnel_is_refused(tmp_path: Path, ca: TestCA, presented: Presented) -> None:
    h = harness(tmp_path, ca)
    h.tunnel.owner = None
    presented.certificate = ca.issue_client("alice").cert
    refused(h, "anonymous agents are refused")


def test_refusals_count_against_the_failed_auth_budget(tmp_path: Path, ca: TestCA, presented: Presented) -> None:
    h = harness(tmp_path, ca, per_minute=2)
    refused(h, "client_certificate_required")
    refused(h, "client_certificate_required")
    presented.certificate = ca.issue_client("alice").cert
    agent, edge, pump = h.connect(h.token())
    assert not agent.opened and agent.closed is not None and "429" in (agent.closed[2] or "")
