"""
Keyrings: the signing and verification keys of one algorithm, and the
public JWK Set.

RS256 (the default) uses the key files of L{netbore.auth.keystore}: the
newest signs, every key verifies.  HS256 reads shared secrets from a file,
one a line: the first signs, all verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jwt
from jwt.algorithms import HMACAlgorithm

from .jwk import hmac_kid, rsa_members
from .keystore import KeyFile, KeyringError, load_or_create_keys

__all__ = [
    "MIN_HMAC_SECRET",
    "HMACKeyring",
    "Keyring",
    "RSAKeyring",
    "load_keyring",
]

#: Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the
#: hash output size).
MIN_HMAC_SECRET = 32


class Keyring(Protocol):
    """
    Signing and verification keys of one algorithm.
    """

    algorithm: str  # "RS256" or "HS256"

    def signing_key(self) -> tuple[str, Any]:
        """(kid, key) used to sign new tokens: the newest key."""

    def verification_key(self, kid: str) -> Any | None:
        """The key for C{kid}, or None when the kid is unknown."""

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set: {"keys": [...]} (empty for HS256)."""


class RSAKeyring:
    """
    RS256 keys: the last (newest) signs, all verify.
    """

    algorithm: str = "RS256"

    def __init__(self, files: Sequence[KeyFile]) -> None:
        if not files:
            raise KeyringError("an RS256 keyring needs at least one key")
        self._files = tuple(files)
        self._public = {f.kid: f.key.public_key() for f in self._files}

    @property
    def kids(self) -> list[str]:
        """
        The kids of every key, oldest first.
        """
        return [f.kid for f in self._files]

    def signing_key(self) -> tuple[str, Any]:
        newest = self._files[-1]
        return newest.kid, newest.key

    def verification_key(self, kid: str) -> Any | None:
        return self._public.get(kid)

    def jwks(self) -> dict[str, Any]:
        keys = [{**rsa_members(self._public[f.kid]), "kid": f.kid, "alg": "RS256", "use": "sig"} for f in self._files]
        return {"keys": keys}


# -- HS256 secrets ------------------------------------------------------------


def _check_hmac_secret(secret: bytes, where: str) -> None:
    if len(secret) < MIN_HMAC_SECRET:
        raise KeyringError(f"{where}: HS256 secret is {len(secret)} bytes; at least {MIN_HMAC_SECRET} are required")
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise KeyringError(f"{where}: HS256 secret looks like a public key or certificate") from None


class HMACKeyring:
    """
    HS256 shared secrets: the first signs, all verify.  No public JWKS.
    """

    algorithm: str = "HS256"

    def __init__(self, shared: Sequence[bytes]) -> None:
        if not shared:
            raise KeyringError("an HS256 keyring needs at least one secret")
        for number, secret in enumerate(shared, 1):
            _check_hmac_secret(secret, f"secret {number}")
        self._keys = [(hmac_kid(s), s) for s in shared]
        self._by_kid = dict(self._keys)

    @classmethod
    def from_file(cls, path: str) -> HMACKeyring:
        """
        Read secrets from C{path}: one a line, surrounding whitespace
        stripped, blank lines and lines starting with C{#} ignored.

        @raise KeyringError: naming the file (and line) that is unusable.
        """
        try:
            with open(path, "rb") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise KeyringError(f"cannot read JWT secret file {path}: {e.strerror}") from e
        found: list[bytes] = []
        for number, line in enumerate(lines, 1):
            secret = line.strip()
            if not secret or secret.startswith(b"#"):
                continue
            _check_hmac_secret(secret, f"{path} line {number}")
            if secret in found:
                raise KeyringError(f"{path} line {number}: repeats an earlier secret")
            found.append(secret)
        if not found:
            raise KeyringError(f"JWT secret file {path} holds no secret")
        return cls(found)

    @property
    def kids(self) -> list[str]:
        """
        The kids of every secret, the signing one first.
        """
        return [kid for kid, _ in self._keys]

    def signing_key(self) -> tuple[str, Any]:
        return self._keys[0]

    def verification_key(self, kid: str) -> Any | None:
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": []}


def load_keyring(data_dir: str, jwt_secret_file: str | None = None) -> Keyring:
    """
    RS256: load every key in C{<data_dir>/keys/}, generating the first one
    (file mode 0600, directories 0700) when there is none.  HS256 when
    C{jwt_secret_file} is given: one secret a line, the first signs, all
    verify; C{data_dir} is then not touched.

    @raise KeyringError: with a message naming the file at fault.
    """
    if jwt_secret_file is not None:
        return HMACKeyring.from_file(jwt_secret_file)
    return RSAKeyring(load_or_create_keys(data_dir))
