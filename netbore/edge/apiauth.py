"""
Who is calling the control API: the per-address limit on failed
authentications, C{Authorization: Bearer} credentials, and management,
recreate and API-key credentials checked against the token authority.

Every refused credential counts against the caller's address in the
L{AuthFailureLimiter} it shares with the agents' C{/connect}.
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger
from twisted.web.server import Request

from ..auth.tokens import MANAGEMENT, Claims, TokenAuthority, TokenError
from .apierrors import ApiError, invalid_request, rate_limited, unauthorized
from .apirequest import client_address
from .ratelimit import AuthFailureLimiter

__all__ = ["ApiAuth", "ApiKeyStore"]


class _Account(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def admin(self) -> bool: ...


class ApiKeyStore(Protocol):
    """
    What the control API needs of L{netbore.auth.apikeys.ApiKeys}.
    """

    def authenticate(self, key: str) -> _Account | None: ...


class ApiAuth:
    """
    The credential checks of the control API's routes.  Each raises the
    L{ApiError} to answer with.
    """

    log = Logger()

    def __init__(self, authority: TokenAuthority, api_keys: ApiKeyStore, limiter: AuthFailureLimiter) -> None:
        self.authority = authority
        self.api_keys = api_keys
        self.limiter = limiter

    def check_rate(self, request: Request) -> str:
        """
        The caller's address, unless it failed too often (429).
        """
        addr = client_address(request)
        retry_after = self.limiter.check(addr)
        if retry_after is not None:
            raise rate_limited(retry_after)
        return addr

    def refuse(self, addr: str, message: str) -> ApiError:
        """
        Count a refused credential against C{addr}; the 401 to raise.
        """
        self.limiter.failed(addr)
        self.log.info("refused credential: {reason}", reason=message, event="auth_failure")
        return unauthorized(message)

    def bearer(self, request: Request, addr: str) -> str | None:
        """
        The credential in C{Authorization: Bearer}, or L{None} without the
        header; any other scheme is refused.
        """
        header = request.getHeader("authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self.refuse(addr, "Authorization must be 'Bearer <token>'")
        return token

    def verify(self, addr: str, token: str, token_use: str) -> Claims:
        """
        The claims of C{token} as a C{token_use} token, or a counted 401.
        """
        try:
            return self.authority.verify(token, token_use)
        except TokenError as e:
            raise self.refuse(addr, f"invalid {token_use} token: {e}") from None

    def management(self, request: Request, addr: str, body_token: str | None = None) -> Claims | None:
        """
        The management token given as Bearer or in the body (the same one if
        both), verified; L{None} when none was given.
        """
        bearer = self.bearer(request, addr)
        if bearer is not None and body_token is not None and bearer != body_token:
            raise invalid_request("give one management token, as Authorization or in the body")
        token = bearer if bearer is not None else body_token
        if token is None:
            return None
        return self.verify(addr, token, MANAGEMENT)

    def api_key_account(self, request: Request, addr: str, body_key: str | None) -> tuple[str, str]:
        """
        C{(account, role)} for C{POST /auth/token}: an API key (as Bearer or
        in the body), or a management token to refresh (as Bearer).
        """
        bearer = self.bearer(request, addr)
        if bearer is not None and body_key is not None:
            raise invalid_request("give the API key once, as Authorization or in the body")
        credential = bearer if bearer is not None else body_key
        if credential is None:
            raise unauthorized("give an API key (or a management token to refresh) as Authorization: Bearer")
        account = self.api_keys.authenticate(credential)
        if account is not None:
            return account.name, ("admin" if account.admin else "user")
        if bearer is not None and credential.count(".") == 2:
            claims = self.verify(addr, credential, MANAGEMENT)
            return claims.sub, (claims.role or "user")
        raise self.refuse(addr, "unknown API key")
