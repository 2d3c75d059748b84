"""
The edge's TLS server contexts: TLS 1.2 and 1.3 only with modern ciphers,
a certificate chosen by SNI from a directory of PEM files (C{--tls-dir}),
and certificates re-read on SIGHUP without touching established
connections.

A L{ListenerCertificates} is the context factory of one C{ssl:} listener
(an L{IOpenSSLServerConnectionCreator}); a L{CertificateDirectory} is the
C{--tls-dir}, shared by every listener.  Both build a new
C{OpenSSL.SSL.Context} when they reload and swap it in only when it loaded
whole: a connection keeps the context it was made with, so established
connections are untouched and only new handshakes see the new certificate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from ..names import split_host

__all__ = [
    "CIPHERS_TLS12",
    "CertificateDirectory",
    "CertificateError",
    "CertificateFiles",
    "ListenerCertificates",
    "load_context",
    "request_client_certificates",
]

log = Logger()

#: Mozilla's "intermediate" cipher list (server side, TLS 1.2): forward
#: secret AEAD suites only; no RC4, 3DES or CBC.  TLS 1.3 has its own suites,
#: all AEAD (OpenSSL's defaults).  The DHE suites need C{dhParameters=}.
CIPHERS_TLS12 = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    ]
)

#: A file of C{--tls-dir} named C{_wildcard.<parent>.pem} serves C{*.<parent>}
#: (mkcert's spelling, for tools and shells that dislike C{*} in file names).
WILDCARD_PREFIX = "_wildcard."
DEFAULT_NAME = "default"


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class CertificateError(Exception):
    """A certificate or key file that cannot be used; the message names the file and why."""


@attrs.frozen
class CertificateFiles:
    """
    Where one certificate comes from: the key, the certificate (and chain
    after it), an optional extra chain and Diffie-Hellman parameters, as an
    C{ssl:} endpoint string names them (C{privateKey=}, C{certKey=},
    C{extraCertChain=}, C{dhParameters=}).  One file may hold key and chain.
    """

    key: str
    cert: str
    chain: str | None = None
    dh: str | None = None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CertificateError(f"{path}: cannot read the {what}: {e.strerror or e}") from None


def _certificates(path: str, data: bytes) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError(f"{path}: no PEM certificate in the file")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertificateError(f"{path}: a certificate cannot be parsed: {e}") from None


def _private_key(path: str, data: bytes) -> PrivateKey:
    if b"PRIVATE KEY-----" not in data:
        raise CertificateError(f"{path}: no PEM private key in the file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(f"{path}: the private key is encrypted (give it without a passphrase)") from None
    except (ValueError, crypto.Error) as e:
        raise CertificateError(f"{path}: the private key cannot be parsed: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey)):
        raise CertificateError(f"{path}: unsupported private key type {type(key).__name__}")
    return key


def _use(method: Callable[[Any], None], value: Any, convert: Callable[[Any], Any]) -> None:
    """
    C{method(value)} with a C{cryptography} object, as pyOpenSSL 24.3 and
    newer take it; converted to pyOpenSSL's own type for older releases.
    """
    try:
        method(value)
    except TypeError:
        method(convert(value))


#: The CA certificates named in a CertificateRequest (C{--agent-ca}), or
#: L{None}: set by L{request_client_certificates} before any listener loads.
_client_cas: list[x509.Certificate] | None = None


#: The tunnel domain: a handshake whose SNI is a tunnel name
#: (C{<label>.<domain>}, a viewer's) is not asked for a certificate.
_tunnel_domain: str | None = None


def request_client_certificates(cas: list[x509.Certificate] | None, domain: str | None = None) -> None:
    """
    Make every context L{new_context} builds from now on ask clients for a
    certificate (naming C{cas}) without requiring one, except handshakes
    for the tunnel names of C{domain} (viewers); L{None} stops asking.
    """
    global _client_cas, _tunnel_domain
    _client_cas = cas
    if domain is not None:
        _tunnel_domain = domain


def _accept_any(connection: SSL.Connection, certificate: object, error: int, depth: int, ok: int) -> bool:
    # Viewers share the port and need no certificate, and an agent's is
    # checked against --agent-ca on its requests (netbore.edge.agentca),
    # where a refusal can be a clear 403 rather than a bare TLS alert.
    return True


def new_context() -> SSL.Context:
    """
    A server context that speaks TLS 1.2 and 1.3 only, with
    L{CIPHERS_TLS12}, no compression and no renegotiation.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(0)  # the newest the library has (1.3)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_TLSv1 | SSL.OP_NO_TLSv1_1
    options |= getattr(SSL, "OP_NO_RENEGOTIATION", 0)
    context.set_options(options)
    context.set_cipher_list(CIPHERS_TLS12.encode())
    # Resumption across the several contexts SNI switches between.
    context.set_session_id(b"netbore-edge")
    # On every context, SNI's too: OpenSSL does not carry the verify mode
    # over when the servername callback switches context.
    if _client_cas is not None:
        context.set_verify(SSL.VERIFY_PEER, _accept_any)
        for ca in _client_cas:
            _use(context.add_client_ca, ca, crypto.X509.from_cryptography)
    return context


