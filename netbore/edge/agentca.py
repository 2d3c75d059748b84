"""
Mutual TLS for agents: C{--agent-ca} (the CA that signs agents' client
certificates) and C{--agent-crl} (revoked serials), and the check of an
agent's certificate against the account of the credential it presents.

Sans-IO: L{AgentCA.check} takes the certificate the TLS layer received (or
L{None}) and an account name and answers with an L{AgentCertRefusal} or
L{None}; the clock is injected.  The TLS layer asks every client for a
certificate but accepts any chain (viewers on the same port need none), so
the chain is checked here, on agent requests only: the leaf must be
directly signed by a certificate of C{--agent-ca}, valid now, not revoked,
and name the account (SAN URI C{netbore:account:<name>}, else subject CN).
"""

from __future__ import annotations

import datetime
import re

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from twisted.logger import Logger

from .._types import Clock
from .tls import request_client_certificates

__all__ = [
    "ACCOUNT_URI_PREFIX",
    "AgentCA",
    "AgentCAError",
    "AgentCertRefusal",
    "identity",
    "parse_revoked",
    "peer_certificate",
]

log = Logger()

#: The SAN URI naming an account (C{python -m netbore.certs agent}).
ACCOUNT_URI_PREFIX = "netbore:account:"

#: A serial as OpenSSL prints it (C{serial=5B3E...}), bare, with C{0x} or colons.
_HEX_SERIAL = re.compile(r"^(?:serial=)?(?:0x)?([0-9a-f:]+)$", re.IGNORECASE)


class AgentCAError(Exception):
    """A C{--agent-ca} or C{--agent-crl} file that cannot be used; the message says which and why."""


@attrs.frozen
class AgentCertRefusal:
    """Why an agent's certificate is refused: a JSON error C{code} and a C{message}."""

    code: str
    message: str


def identity(certificate: x509.Certificate) -> str | None:
    """
    The account a client certificate names: its SAN URI
    C{netbore:account:<name>} if it has one, else its subject CN; L{None}
    when it has neither.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(ACCOUNT_URI_PREFIX) and len(uri) > len(ACCOUNT_URI_PREFIX):
                return uri[len(ACCOUNT_URI_PREFIX) :]
    cns = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) and value else None
    return None


def parse_revoked(path: str, data: bytes, cas: list[x509.Certificate] | None = None) -> frozenset[int]:
    """
    The revoked serial numbers of a C{--agent-crl} file: a PEM (or DER) CRL,
    whose signature must be by one of C{cas} when given, or a text file of
    hexadecimal serials, one per line (C{#} comments, blank lines,
    C{0x}, colons between bytes and OpenSSL's C{serial=} allowed).

    @raise AgentCAError: neither, or a CRL not signed by C{--agent-ca}.
    """
    crl: x509.CertificateRevocationList | None = None
    if b"-----BEGIN X509 CRL-----" in data:
        try:
            crl = x509.load_pem_x509_crl(data)
        except ValueError as e:
            raise AgentCAError(f"{path}: the CRL cannot be parsed: {e}") from None
    elif not data.isascii():  # a DER CRL (its signature is not text)
        try:
            crl = x509.load_der_x509_crl(data)
        except ValueError:
            raise AgentCAError(f"{path}: neither a CRL nor a text file of hexadecimal serials") from None
    if crl is not None:
        if cas and not any(_crl_signed_by(crl, ca) for ca in cas):
            raise AgentCAError(f"{path}: the CRL is not signed by a certificate of --agent-ca")
        return frozenset(revoked.serial_number for revoked in crl)
    text = data.decode("ascii")
    serials: set[int] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _HEX_SERIAL.match(line)
        digits = match.group(1).replace(":", "") if match else ""
        if not digits:
            raise AgentCAError(f"{path}:{number}: not a hexadecimal serial: {line!r}")
        serials.add(int(digits, 16))
    return frozenset(serials)


def _crl_signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise AgentCAError(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def load_cas(path: str) -> list[x509.Certificate]:
    """The CA certificates of a C{--agent-ca} PEM file (one or more)."""
    data = _read(path, "agent CA")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise AgentCAError(f"{path}: no PEM certificate in the file")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise AgentCAError(f"{path}: a certificate cannot be parsed: {e}") from None


class AgentCA:
    """
    C{--agent-ca} and C{--agent-crl} as last loaded.  L{reload} (SIGHUP)
    reads both again and keeps what it had when a file cannot be used.
    """

    def __init__(self, clock: Clock, ca_path: str, crl_path: str | None = None) -> None:
        self.clock = clock
        self.ca_path = ca_path
        self.crl_path = crl_path
        self.cas = load_cas(ca_path)
        self.revoked: frozenset[int] = frozenset()
        if crl_path is not None:
            self.revoked = parse_revoked(crl_path, _read(crl_path, "revocation list"), self.cas)

    def reload(self) -> list[str]:
        """Read both files again; the problems (each logged), empty when all loaded."""
        try:
            cas = load_cas(self.ca_path)
            revoked = self.revoked
            if self.crl_path is not None:
                revoked = parse_revoked(self.crl_path, _read(self.crl_path, "revocation list"), cas)
        except AgentCAError as e:
            log.error("mutual TLS: {problem}; keeping the agent CA and revocations loaded before", problem=str(e))
            return [str(e)]
        self.cas, self.revoked = cas, revoked
        request_client_certificates(cas)  # the names new contexts ask for
        log.info("mutual TLS: reloaded {ca}: {count} revoked", ca=self.ca_path, count=len(revoked), event="tls_loaded")
        return []

    def _issuer(self, certificate: x509.Certificate) -> x509.Certificate | None:
        for ca in self.cas:
            try:
                certificate.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None

    def check(self, certificate: x509.Certificate | None, account: str | None) -> AgentCertRefusal | None:
        """
        L{None} when C{certificate} is a valid agent certificate naming
        C{account}; else why not.  L{None} for C{account} (an anonymous
        agent) is refused: a certificate cannot name no account.
        """
        if certificate is None:
            return AgentCertRefusal(
                "client_certificate_required",
                "this edge requires an agent client certificate signed by its agent CA"
                " (the agent's --client-cert and --client-key)",
            )
        if self._issuer(certificate) is None:
            return AgentCertRefusal(
                "client_certificate_refused", "the client certificate is not signed by this edge's agent CA"
            )
        now = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return AgentCertRefusal("client_certificate_refused", "the client certificate is expired or not yet valid")
        if certificate.serial_number in self.revoked:
            serial = f"{certificate.serial_number:x}"
            return AgentCertRefusal("client_certificate_refused", f"client certificate serial {serial} is revoked")
        named = identity(certificate)
        if account is None:
            return AgentCertRefusal(
                "client_certificate_mismatch",
                "anonymous agents are refused on an edge with --agent-ca: present an API key or management token",
            )
        if named != account:
            return AgentCertRefusal(
                "client_certificate_mismatch",
                f"the client certificate names account {named!r}, the credential is for another account",
            )
        return None


def peer_certificate(transport: object) -> x509.Certificate | None:
    """
    The client certificate a TLS connection received (its leaf), or
    L{None} on a plain connection or when the client sent none.
    """
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        found = get()
    except Exception:  # noqa: BLE001 - a plain or closing transport
        return None
    return found.to_cryptography() if found is not None else None
