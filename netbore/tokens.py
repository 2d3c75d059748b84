"""
Issuing and verifying netbore's JWTs (PyJWT), the signing keys and JWKS.

Three kinds of token, told apart by the ``token_use`` claim so that none can
stand in for another:

- ``ephemeral``: ``sub`` = tunnel_id, ``name`` = tunnel name; short-lived,
  authenticates an agent's WebSocket handshake.
- ``recreate``: ``sub`` = tunnel_id, ``name``; TTL chosen by the client within
  policy; lets the agent re-create the same tunnel/name later.
- ``management``: ``sub`` = account, ``role`` (``"admin"`` or ``"user"``).

Every token carries ``iss``, ``sub``, ``iat``, ``nbf``, ``exp``, ``jti`` and
``token_use``; every header carries ``kid``.

Keys.  RS256 (the default) keeps one PEM file per RSA key in
``<data_dir>/keys/``, named ``<creation time in ns>-<kid>.pem``: the newest
key signs, every key verifies, so a rotation leaves tokens signed by the
older keys valid until those keys are retired (C{python -m netbore.keys}).
The C{kid} is the key's RFC 7638 JWK thumbprint, computed from the key, never
taken from the file name.  HS256 reads shared secrets from a file, one a
line: the first signs, all verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, Protocol

import attrs
import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

__all__ = [
    "EPHEMERAL",
    "KINDS",
    "LEEWAY",
    "MANAGEMENT",
    "RECREATE",
    "Claims",
    "Clock",
    "HMACKeyring",
    "KeyFile",
    "Keyring",
    "KeyringError",
    "RSAKeyring",
    "TokenAuthority",
    "TokenError",
    "generate_key",
    "hmac_kid",
    "load_keyring",
    "read_keys",
    "retire_key",
    "rsa_kid",
]

EPHEMERAL = "ephemeral"
RECREATE = "recreate"
MANAGEMENT = "management"
KINDS: tuple[str, ...] = (EPHEMERAL, RECREATE, MANAGEMENT)
#: The kinds whose C{sub} is a tunnel_id and which carry C{name}.
_TUNNEL_KINDS = (EPHEMERAL, RECREATE)

#: Clock skew tolerated on exp/nbf/iat, in seconds (seed 001).
LEEWAY = 60

RSA_KEY_SIZE = 2048
#: Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the
#: hash output size).
MIN_HMAC_SECRET = 32
#: Longer "tokens" are refused before any parsing.
MAX_TOKEN_LENGTH = 8192

_KEYS_SUBDIR = "keys"
_KEY_NAME = re.compile(r"\A(\d{1,20})-[A-Za-z0-9_-]+\.pem\Z")
_REQUIRED_STR = ("iss", "sub", "jti", "token_use")
_REQUIRED_INT = ("iat", "nbf", "exp")

# Everything PyJWT, cryptography, base64 and json may raise on hostile input.
# (binascii.Error, UnicodeError and json.JSONDecodeError are ValueErrors.)
_DECODE_ERRORS = (
    jwt.PyJWTError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
    RecursionError,
    InvalidSignature,
    UnsupportedAlgorithm,
)

# PyJWT checks the signature only; every claim, including the times against
# the injected clock, is checked here.
_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "require": [],
    "enforce_minimum_key_length": True,
}


class Clock(Protocol):
    def seconds(self) -> float: ...


class TokenError(Exception):
    """
    A token was refused.  C{str(error)} is a message safe to show the caller
    (it never echoes the token).

    @ivar reason: a short fixed code naming the check that failed
        (C{"malformed"}, C{"algorithm"}, C{"kid"}, C{"signature"},
        C{"claims"}, C{"expired"}, C{"not_yet_valid"}, C{"issued_in_future"},
        C{"issuer"}, C{"token_use"}, C{"sub"}, C{"name"}), for logs and
        metrics.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class KeyringError(Exception):
    """
    Signing keys could not be loaded, created or changed.  The message names
    the file or directory concerned and never contains key material.
    """


@attrs.frozen
class Claims:
    """
    The verified claims of a token.
    """

    token_use: str
    sub: str
    iat: int
    exp: int
    name: str | None = None
    role: str | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


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


# -- kids -------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _thumbprint(members: dict[str, str]) -> str:
    """
    RFC 7638: base64url SHA-256 of the required members, sorted, no blanks.
    """
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def _rsa_members(public: rsa.RSAPublicKey) -> dict[str, str]:
    numbers = public.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def rsa_kid(public: rsa.RSAPublicKey) -> str:
    """
    The C{kid} of an RSA key: its RFC 7638 JWK thumbprint.
    """
    return _thumbprint(_rsa_members(public))