def load_context(files: CertificateFiles) -> SSL.Context:
    """
    A server context (L{new_context}) holding the key and certificate chain
    of C{files}, read once each.

    @raise CertificateError: a file is missing, unreadable or not PEM, the
        key is encrypted, or the key does not match the certificate; the
        message names the file and why.
    """
    certificates = _certificates(files.cert, _read(files.cert, "certificate"))
    key = _private_key(files.key, _read(files.key, "private key"))
    if files.chain is not None:
        certificates += _certificates(files.chain, _read(files.chain, "certificate chain"))
    context = new_context()
    _use(context.use_certificate, certificates[0], crypto.X509.from_cryptography)
    for extra in certificates[1:]:
        _use(context.add_extra_chain_cert, extra, crypto.X509.from_cryptography)
    try:
        _use(context.use_privatekey, key, crypto.PKey.from_cryptography_key)
        context.check_privatekey()
    except SSL.Error:
        where = files.key if files.key == files.cert else f"{files.key} and {files.cert}"
        raise CertificateError(f"{where}: the private key does not match the certificate") from None
    if files.dh is not None:
        _read(files.dh, "Diffie-Hellman parameters")
        try:
            context.load_tmp_dh(files.dh.encode())
        except SSL.Error as e:
            raise CertificateError(f"{files.dh}: bad Diffie-Hellman parameters: {e}") from None
    return context


def _name_of(filename: str) -> str | None:
    """
    The host name a C{--tls-dir} file serves (C{*.example.com} for
    C{*.example.com.pem} or C{_wildcard.example.com.pem}), L{DEFAULT_NAME}
    for C{default.pem}; L{None} for a file that is not C{.pem}.
    """
    if not filename.endswith(".pem") or filename.startswith("."):
        return None
    name = filename[: -len(".pem")].lower().rstrip(".")
    if name.startswith(WILDCARD_PREFIX):
        name = "*." + name[len(WILDCARD_PREFIX) :]
    return name or None


