"""
C{twistd netbore-edge}'s mutual-TLS options: C{--agent-ca} and
C{--agent-crl} parsed and checked, loaded at start-up (a file that cannot
be used stops the edge with one line), handed to the control API and the
agents' endpoint, the C{ssl:} listeners asking clients for a certificate,
and both files re-read on SIGHUP.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.application.service import IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from netbore.edge.tap import Options, makeService
from netbore.edge.tls import request_client_certificates

from .tlscerts import TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("agents CA")


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    yield
    request_client_certificates(None)


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def children(parent: Any) -> list[Any]:
    return list(IServiceCollection(parent))


def test_options(tmp_path: Path, ca: TestCA) -> None:
    assert parse().config().agent_ca is None and parse().config().agent_crl is None
    ca_pem = str(ca.write(tmp_path / "ca.pem"))
    crl = tmp_path / "crl"
    crl.write_bytes(b"")
    config = parse("--listen", "ssl:8443", "--agent-ca", ca_pem, "--agent-crl", str(crl)).config()
    assert (config.agent_ca, config.agent_crl) == (ca_pem, str(crl))
    with pytest.raises(usage.UsageError, match="--agent-crl needs --agent-ca"):
        parse("--listen", "ssl:8443", "--agent-crl", str(crl))
    with pytest.raises(usage.UsageError, match="--agent-ca needs an ssl: --listen"):
        parse("--agent-ca", ca_pem)
    with pytest.raises(usage.UsageError, match="--agent-ca: no such file: /nonexistent"):
        parse("--listen", "ssl:8443", "--agent-ca", "/nonexistent")


def test_the_edge_asks_for_certificates_and_rereads_the_crl_on_sighup(tmp_path: Path, ca: TestCA) -> None:
    key, cert = ca.issue("edge.example.com").write_pair(tmp_path / "k.pem", tmp_path / "c.pem")
    crl = tmp_path / "crl"
    crl.write_bytes(b"# nothing revoked yet\n")
    options = parse(
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--agent-ca",
        str(ca.write(tmp_path / "ca.pem")),
        "--agent-crl",
        str(crl),
    )
    edge, _ = children(makeService(options, reactor=MemoryReactorClock()))
    assert edge.agent_ca is not None
    assert edge.endpoint.agent_ca is edge.agent_ca
    (certificates,) = edge.tls_listeners
    context = certificates.serverConnectionForTLS(None).get_context()
    assert context.get_verify_mode() == SSL.VERIFY_PEER  # asked, not required
    assert edge.agent_ca.revoked == frozenset()
    crl.write_bytes(ca.crl(0x1234))
    edge.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs at once, in this (main) thread
    finally:
        edge.stopService()
    assert edge.agent_ca.revoked == {0x1234}


def test_an_unusable_agent_ca_stops_the_edge_with_one_line(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    key, cert = ca.issue("edge.example.com").write_pair(tmp_path / "k.pem", tmp_path / "c.pem")
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a certificate\n")
    options = parse(
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        f"ssl:8443:privateKey={key}:certKey={cert}",
        "--agent-ca",
        str(bad),
    )
    with pytest.raises(SystemExit):
        makeService(options, reactor=MemoryReactorClock())
    assert capsys.readouterr().err == f"netbore-edge: cannot start: {bad}: no PEM certificate in the file\n"
