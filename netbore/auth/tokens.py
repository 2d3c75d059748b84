"""
The token authority: issuing and verifying netbore's JWTs (PyJWT).

Three kinds of token, told apart by the ``token_use`` claim so that none can
stand in for another:

- ``ephemeral``: ``sub`` = tunnel_id, ``name`` = tunnel name; short-lived,
  authenticates an agent's WebSocket handshake.
- ``recreate``: ``sub`` = tunnel_id, ``name``; TTL chosen by the client within
  policy; lets the agent re-create the same tunnel/name later.
- ``management``: ``sub`` = account, ``role`` (``"admin"`` or ``"user"``).

Every token carries ``iss``, ``sub``, ``iat``, ``nbf``, ``exp``, ``jti`` and
``token_use``; every header carries ``kid``.  The keys come from a
L{netbore.auth.keyrings.Keyring}.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

import attrs
import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from jwt.types import Options

from .._types import Clock
from .keyrings import Keyring

__all__ = [
    "EPHEMERAL",
    "KINDS",
    "LEEWAY",
    "MANAGEMENT",
    "RECREATE",
    "Claims",
    "TokenAuthority",
    "TokenError",
]

EPHEMERAL = "ephemeral"
RECREATE = "recreate"
MANAGEMENT = "management"
KINDS: tuple[str, ...] = (EPHEMERAL, RECREATE, MANAGEMENT)
#: The kinds whose C{sub} is a tunnel_id and which carry C{name}.
_TUNNEL_KINDS = (EPHEMERAL, RECREATE)

#: Clock skew tolerated on exp/nbf/iat, in seconds (seed 001).
LEEWAY = 60

#: Longer "tokens" are refused before any parsing.
MAX_TOKEN_LENGTH = 8192

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


def _check_issue_args(token_use: str, sub: str, ttl: float, name: str | None, role: str | None) -> None:
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
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """
        A signed token and its C{exp} (integer seconds since the epoch).

        C{name} is required for ephemeral and recreate tokens, C{role} for
        management tokens; C{ttl} is at least 1 second.  C{extra} claims
        (e.g. a TCP tunnel's C{protocol} and C{port}) are added as they
        are; they may not replace a claim named above.

        @raise ValueError: for arguments that would make a malformed token.
        """
        _check_issue_args(token_use, sub, ttl, name, role)
        if extra and not set(extra).isdisjoint({*_REQUIRED_STR, *_REQUIRED_INT, "name", "role"}):
            raise ValueError(f"extra claims may not replace the standard ones: {sorted(extra)}")
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
        if extra:
            claims.update(extra)
        kid, key = self._keyring.signing_key()
        token = jwt.encode(claims, key, algorithm=self._keyring.algorithm, headers={"kid": kid})
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

    def _check_identity(self, claims: Claims, token_use: str, sub: str | None, name: str | None) -> None:
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
