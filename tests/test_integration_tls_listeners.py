"""
The edge's TLS listeners end to end (issue 12 items 1 and 2): a real
C{twistd netbore-edge} on an C{ssl:} listener with a C{--tls-dir}, real
handshakes on loopback: TLS 1.0 and 1.1 refused, 1.2 and 1.3 accepted;
certificates chosen by SNI; and SIGHUP after the files are replaced: new
handshakes see the new certificate while an 8 MiB download through a
tunnel continues and completes intact, and a broken file keeps the old
certificate with a log line that says why.
"""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import ssl
from pathlib import Path

import pytest

from netbore.demo.origin import pattern

from . import procs
from .tlscerts import TestCA, fingerprint

pytestmark = pytest.mark.integration

SIZE = 8 * 1024 * 1024


def handshake(
    port: int, servername: str | None, version: ssl.TLSVersion | None = None, cafile: Path | None = None
) -> tuple[str, str]:
    """One real handshake on loopback: (TLS version, SHA-256 of the edge's certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(str(cafile))
    if version is not None:
        if version < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return str(tls.version()), fingerprint(der)


def _client_offers(version: ssl.TLSVersion) -> str | None:
    """Why this Python cannot offer C{version} at all; L{None} when it can."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    except (ValueError, ssl.SSLError) as e:
        return f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}) cannot offer {version.name}: {e}"
    if not getattr(ssl, f"HAS_{version.name}", False):
        return f"this Python's OpenSSL ({ssl.OPENSSL_VERSION}) was built without {version.name}"
    return None


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_listener_versions_sni_and_reload_during_a_download(tmp_path: Path, origin: procs.Origin) -> None:
    ca = TestCA()
    ca_file = ca.write(tmp_path / "ca.pem")
    own = ca.issue("tunnel.localhost", "127.0.0.1")
    key, cert = own.write_pair(tmp_path / "key.pem", tmp_path / "cert.pem")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    wildcard = ca.issue("*.tunnel.localhost")
    wildcard.write(tls_dir / "*.tunnel.localhost.pem")
    custom = ca.issue("app.customer.test")
    custom.write(tls_dir / "app.customer.test.pem")
    port = procs.free_port()
    edge = procs.Edge(
        tmp_path,
        "--allow-anonymous",
        "--tls-dir",
        str(tls_dir),
        port=port,
        domain="tunnel.localhost",
        listen=f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    agent = None
    try:
        # Versions: 1.2 and 1.3 accepted, 1.0 and 1.1 refused.
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            if _client_offers(version) is None:
                assert handshake(port, "tunnel.localhost", version)[0] == version.name.replace("_", ".")
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            if _client_offers(version) is None:
                with pytest.raises(ssl.SSLError):
                    handshake(port, "tunnel.localhost", version)
        # SNI: two names, two certificates, on one port; unknown: the default.
        assert handshake(port, "secure.tunnel.localhost", cafile=ca_file)[1] == wildcard.fingerprint
        assert handshake(port, "app.customer.test", cafile=ca_file)[1] == custom.fingerprint
        assert handshake(port, "unknown.example.net")[1] == own.fingerprint
        assert handshake(port, None)[1] == own.fingerprint

        agent = procs.Agent(
            tmp_path,
            edge,
            origin.url,
            "--name",
            "secure",
            "--ca-cert",
            str(ca_file),
            control_url=f"https://127.0.0.1:{port}",
        )
        host = f"secure.tunnel.localhost:{port}"
        context = ssl.create_default_context(cafile=str(ca_file))
        download = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        download.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="secure.tunnel.localhost"
        )
        download.request("GET", f"/bytes/{SIZE}", headers={"Host": host})
        response = download.getresponse()
        assert response.status == 200
        digest = hashlib.sha256(response.read(1024 * 1024))

        # Replace every file, then SIGHUP: new handshakes get the new certificates.
        new_own, new_wildcard = ca.issue("tunnel.localhost", "127.0.0.1"), ca.issue("*.tunnel.localhost")
        new_own.write_pair(key, cert)
        new_wildcard.write(tls_dir / "*.tunnel.localhost.pem")
        edge.signal(signal.SIGHUP)
        procs.wait_for(lambda: edge.log().count("TLS: reloaded") == 1, 10, "the edge to reload its certificates")
        assert handshake(port, "secure.tunnel.localhost", cafile=ca_file)[1] == new_wildcard.fingerprint
        assert handshake(port, "unknown.example.net")[1] == new_own.fingerprint
        assert handshake(port, "app.customer.test", cafile=ca_file)[1] == custom.fingerprint

        # The download begun before carries on to its last byte.
        while chunk := response.read(256 * 1024):
            digest.update(chunk)
        download.close()
        assert digest.hexdigest() == hashlib.sha256(pattern(SIZE)).hexdigest()

        # A broken file: logged with its name and why; the old certificate stays.
        (tls_dir / "*.tunnel.localhost.pem").write_text("half a certificate\n")
        edge.signal(signal.SIGHUP)
        procs.wait_for(lambda: edge.log().count("TLS: reloaded") == 2, 10, "the edge to reload again")
        assert f"TLS: {tls_dir}/*.tunnel.localhost.pem: no PEM certificate in the file" in edge.log()
        assert handshake(port, "other.tunnel.localhost", cafile=ca_file)[1] == new_wildcard.fingerprint
        assert edge.alive()
    finally:
        if agent is not None:
            agent.stop()
        edge.stop()
