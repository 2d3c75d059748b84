"""
The control API (Klein): create, delete and list tunnels, issue management
tokens, publish the JWKS.

Mount C{ControlAPI(...).app.resource()} for every C{Host} that is not a
tunnel name (DESIGN.md "Host dispatch"), beside C{/connect}.

Order of checks in every authenticated route: rate limit (429), body (413,
400), credentials (401), existence (404), authorisation (403), names (409).

A create asks for an HTTP tunnel (served at its name) or, with
C{"protocol": "tcp"}, a TCP tunnel, which also holds a public port of the
edge's C{--tcp-ports} (L{netbore.edge.tcp_ports}); what that changes is in
L{netbore.edge.tcp_create}.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from .._types import Clock
from ..auth.tokens import EPHEMERAL, MANAGEMENT, RECREATE, Claims, TokenAuthority
from ..names import InvalidName, check_name, random_name
from .apiauth import ApiAuth, ApiKeyStore
from .apierrors import (
    ApiError,
    forbidden,
    invalid_request,
    json_response,
    method_not_allowed,
    name_taken,
    names_exhausted,
    not_found,
    render_error,
    tunnel_deleted,
    unauthorized,
)
from .apirequest import (
    edge_url,
    iso8601,
    json_body,
    public_url,
    seconds_text,
    validator,
)
from .config import EdgeConfig
from .health import Readiness, add_routes
from .quotas import CreateLimits
from .ratelimit import AuthFailureLimiter
from .registry import IRegistry, NameHeld, Tunnel, TunnelState
from .sessiontimes import session_fields
from .tcp_create import allocate_port, preferred_port, protocol_fields, recreate_claims, tunnel_protocol
from .tcp_ports import TcpPorts

__all__ = ["ControlAPI"]

_RANDOM_NAME_ATTEMPTS = 20

_CREATE = validator("tunnels-create-request.json")
_DELETE = validator("tunnels-delete-request.json")
_AUTH_TOKEN = validator("auth-token-request.json")


class ControlAPI:
    """
    The control API of one edge.

    @param on_delete: called with each tunnel deleted through the API, after
        it left the registry; the data plane closes its agent sessions.
    @param tcp_ports: the ports of TCP tunnels (C{--tcp-ports}); L{None}:
        this edge creates none (400 C{tcp_not_enabled}).
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
        clock: Clock,
        on_delete: Callable[[Tunnel], None] | None = None,
        tcp_ports: TcpPorts | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.authority = authority
        self.api_keys = api_keys
        self.limiter = limiter
        self.clock = clock
        self.on_delete = on_delete
        self.tcp_ports = tcp_ports
        self.auth = ApiAuth(authority, api_keys, limiter)
        self.limits = CreateLimits(config, registry, clock)
        #: Where random names come from (tests replace it).
        self.random_name: Callable[[], str] = random_name
        #: What C{GET /readyz} answers from (L{netbore.edge.health}).
        self.readiness: Readiness | None = None

    def _body(self, request: Request, schema: Draft202012Validator) -> dict[str, Any]:
        return json_body(request, schema, self.config.max_control_body)

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
            path = request.path.decode("utf-8", "replace")
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
        return render_error(request, ApiError(500, "internal_error", "internal error; see the edge's log"))

    # -- routes ---------------------------------------------------------------

    @app.route("/tunnels/create", methods=["POST"])
    def create(self, request: Request) -> bytes:
        addr = self.auth.check_rate(request)
        self.limits.count_create(addr)
        body = self._body(request, _CREATE)
        management = self.auth.management(request, addr, body.get("management_token"))
        recreate: Claims | None = None
        if "recreate_token" in body:
            recreate = self.auth.verify(addr, body["recreate_token"], RECREATE)
            if recreate.name is None:
                raise self.auth.refuse(addr, "invalid recreate token: it names no tunnel")
            if self.registry.is_deleted(recreate.sub):
                # A genuine token of a tunnel its owner or an admin deleted:
                # not a guess (not counted), and final (410).
                raise tunnel_deleted(
                    f"tunnel {recreate.sub} ({recreate.name}) was deleted; its recreate tokens are revoked"
                )
        self.auth.agent_certificate(request, addr, management.sub if management is not None else None)
        if management is None and recreate is None and not self.config.allow_anonymous:
            raise unauthorized(
                "this edge needs a management token (POST /auth/token) or a recreate token to create tunnels"
            )

        requested: str | None = body.get("requested_name")
        if requested is not None:
            try:
                check_name(requested)
            except InvalidName as e:
                raise invalid_request(str(e)) from None
        if recreate is not None and requested is not None and requested != recreate.name:
            raise invalid_request(f"the recreate token is for the name {recreate.name!r}, not {requested!r}")
        protocol = tunnel_protocol(body.get("protocol"), recreate, self.tcp_ports)

        owner = management.sub if management is not None else None
        if recreate is not None:
            tunnel = self._recreate(request, recreate, owner, addr, protocol)
        elif requested is not None:
            tunnel = self._claim(request, requested, management, addr, protocol)
        else:
            tunnel = self._new_random(request, owner, addr, protocol)
        return self._grant(request, tunnel, body)

    def _new_tunnel(
        self,
        request: Request,
        tunnel_id: str,
        name: str,
        owner: str | None,
        addr: str,
        protocol: str = "http",
        preferred: int | None = None,
    ) -> Tunnel:
        quota_key = self.limits.quota_key(owner, addr)
        hostname = f"{name}.{self.config.domain}"
        if protocol == "tcp":
            port: int | None = allocate_port(self.tcp_ports, preferred)
            url = f"tcp://{self.config.domain}:{port}"
        else:
            port, url = None, public_url(request, hostname, self.config.public_scheme)
        tunnel = Tunnel(
            tunnel_id=tunnel_id,
            name=name,
            public_hostname=hostname,
            public_url=url,
            owner=owner,
            edge_id=self.config.edge_id,
            state=TunnelState.PENDING,
            created_at=self.clock.seconds(),
            quota_key=quota_key,
            protocol=protocol,
            tcp_port=port,
        )
        try:
            self.registry.add(tunnel)
        except NameHeld:
            if port is not None and self.tcp_ports is not None:
                self.tcp_ports.release(port)
            raise name_taken(f"the name {name!r} is held by another tunnel") from None
        self.log.info(
            "tunnel {tunnel_id} created as {name} for {owner}",
            tunnel_id=tunnel_id,
            name=name,
            owner=owner or "(anonymous)",
            protocol=protocol,
            tcp_port=port,
            event="tunnel_created",
        )
        return tunnel

    def _recreate(self, request: Request, claims: Claims, owner: str | None, addr: str, protocol: str) -> Tunnel:
        tunnel = self.registry.get(claims.sub)
        if tunnel is not None:
            return tunnel  # with its name, and its port if it has one
        # The edge forgot the tunnel (restart, or the hold lapsed while the
        # token was within its clock-skew leeway): re-create it as it was,
        # on the port its token names if that is free.
        assert claims.name is not None
        holder = self.registry.by_name(claims.name)
        if holder is not None:
            raise name_taken(f"the name {claims.name!r} is held by another tunnel")
        return self._new_tunnel(request, claims.sub, claims.name, owner, addr, protocol, preferred_port(claims))

    def _claim(self, request: Request, name: str, management: Claims | None, addr: str, protocol: str) -> Tunnel:
        holder = self.registry.by_name(name)
        if holder is None:
            owner = management.sub if management is not None else None
            return self._new_tunnel(request, secrets.token_urlsafe(18), name, owner, addr, protocol)
        # Only the owning account may take over a held name: not an admin of
        # another account, not anonymous callers; and as the same protocol.
        if management is not None and holder.owner == management.sub:
            if holder.protocol == protocol:
                return holder
            raise name_taken(f"the name {name!r} is held by your {holder.protocol} tunnel {holder.tunnel_id}")
        raise name_taken(f"the name {name!r} is held by another tunnel")

    def _new_random(self, request: Request, owner: str | None, addr: str, protocol: str) -> Tunnel:
        for _ in range(_RANDOM_NAME_ATTEMPTS):
            name = self.random_name()
            if self.registry.by_name(name) is None:
                return self._new_tunnel(request, secrets.token_urlsafe(18), name, owner, addr, protocol)
        raise names_exhausted(f"no free random name found in {_RANDOM_NAME_ATTEMPTS} tries; try again")

    def _grant(self, request: Request, tunnel: Tunnel, body: dict[str, Any]) -> bytes:
        config = self.config
        asked = body.get("recreate_token_ttl_seconds")
        wanted = float(asked) if asked is not None else config.recreate_default_ttl
        recreate_ttl = min(wanted, config.recreate_max_ttl)
        ephemeral, ephemeral_exp = self.authority.issue(
            EPHEMERAL, tunnel.tunnel_id, config.ephemeral_ttl, name=tunnel.name
        )
        recreate, recreate_exp = self.authority.issue(
            RECREATE, tunnel.tunnel_id, recreate_ttl, name=tunnel.name, extra=recreate_claims(tunnel)
        )
        # Pending: held while the candidates just given are usable; down:
        # while the recreate token is (IRegistry.tokens_issued).
        self.registry.tokens_issued(tunnel, ephemeral_exp, recreate_exp)

        maximum = seconds_text(config.recreate_max_ttl)
        note = (
            f"recreate token valid for {seconds_text(recreate_ttl)} s"
            + (
                f" (asked {seconds_text(wanted)} s, clamped to the maximum {maximum} s)"
                if wanted > recreate_ttl
                else f" (maximum {maximum} s)"
            )
            + f"; ephemeral token and candidates valid for "
            f"{seconds_text(config.ephemeral_ttl)} s"
        )
        # The transport is the edge_url's: ws on a plain listener (or
        # behind a proxy not trusted to say https), wss over TLS.
        url = edge_url(request, self.config.advertise_url)
        transport = "wss" if url.startswith(("wss:", "https:")) else "ws"
        preferred = body.get("preferred_transports")
        if preferred is not None and transport not in preferred:
            note += f"; this edge offers only the {transport} transport"
        candidate = {
            "edge_id": config.edge_id,
            "edge_url": url,
            "supported_transport": transport,
            "region": config.region,
            "note": ("open a WebSocket offering subprotocols netbore.v1 and bearer.<ephemeral_token>"),
        }
        answer = {
            "tunnel_id": tunnel.tunnel_id,
            "public_hostname": tunnel.public_hostname,
            "public_url": tunnel.public_url,
            "candidates": [candidate],
            "ephemeral_token": ephemeral,
            "recreate_token": recreate,
            "candidates_expires_at": iso8601(ephemeral_exp),
            "note": note,
        }
        return json_response(request, 201, answer | protocol_fields(tunnel), no_store=True)

    @app.route("/tunnels/delete", methods=["POST"])
    def delete(self, request: Request) -> bytes:
        addr = self.auth.check_rate(request)
        body = self._body(request, _DELETE)
        tunnel_id: str = body["tunnel_id"]
        management = self.auth.management(request, addr, body.get("management_token"))
        recreate: Claims | None = None
        if "recreate_token" in body:
            recreate = self.auth.verify(addr, body["recreate_token"], RECREATE)
        if management is None and recreate is None:
            raise unauthorized("deleting a tunnel needs its owner's management token or its recreate token")
        tunnel = self.registry.get(tunnel_id)
        if tunnel is None:
            if recreate is not None and recreate.sub == tunnel_id:
                # Forgotten (its hold lapsed, or the edge restarted), but its
                # recreate token would bring it back: revoke that.
                self.registry.revoke(tunnel_id)
                self.log.info("forgotten tunnel {tunnel_id} deleted", tunnel_id=tunnel_id, event="tunnel_deleted")
                return json_response(request, 200, {"tunnel_id": tunnel_id, "state": "DELETED"})
            raise not_found(f"no tunnel {tunnel_id!r}")
        allowed = (recreate is not None and recreate.sub == tunnel.tunnel_id) or (
            management is not None and (management.role == "admin" or management.sub == tunnel.owner)
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
                self.log.failure("on_delete hook failed for {tunnel_id}", tunnel_id=tunnel.tunnel_id)
        return json_response(request, 200, {"tunnel_id": tunnel.tunnel_id, "state": "DELETED"})

    @app.route("/tunnels/list", methods=["GET"])
    def list_tunnels(self, request: Request) -> bytes:
        addr = self.auth.check_rate(request)
        management = self.auth.management(request, addr)
        if management is None:
            raise unauthorized("listing tunnels needs a management token")
        admin = management.role == "admin"
        now = self.clock.seconds()
        tunnels = [
            {
                "tunnel_id": t.tunnel_id,
                "name": t.name,
                "public_hostname": t.public_hostname,
                "public_url": t.public_url,
                "state": t.state.value,
                "created_at": iso8601(t.created_at),
                "expires_at": iso8601(t.expires_at),
                # For a tunnel that is up: how long its name would be held
                # if its agent left now.
                "held_until": iso8601(
                    t.held_until
                    if t.state is not TunnelState.ACTIVE
                    else max(t.recreate_until, now + self.config.grace)
                ),
                "owner": t.owner,
                "edge_id": t.edge_id,
            }
            | session_fields(t, now)
            | protocol_fields(t)
            for t in self.registry.all()
            if admin or t.owner == management.sub
        ]
        return json_response(request, 200, {"tunnels": tunnels}, no_store=True)

    @app.route("/auth/token", methods=["POST"])
    def auth_token(self, request: Request) -> bytes:
        addr = self.auth.check_rate(request)
        body = self._body(request, _AUTH_TOKEN)
        sub, role = self.auth.api_key_account(request, addr, body.get("api_key"))
        self.auth.agent_certificate(request, addr, sub)
        token, exp = self.authority.issue(MANAGEMENT, sub, self.config.management_ttl, role=role)
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


add_routes(ControlAPI.app)
