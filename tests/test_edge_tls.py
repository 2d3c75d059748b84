"""
The edge's TLS listeners (L{netbore.edge.tls}, issue 12 items 1 and 2):
real TLS handshakes, in memory (Python's C{ssl} client on memory BIOs
against the listener's pyOpenSSL connection, no sockets): TLS 1.2 and 1.3
only, certificates chosen by SNI from C{--tls-dir}, and certificates
re-read on reload (SIGHUP) while connections made before carry on.
"""

from __future__ import annotations

import os
import signal
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher

from netbore.edge.config import EdgeConfig
from netbore.edge.site import build_edge
from netbore.edge.tls import CertificateDirectory, CertificateFiles, ListenerCertificates, new_context

from .tlscerts import Issued, TestCA, fingerprint


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


class Handshake:
    """
    One client (Python's C{ssl}, memory BIOs) against one server
    connection, bytes pumped between them until both are done.
    """

    def __init__(
        self,
        server: SSL.Connection,
        servername: str | None = None,
        version: ssl.TLSVersion | None = None,
        legacy: bool = False,
    ) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if legacy:  # let this client offer TLS 1.0/1.1 and their ciphers
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        if version is not None:
            context.minimum_version = context.maximum_version = version
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = context.wrap_bio(self._in, self._out, server_hostname=servername)
        self.server = server
        self.server.set_accept_state()
        self.server_error: SSL.Error | None = None

    def _pump(self) -> None:
        data = self._out.read()
        if data:
            self.server.bio_write(data)
        for step in (self.server.do_handshake, lambda: self.server.recv(65536)):
            try:
                step()
                break
            except (SSL.WantReadError, SSL.ZeroReturnError):
                break
            except SSL.Error as e:
                self.server_error = e
                break
        while True:
            try:
                self._in.write(self.server.bio_read(65536))
            except SSL.WantReadError:
                break

    def run(self) -> Handshake:
        for _ in range(10):
            try:
                self.client.do_handshake()
                self._pump()  # the client's Finished
                return self
            except ssl.SSLWantReadError:
                self._pump()
        raise AssertionError("handshake did not finish")

    @property
    def fingerprint(self) -> str:
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return fingerprint(der)

    def echo(self, data: bytes) -> bytes:
        """C{data} from client to server over the established connection, as the server read it."""
        self.client.write(data)
        self.server.bio_write(self._out.read())
        return bytes(self.server.recv(65536))


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def listener(path: Path, issued: Issued, directory: CertificateDirectory | None = None) -> ListenerCertificates:
    issued.write(path)
    return ListenerCertificates(CertificateFiles(key=str(path), cert=str(path)), directory)


def connect(certificates: ListenerCertificates, servername: str | None = None, **kw: object) -> Handshake:
    return Handshake(certificates.serverConnectionForTLS(None), servername, **kw).run()  # type: ignore[arg-type]


# -- versions and ciphers -------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["1.2", "1.3"])
def test_tls_1_2_and_1_3_are_accepted(tmp_path: Path, ca: TestCA, version: ssl.TLSVersion) -> None:
    if not getattr(ssl, f"HAS_{version.name}", False):
        pytest.skip(f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}) cannot offer {version.name}")
    issued = ca.issue("edge.example.com")
    shook = connect(listener(tmp_path / "c.pem", issued), "edge.example.com", version=version)
    assert shook.client.version() == version.name.replace("_", ".")
    assert shook.fingerprint == issued.fingerprint
    assert shook.echo(b"hello") == b"hello"


def _legacy_server(issued: Issued, path: Path) -> SSL.Connection:
    """A server that would speak TLS 1.0: the control that the client can offer it."""
    issued.write(path)
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    context.use_certificate_chain_file(str(path))
    context.use_privatekey_file(str(path))
    return SSL.Connection(context, None)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["1.0", "1.1"])
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_0_and_1_1_are_refused(tmp_path: Path, ca: TestCA, version: ssl.TLSVersion) -> None:
    issued = ca.issue("edge.example.com")
    try:
        Handshake(_legacy_server(issued, tmp_path / "legacy.pem"), version=version, legacy=True).run()
    except (ssl.SSLError, SSL.Error, AssertionError, ValueError) as e:
        pytest.skip(f"the local OpenSSL ({ssl.OPENSSL_VERSION}) cannot speak {version.name} at all: {e}")
    refused = Handshake(
        listener(tmp_path / "c.pem", issued).serverConnectionForTLS(None),  # type: ignore[arg-type]
        version=version,
        legacy=True,
    )
    with pytest.raises(ssl.SSLError):
        refused.run()
    assert refused.server_error is not None
    assert "unsupported protocol" in str(refused.server_error)


