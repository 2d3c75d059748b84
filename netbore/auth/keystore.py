"""
The edge's RS256 signing keys on disk: one PEM file per RSA key in
C{<data_dir>/keys/}, named C{<creation time in ns>-<kid>.pem}.

The newest key signs and every key verifies, so a rotation leaves tokens
signed by the older keys valid until those keys are retired
(C{python -m netbore.auth.keys}).  Directories are created mode 0700, key
files written atomically mode 0600.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .jwk import rsa_kid

__all__ = [
    "RSA_KEY_SIZE",
    "KeyFile",
    "KeyringError",
    "ensure_private_dir",
    "generate_key",
    "key_file_paths",
    "load_or_create_keys",
    "read_keys",
    "retire_key",
]

RSA_KEY_SIZE = 2048

_KEYS_SUBDIR = "keys"
_KEY_NAME = re.compile(r"\A(\d{1,20})-[A-Za-z0-9_-]+\.pem\Z")


class KeyringError(Exception):
    """
    Signing keys could not be loaded, created or changed.  The message names
    the file or directory concerned and never contains key material.
    """


@attrs.frozen
class KeyFile:
    """
    One RSA signing key as stored in C{<data_dir>/keys/}.

    @ivar created_ns: creation time (ns since the epoch) from the file name;
        0 for a file not named by netbore (it then sorts first).
    """

    kid: str
    path: str
    created_ns: int
    key: rsa.RSAPrivateKey = attrs.field(eq=False, repr=False)


def _keys_dir(data_dir: str) -> str:
    return os.path.join(data_dir, _KEYS_SUBDIR)


def ensure_private_dir(path: str) -> None:
    """
    Create directory C{path} with mode 0700 if missing; leave an existing
    one alone.
    """
    if os.path.isdir(path):
        return
    try:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        if not os.path.isdir(path):
            raise KeyringError(f"{path} exists and is not a directory") from None
    except OSError as e:
        raise KeyringError(f"cannot create directory {path}: {e.strerror}") from e


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private_file(path: str, data: bytes) -> None:
    """
    Write C{data} to C{path} atomically (temporary file, fsync, rename) with
    mode 0600 from the start.
    """
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    except OSError as e:
        raise KeyringError(f"cannot write a key in {directory}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except OSError as e:
        raise KeyringError(f"cannot write key file {path}: {e.strerror}") from e
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def _load_key_file(path: str) -> rsa.RSAPrivateKey:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise KeyringError(f"cannot read key file {path}: {e.strerror}") from e
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyringError(f"key file {path} does not hold an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyringError(f"key file {path} does not hold an RSA key")
    if key.key_size < RSA_KEY_SIZE:
        raise KeyringError(
            f"key file {path} holds a {key.key_size}-bit RSA key; at least {RSA_KEY_SIZE} bits are required"
        )
    return key


def _key_file_names(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise KeyringError(f"cannot list key directory {directory}: {e.strerror}") from e
    return [n for n in names if n.endswith(".pem") and not n.startswith(".")]


def key_file_paths(data_dir: str) -> list[str]:
    """
    The paths of the key files in C{<data_dir>/keys/}, reading none of them
    (an unreadable or missing directory: none).
    """
    directory = _keys_dir(data_dir)
    try:
        names = _key_file_names(directory)
    except KeyringError:
        return []
    return [os.path.join(directory, n) for n in sorted(names)]


def _created_ns(file_name: str) -> int:
    match = _KEY_NAME.match(file_name)
    return int(match.group(1)) if match else 0


def read_keys(data_dir: str) -> list[KeyFile]:
    """
    Every RSA key in C{<data_dir>/keys/}, oldest first (by the creation time
    in the file name, then by name), creating nothing.

    @raise KeyringError: naming the file that cannot be used, or the two
        files holding the same key.
    """
    directory = _keys_dir(data_dir)
    names = sorted(_key_file_names(directory), key=lambda n: (_created_ns(n), n))
    files: list[KeyFile] = []
    seen: dict[str, str] = {}
    for name in names:
        path = os.path.join(directory, name)
        key = _load_key_file(path)
        kid = rsa_kid(key.public_key())
        if kid in seen:
            raise KeyringError(f"key files {seen[kid]} and {path} hold the same key")
        seen[kid] = path
        files.append(KeyFile(kid=kid, path=path, created_ns=_created_ns(name), key=key))
    return files


def generate_key(data_dir: str, now: Callable[[], float] = time.time) -> KeyFile:
    """
    Add a new RSA-2048 key to C{<data_dir>/keys/} (directories created mode
    0700, the file 0600, written atomically).  It becomes the signing key:
    its file name sorts after every existing key's even if C{now} went back.
    """
    directory = _keys_dir(data_dir)
    ensure_private_dir(data_dir)
    ensure_private_dir(directory)
    existing = read_keys(data_dir)
    created = int(now() * 1e9)
    if existing:
        created = max(created, existing[-1].created_ns + 1)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    kid = rsa_kid(key.public_key())
    path = os.path.join(directory, f"{created:020d}-{kid}.pem")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private_file(path, pem)
    return KeyFile(kid=kid, path=path, created_ns=created, key=key)


def retire_key(data_dir: str, kid: str) -> KeyFile:
    """
    Delete the key C{kid}: tokens it signed stop verifying once the edge
    loads its keys again.

    @raise KeyringError: when C{kid} is unknown or is the last key.
    """
    files = read_keys(data_dir)
    matching = [f for f in files if f.kid == kid]
    if not matching:
        raise KeyringError(f"no key with kid {kid} in {_keys_dir(data_dir)}")
    if len(files) == 1:
        raise KeyringError(f"refusing to retire {kid}: it is the last key in {_keys_dir(data_dir)}")
    retired = matching[0]
    try:
        os.remove(retired.path)
        _fsync_dir(os.path.dirname(retired.path))
    except OSError as e:
        raise KeyringError(f"cannot remove key file {retired.path}: {e.strerror}") from e
    return retired


def load_or_create_keys(data_dir: str) -> list[KeyFile]:
    """
    Every key in C{<data_dir>/keys/}, oldest first, after generating the
    first one (directories 0700, file 0600) when there is none.

    @raise KeyringError: naming the file or directory at fault.
    """
    ensure_private_dir(data_dir)
    ensure_private_dir(_keys_dir(data_dir))
    files = read_keys(data_dir)
    if not files:
        files = [generate_key(data_dir)]
    return files
