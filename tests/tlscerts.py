"""
Test certificates made with C{cryptography}: a private CA and server
certificates signed by it, written as the PEM files the edge reads (one
file with key, certificate and chain, as in C{--tls-dir}).  Small and
fast (EC P-256); for tests only.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TestCA", "Issued", "fingerprint"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a certificate in DER, as hex, to compare certificates by."""
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()


@attrs.frozen
class Issued:
    """One server certificate and its key."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ca: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def chain_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM) + self.ca.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        """Key, certificate and chain in one file C{path} (mode 0600)."""
        path.write_bytes(self.key_pem() + self.chain_pem())
        path.chmod(0o600)
        return path

    def write_pair(self, key: Path, cert: Path) -> tuple[Path, Path]:
        """The key and the certificate chain in two files, as C{privateKey=}/C{certKey=}."""
        key.write_bytes(self.key_pem())
        key.chmod(0o600)
        cert.write_bytes(self.chain_pem())
        return key, cert


class TestCA:
    """A private CA that issues server certificates for given names."""

    __test__ = False  # not a pytest class

    def __init__(self, cn: str = "netbore test CA") -> None:
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, *names: str, expired: bool = False) -> Issued:
        """
        A server certificate for these DNS names (or IP literals), CN the
        first; valid now, or (C{expired}) until yesterday.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(days=10 if expired else 0, minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=-1 if expired else 1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(key, cert, self.cert)

    def issue_client(self, cn: str, *, account_uri: str | None = None, expired: bool = False) -> Issued:
        """
        An agent client certificate (clientAuth): subject CN C{cn} and, when
        given, the SAN URI C{account_uri} (C{netbore:account:<name>}).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(days=10 if expired else 0, minutes=5))
            .not_valid_after(self.now + datetime.timedelta(days=-1 if expired else 1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if account_uri is not None:
            san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(account_uri)])
            builder = builder.add_extension(san, critical=False)
        return Issued(key, builder.sign(self.key, hashes.SHA256()), self.cert)

    def crl(self, *serials: int) -> bytes:
        """A PEM CRL by this CA revoking C{serials}."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(self.now - datetime.timedelta(minutes=5))
            .next_update(self.now + datetime.timedelta(days=1))
        )
        for serial in serials:
            revoked = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(self.now).build()
            builder = builder.add_revoked_certificate(revoked)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