def test_tls_1_2_ciphers_are_forward_secret_aead_only() -> None:
    connection = SSL.Connection(new_context(), None)
    names = connection.get_cipher_list()
    tls12 = [n for n in names if not n.startswith("TLS_")]  # TLS 1.3 suites are all AEAD
    assert tls12 and all(("GCM" in n or "CHACHA20" in n) and n.startswith(("ECDHE-", "DHE-")) for n in tls12), names
    assert not [n for n in names if any(bad in n for bad in ("RC4", "DES", "CBC", "NULL", "MD5", "-SHA:"))]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_an_endpoint_sslmethod_cannot_lower_the_versions(tmp_path: Path, ca: TestCA, events: list[LogEvent]) -> None:
    from netbore.edge.tls_listen import ssl_listener

    path = ca.issue("edge.example.com").write(tmp_path / "c.pem")
    _, certificates = ssl_listener(MemoryReactorClock(), f"ssl:0:privateKey={path}:sslmethod=TLSv1_METHOD", None)
    assert connect(certificates, version=ssl.TLSVersion.TLSv1_2).client.version() == "TLSv1.2"
    with pytest.raises(ssl.SSLError):
        connect(certificates, version=ssl.TLSVersion.TLSv1, legacy=True)
    assert [e["event"] for e in events if e.get("event") == "tls_sslmethod_ignored"] == ["tls_sslmethod_ignored"]


# -- SNI ------------------------------------------------------------------------------


@pytest.fixture
def sni(tmp_path: Path, ca: TestCA) -> tuple[ListenerCertificates, dict[str, Issued]]:
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    issued = {
        "default": ca.issue("edge.example.com"),
        "control": ca.issue("control.example.com"),
        "wildcard": ca.issue("*.tunnel.example.com"),
        "custom": ca.issue("app.customer.org"),
        "underscore": ca.issue("*.other.example.com"),
    }
    issued["control"].write(tls_dir / "control.example.com.pem")
    issued["wildcard"].write(tls_dir / "*.tunnel.example.com.pem")
    issued["custom"].write(tls_dir / "App.Customer.org.pem")
    issued["underscore"].write(tls_dir / "_wildcard.other.example.com.pem")
    (tls_dir / "README").write_text("not a certificate: ignored\n")
    directory = CertificateDirectory(str(tls_dir))
    assert directory.load() == []
    return listener(tmp_path / "own.pem", issued["default"], directory), issued


@pytest.mark.parametrize(
    "servername, expected",
    [
        ("control.example.com", "control"),
        ("app.customer.org", "custom"),
        ("APP.customer.org.", "custom"),
        ("myapp.tunnel.example.com", "wildcard"),
        ("x.other.example.com", "underscore"),
        # A wildcard covers one label only; unknown names get the default.
        ("a.b.tunnel.example.com", "default"),
        ("tunnel.example.com", "default"),
        ("unknown.example.net", "default"),
        ("default", "default"),
        (None, "default"),
    ],
)
def test_sni_chooses_the_certificate(
    sni: tuple[ListenerCertificates, dict[str, Issued]], servername: str | None, expected: str
) -> None:
    certificates, issued = sni
    assert connect(certificates, servername).fingerprint == issued[expected].fingerprint


def test_default_pem_of_the_directory_when_the_listener_names_no_key(tmp_path: Path, ca: TestCA) -> None:
    from netbore.edge.tls_listen import ssl_listener

    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    default = ca.issue("edge.example.com")
    default.write(tls_dir / "default.pem")
    ca.issue("a.example.com").write(tls_dir / "a.example.com.pem")
    directory = CertificateDirectory(str(tls_dir))
    assert directory.load() == []
    _, certificates = ssl_listener(MemoryReactorClock(), "ssl:0:interface=127.0.0.1", directory)
    assert connect(certificates, "zzz.example.com").fingerprint == default.fingerprint
    assert connect(certificates, "a.example.com").fingerprint != default.fingerprint


# -- reload ---------------------------------------------------------------------------


def test_reload_serves_new_handshakes_the_new_certificate_and_old_connections_continue(
    tmp_path: Path, ca: TestCA, sni: tuple[ListenerCertificates, dict[str, Issued]]
) -> None:
    certificates, issued = sni
    assert certificates.directory is not None
    before_own = connect(certificates, "unknown.example.net")
    before_sni = connect(certificates, "myapp.tunnel.example.com")
    new_own, new_wildcard = ca.issue("edge.example.com"), ca.issue("*.tunnel.example.com")
    new_own.write(Path(certificates.files.cert))
    new_wildcard.write(Path(certificates.directory.path) / "*.tunnel.example.com.pem")
    assert certificates.directory.load() == [] and certificates.reload() == []
    assert connect(certificates, "unknown.example.net").fingerprint == new_own.fingerprint
    assert connect(certificates, "myapp.tunnel.example.com").fingerprint == new_wildcard.fingerprint
    assert connect(certificates, "control.example.com").fingerprint == issued["control"].fingerprint
    # Connections made before the reload carry on with what they had.
    assert before_own.echo(b"still here") == b"still here"
    assert before_sni.echo(b"and here") == b"and here"
    assert before_own.fingerprint == issued["default"].fingerprint


