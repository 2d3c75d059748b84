"""
Mutual TLS for agents, in memory: the identity a client certificate names,
C{--agent-crl} parsing (a CRL or hex serials), the check of a certificate
against an account, the reload on SIGHUP, and TLS contexts that ask every
client for a certificate without requiring one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.task import Clock

from netbore.edge.agentca import AgentCA, AgentCAError, identity, parse_revoked, peer_certificate
from netbore.edge.tls import CertificateFiles, ListenerCertificates, new_context, request_client_certificates

from .tlscerts import Issued, TestCA


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA("agents CA")


@pytest.fixture
def clock(ca: TestCA) -> Clock:
    clock = Clock()
    clock.advance(ca.now.timestamp())
    return clock


@pytest.fixture
def asking() -> Iterator[None]:
    yield
    request_client_certificates(None)


def agent_ca(tmp_path: Path, ca: TestCA, clock: Clock, crl: bytes | None = None) -> AgentCA:
    crl_path = None
    if crl is not None:
        crl_path = tmp_path / "crl"
        crl_path.write_bytes(crl)
    return AgentCA(clock, str(ca.write(tmp_path / "ca.pem")), str(crl_path) if crl_path else None)


# -- identity ------------------------------------------------------------------------


def test_identity_is_the_account_uri_before_the_cn(ca: TestCA) -> None:
    issued = ca.issue_client("display name", account_uri="netbore:account:alice")
    assert identity(issued.cert) == "alice"


def test_identity_falls_back_to_the_cn(ca: TestCA) -> None:
    assert identity(ca.issue_client("bob").cert) == "bob"
    # a SAN URI that is not ours does not count
    assert identity(ca.issue_client("carol", account_uri="https://example.com/x").cert) == "carol"
    assert identity(ca.issue_client("dave", account_uri="netbore:account:").cert) == "dave"


# -- --agent-crl -----------------------------------------------------------------------


def test_a_pem_crl_gives_its_serials(ca: TestCA) -> None:
    assert parse_revoked("crl.pem", ca.crl(5, 0xABCDEF), [ca.cert]) == {5, 0xABCDEF}


def test_a_crl_by_another_ca_is_refused(ca: TestCA) -> None:
    other = TestCA("other CA")
    with pytest.raises(AgentCAError, match="crl.pem: the CRL is not signed by a certificate of --agent-ca"):
        parse_revoked("crl.pem", other.crl(5), [ca.cert])


def test_a_text_file_of_hex_serials() -> None:
    text = b"# revoked agents\n0a\n\n0x1F  # bob's laptop\n01:00:ff\nDEADbeef\nserial=5B3E\n"
    assert parse_revoked("serials", text) == {0x0A, 0x1F, 0x0100FF, 0xDEADBEEF, 0x5B3E}
    assert parse_revoked("serials", b"") == frozenset()


@pytest.mark.parametrize("line", [b"12g4", b"alice", b"0x", b"-5"])
def test_a_bad_serial_line_names_the_line(line: bytes) -> None:
    with pytest.raises(AgentCAError, match=r"^serials:2: not a hexadecimal serial"):
        parse_revoked("serials", b"0a\n" + line + b"\n")


def test_a_corrupt_crl_is_refused(ca: TestCA) -> None:
    with pytest.raises(AgentCAError, match="the CRL cannot be parsed"):
        parse_revoked("crl.pem", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    with pytest.raises(AgentCAError, match="neither a CRL nor"):
        parse_revoked("crl", b"\xff\xfe binary")


# -- the check ---------------------------------------------------------------------------


def test_a_matching_certificate_passes(tmp_path: Path, ca: TestCA, clock: Clock) -> None:
    check = agent_ca(tmp_path, ca, clock).check
    assert check(ca.issue_client("alice", account_uri="netbore:account:alice").cert, "alice") is None
    assert check(ca.issue_client("alice").cert, "alice") is None


def test_refusals_say_why(tmp_path: Path, ca: TestCA, clock: Clock) -> None:
    revoked = ca.issue_client("alice")
    check = agent_ca(tmp_path, ca, clock, crl=f"{revoked.cert.serial_number:x}\n".encode()).check
    good = ca.issue_client("alice", account_uri="netbore:account:alice").cert

    missing = check(None, "alice")
    assert missing is not None and missing.code == "client_certificate_required"
    foreign = check(TestCA("other CA").issue_client("alice").cert, "alice")
    assert foreign is not None and foreign.code == "client_certificate_refused"
    assert "not signed by this edge's agent CA" in foreign.message
    expired = check(ca.issue_client("alice", expired=True).cert, "alice")
    assert expired is not None and "expired" in expired.message
    gone = check(revoked.cert, "alice")
    assert gone is not None and gone.code == "client_certificate_refused" and "revoked" in gone.message
    other = check(good, "bob")
    assert other is not None and other.code == "client_certificate_mismatch" and "'alice'" in other.message
    anonymous = check(good, None)
    assert anonymous is not None and anonymous.code == "client_certificate_mismatch"
    assert "anonymous agents are refused" in anonymous.message


def test_validity_follows_the_injected_clock(tmp_path: Path, ca: TestCA, clock: Clock) -> None:
    check = agent_ca(tmp_path, ca, clock).check
    cert = ca.issue_client("alice").cert
    assert check(cert, "alice") is None
    clock.advance(2 * 86400)
    refusal = check(cert, "alice")
    assert refusal is not None and "expired" in refusal.message


def test_reload_reads_the_crl_again_and_keeps_it_when_broken(
    tmp_path: Path, ca: TestCA, clock: Clock, asking: None
) -> None:
    issued = ca.issue_client("alice")
    agents = agent_ca(tmp_path, ca, clock, crl=ca.crl())
    assert agents.check(issued.cert, "alice") is None
    (tmp_path / "crl").write_bytes(ca.crl(issued.cert.serial_number))
    assert agents.check(issued.cert, "alice") is None  # not until SIGHUP
    assert agents.reload() == []
    refusal = agents.check(issued.cert, "alice")
    assert refusal is not None and "revoked" in refusal.message
    (tmp_path / "crl").write_bytes(b"not a serial\n")
    problems = agents.reload()
    assert len(problems) == 1 and "not a hexadecimal serial" in problems[0]
    assert agents.revoked == {issued.cert.serial_number}


def test_a_missing_ca_file_is_a_clear_error(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(AgentCAError, match="cannot read the agent CA"):
        AgentCA(clock, str(tmp_path / "nope.pem"))
    (tmp_path / "empty.pem").write_bytes(b"")
    with pytest.raises(AgentCAError, match="no PEM certificate"):
        AgentCA(clock, str(tmp_path / "empty.pem"))


# -- the TLS layer ---------------------------------------------------------------------------


def test_contexts_ask_for_a_certificate_without_requiring_one(ca: TestCA, asking: None) -> None:
    assert new_context().get_verify_mode() == SSL.VERIFY_NONE
    request_client_certificates([ca.cert])
    mode = new_context().get_verify_mode()
    assert mode & SSL.VERIFY_PEER
    assert not mode & SSL.VERIFY_FAIL_IF_NO_PEER_CERT


def _handshake(
    server: SSL.Connection, client_cert: Issued | None, tmp_path: Path, sni: str | None = None
) -> SSL.Connection:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        key, cert = client_cert.write_pair(tmp_path / "client.key", tmp_path / "client.crt")
        context.load_cert_chain(str(cert), str(key))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    server.set_accept_state()
    for _ in range(10):
        try:
            client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        server.bio_write(outgoing.read() or b"")
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        while True:
            try:
                incoming.write(server.bio_read(65536))
            except SSL.WantReadError:
                break
        if server.get_finished() is not None and client.version() is not None:
            client.write(b"ping")  # TLS 1.3: the client's Finished reaches the server
            server.bio_write(outgoing.read())
            assert server.recv(4) == b"ping"
            return server
    raise AssertionError("handshake did not finish")


class _Transport:
    def __init__(self, connection: SSL.Connection) -> None:
        self.connection = connection

    def getPeerCertificate(self) -> object:
        return self.connection.get_peer_certificate()


def test_a_viewer_without_a_certificate_and_an_agent_with_one_both_handshake(
    tmp_path: Path, ca: TestCA, asking: None
) -> None:
    request_client_certificates([ca.cert])
    path = tmp_path / "server.pem"
    ca.issue("edge.test").write(path)
    listener = ListenerCertificates(CertificateFiles(key=str(path), cert=str(path)))
    viewer = _handshake(listener.serverConnectionForTLS(None), None, tmp_path)
    assert peer_certificate(_Transport(viewer)) is None
    # even a certificate of another CA passes the TLS layer: the 403 comes later
    agent = ca.issue_client("alice", account_uri="netbore:account:alice")
    for issued in (agent, TestCA("other CA").issue_client("alice")):
        server = _handshake(listener.serverConnectionForTLS(None), issued, tmp_path)
        received = peer_certificate(_Transport(server))
        assert received is not None
        assert received.public_bytes(serialization.Encoding.DER) == issued.cert.public_bytes(serialization.Encoding.DER)
    assert peer_certificate(object()) is None


def test_a_der_crl_gives_its_serials(ca: TestCA) -> None:
    der = x509.load_pem_x509_crl(ca.crl(7)).public_bytes(serialization.Encoding.DER)
    assert parse_revoked("crl.der", der, [ca.cert]) == {7}


def test_viewers_tunnel_names_are_not_asked_for_a_certificate(tmp_path: Path, ca: TestCA, asking: None) -> None:
    # A browser asked for a certificate may ask its user to pick one: a
    # handshake for a tunnel name (a viewer's) gets no CertificateRequest;
    # the edge's own names (agents', the control API's) and no SNI do.
    request_client_certificates([ca.cert], "tunnel.test")
    path = tmp_path / "server.pem"
    ca.issue("tunnel.test", "*.tunnel.test").write(path)
    listener = ListenerCertificates(CertificateFiles(key=str(path), cert=str(path)))
    agent = ca.issue_client("alice", account_uri="netbore:account:alice")
    sent = {
        sni: peer_certificate(_Transport(_handshake(listener.serverConnectionForTLS(None), agent, tmp_path, sni)))
        for sni in ("app.tunnel.test", "tunnel.test", "control.tunnel.test", None)
    }
    assert sent["app.tunnel.test"] is None  # not asked, so the client sent none
    assert all(sent[name] is not None for name in ("tunnel.test", "control.tunnel.test", None))
