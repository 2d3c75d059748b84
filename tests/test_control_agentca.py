"""
Mutual TLS on the control API: with C{--agent-ca}, the calls an agent makes
(C{POST /auth/token}, with an API key or a management token to refresh,
and C{POST /tunnels/create}) need a client certificate naming the account;
a refusal is a 403 with its JSON code and counts against the failed-auth
budget.  (The certificate the TLS layer received is stubbed here: the TLS
layer itself is tested in test_agentca.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509

from netbore.edge import apiauth
from netbore.edge.agentca import AgentCA

from .test_control_api import Edge, error_of, make_edge
from .tlscerts import TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("agents CA")


class Presented:
    """The client certificate the next requests present (None: none)."""

    certificate: x509.Certificate | None = None


@pytest.fixture
def presented(monkeypatch: pytest.MonkeyPatch) -> Presented:
    shown = Presented()
    monkeypatch.setattr(apiauth, "peer_certificate", lambda transport: shown.certificate)
    return shown


def mtls_edge(tmp_path: Path, ca: TestCA, **config: Any) -> Edge:
    edge = make_edge(tmp_path, **config)
    edge.clock.advance(ca.now.timestamp() - edge.clock.seconds())
    edge.api.auth.agent_ca = AgentCA(edge.clock, str(ca.write(tmp_path / "agent-ca.pem")))
    return edge


@pytest_twisted.ensureDeferred
async def test_auth_token_needs_a_certificate_naming_the_api_keys_account(
    tmp_path: Path, ca: TestCA, presented: Presented
) -> None:
    edge = mtls_edge(tmp_path, ca)
    assert error_of(await edge.call("POST", "/auth/token", token="alice-key")) == (403, "client_certificate_required")
    presented.certificate = TestCA("other CA").issue_client("alice").cert
    assert error_of(await edge.call("POST", "/auth/token", token="alice-key")) == (403, "client_certificate_refused")
    presented.certificate = ca.issue_client("bob", account_uri="netbore:account:bob").cert
    assert error_of(await edge.call("POST", "/auth/token", token="alice-key")) == (403, "client_certificate_mismatch")
    presented.certificate = ca.issue_client("alice", account_uri="netbore:account:alice").cert
    status, _, body = await edge.call("POST", "/auth/token", token="alice-key")
    assert status == 200
    # the refresh of a management token is an agent's call too
    status, _, _ = await edge.call("POST", "/auth/token", token=body["management_token"])
    assert status == 200
    presented.certificate = ca.issue_client("bob").cert
    refused = await edge.call("POST", "/auth/token", token=body["management_token"])
    assert error_of(refused) == (403, "client_certificate_mismatch")


@pytest_twisted.ensureDeferred
async def test_refusals_count_against_the_failed_auth_budget(tmp_path: Path, ca: TestCA, presented: Presented) -> None:
    edge = mtls_edge(tmp_path, ca, auth_failures_per_minute=3)
    presented.certificate = ca.issue_client("bob").cert
    for _ in range(3):
        assert error_of(await edge.call("POST", "/auth/token", token="alice-key"))[0] == 403
    # the budget is spent: even the right certificate waits now
    presented.certificate = ca.issue_client("alice").cert
    assert error_of(await edge.call("POST", "/auth/token", token="alice-key")) == (429, "rate_limited")


@pytest_twisted.ensureDeferred
async def test_create_needs_a_certificate_naming_the_management_tokens_account(
    tmp_path: Path, ca: TestCA, presented: Presented
) -> None:
    edge = mtls_edge(tmp_path, ca)
    token = edge.management("alice")
    assert error_of(await edge.create(token=token)) == (403, "client_certificate_required")
    presented.certificate = ca.issue_client("bob").cert
    status, _, body = await edge.create(token=token)
    assert (status, body["error"]) == (403, "client_certificate_mismatch")
    assert "'bob'" in body["message"]
    presented.certificate = ca.issue_client("alice").cert
    status, _, body = await edge.create(token=token)
    assert status == 201
    # Anonymous agents are refused on an edge with --agent-ca, even with
    # --allow-anonymous (make_edge allows them) and a valid certificate.
    status, _, body = await edge.create()
    assert (status, body["error"]) == (403, "client_certificate_mismatch")
    assert "anonymous agents are refused" in body["message"]


@pytest_twisted.ensureDeferred
async def test_without_agent_ca_no_certificate_is_asked(tmp_path: Path, presented: Presented) -> None:
    edge = make_edge(tmp_path)
    assert (await edge.call("POST", "/auth/token", token="alice-key"))[0] == 200
    assert (await edge.create(token=edge.management("alice")))[0] == 201