@pytest.mark.parametrize(
    "breakage, why",
    [
        ("garbage", "no PEM certificate in the file"),
        ("missing", "cannot read the certificate: No such file or directory"),
        ("no-key", "no PEM private key in the file"),
        ("mismatch", "the private key does not match the certificate"),
    ],
)
def test_a_broken_file_on_reload_keeps_the_old_certificate_and_says_why(
    tmp_path: Path,
    ca: TestCA,
    sni: tuple[ListenerCertificates, dict[str, Issued]],
    events: list[LogEvent],
    breakage: str,
    why: str,
) -> None:
    certificates, issued = sni
    assert certificates.directory is not None
    own = Path(certificates.files.cert)
    in_dir = Path(certificates.directory.path) / "control.example.com.pem"
    for path in (own, in_dir):
        if breakage == "garbage":
            path.write_text("-----BEGIN NONSENSE-----\n")
        elif breakage == "missing":
            path.unlink()
        elif breakage == "no-key":
            path.write_bytes(ca.issue("x.example.com").chain_pem())
        else:
            other, fresh = ca.issue("x.example.com"), ca.issue("x.example.com")
            path.write_bytes(other.key_pem() + fresh.chain_pem())
    events.clear()
    problems = certificates.reload() + certificates.directory.load()
    if breakage == "missing":  # a file removed from the directory is forgotten, not an error
        assert problems == [f"{own}: cannot read the certificate: No such file or directory"]
        assert connect(certificates, "control.example.com").fingerprint == issued["default"].fingerprint
    else:
        assert problems == [f"{own}: {why}", f"{in_dir}: {why}"]
        assert connect(certificates, "control.example.com").fingerprint == issued["control"].fingerprint
    assert connect(certificates, "unknown.example.net").fingerprint == issued["default"].fingerprint
    logged = [e["problem"] for e in events if e.get("event") == "tls_error"]
    assert logged == problems and all(why in line for line in logged)


def test_sighup_reloads_the_listeners_and_the_directory_once(
    tmp_path: Path, ca: TestCA, sni: tuple[ListenerCertificates, dict[str, Issued]], events: list[LogEvent]
) -> None:
    certificates, issued = sni
    assert certificates.directory is not None
    second = listener(tmp_path / "second.pem", ca.issue("second.example.com"), certificates.directory)
    edge = build_edge(EdgeConfig(data_dir=str(tmp_path / "data")), reactor=MemoryReactorClock())
    edge.tls_listeners += [certificates, second]
    new_own, new_control = ca.issue("edge.example.com"), ca.issue("control.example.com")
    new_own.write(Path(certificates.files.cert))
    new_control.write(Path(certificates.directory.path) / "control.example.com.pem")
    edge.startService()
    try:
        events.clear()
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs at once, in this (main) thread
    finally:
        edge.stopService()
    assert connect(certificates).fingerprint == new_own.fingerprint
    assert connect(second, "control.example.com").fingerprint == new_control.fingerprint
    loaded = [e for e in events if e.get("event") == "tls_loaded"]
    assert len([e for e in loaded if "count" in e]) == 1  # the shared directory, once
    assert len(loaded) == 3
    assert [e["log_format"] for e in events if e.get("event") == "sighup"] == [
        "SIGHUP: reloading the TLS certificates",
        "SIGHUP: no --api-keys-file to reload",
    ]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_0_is_refused_even_where_the_system_policy_would_allow_it(tmp_path: Path, ca: TestCA) -> None:
    # Security level 0 (as an openssl.cnf with CipherString=DEFAULT@SECLEVEL=0
    # sets it) lets OpenSSL 3 speak TLS 1.0 again: our minimum version holds.
    path = ca.issue("edge.example.com").write(tmp_path / "c.pem")
    context = new_context()
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    context.use_certificate_chain_file(str(path))
    context.use_privatekey_file(str(path))
    refused = Handshake(SSL.Connection(context, None), version=ssl.TLSVersion.TLSv1, legacy=True)
    with pytest.raises(ssl.SSLError):
        refused.run()
    assert "unsupported protocol" in str(refused.server_error)
