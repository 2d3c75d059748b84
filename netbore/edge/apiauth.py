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

from ..auth.apikeys import Account, ApiKeys, ApiKeysError
from ..auth.filemodes import loose_permissions
from ..auth.tokens import MANAGEMENT, Claims, TokenAuthority, TokenError
from .agentca import AgentCA, peer_certificate
from .apierrors import ApiError, invalid_request, rate_limited, unauthorized
from .apirequest import client_address
from .ratelimit import AuthFailureLimiter

__all__ = ["ApiAuth", "ApiKeyStore", "ApiKeysFile"]


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

    def account(self, name: str) -> _Account | None: ...


class ApiKeysFile:
    """
    The edge's C{--api-keys-file} as last loaded: L{reload} (on SIGHUP)
    reads it again, and keeps the keys it had when the file cannot be used.

    @ivar path: the file; L{None} for an edge without one (no keys).
    """

    log = Logger()

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._keys = ApiKeys.load(path) if path is not None else ApiKeys.empty()

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, key: str) -> Account | None:
        return self._keys.authenticate(key)

    def account(self, name: str) -> Account | None:
        return self._keys.account(name)

    def reload(self) -> bool:
        """
        Read the file again; whether its keys replaced the old ones (a file
        that cannot be used is logged and the old keys stay).
        """
        if self.path is None:
            return False
        try:
            problem = loose_permissions(self.path, "API keys file")
            if problem is not None:
                raise ApiKeysError(problem)
            keys = ApiKeys.load(self.path)
        except ApiKeysError as e:
            self.log.error(
                "API keys file not reloaded; keeping the {count} keys loaded before: {why}",
                count=len(self._keys),
                why=str(e),
                event="api_keys_reload_failed",
            )
            return False
        self._keys = keys
        self.log.info(
            "API keys file {path} reloaded: {count} keys",
            path=self.path,
            count=len(keys),
            event="api_keys_reloaded",
        )
        return True


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
        #: C{--agent-ca}: agents' calls need a client certificate naming
        #: their account (L{agent_certificate}); L{None}: no such check.
        self.agent_ca: AgentCA | None = None

    def agent_certificate(self, request: Request, addr: str, account: str | None) -> None:
        """
        With C{--agent-ca}, refuse (403, counted) an agent's call whose TLS
        client certificate is missing, not ours, revoked or for another
        account than C{account}.
        """
        if self.agent_ca is None:
            return
        refusal = self.agent_ca.check(peer_certificate(request.channel.transport), account)
        if refusal is not None:
            self.limiter.failed(addr)
            self.log.info("refused client certificate: {reason}", reason=refusal.message, event="auth_failure")
            raise ApiError(403, refusal.code, refusal.message)

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
        raw = request.getHeader(b"authorization")
        if raw is None:
            return None
        try:
            header = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.refuse(addr, "Authorization is not UTF-8 text") from None
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
            # A refresh: the account must still be in the keys file as it is
            # now, and its role is the file's, not the old token's.
            claims = self.verify(addr, credential, MANAGEMENT)
            current = self.api_keys.account(claims.sub)
            if current is None:
                raise self.refuse(addr, f"account {claims.sub!r} has no API key on this edge any more")
            return current.name, ("admin" if current.admin else "user")
        raise self.refuse(addr, "unknown API key")
