"""
The TLS pieces of C{python -m netbore.demo --tls} (no sockets): the PKI it
makes (and keeps across runs with C{--dir}), and its C{ssl:} listener.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor

from netbore.demo import tls


def test_make_pki_then_keep_it(tmp_path: Path) -> None:
    ca, pem = tls.make_pki(str(tmp_path / "pki"))
    assert (ca, pem) == (str(tmp_path / "pki" / "ca.pem"), str(tmp_path / "pki" / "tunnel.localhost.pem"))
    cert = x509.load_pem_x509_certificate(Path(pem).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["tunnel.localhost", "*.tunnel.localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    before = Path(ca).read_bytes(), Path(pem).read_bytes()
    assert tls.make_pki(str(tmp_path / "pki")) == (ca, pem)
    assert (Path(ca).read_bytes(), Path(pem).read_bytes()) == before


def test_listen_escapes_the_path(tmp_path: Path) -> None:
    directory = tmp_path / "odd:dir"
    _, pem = tls.make_pki(str(directory))
    description = tls.listen(8443, pem)
    assert description.startswith("ssl:8443:interface=127.0.0.1:privateKey=")
    reactor = MemoryReactor()
    serverFromString(reactor, description).listen(Factory.forProtocol(Protocol))
    (port, _, _, _, interface) = reactor.sslServers[0]
    assert (port, interface) == (8443, "127.0.0.1")
