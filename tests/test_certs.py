"""
C{python -m netbore.certs}: the CA, server and agent certificates it makes
(chains, names, key usages), the files it writes (modes, no overwrite) and
its usage errors; TLS handshakes with them in memory (no sockets).
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from netbore.certs.cli import main

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.timezone.utc)


def run(*argv: str, now: datetime.datetime = NOW) -> tuple[int, str]:
    out = io.StringIO()
    try:
        code = main(list(argv), out=out, now=lambda: now)
    except SystemExit as e:
        code = int(e.code or 0)
    return code, out.getvalue()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def open_umask() -> Iterator[None]:
    """
    A umask that keeps nothing private: the modes seen are the tool's own.
    """
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def ca_dir(tmp_path: Path, open_umask: None) -> Path:
    directory = tmp_path / "ca"
    assert run("ca", "--out", str(directory))[0] == 0
    return directory


def test_ca_files_and_certificate(ca_dir: Path) -> None:
    cert = load_cert(ca_dir / "ca.pem")
    key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    assert mode(ca_dir / "ca-key.pem") == 0o600
    assert mode(ca_dir / "ca.pem") == 0o644
    assert mode(ca_dir) == 0o700
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.public_key() == key.public_key()
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=3650)
    assert NOW - cert.not_valid_before_utc == datetime.timedelta(minutes=5)


def test_server_certificate(ca_dir: Path) -> None:
    code, out = run(
        "server", "--ca", str(ca_dir), "--domain", "Tunnel.Example.com", "--name", "edge.example.net",
        "--name", "127.0.0.1",
    )  # fmt: skip
    assert code == 0
    pem = ca_dir / "tunnel.example.com.pem"
    assert out.strip() == out.strip().splitlines()[0]  # one line
    assert f"wrote {pem}" in out and "*.tunnel.example.com" in out
    assert mode(pem) == 0o600
    cert = load_cert(pem)
    key = serialization.load_pem_private_key(pem.read_bytes(), None)
    assert cert.public_key() == key.public_key()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [
        x509.DNSName("tunnel.example.com"),
        x509.DNSName("*.tunnel.example.com"),
        x509.DNSName("edge.example.net"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tunnel.example.com"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=397)

    # The chain verifies, by name (the wildcard too), with cryptography ...
    ca = load_cert(ca_dir / "ca.pem")
    policy = PolicyBuilder().store(Store([ca])).time(NOW)
    for name in ["tunnel.example.com", "myapp.tunnel.example.com", "edge.example.net"]:
        policy.build_server_verifier(x509.DNSName(name)).verify(cert, [])
    policy.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(cert, [])
    for other in ["example.com", "a.b.tunnel.example.com", "tunnel.example.org"]:
        with pytest.raises(VerificationError):
            policy.build_server_verifier(x509.DNSName(other)).verify(cert, [])
    # ... and with pyOpenSSL, whose store knows nothing but the CA.
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(ca))
    store.set_time(NOW.replace(tzinfo=None))
    crypto.X509StoreContext(store, crypto.X509.from_cryptography(cert)).verify_certificate()


def test_agent_certificate(ca_dir: Path) -> None:
    code, out = run("agent", "--ca", str(ca_dir), "--account", "alice")
    assert code == 0
    crt, key_path = ca_dir / "agent-alice.crt", ca_dir / "agent-alice.key"
    assert f"wrote {crt}" in out and "netbore:account:alice" in out and len(out.splitlines()) == 1
    assert mode(key_path) == 0o600
    cert = load_cert(crt)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [x509.UniformResourceIdentifier("netbore:account:alice")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = load_cert(ca_dir / "ca.pem")
    verified = PolicyBuilder().store(Store([ca])).time(NOW).build_client_verifier().verify(cert, [])
    assert verified.subjects == [x509.UniformResourceIdentifier("netbore:account:alice")]
    # A server certificate is no client certificate, nor the reverse.
    run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com")
    server = load_cert(ca_dir / "tunnel.example.com.pem")
    with pytest.raises(VerificationError):
        PolicyBuilder().store(Store([ca])).time(NOW).build_client_verifier().verify(server, [])


def test_rsa_keys(tmp_path: Path) -> None:
    assert run("ca", "--out", str(tmp_path), "--rsa")[0] == 0
    assert run("server", "--ca", str(tmp_path), "--domain", "tunnel.example.com", "--rsa")[0] == 0
    for path in [tmp_path / "ca-key.pem", tmp_path / "tunnel.example.com.pem"]:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    usage = load_cert(tmp_path / "tunnel.example.com.pem").extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment


def test_days(tmp_path: Path) -> None:
    assert run("ca", "--out", str(tmp_path), "--days", "30")[0] == 0
    ca = load_cert(tmp_path / "ca.pem")
    assert ca.not_valid_after_utc - NOW == datetime.timedelta(days=30)
    assert run("agent", "--ca", str(tmp_path), "--account", "bob", "--days", "7")[0] == 0
    assert load_cert(tmp_path / "agent-bob.crt").not_valid_after_utc - NOW == datetime.timedelta(days=7)
    # A certificate never outlives its CA.
    assert run("server", "--ca", str(tmp_path), "--domain", "tunnel.example.com")[0] == 0
    assert load_cert(tmp_path / "tunnel.example.com.pem").not_valid_after_utc == ca.not_valid_after_utc


def test_no_overwrite_without_force(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: p.read_bytes() for p in ca_dir.iterdir()}
    code, out = run("ca", "--out", str(ca_dir))
    assert (code, out) == (1, "")
    assert "already exist; nothing written (use --force to replace)" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in ca_dir.iterdir()} == before

    assert run("agent", "--ca", str(ca_dir), "--account", "alice")[0] == 0
    key = (ca_dir / "agent-alice.key").read_bytes()
    assert run("agent", "--ca", str(ca_dir), "--account", "alice")[0] == 1
    assert (ca_dir / "agent-alice.key").read_bytes() == key
    # Only one of the two files there: still nothing written.
    (ca_dir / "agent-alice.key").unlink()
    assert run("agent", "--ca", str(ca_dir), "--account", "alice")[0] == 1
    assert not (ca_dir / "agent-alice.key").exists()


def test_force_replaces_and_keeps_keys_private(ca_dir: Path) -> None:
    pem = ca_dir / "tunnel.example.com.pem"
    pem.write_bytes(b"old")
    pem.chmod(0o644)
    assert run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com")[0] == 1
    assert pem.read_bytes() == b"old"
    assert run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com", "--force")[0] == 0
    assert mode(pem) == 0o600
    load_cert(pem)
    assert [p.name for p in ca_dir.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_out_directory(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "edge" / "tls"
    assert run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com", "--out", str(out))[0] == 0
    assert mode(out / "tunnel.example.com.pem") == 0o600
    assert not (ca_dir / "tunnel.example.com.pem").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["server", "--domain", "localhost"], "one-label domain"),
        (["server", "--domain", "bad_name.example.com"], "is not a DNS name"),
        (["server", "--domain", "tunnel.example.com", "--name", "a..b"], "neither a DNS name"),
        (["server", "--domain", "tunnel.example.com", "--days", "398"], "between 1 and 397"),
        (["agent", "--account=-alice"], "is not an account name"),
        (["agent", "--account", "al ice"], "is not an account name"),
        (["agent", "--account", "alice", "--days", "0"], "between 1 and 397"),
        (["agent"], "the following arguments are required: --account"),
        (["server", "--domain", "tunnel.example.com", "--days", "many"], "invalid int value"),
    ],
)
def test_usage_errors(ca_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    before = sorted(p.name for p in ca_dir.iterdir())
    code, out = run(argv[0], "--ca", str(ca_dir), *argv[1:])
    assert (code, out) == (2, "")
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in ca_dir.iterdir()) == before


def test_usage_errors_without_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run()[0] == 2
    assert run("ca")[0] == 2
    assert "--out" in capsys.readouterr().err
    assert run("ca", "--out", str(tmp_path), "--days", "0")[0] == 2
    assert list(tmp_path.iterdir()) == []
    # A CA directory without a CA is no usage error: exit 1, saying which file.
    assert run("server", "--ca", str(tmp_path), "--domain", "tunnel.example.com")[0] == 1
    assert f"cannot read {tmp_path / 'ca.pem'}" in capsys.readouterr().err


def test_ca_directory_checked(ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other"
    assert run("ca", "--out", str(other))[0] == 0
    (ca_dir / "ca-key.pem").write_bytes((other / "ca-key.pem").read_bytes())
    assert run("agent", "--ca", str(ca_dir), "--account", "alice")[0] == 1
    assert "is not the key of" in capsys.readouterr().err
    assert run("agent", "--ca", str(ca_dir / "ca-key.pem"), "--account", "alice")[0] == 1


def pump(client: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server: SSL.Connection) -> None:
    """
    Carry bytes between a stdlib client and a pyOpenSSL server in memory
    until both have finished their handshakes (or one fails).
    """
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        data = outgoing.read()
        if data:
            server.bio_write(data)
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except SSL.WantReadError:
                pass
        try:
            incoming.write(server.bio_read(65536))
        except SSL.WantReadError:
            pass
        if client_done and server_done:
            return
    raise AssertionError("the handshake did not finish")


def server_context(pem: Path) -> SSL.Context:
    """
    The TLS context of an C{ssl:} listener given C{pem} as its
    C{privateKey=} and C{certKey=}, as twistd's C{--listen} builds it.
    """
    reactor = MemoryReactor()
    endpoint = serverFromString(reactor, f"ssl:8443:privateKey={pem}:certKey={pem}")
    endpoint.listen(Factory.forProtocol(Protocol))
    (_, _, context_factory, _, _) = reactor.sslServers[0]
    context: SSL.Context = context_factory.getContext()
    return context


def test_server_pem_serves_tls_by_name(ca_dir: Path) -> None:
    """
    The combined PEM, as an C{ssl:} listener's files, serves a handshake
    that a client trusting only the CA verifies for a tunnel name (SNI).
    """
    assert run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com", now=build_now())[0] == 0
    context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    for name, ok in [("myapp.tunnel.example.com", True), ("myapp.example.com", False)]:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(incoming, outgoing, server_hostname=name)
        server = SSL.Connection(server_context(ca_dir / "tunnel.example.com.pem"), None)
        server.set_accept_state()
        if ok:
            pump(client, incoming, outgoing, server)
            assert client.version() in ("TLSv1.2", "TLSv1.3")
            assert client.getpeercert()["subjectAltName"] == (
                ("DNS", "tunnel.example.com"),
                ("DNS", "*.tunnel.example.com"),
            )
        else:
            with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
                pump(client, incoming, outgoing, server)


def build_now() -> datetime.datetime:
    # Handshakes check validity against the real clock.
    return datetime.datetime.now(datetime.timezone.utc)


def test_agent_certificate_authenticates_to_a_server_requiring_the_ca(ca_dir: Path) -> None:
    """
    Mutual TLS in memory: a server that requires a client certificate from
    the CA accepts the agent's and sees its account; a server certificate
    offered as a client certificate is refused (its EKU is serverAuth).
    """
    now = build_now()
    run("ca", "--out", str(ca_dir), "--force", now=now)
    run("server", "--ca", str(ca_dir), "--domain", "tunnel.example.com", now=now)
    run("agent", "--ca", str(ca_dir), "--account", "alice", now=now)
    client_pairs = [
        (ca_dir / "agent-alice.crt", ca_dir / "agent-alice.key", True),
        (ca_dir / "tunnel.example.com.pem", ca_dir / "tunnel.example.com.pem", False),
    ]
    for crt, key, ok in client_pairs:
        server_ctx = server_context(ca_dir / "tunnel.example.com.pem")
        server_ctx.load_verify_locations(str(ca_dir / "ca.pem"))
        server_ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # the server's verdict comes within the handshake
        context.load_cert_chain(str(crt), str(key))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(incoming, outgoing, server_hostname="control.tunnel.example.com")
        if ok:
            pump(client, incoming, outgoing, server)
            peer = server.get_peer_certificate(as_cryptography=True)
            assert peer is not None
            assert peer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
        else:
            with pytest.raises(SSL.Error, match="certificate verify failed"):
                pump(client, incoming, outgoing, server)