class CertificateDirectory:
    """
    C{--tls-dir}: one C{<name>.pem} (private key, certificate and chain) per
    host name, C{*.<parent>.pem} (or C{_wildcard.<parent>.pem}) for a
    wildcard, and C{default.pem} for handshakes that match no file (on
    listeners without a certificate of their own).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._contexts: dict[str, SSL.Context] = {}
        self._files: dict[str, str] = {}

    def load(self) -> list[str]:
        """
        (Re)read every file of the directory.  A file that cannot be used
        keeps the certificate its name had (if any); files gone are
        forgotten.  Returns what went wrong, one line per file (each also
        logged); empty when all loaded.
        """
        try:
            filenames = sorted(os.listdir(self.path))
        except OSError as e:
            problem = f"{self.path}: cannot read the TLS directory: {e.strerror or e}"
            log.error("TLS: {problem}; keeping the certificates loaded before", problem=problem, event="tls_error")
            return [problem]
        problems: list[str] = []
        contexts: dict[str, SSL.Context] = {}
        files: dict[str, str] = {}
        for filename in filenames:
            name = _name_of(filename)
            path = os.path.join(self.path, filename)
            if name is None or not os.path.isfile(path):
                continue
            if name in files:
                problems.append(f"{path}: {files[name]} serves {name} already; ignored")
                continue
            try:
                contexts[name] = load_context(CertificateFiles(key=path, cert=path))
            except CertificateError as e:
                problems.append(str(e))
                if name not in self._contexts:
                    continue
                contexts[name] = self._contexts[name]
            files[name] = path
        for problem in problems:
            log.error("TLS: {problem}; keeping the old certificate", problem=problem, event="tls_error")
        self._contexts, self._files = contexts, files
        log.info("TLS: {count} certificates from {path}", count=len(files), path=self.path, event="tls_loaded")
        return problems

    @property
    def default_file(self) -> str | None:
        """The directory's C{default.pem}, when it has one."""
        path = os.path.join(self.path, DEFAULT_NAME + ".pem")
        return path if os.path.isfile(path) else None

    def lookup(self, servername: str) -> SSL.Context | None:
        """
        The context for C{servername}: its own file first, then the
        wildcard of its parent (one label deep, as RFC 6125 matches);
        L{None} when neither exists.
        """
        name = servername.lower().rstrip(".")
        if name == DEFAULT_NAME or name.startswith("*"):
            return None
        found = self._contexts.get(name)
        if found is None and "." in name:
            found = self._contexts.get("*." + name.split(".", 1)[1])
        return found


@implementer(IOpenSSLServerConnectionCreator)
class ListenerCertificates:
    """
    The TLS context factory of one C{ssl:} listener: its own certificate
    (C{files}) is the default, and SNI picks a certificate of C{directory}
    when one matches the name asked for.
    """

    def __init__(self, files: CertificateFiles, directory: CertificateDirectory | None = None) -> None:
        self.files = files
        self.directory = directory
        self._context = self._load()

    def _load(self) -> SSL.Context:
        context = load_context(self.files)
        context.set_tlsext_servername_callback(self._servername)
        return context

    def reload(self) -> list[str]:
        """
        Read the listener's own files again; on failure log which file and
        why and keep the old certificate.  Returns the problems.
        """
        try:
            self._context = self._load()
        except CertificateError as e:
            log.error("TLS: {problem}; keeping the old certificate", problem=str(e), event="tls_error")
            return [str(e)]
        log.info("TLS: reloaded {path}", path=self.files.cert, event="tls_loaded")
        return []

    def _servername(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        if not name:
            return
        if self.directory is not None:
            chosen = self.directory.lookup(name.decode("ascii", "replace"))
            if chosen is not None:
                connection.set_context(chosen)
        if _client_cas is not None and _tunnel_domain is not None and split_host(name, _tunnel_domain) is not None:
            # A viewer's tunnel name: no CertificateRequest (a browser would
            # ask its user to pick a certificate); agents use the edge's own names.
            connection.set_verify(SSL.VERIFY_NONE, _accept_any)

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def reloads(listeners: list[ListenerCertificates]) -> list[Callable[[], list[str]]]:
    """
    What SIGHUP calls for these listeners: each shared directory once, then
    each listener's own files.
    """
    calls: list[Callable[[], list[str]]] = []
    seen: list[CertificateDirectory] = []
    for listener in listeners:
        if listener.directory is not None and not any(d is listener.directory for d in seen):
            seen.append(listener.directory)
            calls.append(listener.directory.load)
    return calls + [listener.reload for listener in listeners]
