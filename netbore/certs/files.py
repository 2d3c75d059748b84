"""
The files of a private netbore PKI: PEM encodings, a CA directory
(C{ca.pem} and C{ca-key.pem}), and writing that never leaves a private key
readable by others nor replaces a file unless asked to.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .build import PrivateKey

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "FileError",
    "Output",
    "cert_pem",
    "key_pem",
    "load_ca",
    "write_all",
]

#: The CA's certificate (public: give it to whoever must trust the edge or
#: the agents) and its private key, in the CA directory.
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"

#: Mode of a file holding a private key; certificates alone are public.
PRIVATE = 0o600
PUBLIC = 0o644


class FileError(Exception):
    """
    A file could not be read or written, or exists already; the message
    says which and why.
    """


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Output:
    """
    One file to write: its path, contents and mode.
    """

    def __init__(self, path: str, data: bytes, private: bool) -> None:
        self.path = path
        self.data = data
        self.mode = PRIVATE if private else PUBLIC


def _write(output: Output, force: bool) -> None:
    directory = os.path.dirname(output.path) or "."
    if not force:
        # O_EXCL: never replaces a file, even one created since the check.
        fd = os.open(output.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, output.mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), output.mode)  # whatever the umask
            f.write(output.data)
        return
    # Replace atomically, the new file private from its first byte.
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), output.mode)
            f.write(output.data)
        os.replace(tmp, output.path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def write_all(outputs: Sequence[Output], force: bool = False) -> None:
    """
    Write every one of C{outputs}, or (when one exists already and not
    C{force}, or a directory cannot be made) none of them.

    @raise FileError: naming the file and the reason.
    """
    if not force:
        existing = [o.path for o in outputs if os.path.lexists(o.path)]
        if existing:
            what = "exists" if len(existing) == 1 else "exist"
            raise FileError(f"{', '.join(existing)} already {what}; nothing written (use --force to replace)")
    for output in outputs:
        directory = os.path.dirname(output.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _write(output, force)
        except FileExistsError as e:
            raise FileError(f"{output.path} already exists; not replaced (use --force to replace it)") from e
        except OSError as e:
            raise FileError(f"cannot write {output.path}: {e.strerror}") from e


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise FileError(f"cannot read {path}: {e.strerror}") from e


def load_ca(directory: str) -> tuple[x509.Certificate, PrivateKey]:
    """
    The CA certificate and key in C{directory} (made by C{ca --out}).

    @raise FileError: when either is missing, unreadable, not PEM, not a
        CA, or the key is not the certificate's.
    """
    cert_path, key_path = os.path.join(directory, CA_CERT), os.path.join(directory, CA_KEY)
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError as e:
        raise FileError(f"{cert_path} is not a PEM certificate: {e}") from e
    try:
        key = serialization.load_pem_private_key(_read(key_path), password=None)
    except (ValueError, TypeError) as e:
        raise FileError(f"{key_path} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise FileError(f"{key_path} holds a {type(key).__name__}, not an EC or RSA key")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise FileError(f"{cert_path} is not a CA certificate (no basicConstraints CA:TRUE)")
    if cert.public_key() != key.public_key():
        raise FileError(f"{key_path} is not the key of {cert_path}")
    return cert, key
