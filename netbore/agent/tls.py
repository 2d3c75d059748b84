"""
The agent's TLS clients, to the edge (control API and C{wss}) and to
C{https} origins, with failures that say what is wrong.

OpenSSL reports every refused certificate as "certificate verify failed".
L{PeerTLS} verifies the peer itself (the chain by OpenSSL against the
trust root, the name by C{service_identity}, as Twisted's own client
does), and when it refuses a certificate it says which of these it is:
not signed by a trusted CA, for another name, expired (or not yet
valid).  The refusal is the reason the connection is lost with
(L{CertificateRefused}), and L{PeerTLS.take_problem} gives it to whoever
logs the failed attempt.  There is no mode without verification.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509
from OpenSSL import crypto
from OpenSSL.crypto import X509
from OpenSSL.SSL import VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_PEER, Connection
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, ServiceID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

__all__ = ["TLS_VERSIONS", "CertificateRefused", "PeerTLS", "origin_reporter"]

log = Logger()

#: An origin's refusal is logged again after this long (or at once when
#: it changes): one line per failed request would flood the log.
REPORT_EVERY = 60.0

#: C{--tls-min} values.
TLS_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}

# OpenSSL's X509_V_ERR_* codes that we explain.
_NOT_YET_VALID = 9
_EXPIRED = 10
_UNTRUSTED = frozenset(
    {
        2,  # unable to get issuer certificate
        7,  # certificate signature failure
        18,  # self-signed certificate
        19,  # self-signed certificate in the chain
        20,  # unable to get local issuer certificate
        21,  # unable to verify the first certificate
        24,  # invalid CA certificate
        27,  # certificate not trusted
        28,  # certificate rejected
    }
)
# TLS alert descriptions (RFC 8446 §6) seen during a handshake.
_SSL_CB_ALERT = 0x4000
_ALERTS = {
    70: "no TLS version in common (the agent allows TLS {minimum} or newer: --tls-min)",
    40: "no TLS parameters in common (handshake failure)",
    116: "the {peer} asks for a client certificate",
}


class CertificateRefused(Exception):
    """
    The peer's certificate was refused; the message says why.
    """


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """
    The names a certificate is for: its DNS and IP subject alternative
    names, else its subject's common name.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = certificate.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
        return [str(a.value) for a in common]
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    return names


def origin_reporter(seconds: Callable[[], float], origin: str) -> Callable[[str], None]:
    """
    Logs why an C{https} origin's TLS failed: a warning per distinct
    problem, repeated every L{REPORT_EVERY} seconds while it lasts.
    """
    last: list[Any] = [None, 0.0]

    def report(problem: str) -> None:
        now = seconds()
        if problem != last[0] or now - last[1] >= REPORT_EVERY:
            last[:] = [problem, now]
            log.warn("cannot reach the origin {origin}: {problem}", origin=origin, problem=problem)

    return report


def load_client_certificate(cert: str, key: str) -> PrivateCertificate:
    """
    The client certificate of C{--client-cert} with the key of
    C{--client-key}.

    @raise ValueError: a file that cannot be read or parsed, or a key that
        is not the certificate's; the message names the file.
    """
    try:
        with open(cert, "rb") as f:
            certificate = Certificate.loadPEM(f.read())
    except (OSError, crypto.Error, ValueError) as e:
        raise ValueError(f"--client-cert {cert}: not a PEM certificate: {e}") from None
    try:
        with open(key, "rb") as f:
            pair = KeyPair.load(f.read(), crypto.FILETYPE_PEM)
    except (OSError, crypto.Error, ValueError) as e:
        raise ValueError(f"--client-key {key}: not a PEM private key: {e}") from None
    if pair.keyHash() != certificate.getPublicKey().keyHash():
        raise ValueError(f"--client-key {key} is not the key of --client-cert {cert}")
    client: PrivateCertificate = PrivateCertificate.fromCertificateAndKeyPair(certificate, pair)
    return client


