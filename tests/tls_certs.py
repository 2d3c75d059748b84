"""
Certificates made in the test as files: a private CA and server
certificates signed by it (for some names, valid or expired), on
L{tests.tlscerts}' in-memory CA.
"""

from __future__ import annotations

from pathlib import Path

import attrs
from cryptography import x509

from .tlscerts import TestCA

__all__ = ["CA", "Issued"]


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
        self._ca = TestCA(f"netbore {label} CA")
        self.certificate = self._ca.cert
        self.path = self._ca.write(directory / f"{label}-ca.pem")
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
        issued = self._ca.issue(*names, expired=expired)
        stem = self.directory / f"{self.label}-{self._count}"
        key_path, cert_path = issued.write_pair(stem.with_suffix(".key.pem"), stem.with_suffix(".crt.pem"))
        return Issued(cert_path, key_path, issued.cert)

    def issue_client(self, account: str) -> Issued:
        """
        An agent client certificate for C{account} (CN and SAN URI
        C{netbore:account:<account>}) as files.
        """
        self._count += 1
        issued = self._ca.issue_client(account, account_uri=f"netbore:account:{account}")
        stem = self.directory / f"{self.label}-{self._count}"
        key_path, cert_path = issued.write_pair(stem.with_suffix(".key.pem"), stem.with_suffix(".crt.pem"))
        return Issued(cert_path, key_path, issued.cert)

    def crl(self, *serials: int) -> bytes:
        """A PEM CRL by this CA revoking C{serials}."""
        return self._ca.crl(*serials)
