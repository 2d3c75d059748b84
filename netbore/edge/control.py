"""
The control API (Klein): create, delete and list tunnels, issue management
tokens, publish the JWKS.

Mount C{ControlAPI(...).app.resource()} for every C{Host} that is not a
tunnel name (DESIGN.md "Host dispatch"), beside C{/connect}.

Order of checks in every authenticated route: rate limit (429), body (413,
400), credentials (401), existence (404), authorisation (403), names (409).
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from netbore.edge.apierrors import (
    ApiError,
    forbidden,
    invalid_request,
    json_response,
    method_not_allowed,
    name_taken,
    not_found,
    payload_too_large,
    rate_limited,
    render_error,
    unauthorized,
)
from netbore.edge.config import EdgeConfig
from netbore.edge.ratelimit import AuthFailureLimiter
from netbore.edge.registry import IRegistry, NameHeld, Tunnel, TunnelState
from netbore.names import InvalidName, check_name, random_name
from netbore.auth.tokens import (
    EPHEMERAL,
    MANAGEMENT,
    RECREATE,
    Claims,
    TokenAuthority,
    TokenError,
)

__all__ = ["ControlAPI", "load_schema", "iso8601"]

#: Smallest recreate TTL a client may ask for (seed 001), in seconds.
MIN_RECREATE_TTL = 60

_RANDOM_NAME_ATTEMPTS = 20

# A Host header we are willing to echo into URLs: a DNS name or IPv4
# literal, or a bracketed IPv6 literal, with an optional port.
_HOST = re.compile(
    r"\A(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))"
    r"|(?P<v6>\[[0-9A-Fa-f:.]+\]))(?::(?P<port>[0-9]{1,5}))?\Z"
)


class _Clock(Protocol):
    def seconds(self) -> float: ...


class _Account(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def admin(self) -> bool: ...


class ApiKeyStore(Protocol):
    """
    What the control API needs of L{netbore.apikeys.ApiKeys}.
    """

    def authenticate(self, key: str) -> _Account | None: ...


def load_schema(filename: str) -> dict[str, Any]:
    """
    One of the JSON Schemas shipped in C{netbore/schemas/}.
    """
    text = (resources.files("netbore") / "schemas" / filename).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _validator(filename: str) -> Draft202012Validator:
    schema = load_schema(filename)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


_CREATE = _validator("tunnels-create-request.json")
_DELETE = _validator("tunnels-delete-request.json")
_AUTH_TOKEN = _validator("auth-token-request.json")


def iso8601(when: float) -> str:
    """
    C{when} (seconds since the epoch) as ISO-8601 UTC with a C{Z}, to the
    second (rounded down).
    """
    return datetime.fromtimestamp(int(when), tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _seconds(value: float) -> str:
    """
    A duration for a person: C{3600} not C{3600.0} or C{3.6e+03}.
    """
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def _describe(error: ValidationError) -> str:
    where = "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
        for i, p in enumerate(error.absolute_path)
    )
    if where:
        return f"field {where!r}: {error.message}"
    return error.message


def _client_address(request: Request) -> str:
    """
    The peer's address, or C{"unknown"} for transports without a host (a
    UNIX socket, some test transports).
    """
    get = getattr(request, "getClientAddress", None)
    address = get() if get is not None else None
    host = getattr(address, "host", None)
    return host if isinstance(host, str) and host else "unknown"


class ControlAPI:
    """
    The control API of one edge.

    @param on_delete: called with each tunnel deleted through the API, after
        it left the registry; the data plane closes its agent sessions.
    """

    app = Klein()
    # "/tunnels/list/" is served as "/tunnels/list" rather than answered
    # with a 308 redirect, which JSON clients rarely follow for a POST.
    app.url_map.strict_slashes = False
    log = Logger()

    def __init__(
        self,
        config: EdgeConfig,
        registry: IRegistry,
        authority: TokenAuthority,
        api_keys: ApiKeyStore,
        limiter: AuthFailureLimiter,
        clock: _Clock,
        on_delete: Callable[[Tunnel], None] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.authority = authority
        self.api_keys = api_keys
        self.limiter = limiter
        self.clock = clock
        self.on_delete = on_delete

    # -- helpers ----------------------------------------------------------

    def _check_rate(self, request: Request) -> str:
        addr = _client_address(request)
        retry_after = self.limiter.check(addr)
        if retry_after is not None:
            raise rate_limited(retry_after)
        return addr

    def _refuse(self, addr: str, message: str) -> ApiError:
        """
        Count a refused credential against C{addr}; the 401 to raise.
        """
        self.limiter.failed(addr)
        self.log.info(
            "refused credential: {reason}", reason=message, event="auth_failure"
        )
        return unauthorized(message)

    def _body(self, request: Request, validator: Draft202012Validator) -> dict[str, Any]:
        limit = self.config.max_control_body
        length = request.getHeader(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise invalid_request("Content-Length is not a number") from None
            if declared > limit:
                raise payload_too_large(limit)
        content = request.content  # type: ignore[attr-defined]
        raw = b""
        if content is not None:
            content.seek(0)
            raw = content.read(limit + 1)
        if len(raw) > limit:
            raise payload_too_large(limit)
        if not raw.strip():
            body: Any = {}
        else:
            ctype = request.getHeader(b"content-type")
            media = (ctype or b"").split(b";", 1)[0].strip().lower()
            if media != b"application/json":
                raise invalid_request(
                    "request body must be JSON with Content-Type: application/json"
                )
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                raise invalid_request(f"request body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise invalid_request("request body must be a JSON object")
        error = best_match(validator.iter_errors(body))
        if error is not None:
            raise invalid_request(_describe(error))
        return body

    def _bearer(self, request: Request, addr: str) -> str | None:
        header = request.getHeader("authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse(addr, "Authorization must be 'Bearer <token>'")
        return token

    def _verify(self, addr: str, token: str, token_use: str) -> Claims:
        try:
            return self.authority.verify(token, token_use)
        except TokenError as e:
            raise self._refuse(addr, f"invalid {token_use} token: {e}") from None

    def _management(
        self, request: Request, addr: str, body_token: str | None = None
    ) -> Claims | None:
        bearer = self._bearer(request, addr)
        if bearer is not None and body_token is not None and bearer != body_token:
            raise invalid_request(
                "give one management token, as Authorization or in the body"
            )
        token = bearer if bearer is not None else body_token
        if token is None:
            return None
        return self._verify(addr, token, MANAGEMENT)

    def _host(self, request: Request) -> tuple[str, int | None]:
        raw = request.getHeader("host")
        if raw is None:
            address = request.getHost()
            host = getattr(address, "host", "localhost")
            return (host, getattr(address, "port", None))
        match = _HOST.match(raw.strip())
        if match is None:
            raise invalid_request("the Host header is not a host name")
        host = (match.group("name") or match.group("v6")).lower()
        port = match.group("port")
        return (host, int(port) if port is not None else None)

    def _public_url(self, request: Request, hostname: str) -> str:
        scheme = self.config.public_scheme or (
            "https" if request.isSecure() else "http"
        )
        _, port = self._host(request)
        default = {"http": 80, "https": 443}.get(scheme)
        if port is None or port == default:
            return f"{scheme}://{hostname}"
        return f"{scheme}://{hostname}:{port}"

    def _edge_url(self, request: Request) -> str:
        if self.config.advertise_url:
            return self.config.advertise_url
        scheme = "wss" if request.isSecure() else "ws"
        host, port = self._host(request)
        default = 443 if request.isSecure() else 80
        if port is None or port == default:
            return f"{scheme}://{host}/connect"
        return f"{scheme}://{host}:{port}/connect"

    # -- error handlers (tried in this order) --------------------------------

    @app.handle_errors(ApiError)  # type: ignore[arg-type]
    def _api_error(self, request: Request, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, ApiError)
        return render_error(request, error)

    @app.handle_errors(HTTPException)  # type: ignore[arg-type]
    def _routing_error(self, request: Request, failure: Failure) -> bytes:
        error = failure.value
        if isinstance(error, MethodNotAllowed):
            allowed = sorted(error.valid_methods or [])
            return render_error(request, method_not_allowed(allowed))
        if isinstance(error, NotFound):
            path = request.path.decode("utf-8", "replace")  # type: ignore[attr-defined]
            return render_error(request, not_found(f"no such path: {path}"))
        assert isinstance(error, HTTPException)
        status = error.code or 400
        return render_error(
            request,
            ApiError(status, "invalid_request", error.description or "bad request"),
        )

    @app.handle_errors(Exception)  # type: ignore[arg-type]
    def _internal_error(self, request: Request, failure: Failure) -> bytes:
        self.log.failure("control API request failed", failure)
        return render_error(
            request, ApiError(500, "internal_error", "internal error; see the edge's log")
        )

    # -- routes ---------------------------------------------------------------

    @app.route("/tunnels/create", methods=["POST"])
    def create(self, request: Request) -> bytes:
        addr = self._check_rate(request)
        body = self._body(request, _CREATE)
        management = self._management(request, addr, body.get("management_token"))
        recreate: Claims | None = None
        if "recreate_token" in body:
            recreate = self._verify(addr, body["recreate_token"], RECREATE)
            if recreate.name is None:
                raise self._refuse(addr, "invalid recreate token: it names no tunnel")
            if self.registry.is_deleted(recreate.sub):
                raise self._refuse(addr, "the recreate token's tunnel was deleted")
        if management is None and recreate is None and not self.config.allow_anonymous:
            raise unauthorized(
                "this edge needs a management token (POST /auth/token) "
                "or a recreate token to create tunnels"
            )

        requested: str | None = body.get("requested_name")
        if requested is not None:
            try:
                check_name(requested)
            except InvalidName as e:
                raise invalid_request(str(e)) from None
        if recreate is not None and requested is not None and requested != recreate.name:
            raise invalid_request(
                f"the recreate token is for the name {recreate.name!r}, "
                f"not {requested!r}"
            )

        owner = management.sub if management is not None else None
        if recreate is not None:
            tunnel = self._recreate(request, recreate, owner)
        elif requested is not None:
            tunnel = self._claim(request, requested, management)
        else:
            tunnel = self._new_random(request, owner)
        return self._grant(request, tunnel, body)

    def _new_tunnel(
        self, request: Request, tunnel_id: str, name: str, owner: str | None
    ) -> Tunnel:
        hostname = f"{name}.{self.config.domain}"
        tunnel = Tunnel(
            tunnel_id=tunnel_id,
            name=name,
            public_hostname=hostname,
            public_url=self._public_url(request, hostname),
            owner=owner,
            edge_id=self.config.edge_id,
            state=TunnelState.PENDING,
            created_at=self.clock.seconds(),
        )
        try:
            self.registry.add(tunnel)
        except NameHeld:
            raise name_taken(f"the name {name!r} is held by another tunnel") from None
        self.log.info(
            "tunnel {tunnel_id} created as {name} for {owner}",
            tunnel_id=tunnel_id,
            name=name,
            owner=owner or "(anonymous)",
            event="tunnel_created",
        )
        return tunnel

    def _recreate(self, request: Request, claims: Claims, owner: str | None) -> Tunnel:
        tunnel = self.registry.get(claims.sub)
        if tunnel is not None:
            return tunnel
        # The edge forgot the tunnel (restart, or the hold lapsed while the
        # token was within its clock-skew leeway): re-create it as it was.
        assert claims.name is not None
        holder = self.registry.by_name(claims.name)
        if holder is not None:
            raise name_taken(f"the name {claims.name!r} is held by another tunnel")
        return self._new_tunnel(request, claims.sub, claims.name, owner)

    def _claim(self, request: Request, name: str, management: Claims | None) -> Tunnel:
        holder = self.registry.by_name(name)
        if holder is None:
            owner = management.sub if management is not None else None
            return self._new_tunnel(request, secrets.token_urlsafe(18), name, owner)
        # Only the owning account may take over a held name: not an admin of
        # another account, not anonymous callers.
        if management is not None and holder.owner == management.sub:
            return holder
        raise name_taken(f"the name {name!r} is held by another tunnel")

    def _new_random(self, request: Request, owner: str | None) -> Tunnel:
        for _ in range(_RANDOM_NAME_ATTEMPTS):
            name = random_name()
            if self.registry.by_name(name) is None:
                return self._new_tunnel(request, secrets.token_urlsafe(18), name, owner)
        raise ApiError(503, "internal_error", "could not find a free name; try again")

    def _grant(self, request: Request, tunnel: Tunnel, body: dict[str, Any]) -> bytes:
        config = self.config
        asked = body.get("recreate_token_ttl_seconds")
        wanted = float(asked) if asked is not None else config.recreate_default_ttl
        recreate_ttl = min(wanted, config.recreate_max_ttl)
        ephemeral, ephemeral_exp = self.authority.issue(
            EPHEMERAL, tunnel.tunnel_id, config.ephemeral_ttl, name=tunnel.name
        )
        recreate, recreate_exp = self.authority.issue(
            RECREATE, tunnel.tunnel_id, recreate_ttl, name=tunnel.name
        )
        tunnel.expires_at = ephemeral_exp
        # Held while any token handed out for it is valid, so that neither a
        # recreate token nor the candidates just given are empty promises.
        self.registry.extend_hold(tunnel, max(recreate_exp, ephemeral_exp))

        maximum = _seconds(config.recreate_max_ttl)
        note = (
            f"recreate token valid for {_seconds(recreate_ttl)} s"
            + (
                f" (asked {_seconds(wanted)} s, clamped to the maximum {maximum} s)"
                if wanted > recreate_ttl
                else f" (maximum {maximum} s)"
            )
            + f"; ephemeral token and candidates valid for "
            f"{_seconds(config.ephemeral_ttl)} s"
        )
        preferred = body.get("preferred_transports")
        if preferred is not None and "wss" not in preferred:
            note += "; this edge offers only the wss transport"
        candidate = {
            "edge_id": config.edge_id,
            "edge_url": self._edge_url(request),
            "supported_transport": "wss",
            "region": config.region,
            "note": (
                "open a WebSocket offering subprotocols netbore.v1 and "
                "bearer.<ephemeral_token>"
            ),
        }
        return json_response(
            request,
            201,
            {
                "tunnel_id": tunnel.tunnel_id,
                "public_hostname": tunnel.public_hostname,
                "public_url": tunnel.public_url,
                "candidates": [candidate],
                "ephemeral_token": ephemeral,
                "recreate_token": recreate,
                "candidates_expires_at": iso8601(ephemeral_exp),
                "note": note,
            },
            no_store=True,
        )

    @app.route("/tunnels/delete", methods=["POST"])
    def delete(self, request: Request) -> bytes:
        addr = self._check_rate(request)
        body = self._body(request, _DELETE)
        tunnel_id: str = body["tunnel_id"]
        management = self._management(request, addr, body.get("management_token"))
        recreate: Claims | None = None
        if "recreate_token" in body:
            recreate = self._verify(addr, body["recreate_token"], RECREATE)
        if management is None and recreate is None:
            raise unauthorized(
                "deleting a tunnel needs its owner's management token or its "
                "recreate token"
            )
        tunnel = self.registry.get(tunnel_id)
        if tunnel is None:
            raise not_found(f"no tunnel {tunnel_id!r}")
        allowed = (recreate is not None and recreate.sub == tunnel.tunnel_id) or (
            management is not None
            and (management.role == "admin" or management.sub == tunnel.owner)
        )
        if not allowed:
            raise forbidden("these credentials do not own this tunnel")
        self.registry.remove(tunnel.tunnel_id)
        self.log.info(
            "tunnel {tunnel_id} ({name}) deleted",
            tunnel_id=tunnel.tunnel_id,
            name=tunnel.name,
            event="tunnel_deleted",
        )
        if self.on_delete is not None:
            try:
                self.on_delete(tunnel)
            except Exception:
                self.log.failure(
                    "on_delete hook failed for {tunnel_id}", tunnel_id=tunnel.tunnel_id
                )
        return json_response(
            request, 200, {"tunnel_id": tunnel.tunnel_id, "state": "DELETED"}
        )

    @app.route("/tunnels/list", methods=["GET"])
    def list_tunnels(self, request: Request) -> bytes:
        addr = self._check_rate(request)
        management = self._management(request, addr)
        if management is None:
            raise unauthorized("listing tunnels needs a management token")
        admin = management.role == "admin"
        tunnels = [
            {
                "tunnel_id": t.tunnel_id,
                "name": t.name,
                "public_hostname": t.public_hostname,
                "public_url": t.public_url,
                "state": t.state.value,
                "created_at": iso8601(t.created_at),
                "expires_at": iso8601(t.expires_at),
                "held_until": iso8601(t.held_until),
                "owner": t.owner,
                "edge_id": t.edge_id,
                "sessions": len(t.sessions),
            }
            for t in self.registry.all()
            if admin or t.owner == management.sub
        ]
        return json_response(request, 200, {"tunnels": tunnels}, no_store=True)

    @app.route("/auth/token", methods=["POST"])
    def auth_token(self, request: Request) -> bytes:
        addr = self._check_rate(request)
        body = self._body(request, _AUTH_TOKEN)
        bearer = self._bearer(request, addr)
        if bearer is not None and "api_key" in body:
            raise invalid_request("give the API key once, as Authorization or in the body")
        credential = bearer if bearer is not None else body.get("api_key")
        if credential is None:
            raise unauthorized(
                "give an API key (or a management token to refresh) as "
                "Authorization: Bearer"
            )
        account = self.api_keys.authenticate(credential)
        if account is not None:
            sub, role = account.name, ("admin" if account.admin else "user")
        elif bearer is not None and credential.count(".") == 2:
            claims = self._verify(addr, credential, MANAGEMENT)
            sub, role = claims.sub, (claims.role or "user")
        else:
            raise self._refuse(addr, "unknown API key")
        token, exp = self.authority.issue(
            MANAGEMENT, sub, self.config.management_ttl, role=role
        )
        self.log.info(
            "management token issued to {account} ({role})",
            account=sub,
            role=role,
            event="management_token",
        )
        return json_response(
            request,
            200,
            {
                "management_token": token,
                "token_type": "Bearer",
                "expires_at": iso8601(exp),
            },
            no_store=True,
        )

    @app.route("/.well-known/jwks.json", methods=["GET"])
    def jwks(self, request: Request) -> bytes:
        request.setHeader(b"Cache-Control", b"public, max-age=300")
        return json_response(request, 200, self.authority.jwks())
