"""
C{twistd netbore-edge}'s TLS options (issue 12 items 1 and 2): C{ssl:}
strings of C{--listen} get our context factory, C{--tls-dir} is checked
and loaded at start-up, and a certificate that cannot be used stops the
edge with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import IServiceCollection
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from netbore.edge.tap import Options, makeService
from netbore.edge.tls import ListenerCertificates
from netbore.edge.tls_listen import split_description

from .tlscerts import TestCA


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def children(parent: Any) -> list[Any]:
    return list(IServiceCollection(parent))


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def test_tls_dir_option(tmp_path: Path) -> None:
    assert parse()["tls-dir"] is None and parse().config().tls_dir is None
    assert parse("--tls-dir", str(tmp_path)).config().tls_dir == str(tmp_path)
    with pytest.raises(usage.UsageError, match="--tls-dir: no such directory: /nonexistent"):
        parse("--tls-dir", "/nonexistent")


def test_ssl_listeners_get_our_certificates_and_the_directory(tmp_path: Path, ca: TestCA) -> None:
    key, cert = ca.issue("edge.example.com").write_pair(tmp_path / "k.pem", tmp_path / "c.pem")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    ca.issue("*.t.example.com").write(tls_dir / "*.t.example.com.pem")
    reactor = MemoryReactorClock()
    options = parse(
        "--data-dir",
        str(tmp_path / "data"),
        "--tls-dir",
        str(tls_dir),
        "--listen",
        f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--listen",
        "tcp:8080",
    )
    parent = makeService(options, reactor=reactor)
    edge, ssl_listener, tcp_listener = children(parent)
    assert isinstance(ssl_listener.endpoint, SSL4ServerEndpoint)
    (certificates,) = edge.tls_listeners
    assert isinstance(certificates, ListenerCertificates)
    assert certificates.files.key == str(key) and certificates.files.cert == str(cert)
    assert certificates.directory is not None and certificates.directory.path == str(tls_dir)
    assert certificates.directory.lookup("a.t.example.com") is not None
    parent.privilegedStartService()
    parent.startService()
    try:
        ((port, factory, context_factory, _, interface),) = reactor.sslServers
        assert (port, factory, interface) == (8443, edge.site, "127.0.0.1")
        assert context_factory is certificates
        assert [port for port, *_ in reactor.tcpServers] == [8080]
    finally:
        parent.stopService()


@pytest.mark.parametrize(
    "listen, message",
    [
        ("ssl:8443:privateKey={missing}", "cannot read the certificate: No such file or directory"),
        ("ssl:8443:privateKey={garbage}", "no PEM certificate in the file"),
        ("ssl:8443:privateKey={key}", "no PEM certificate in the file"),
        ("ssl:8443:privateKey={key}:certKey={other}", "the private key does not match the certificate"),
        ("ssl:8443:privateKey={both}:colour=blue", "unknown parameter colour="),
        ("ssl:privateKey={both}", "an ssl: endpoint takes exactly one port"),
        ("ssl:https:privateKey={both}", "bad port or backlog"),
    ],
)
def test_an_unusable_ssl_listener_stops_the_edge_with_one_line(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str], listen: str, message: str
) -> None:
    key, _ = ca.issue("a.example.com").write_pair(tmp_path / "k.pem", tmp_path / "c.pem")
    _, other = ca.issue("b.example.com").write_pair(tmp_path / "k2.pem", tmp_path / "c2.pem")
    both = ca.issue("a.example.com").write(tmp_path / "both.pem")
    (tmp_path / "garbage.pem").write_text("hello\n")
    description = listen.format(
        missing=tmp_path / "missing.pem", garbage=tmp_path / "garbage.pem", key=key, other=other, both=both
    )
    with pytest.raises(SystemExit) as stopped:
        makeService(parse("--data-dir", str(tmp_path / "data"), "--listen", description), reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("netbore-edge: ") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_broken_tls_dir_stops_the_edge_with_one_line(
    tmp_path: Path, ca: TestCA, capsys: pytest.CaptureFixture[str]
) -> None:
    both = ca.issue("a.example.com").write(tmp_path / "both.pem")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    (tls_dir / "x.example.com.pem").write_text("not a certificate\n")
    for listen, message in [
        (f"ssl:8443:privateKey={both}", f"{tls_dir}/x.example.com.pem: no PEM certificate in the file"),
        ("tcp:8080", f"{tls_dir} needs an ssl: --listen to serve its certificates"),
    ]:
        options = parse("--data-dir", str(tmp_path / "data"), "--tls-dir", str(tls_dir), "--listen", listen)
        with pytest.raises(SystemExit) as stopped:
            makeService(options, reactor=MemoryReactorClock())
        assert stopped.value.code == 1
        assert capsys.readouterr().err == f"netbore-edge: --tls-dir: {message}\n"


def test_split_description_follows_twisteds_escapes() -> None:
    assert split_description(r"ssl:443:interface=\:\:1:privateKey=C\:\\k.pem") == (
        ["ssl", "443"],
        {"interface": "::1", "privateKey": "C:\\k.pem"},
    )
