"""
Issuing and verifying netbore's JWTs (PyJWT), the signing keys and JWKS.

INTERFACE STUB: the signatures below are the contract other modules code
against; the implementation fills them in without changing them.

Three kinds of token, told apart by the ``token_use`` claim so that none can
stand in for another:

- ``ephemeral``: ``sub`` = tunnel_id, ``name`` = tunnel name; short-lived,
  authenticates an agent's WebSocket handshake.
- ``recreate``: ``sub`` = tunnel_id, ``name``; TTL chosen by the client within
  policy; lets the agent re-create the same tunnel/name later.
- ``management``: ``sub`` = account, ``role`` (``"admin"`` or ``"user"``).

Every token carries ``iss``, ``sub``, ``iat``, ``nbf``, ``exp``, ``jti`` and
``token_use``; every header carries ``kid``.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

__all__ = [
    "EPHEMERAL",
    "MANAGEMENT",
    "RECREATE",
    "Claims",
    "Clock",
    "Keyring",
    "TokenAuthority",
    "TokenError",
    "load_keyring",
]

EPHEMERAL = "ephemeral"
RECREATE = "recreate"
MANAGEMENT = "management"

#: Clock skew tolerated on exp/nbf/iat, in seconds (seed 001).
LEEWAY = 60


class Clock(Protocol):
    def seconds(self) -> float: ...


class TokenError(Exception):
    """
    A token was refused.  C{str(error)} is a message safe to show the caller
    (it never echoes the token).
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


def load_keyring(data_dir: str, jwt_secret_file: str | None = None) -> Keyring:
    """
    RS256: load every key in C{<data_dir>/keys/}, generating the first one
    (file mode 0600, directories 0700) when there is none.  HS256 when
    C{jwt_secret_file} is given: one secret a line, the first signs, all
    verify.
    """
    raise NotImplementedError


class TokenAuthority:
    """
    Issues and verifies tokens with a L{Keyring}, on an injected clock.
    """

    def __init__(self, keyring: Keyring, issuer: str, clock: Clock) -> None:
        raise NotImplementedError

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
        """
        raise NotImplementedError

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
        """
        raise NotImplementedError

    def jwks(self) -> dict[str, Any]:
        raise NotImplementedError
