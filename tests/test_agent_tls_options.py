"""
The agent's TLS options (C{--tls-min}, C{--origin-ca-cert}), how the
service uses them, and how it reports a refused edge certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python import usage

from netbore.agent.service import AgentService, downgraded
from netbore.agent.tap import makeService

from .test_agent_service import World, created, make, messages  # noqa: F401 (make is a fixture)
from .test_agent_tap import ORIGIN, options, parse
from .tls_certs import CA

HTTPS_ORIGIN = "https://origin.internal:8443"


def test_defaults() -> None:
    config = parse("--origin", ORIGIN)
    assert (config.tls_min, config.origin_ca_cert) == ("1.2", None)


def test_tls_min_from_the_command_line_and_the_config_file(tmp_path: Path) -> None:
    assert parse("--origin", ORIGIN, "--tls-min", "1.3").tls_min == "1.3"
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(f"origin: {ORIGIN}\ntls_min: 1.3\n")  # a YAML number
    assert parse("--config", str(config_file)).tls_min == "1.3"
    config_file.write_text(f"origin: {ORIGIN}\ntls-min: '1.3'\n")
    assert parse("--config", str(config_file)).tls_min == "1.3"
    # The command line wins.
    assert parse("--config", str(config_file), "--tls-min", "1.2").tls_min == "1.2"


@pytest.mark.parametrize("value", ["1.1", "1.0", "tls1.3", "1"])
def test_tls_min_refuses_other_versions(value: str, tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match=r"--tls-min must be 1\.2 or 1\.3"):
        parse("--origin", ORIGIN, "--tls-min", value)
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(f"origin: {ORIGIN}\ntls_min: '{value}'\n")
    with pytest.raises(usage.UsageError, match=r"'tls_min' must be 1\.2 or 1\.3"):
        parse("--config", str(config_file))


def test_origin_ca_cert(tmp_path: Path) -> None:
    ca = CA(tmp_path, "origin")
    config = parse("--origin", HTTPS_ORIGIN, "--origin-ca-cert", str(ca.path))
    assert config.origin_ca_cert == str(ca.path)
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(f"origin: {HTTPS_ORIGIN}\norigin_ca_cert: {ca.path}\n")
    assert parse("--config", str(config_file)).origin_ca_cert == str(ca.path)
    with pytest.raises(usage.UsageError, match="--origin-ca-cert: no such file"):
        parse("--origin", HTTPS_ORIGIN, "--origin-ca-cert", str(tmp_path / "nope.pem"))
    # It means nothing for a plain origin or a TCP service: refused, not ignored.
    with pytest.raises(usage.UsageError, match=r"origin-ca-cert applies to an https:// origin"):
        parse("--origin", ORIGIN, "--origin-ca-cert", str(ca.path))
    with pytest.raises(usage.UsageError, match=r"origin-ca-cert applies to an https:// origin"):
        parse("--tcp", "127.0.0.1:22", "--origin-ca-cert", str(ca.path))


def test_service_uses_the_options(tmp_path: Path) -> None:
    edge_ca, origin_ca = CA(tmp_path, "edge"), CA(tmp_path, "origin")
    parsed = options(
        "--origin",
        HTTPS_ORIGIN,
        "--ca-cert",
        str(edge_ca.path),
        "--tls-min",
        "1.3",
        "--origin-ca-cert",
        str(origin_ca.path),
    )
    agent = makeService(parsed, reactor=MemoryReactorClock())
    assert isinstance(agent, AgentService)
    # The edge: its CA, TLS 1.3 or newer.
    assert (agent.edge_tls.peer, agent.edge_tls.trust_file, agent.edge_tls.minimum) == (
        "edge",
        str(edge_ca.path),
        "1.3",
    )
    assert agent.trust is agent.edge_tls.trust is not None
    # The origin: its own CA, the TLS versions' defaults (--tls-min is the edge's).
    origin_tls = agent.forwarder.pool.endpoint.tls  # type: ignore[union-attr]
    assert (origin_tls.peer, origin_tls.trust_file, origin_tls.minimum) == ("origin", str(origin_ca.path), None)
    assert origin_tls.trust is not None
    # Without --origin-ca-cert: the system's CAs, and still a clear refusal.
    agent = makeService(options("--origin", HTTPS_ORIGIN), reactor=MemoryReactorClock())
    origin_tls = agent.forwarder.pool.endpoint.tls  # type: ignore[union-attr]
    assert (origin_tls.trust_file, origin_tls.trust, origin_tls.report is not None) == (None, None, True)


def test_a_refused_edge_certificate_is_logged_as_such(make: Callable[..., World]) -> None:  # noqa: F811
    """
    Each failed attempt logs one line saying what is wrong with the
    edge's certificate, for the control API and for the WebSocket, and
    the agent keeps trying with backoff (a renewed certificate is taken
    without a restart).
    """
    expired = "the edge's certificate expired on 2026-01-01 00:00:00 UTC"
    w = make(ConnectionError("handshake failed"), created("x", "t1"))
    with capturedLogs() as events:
        w.service.edge_tls._refused(expired)  # what the handshake would record
        w.service.startService()
    assert f"cannot reach the control API at http://localhost:8080: {expired}" in messages(events), messages(events)
    assert [e["log_level"].name for e in events if "cannot reach" in e["log_format"]] == ["error"]

    w.clock.advance(1.0)  # backs off, then creates and connects
    assert w.connect.urls == ["ws://edge-a/connect"]
    with capturedLogs() as events:
        w.service.edge_tls._refused("the edge's certificate is for other.example, not edge-a")
        w.connect.last.fail_handshake()
    assert "session to ws://edge-a/connect failed: the edge's certificate is for other.example, not edge-a" in messages(
        events
    )
    # Without a TLS problem, the error as it was.
    assert w.service.edge_tls.take_problem() is None


def test_no_plain_websocket_after_an_https_control_api(make: Callable[..., World]) -> None:  # noqa: F811
    urls = ("ws://edge-a/connect", "wss://edge-b/connect")
    w = make(created("x", "t1", urls=urls), **{"control-url": "https://edge.example"})
    with capturedLogs() as events:
        w.service.startService()
    assert w.connect.urls == ["wss://edge-b/connect"]  # never the ws:// one
    assert any("refusing the edge's candidate ws://edge-a/connect" in m for m in messages(events))
    assert downgraded("https://e", "ws://e/connect")
    assert not downgraded("https://e", "wss://e/connect")
    assert not downgraded("http://e", "ws://e/connect")
