"""
The agent's TLS client (L{netbore.agent.tls.PeerTLS}): real OpenSSL
handshakes, in memory (C{twisted.test.iosim}), against a server with a
certificate made in the test; each refusal says which problem it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate, TLSVersion
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from netbore.agent.tls import CertificateRefused, PeerTLS, origin_reporter

from .tls_certs import CA, Issued


class Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False
        self.lost: Failure | None = None
        self.data = b""

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = reason


def server_options(issued: Issued, **kw: Any) -> CertificateOptions:
    pem = issued.key.read_bytes() + issued.cert.read_bytes()
    private = PrivateCertificate.loadPEM(pem)
    return CertificateOptions(privateKey=private.privateKey.original, certificate=private.original, **kw)


def handshake(tls: PeerTLS, hostname: str, server: CertificateOptions) -> tuple[Recorder, Recorder]:
    """
    A TLS connection from C{tls} (to C{hostname}) to C{server}, pumped to
    its end; the client's and the server's protocol.
    """
    client_proto, server_proto = Recorder(), Recorder()
    clock = Clock()  # the TLS transports' write buffering waits for it
    client_factory = TLSMemoryBIOFactory(
        tls.creator(hostname), True, Factory.forProtocol(lambda: client_proto), clock=clock
    )
    server_factory = TLSMemoryBIOFactory(server, False, Factory.forProtocol(lambda: server_proto), clock=clock)
    _, _, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), lambda: client_factory.buildProtocol(None), clock=clock
    )
    assert client_proto.transport is not None and server_proto.transport is not None
    # Each side writes at once, as an HTTP client does; the handshake runs.
    client_proto.transport.write(b"hello from the client")
    server_proto.transport.write(b"hello from the server")
    for _ in range(20):
        pump.pump()
        clock.advance(0)
    return client_proto, server_proto


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path, "edge")


def test_trusted_certificate_for_the_name_connects(ca: CA) -> None:
    tls = PeerTLS("edge", str(ca.path), "--ca-cert")
    client, server = handshake(tls, "edge.example", server_options(ca.issue("edge.example")))
    assert client.lost is None and server.lost is None
    assert client.data == b"hello from the server"
    assert server.data == b"hello from the client"
    assert tls.take_problem() is None


def test_wrong_ca_is_named(ca: CA, tmp_path: Path) -> None:
    other = CA(tmp_path, "other")
    tls = PeerTLS("edge", str(ca.path), "--ca-cert")
    client, _ = handshake(tls, "edge.example", server_options(other.issue("edge.example")))
    assert client.data == b""
    assert client.lost is not None and client.lost.check(CertificateRefused)
    problem = tls.take_problem()
    assert problem == (
        f"the edge's certificate (issued by CN=netbore other CA) is not signed by a trusted CA (--ca-cert {ca.path})"
    )
    assert client.lost.getErrorMessage() == problem
    assert tls.take_problem() is None  # once


def test_system_trust_is_named_without_ca_cert(ca: CA) -> None:
    tls = PeerTLS("edge", None, "--ca-cert")
    client, _ = handshake(tls, "edge.example", server_options(ca.issue("edge.example")))
    assert client.data == b""
    assert tls.take_problem() == (
        "the edge's certificate (issued by CN=netbore edge CA) is not signed by a trusted CA "
        "(the system's CAs; give the edge's CA with --ca-cert)"
    )


def test_certificate_for_another_name_is_named(ca: CA) -> None:
    tls = PeerTLS("edge", str(ca.path), "--ca-cert")
    client, _ = handshake(tls, "edge.example", server_options(ca.issue("other.example", "*.other.example")))
    assert client.data == b""
    assert client.lost is not None and client.lost.check(CertificateRefused)
    assert tls.take_problem() == "the edge's certificate is for other.example, *.other.example, not edge.example"


def test_ip_address_checked_as_an_address(ca: CA) -> None:
    tls = PeerTLS("edge", str(ca.path), "--ca-cert")
    client, _ = handshake(tls, "127.0.0.1", server_options(ca.issue("edge.example", "127.0.0.1")))
    assert client.data == b"hello from the server"
    client, _ = handshake(tls, "127.0.0.2", server_options(ca.issue("edge.example", "127.0.0.1")))
    assert client.data == b""
    assert tls.take_problem() == "the edge's certificate is for edge.example, 127.0.0.1, not 127.0.0.2"


def test_expired_certificate_is_named(ca: CA) -> None:
    issued = ca.issue("edge.example", expired=True)
    tls = PeerTLS("edge", str(ca.path), "--ca-cert")
    client, _ = handshake(tls, "edge.example", server_options(issued))
    assert client.data == b""
    assert client.lost is not None and client.lost.check(CertificateRefused)
    date = issued.certificate.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert tls.take_problem() == f"the edge's certificate expired on {date}"


def test_origin_messages_name_the_origin_option(ca: CA, tmp_path: Path) -> None:
    reported: list[str] = []
    tls = PeerTLS("origin", None, "--origin-ca-cert", report=reported.append)
    client, _ = handshake(tls, "origin.internal", server_options(ca.issue("origin.internal")))
    assert client.data == b""
    assert reported == [
        "the origin's certificate (issued by CN=netbore edge CA) is not signed by a trusted CA "
        "(the system's CAs; give the origin's CA with --origin-ca-cert)"
    ]
    trusting = PeerTLS("origin", str(ca.path), "--origin-ca-cert")
    client, _ = handshake(trusting, "origin.internal", server_options(ca.issue("origin.internal")))
    assert client.data == b"hello from the server"


def test_tls_min_13_refuses_a_12_only_server(ca: CA) -> None:
    issued = ca.issue("edge.example")
    only_12 = server_options(issued, lowerMaximumSecurityTo=TLSVersion.TLSv1_2)
    tls = PeerTLS("edge", str(ca.path), "--ca-cert", minimum="1.3")
    client, server = handshake(tls, "edge.example", only_12)
    assert client.data == b"" and server.data == b""
    assert client.lost is not None
    assert tls.take_problem() == (
        "TLS handshake with the edge failed: no TLS version in common (the agent allows TLS 1.3 or newer: --tls-min)"
    )
    # The default, 1.2, speaks to it.
    tls12 = PeerTLS("edge", str(ca.path), "--ca-cert", minimum="1.2")
    client, _ = handshake(tls12, "edge.example", server_options(issued, lowerMaximumSecurityTo=TLSVersion.TLSv1_2))
    assert client.data == b"hello from the server"
    assert tls12.take_problem() is None


def test_tls_min_12_refuses_a_server_below_12(ca: CA) -> None:
    issued = ca.issue("edge.example")
    old = server_options(
        issued,
        insecurelyLowerMinimumTo=TLSVersion.TLSv1_1,
        lowerMaximumSecurityTo=TLSVersion.TLSv1_1,
    )
    tls = PeerTLS("edge", str(ca.path), "--ca-cert", minimum="1.2")
    client, _ = handshake(tls, "edge.example", old)
    assert client.data == b""
    assert client.lost is not None


def test_origin_refusals_are_logged_once_a_minute_while_they_last() -> None:
    clock = Clock()
    report = origin_reporter(clock.seconds, "https://origin.internal")
    with capturedLogs() as events:
        report("problem A")
        clock.advance(59)
        report("problem A")  # a request a second: not a line each
        report("problem B")  # another problem: at once
        clock.advance(60)
        report("problem B")
    assert [(e["log_level"].name, e["problem"]) for e in events] == [
        ("warn", "problem A"),
        ("warn", "problem B"),
        ("warn", "problem B"),
    ]
    assert events[0]["origin"] == "https://origin.internal"