def hmac_kid(secret: bytes) -> str:
    """
    The C{kid} of an HS256 secret: the RFC 7638 thumbprint of its C{oct}
    JWK, a hash that does not reveal the secret.
    """
    return _thumbprint({"k": _b64url(secret), "kty": "oct"})


# -- RS256 key files ----------------------------------------------------------


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


def _ensure_private_dir(path: str) -> None:
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
        raise KeyringError(
            f"key file {path} does not hold an unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyringError(f"key file {path} does not hold an RSA key")
    if key.key_size < RSA_KEY_SIZE:
        raise KeyringError(
            f"key file {path} holds a {key.key_size}-bit RSA key; "
            f"at least {RSA_KEY_SIZE} bits are required"
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


def generate_key(
    data_dir: str, now: Callable[[], float] = time.time
) -> KeyFile:
    """
    Add a new RSA-2048 key to C{<data_dir>/keys/} (directories created mode
    0700, the file 0600, written atomically).  It becomes the signing key:
    its file name sorts after every existing key's even if C{now} went back.
    """
    directory = _keys_dir(data_dir)
    _ensure_private_dir(data_dir)
    _ensure_private_dir(directory)
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
        raise KeyringError(
            f"refusing to retire {kid}: it is the last key in {_keys_dir(data_dir)}"
        )
    retired = matching[0]
    try:
        os.remove(retired.path)
        _fsync_dir(os.path.dirname(retired.path))
    except OSError as e:
        raise KeyringError(f"cannot remove key file {retired.path}: {e.strerror}") from e
    return retired


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
        keys = [
            {**_rsa_members(self._public[f.kid]), "kid": f.kid, "alg": "RS256", "use": "sig"}
            for f in self._files
        ]
        return {"keys": keys}


# -- HS256 secrets ------------------------------------------------------------


def _check_hmac_secret(secret: bytes, where: str) -> None:
    if len(secret) < MIN_HMAC_SECRET:
        raise KeyringError(
            f"{where}: HS256 secret is {len(secret)} bytes; "
            f"at least {MIN_HMAC_SECRET} are required"
        )
    try:
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.InvalidKeyError:
        raise KeyringError(
            f"{where}: HS256 secret looks like a public key or certificate"
        ) from None


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
    _ensure_private_dir(data_dir)
    _ensure_private_dir(_keys_dir(data_dir))
    files = read_keys(data_dir)
    if not files:
        files = [generate_key(data_dir)]
    return RSAKeyring(files)


# -- issuing and verifying ----------------------------------------------------


def _check_issue_args(
    token_use: str, sub: str, ttl: float, name: str | None, role: str | None
) -> None:
    """
    Refuse (with L{ValueError}: these are programming errors) arguments that
    would make a token of the wrong shape.
    """
    if token_use not in KINDS:
        raise ValueError(f"unknown token_use {token_use!r}")
    if not isinstance(sub, str) or not sub:
        raise ValueError("sub must be a non-empty string")
    if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl >= 1):
        raise ValueError(f"ttl must be at least 1 second, not {ttl!r}")
    if token_use in _TUNNEL_KINDS:
        if not name or role is not None:
            raise ValueError(f"a {token_use} token needs a name and no role")
    elif not role or name is not None:
        raise ValueError("a management token needs a role and no name")


def _malformed() -> TokenError:
    return TokenError("token is malformed", "malformed")


def _claims_from(payload: Any) -> Claims:
    """
    Check the types of the claims of a signature-verified payload.
    """
    if not isinstance(payload, dict):
        raise _malformed()
    for claim in _REQUIRED_STR:
        if not isinstance(payload.get(claim), str) or not payload[claim]:
            raise TokenError(f"token lacks a valid {claim} claim", "claims")
    for claim in _REQUIRED_INT:
        value = payload.get(claim)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError(f"token lacks a valid {claim} claim", "claims")
    for claim in ("name", "role"):
        if claim in payload and not isinstance(payload[claim], str):
            raise TokenError(f"token lacks a valid {claim} claim", "claims")
    return Claims(
        token_use=payload["token_use"],
        sub=payload["sub"],
        iat=payload["iat"],
        exp=payload["exp"],
        name=payload.get("name"),
        role=payload.get("role"),
        raw=payload,
    )


def _check_kind_claims(claims: Claims) -> None:
    """
    Tunnel tokens carry C{name}; management tokens carry C{role}.
    """
    claim = "name" if claims.token_use in _TUNNEL_KINDS else "role"
    if not claims.raw.get(claim):
        raise TokenError(f"token lacks a valid {claim} claim", "claims")


class TokenAuthority:
    """
    Issues and verifies tokens with a L{Keyring}, on an injected clock.
    """

    def __init__(self, keyring: Keyring, issuer: str, clock: Clock) -> None:
        if keyring.algorithm not in ("RS256", "HS256"):
            raise ValueError(f"unsupported algorithm {keyring.algorithm!r}")
        self._keyring = keyring
        self._issuer = issuer
        self._clock = clock
        self._jwt = jwt.PyJWT()

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def algorithm(self) -> str:
        return self._keyring.algorithm

    def issue(
        self,
        token_use: str,
        sub: str,
        ttl: float,
        *,
        name: str | None = None,
        role: str | None = None,
    ) -> tuple[str, int]:
        """
        A signed token and its C{exp} (integer seconds since the epoch).

        C{name} is required for ephemeral and recreate tokens, C{role} for
        management tokens; C{ttl} is at least 1 second.

        @raise ValueError: for arguments that would make a malformed token.
        """
        _check_issue_args(token_use, sub, ttl, name, role)
        now = self._clock.seconds()
        iat = int(now)
        exp = int(now + ttl)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": sub,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": secrets.token_urlsafe(16),
            "token_use": token_use,
        }
        if name is not None:
            claims["name"] = name
        if role is not None:
            claims["role"] = role
        kid, key = self._keyring.signing_key()
        token = jwt.encode(
            claims, key, algorithm=self._keyring.algorithm, headers={"kid": kid}
        )
        return token, exp

    def verify(
        self,
        token: str,
        token_use: str,
        *,
        sub: str | None = None,
        name: str | None = None,
    ) -> Claims:
        """
        Verify C{token} as a token of kind C{token_use}, following seed 001's
        steps: header parsed; algorithm from the allow-list (the keyring's
        one algorithm; C{none} and every other refused); key by C{kid};
        signature; C{exp}/C{nbf}/C{iat} against the injected clock with
        L{LEEWAY}; C{iss}; C{token_use}; C{sub}/C{name} equal to the given
        values when given.

        @raise TokenError: on any failure.
        @raise ValueError: when C{token_use} is not one of L{KINDS}.
        """
        if token_use not in KINDS:
            raise ValueError(f"unknown token_use {token_use!r}")
        header = self._header(token)
        key = self._key_for(header)
        claims = _claims_from(self._decode(token, key))
        self._check_times(claims)
        self._check_identity(claims, token_use, sub, name)
        _check_kind_claims(claims)
        return claims

    def jwks(self) -> dict[str, Any]:
        """
        The public JWK Set to serve at C{/.well-known/jwks.json}.
        """
        return self._keyring.jwks()

    def _header(self, token: object) -> dict[str, Any]:
        """
        Steps 1-2: a compact JWS of three segments whose header is a JSON
        object.
        """
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
            raise _malformed()
        if token.count(".") != 2:
            raise _malformed()
        try:
            header = jwt.get_unverified_header(token)
        except _DECODE_ERRORS:
            raise _malformed() from None
        if not isinstance(header, dict):
            raise _malformed()
        return header

    def _key_for(self, header: dict[str, Any]) -> Any:
        """
        Step 3: the algorithm must be the allow-listed one and the C{kid}
        a known key's.  No header extension is understood.
        """
        if header.get("alg") != self._keyring.algorithm:
            raise TokenError("token algorithm is not accepted", "algorithm")
        if "crit" in header or "b64" in header:
            raise TokenError("token uses unsupported header extensions", "malformed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no key id", "kid")
        key = self._keyring.verification_key(kid)
        if key is None:
            raise TokenError("token was signed by an unknown key", "kid")
        return key

    def _decode(self, token: str, key: Any) -> Any:
        """
        Step 4a: the signature, with the one allowed algorithm.
        """
        try:
            return self._jwt.decode(
                token,
                key,
                algorithms=[self._keyring.algorithm],
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid", "signature") from None
        except _DECODE_ERRORS:
            raise _malformed() from None

    def _check_times(self, claims: Claims) -> None:
        """
        Step 4b: C{exp}, C{nbf} and C{iat} against the injected clock.
        """
        now = self._clock.seconds()
        if now >= claims.exp + LEEWAY:
            raise TokenError("token has expired", "expired")
        if claims.raw["nbf"] > now + LEEWAY:
            raise TokenError("token is not valid yet", "not_yet_valid")
        if claims.iat > now + LEEWAY:
            raise TokenError("token was issued in the future", "issued_in_future")

    def _check_identity(
        self, claims: Claims, token_use: str, sub: str | None, name: str | None
    ) -> None:
        """
        Step 5: issuer, kind, and C{sub}/C{name} as asked for.
        """
        if claims.raw["iss"] != self._issuer:
            raise TokenError("token was issued by another issuer", "issuer")
        if claims.token_use != token_use:
            raise TokenError(f"token is not a {token_use} token", "token_use")
        if sub is not None and claims.sub != sub:
            what = "account" if token_use == MANAGEMENT else "tunnel"
            raise TokenError(f"token is for another {what}", "sub")
        if name is not None and claims.name != name:
            raise TokenError("token is for another tunnel name", "name")
