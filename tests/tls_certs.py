"""
Certificates made in the test, with C{cryptography}: a private CA and
server certificates signed by it (for some names, valid or expired).
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

__all__ = ["CA", "Issued"]

_NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@attrs.frozen
class Issued:
    """
    A server certificate and its key, as files.
    """

    cert: Path
    key: Path
    certificate: x509.Certificate

    @property
    def listen_args(self) -> str:
        """The C{privateKey=...:certKey=...} part of an C{ssl:} endpoint."""
        return f"privateKey={self.key}:certKey={self.cert}"


class CA:
    """
    A private CA whose certificate is written to C{directory/<label>-ca.pem}.
    """

    def __init__(self, directory: Path, label: str = "test") -> None:
        self.directory = directory
        self.label = label
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(f"netbore {label} CA"))
            .issuer_name(_name(f"netbore {label} CA"))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=30))
            .not_valid_after(_NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{label}-ca.pem"
        self.path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self._count = 0

    @property
    def pem(self) -> bytes:
        return self.path.read_bytes()

    def issue(self, *names: str, expired: bool = False) -> Issued:
        """
        A server certificate for C{names} (DNS names or IP addresses),
        valid now, or expired yesterday.
        """
        self._count += 1
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        end = _NOW - datetime.timedelta(days=1) if expired else _NOW + datetime.timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - datetime.timedelta(days=10))
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / f"{self.label}-{self._count}"
        cert_path, key_path = stem.with_suffix(".crt.pem"), stem.with_suffix(".key.pem")
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return Issued(cert_path, key_path, certificate)