@implementer(IPolicyForHTTPS)
class PeerTLS:
    """
    TLS client settings for one peer (the edge, or the origin): whom to
    trust, the lowest TLS version, and the last refusal.

    @param peer: what the peer is called in messages (C{"edge"}).
    @param trust_file: a CA certificate (PEM) to trust instead of the
        system's CAs.
    @param trust_option: the option that gives C{trust_file}
        (C{"--ca-cert"}), named in messages.
    @param minimum: the lowest TLS version offered; L{None}: Twisted's.
    @param report: called with each refusal's message as it happens.
    @param client: the client certificate and key files (PEM) to present
        (C{--client-cert}, C{--client-key}), for an edge with C{--agent-ca}.
    """

    def __init__(
        self,
        peer: str,
        trust_file: str | None,
        trust_option: str,
        minimum: str | None = None,
        report: Callable[[str], object] | None = None,
        client: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.peer = peer
        self.trust_file = trust_file
        self.trust_option = trust_option
        self.minimum = minimum
        self.report = report
        self.trust: Certificate | None = None
        if trust_file is not None:
            with open(trust_file, "rb") as f:
                self.trust = Certificate.loadPEM(f.read())
        self._extra: dict[str, Any] = {}
        self.client_cert: PrivateCertificate | None = None
        if client[0] is not None and client[1] is not None:
            self.client_cert = load_client_certificate(client[0], client[1])
        if minimum is not None:
            self._extra["raiseMinimumTo"] = TLS_VERSIONS[minimum]
        self._problem: str | None = None

    def take_problem(self) -> str | None:
        """
        Why the last TLS connection failed, if it was the handshake
        (once: the next call answers L{None}).
        """
        problem, self._problem = self._problem, None
        return problem

    # -- IPolicyForHTTPS (treq's Agent) -----------------------------------------

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return self.creator(hostname.decode("ascii"))

    def creator(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """
        The client connection creator for C{hostname}.
        """
        trust = self.trust if self.trust is not None else platformTrust()
        inner = optionsForClientTLS(
            hostname, trustRoot=trust, clientCertificate=self.client_cert, extraCertificateOptions=dict(self._extra)
        )
        return _Creator(self, inner, hostname)

    # -- diagnosis ------------------------------------------------------------------

    def _refused(self, problem: str) -> None:
        self._problem = problem
        if self.report is not None:
            self.report(problem)

    def untrusted(self, certificate: x509.Certificate) -> str:
        where = (
            f"{self.trust_option} {self.trust_file}"
            if self.trust_file
            else f"the system's CAs; give the {self.peer}'s CA with {self.trust_option}"
        )
        issuer = certificate.issuer.rfc4514_string() or "?"
        return f"the {self.peer}'s certificate (issued by {issuer}) is not signed by a trusted CA ({where})"

    def explain(self, certificate: x509.Certificate, error: int, depth: int) -> str:
        """
        What OpenSSL's verification error C{error} on C{certificate} (at
        C{depth} of the chain, 0 the peer's own) means.
        """
        whose = f"the {self.peer}'s certificate" if depth == 0 else f"the {self.peer}'s CA certificate"
        if error == _EXPIRED:
            return f"{whose} expired on {_when(certificate.not_valid_after_utc)}"
        if error == _NOT_YET_VALID:
            return f"{whose} is not valid before {_when(certificate.not_valid_before_utc)}"
        if error in _UNTRUSTED:
            return self.untrusted(certificate)
        return f"{whose} was refused (OpenSSL verify error {error})"

    def alert(self, description: int) -> str | None:
        text = _ALERTS.get(description)
        if text is None:
            return None
        return f"TLS handshake with the {self.peer} failed: " + text.format(
            minimum=self.minimum or "1.0", peer=self.peer
        )


@implementer(IOpenSSLClientConnectionCreator)
class _Creator:
    """
    Twisted's client connection, with our verification callback in place
    of its own (the same checks, and a message per refusal).
    """

    def __init__(self, tls: PeerTLS, inner: IOpenSSLClientConnectionCreator, hostname: str) -> None:
        self.tls = tls
        self.inner = inner
        self.hostname = hostname
        self.service_id: ServiceID
        if isIPAddress(hostname) or isIPv6Address(hostname):
            self.service_id = IPAddress_ID(hostname)
        else:
            self.service_id = DNS_ID(hostname)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Connection:
        connection = self.inner.clientConnectionForTLS(tlsProtocol)
        tls = self.tls
        tls._problem = None
        failed: list[bool] = []

        def refuse(problem: str) -> bool:
            if not failed:
                failed.append(True)
                tls._refused(problem)
                tlsProtocol.failVerification(Failure(CertificateRefused(problem)))
            return False

        def verify(conn: Connection, cert: X509, error: int, depth: int, ok: int) -> bool:
            try:
                if not ok:
                    return refuse(tls.explain(cert.to_cryptography(), error, depth))
                if depth != 0:
                    return True
                try:
                    verify_service_identity(extract_patterns(cert), [self.service_id], [])
                except VerificationError:
                    names = ", ".join(certificate_names(cert.to_cryptography())) or "no name"
                    return refuse(f"the {tls.peer}'s certificate is for {names}, not {self.hostname}")
                return True
            except Exception as e:  # never let a bug here accept a certificate
                return refuse(f"the {tls.peer}'s certificate could not be checked: {e!r}")

        def info(conn: Connection, where: int, ret: int) -> None:
            if where & _SSL_CB_ALERT and not failed and (ret >> 8) == 2:  # fatal
                problem = tls.alert(ret & 0xFF)
                if problem is not None:
                    failed.append(True)
                    tls._refused(problem)

        connection.set_verify(VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        connection.set_info_callback(info)
        return connection
