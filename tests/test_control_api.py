"""
The control API through treq's StubTreq: no sockets, a Clock for time, the
real TokenAuthority with keys in a temporary directory.
"""

from __future__ import annotations

import io
import json
from typing import Any

import attrs
import pytest
import pytest_twisted
from jsonschema import Draft202012Validator
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from netbore.auth import (
    EPHEMERAL,
    MANAGEMENT,
    RECREATE,
    TokenAuthority,
    load_keyring,
)
from netbore.edge.apierrors import ApiError
from netbore.edge.apirequest import iso8601, load_schema
from netbore.edge.config import EdgeConfig
from netbore.edge.control import ControlAPI
from netbore.edge.ratelimit import AuthFailureLimiter
from netbore.edge.registry import InMemoryRegistry, Tunnel, TunnelState
from netbore.names import is_valid_label

NOW = 1_700_000_000.0
BASE = "http://localhost:8080"

# Seed 001 §2, verbatim: every create response must validate against it.
SEED_CREATE_RESPONSE = {
    "$id": "https://netbore.example/schemas/tunnels-create-response.json",
    "type": "object",
    "properties": {
        "tunnel_id": {"type": "string"},
        "public_hostname": {"type": "string"},
        "candidates": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "edge_id": {"type": "string"},
                    "edge_url": {"type": "string", "format": "uri"},
                    "supported_transport": {"type": "string"},
                    "region": {"type": "string"},
                },
                "required": ["edge_id", "edge_url", "supported_transport"],
            },
        },
        "ephemeral_token": {"type": "string"},
        "recreate_token": {"type": "string"},
        "candidates_expires_at": {"type": "string", "format": "date-time"},
    },
    "required": [
        "tunnel_id",
        "public_hostname",
        "candidates",
        "ephemeral_token",
        "candidates_expires_at",
    ],
}

_FORMATS = Draft202012Validator.FORMAT_CHECKER


def assert_valid(schema: dict[str, Any], instance: Any) -> None:
    Draft202012Validator(schema, format_checker=_FORMATS).validate(instance)


@attrs.frozen
class Account:
    name: str
    admin: bool = False


class Keys:
    """
    The API key store the control API needs (ApiKeys.authenticate).
    """

    def __init__(self, keys: dict[str, Account]) -> None:
        self.keys = keys

    def authenticate(self, key: str) -> Account | None:
        return self.keys.get(key)

    def account(self, name: str) -> Account | None:
        return next((a for a in self.keys.values() if a.name == name), None)


KEYS = Keys(
    {
        "alice-key": Account("alice"),
        "bob-key": Account("bob"),
        "root-key": Account("root", admin=True),
    }
)


@attrs.define
class Edge:
    api: ControlAPI
    stub: StubTreq
    clock: Clock
    registry: InMemoryRegistry
    authority: TokenAuthority
    limiter: AuthFailureLimiter
    deleted: list[Tunnel]

    def management(self, account: str, role: str = "user") -> str:
        return self.authority.issue(MANAGEMENT, account, 3600, role=role)[0]

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        base: str = BASE,
    ) -> tuple[int, Any, Any]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        response = await self.stub.request(method, base + path, data=data, headers=hdrs)
        content = await response.content()
        assert response.headers.getRawHeaders("content-type") == ["application/json"]
        payload = json.loads(content) if content else None
        if response.code >= 400:
            assert set(payload) == {"error", "message"}, payload
            assert "Traceback" not in payload["message"]
        return response.code, response.headers, payload

    async def create(self, body: Any = None, **kw: Any) -> tuple[int, Any, Any]:
        return await self.call("POST", "/tunnels/create", {} if body is None else body, **kw)


def make_edge(tmp_path: Any, authority: TokenAuthority | None = None, **config: Any) -> Edge:
    clock = Clock()
    clock.advance(NOW)
    settings: dict[str, Any] = {"data_dir": str(tmp_path), "allow_anonymous": True}
    settings.update(config)
    cfg = EdgeConfig(**settings)
    if authority is None:
        authority = TokenAuthority(load_keyring(str(tmp_path)), "netbore-test", clock)
    registry = InMemoryRegistry(clock, grace=cfg.grace)
    limiter = AuthFailureLimiter(clock, cfg.auth_failures_per_minute)
    deleted: list[Tunnel] = []
    api = ControlAPI(cfg, registry, authority, KEYS, limiter, clock, on_delete=deleted.append)
    return Edge(api, StubTreq(api.app.resource()), clock, registry, authority, limiter, deleted)


@pytest.fixture
def edge(tmp_path: Any) -> Edge:
    return make_edge(tmp_path)


@pytest.fixture
def closed_edge(tmp_path: Any) -> Edge:
    return make_edge(tmp_path, allow_anonymous=False)


def error_of(result: tuple[int, Any, Any]) -> tuple[int, str]:
    status, _, payload = result
    return status, payload["error"]


# -- create ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_anonymous(edge: Edge) -> None:
    status, headers, body = await edge.create()
    assert status == 201
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert_valid(SEED_CREATE_RESPONSE, body)
    assert_valid(load_schema("tunnels-create-response.json"), body)

    name = body["public_hostname"].removesuffix(".localhost")
    assert body["public_hostname"] == f"{name}.localhost"
    assert is_valid_label(name) and len(name) >= 8
    assert body["public_url"] == f"http://{name}.localhost:8080"
    [candidate] = body["candidates"]
    assert candidate["edge_url"] == "ws://localhost:8080/connect"
    assert candidate["edge_id"] == "edge-1"
    # Plain HTTP: the edge serves plain WebSocket, and says so.
    assert candidate["supported_transport"] == "ws"
    assert candidate["region"] == "local"

    ephemeral = edge.authority.verify(body["ephemeral_token"], EPHEMERAL)
    recreate = edge.authority.verify(body["recreate_token"], RECREATE)
    assert ephemeral.sub == recreate.sub == body["tunnel_id"]
    assert ephemeral.name == recreate.name == name
    assert ephemeral.exp == NOW + 600
    assert recreate.exp == NOW + 86400
    assert body["candidates_expires_at"] == iso8601(ephemeral.exp) == "2023-11-14T22:23:20Z"
    assert "86400" in body["note"]

    tunnel = edge.registry.get(body["tunnel_id"])
    assert tunnel is not None
    assert tunnel.state is TunnelState.PENDING
    assert tunnel.owner is None
    assert tunnel.name == name
    # pending: held while its candidates are usable (issue 10 item 9)
    assert tunnel.held_until == ephemeral.exp
    assert tunnel.recreate_until == recreate.exp
    assert tunnel.expires_at == ephemeral.exp
    assert edge.registry.by_name(name) is tunnel


@pytest_twisted.ensureDeferred
async def test_tunnel_ids_and_names_are_fresh(edge: Edge) -> None:
    bodies = [(await edge.create())[2] for _ in range(5)]
    assert len({b["tunnel_id"] for b in bodies}) == 5
    assert len({b["public_hostname"] for b in bodies}) == 5
    assert all(len(b["tunnel_id"]) >= 22 for b in bodies)


@pytest_twisted.ensureDeferred
async def test_create_https_urls(edge: Edge) -> None:
    _, _, body = await edge.create(base="https://control.localhost")
    name = body["public_hostname"].split(".")[0]
    assert body["public_url"] == f"https://{name}.localhost"
    assert body["candidates"][0]["edge_url"] == "wss://control.localhost/connect"
    assert body["candidates"][0]["supported_transport"] == "wss"
    _, _, body = await edge.create(base="https://localhost:8443")
    assert body["candidates"][0]["edge_url"] == "wss://localhost:8443/connect"


@pytest_twisted.ensureDeferred
async def test_public_scheme_wins_over_the_requests(tmp_path: Any) -> None:
    # An operator's --public-scheme is kept even for a create over TLS;
    # the candidate still follows the request (wss).
    edge = make_edge(tmp_path, public_scheme="http")
    _, _, body = await edge.create(base="https://control.localhost")
    assert body["public_url"] == f"http://{body['public_hostname']}"
    assert body["candidates"][0]["supported_transport"] == "wss"


@pytest_twisted.ensureDeferred
async def test_create_configured_urls(tmp_path: Any) -> None:
    edge = make_edge(
        tmp_path,
        domain="tunnel.example.com",
        public_scheme="https",
        advertise_url="wss://edge.example.com/connect",
        edge_id="edge-7",
        region="eu",
    )
    _, _, body = await edge.create({"requested_name": "myapp"}, base="http://127.0.0.1:80")
    assert body["public_hostname"] == "myapp.tunnel.example.com"
    assert body["public_url"] == "https://myapp.tunnel.example.com"
    assert body["candidates"][0] == {
        "edge_id": "edge-7",
        "edge_url": "wss://edge.example.com/connect",
        "supported_transport": "wss",
        "region": "eu",
        "note": body["candidates"][0]["note"],
    }


@pytest_twisted.ensureDeferred
async def test_anonymous_needs_allow_anonymous(closed_edge: Edge) -> None:
    status, headers, body = await closed_edge.create({"requested_name": "myapp"})
    assert (status, body["error"]) == (401, "unauthorized")
    assert headers.getRawHeaders("www-authenticate")[0].startswith("Bearer")
    assert closed_edge.registry.all() == []
    # Not a guess: a request without credentials is not an auth failure.
    assert len(closed_edge.limiter) == 0
    status, _, body = await closed_edge.create(token=closed_edge.management("alice"))
    assert status == 201
    assert closed_edge.registry.get(body["tunnel_id"]).owner == "alice"


@pytest_twisted.ensureDeferred
async def test_management_token_in_body(closed_edge: Edge) -> None:
    token = closed_edge.management("alice")
    status, _, body = await closed_edge.create({"management_token": token})
    assert status == 201
    assert closed_edge.registry.get(body["tunnel_id"]).owner == "alice"
    other = closed_edge.management("bob")
    assert error_of(await closed_edge.create({"management_token": token}, token=other)) == (400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_requested_name_granted_when_free(edge: Edge) -> None:
    status, _, body = await edge.create({"requested_name": "myapp"})
    assert status == 201
    assert body["public_hostname"] == "myapp.localhost"
    assert body["public_url"] == "http://myapp.localhost:8080"


@pytest.mark.parametrize(
    "name",
    ["MyApp", "-app", "app-", "my_app", "my.app", "", "a" * 64, "control", "www", "connect", "é"],
)
@pytest_twisted.ensureDeferred
async def test_invalid_or_reserved_names_refused(edge: Edge, name: str) -> None:
    status, _, body = await edge.create({"requested_name": name})
    assert (status, body["error"]) == (400, "invalid_request")
    assert edge.registry.all() == []


@pytest_twisted.ensureDeferred
async def test_longest_name_accepted(edge: Edge) -> None:
    status, _, body = await edge.create({"requested_name": "a" * 63})
    assert status == 201


@pytest_twisted.ensureDeferred
async def test_held_name_refused_to_others(edge: Edge) -> None:
    alice = edge.management("alice")
    _, _, first = await edge.create({"requested_name": "myapp"}, token=alice)
    # anonymous, another account, an admin of another account: all 409
    for token in [None, edge.management("bob"), edge.management("root", "admin")]:
        status, _, body = await edge.create({"requested_name": "myapp"}, token=token)
        assert (status, body["error"]) == (409, "name_taken")
    # the owning account gets the same tunnel with fresh tokens
    status, _, again = await edge.create({"requested_name": "myapp"}, token=alice)
    assert status == 201
    assert again["tunnel_id"] == first["tunnel_id"]
    assert again["ephemeral_token"] != first["ephemeral_token"]
    assert len(edge.registry.all()) == 1


@pytest_twisted.ensureDeferred
async def test_anonymous_name_not_claimable_by_accounts(edge: Edge) -> None:
    await edge.create({"requested_name": "myapp"})
    assert error_of(await edge.create({"requested_name": "myapp"}, token=edge.management("alice"))) == (
        409,
        "name_taken",
    )


@pytest_twisted.ensureDeferred
async def test_recreate_token_holds_name_until_it_expires(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, ephemeral_ttl=60, grace=3)
    _, _, first = await edge.create({"requested_name": "myapp", "recreate_token_ttl_seconds": 300})
    # an agent came and went: from then on the recreate token holds the name
    tunnel = edge.registry.get(first["tunnel_id"])
    session = object()
    edge.registry.attach_session(tunnel, session)
    edge.registry.detach_session(tunnel, session)
    edge.clock.advance(299)
    assert error_of(await edge.create({"requested_name": "myapp"})) == (409, "name_taken")
    # the holder gets the same tunnel, asking by name or not
    for body in [{}, {"requested_name": "myapp"}]:
        body["recreate_token"] = first["recreate_token"]
        body["recreate_token_ttl_seconds"] = 300
        status, _, again = await edge.create(body)
        assert status == 201
        assert again["tunnel_id"] == first["tunnel_id"]
        assert again["public_hostname"] == "myapp.localhost"
    # the newest recreate token runs out 300 s after it was issued
    edge.clock.advance(300)
    status, _, other = await edge.create({"requested_name": "myapp"})
    assert status == 201
    assert other["tunnel_id"] != first["tunnel_id"]
    # and the old token (expired beyond the skew) no longer works
    edge.clock.advance(61)
    status, _, body = await edge.create({"recreate_token": again["recreate_token"]})
    assert (status, body["error"]) == (401, "unauthorized")


@pytest_twisted.ensureDeferred
async def test_active_tunnel_holds_name_past_its_tokens(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, ephemeral_ttl=60, grace=30)
    _, _, first = await edge.create({"requested_name": "myapp", "recreate_token_ttl_seconds": 60})
    tunnel = edge.registry.get(first["tunnel_id"])
    session = object()
    edge.registry.attach_session(tunnel, session)
    edge.clock.advance(1000)
    assert error_of(await edge.create({"requested_name": "myapp"})) == (409, "name_taken")
    edge.registry.detach_session(tunnel, session)
    edge.clock.advance(29)
    assert error_of(await edge.create({"requested_name": "myapp"})) == (409, "name_taken")
    edge.clock.advance(2)
    assert (await edge.create({"requested_name": "myapp"}))[0] == 201


@pytest_twisted.ensureDeferred
async def test_recreate_token_name_mismatch(edge: Edge) -> None:
    _, _, first = await edge.create({"requested_name": "myapp"})
    assert error_of(await edge.create({"requested_name": "other", "recreate_token": first["recreate_token"]})) == (
        400,
        "invalid_request",
    )


@pytest_twisted.ensureDeferred
async def test_recreate_after_restart(tmp_path: Any) -> None:
    edge = make_edge(tmp_path)
    _, _, first = await edge.create({"requested_name": "myapp"})
    # a new edge process: same keys, empty registry
    fresh = make_edge(tmp_path)
    status, _, again = await fresh.create({"recreate_token": first["recreate_token"]})
    assert status == 201
    assert again["tunnel_id"] == first["tunnel_id"]
    assert again["public_hostname"] == "myapp.localhost"
    assert fresh.registry.by_name("myapp").tunnel_id == first["tunnel_id"]

    # if somebody else took the name meanwhile: 409
    third = make_edge(tmp_path)
    await third.create({"requested_name": "myapp"})
    assert error_of(await third.create({"recreate_token": first["recreate_token"]})) == (409, "name_taken")


@pytest_twisted.ensureDeferred
async def test_recreate_for_deleted_tunnel_refused(edge: Edge) -> None:
    _, _, first = await edge.create({"requested_name": "myapp"})
    status, _, _ = await edge.call(
        "POST",
        "/tunnels/delete",
        {"tunnel_id": first["tunnel_id"], "recreate_token": first["recreate_token"]},
    )
    assert status == 200
    # the name is free at once
    status, _, other = await edge.create({"requested_name": "myapp"})
    assert status == 201 and other["tunnel_id"] != first["tunnel_id"]
    # final, and not counted as a failed authentication (a genuine token)
    assert error_of(await edge.create({"recreate_token": first["recreate_token"]})) == (
        410,
        "tunnel_deleted",
    )
    assert edge.limiter.check("127.0.0.1") is None and len(edge.limiter) == 0
    # even once the name is free again
    await edge.call(
        "POST",
        "/tunnels/delete",
        {"tunnel_id": other["tunnel_id"], "recreate_token": other["recreate_token"]},
    )
    assert error_of(await edge.create({"recreate_token": first["recreate_token"]})) == (
        410,
        "tunnel_deleted",
    )


@pytest_twisted.ensureDeferred
async def test_recreate_ttl_clamped_and_reported(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, recreate_max_ttl=7200)
    _, _, body = await edge.create({"recreate_token_ttl_seconds": 10**9})
    assert edge.authority.verify(body["recreate_token"], RECREATE).exp == NOW + 7200
    assert "7200" in body["note"] and "clamped" in body["note"]
    _, _, body = await edge.create({"recreate_token_ttl_seconds": 120})
    assert edge.authority.verify(body["recreate_token"], RECREATE).exp == NOW + 120
    tunnel = edge.registry.get(body["tunnel_id"])
    # held while the ephemeral token (600 s) is still good, too
    assert tunnel.held_until == NOW + 600


@pytest_twisted.ensureDeferred
async def test_token_swaps_refused(edge: Edge) -> None:
    _, _, first = await edge.create({"requested_name": "myapp"})
    ephemeral, recreate = first["ephemeral_token"], first["recreate_token"]
    management = edge.management("alice")
    swaps: list[dict[str, Any]] = [
        {"token": ephemeral},  # ephemeral as management Bearer
        {"token": recreate},  # recreate as management Bearer
        {"token": "alice-key"},  # an API key is not a management token
        {"body": {"management_token": recreate}},
        {"body": {"recreate_token": management}},  # management as recreate
        {"body": {"recreate_token": ephemeral}},  # ephemeral as recreate
        {"body": {"recreate_token": "not-a-jwt"}},
        {"token": "", "headers": {"Authorization": "Basic YWxpY2U6cHc="}},
    ]
    for swap in swaps:
        headers = swap.get("headers")
        token = swap.get("token") or None
        status, hdrs, body = await edge.create(swap.get("body", {}), token=token, headers=headers)
        assert (status, body["error"]) == (401, "unauthorized"), swap
        assert hdrs.getRawHeaders("www-authenticate")
    # an ephemeral token cannot refresh a management token either
    for token in [ephemeral, recreate]:
        assert error_of(await edge.call("POST", "/auth/token", token=token)) == (
            401,
            "unauthorized",
        )


@pytest_twisted.ensureDeferred
async def test_expired_management_token(edge: Edge) -> None:
    token = edge.management("alice")
    edge.clock.advance(3600 + 61)
    assert error_of(await edge.create(token=token)) == (401, "unauthorized")
    assert error_of(await edge.call("GET", "/tunnels/list", token=token)) == (
        401,
        "unauthorized",
    )


# -- request bodies ---------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_malformed_json(edge: Edge) -> None:
    for raw in [b"{", b"{'a': 1}", b"\xff\xfe", b"[1", b"nul"]:
        status, _, body = await edge.call(
            "POST", "/tunnels/create", raw=raw, headers={"Content-Type": "application/json"}
        )
        assert (status, body["error"]) == (400, "invalid_request"), raw
        assert "JSON" in body["message"]


@pytest_twisted.ensureDeferred
async def test_json_non_object(edge: Edge) -> None:
    for raw in [b"[]", b"1", b'"x"', b"null", b"true"]:
        status, _, body = await edge.call(
            "POST", "/tunnels/create", raw=raw, headers={"Content-Type": "application/json"}
        )
        assert (status, body["error"]) == (400, "invalid_request"), raw
        assert "object" in body["message"]


@pytest_twisted.ensureDeferred
async def test_content_type(edge: Edge) -> None:
    raw = b'{"requested_name": "myapp"}'
    for ctype in [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]:
        headers = {"Content-Type": ctype} if ctype else {}
        status, _, body = await edge.call("POST", "/tunnels/create", raw=raw, headers=headers)
        assert (status, body["error"]) == (400, "invalid_request"), ctype
        assert "Content-Type" in body["message"]
    status, _, _ = await edge.call(
        "POST",
        "/tunnels/create",
        raw=raw,
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert status == 201


@pytest_twisted.ensureDeferred
async def test_empty_body_is_empty_object(edge: Edge) -> None:
    status, _, _ = await edge.call("POST", "/tunnels/create")
    assert status == 201


@pytest_twisted.ensureDeferred
async def test_unknown_field_named(edge: Edge) -> None:
    status, _, body = await edge.create({"requested_name": "myapp", "colour": "red"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert "colour" in body["message"]
    assert edge.registry.all() == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"requested_name": 5}, "requested_name"),
        ({"requested_name": None}, "requested_name"),
        ({"recreate_token_ttl_seconds": "3600"}, "recreate_token_ttl_seconds"),
        ({"recreate_token_ttl_seconds": 3600.5}, "recreate_token_ttl_seconds"),
        ({"recreate_token_ttl_seconds": 59}, "recreate_token_ttl_seconds"),
        ({"preferred_transports": "wss"}, "preferred_transports"),
        ({"preferred_transports": ["udp"]}, "preferred_transports"),
        ({"region_hint": ["eu"]}, "region_hint"),
        ({"management_token": 1}, "management_token"),
        ({"recreate_token": {}}, "recreate_token"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_wrong_field_types(edge: Edge, body: dict[str, Any], field: str) -> None:
    status, _, payload = await edge.create(body)
    assert (status, payload["error"]) == (400, "invalid_request")
    assert field in payload["message"]


@pytest_twisted.ensureDeferred
async def test_accepted_optional_fields(edge: Edge) -> None:
    status, _, body = await edge.create(
        {
            "requested_name": "myapp",
            "preferred_transports": ["quic", "tcp"],
            "region_hint": "eu",
            "recreate_token_ttl_seconds": 60,
        }
    )
    assert status == 201
    assert "only the ws transport" in body["note"]  # a plain listener
    _, _, body = await edge.create({"preferred_transports": ["quic"]}, base="https://control.localhost")
    assert "only the wss transport" in body["note"]
    _, _, body = await edge.create({"preferred_transports": ["wss"]}, base="https://control.localhost")
    assert "only the" not in body["note"]


@pytest_twisted.ensureDeferred
async def test_payload_too_large(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, max_control_body=100)
    status, _, body = await edge.create({"region_hint": "x" * 100})
    assert (status, body["error"]) == (413, "payload_too_large")
    for path in ["/tunnels/delete", "/auth/token"]:
        assert error_of(await edge.call("POST", path, {"api_key": "x" * 200})) == (
            413,
            "payload_too_large",
        )
    assert (await edge.create({"region_hint": "x" * 50}))[0] == 201


def test_payload_too_large_without_content_length(tmp_path: Any) -> None:
    """
    A body sent without Content-Length (chunked) is measured as read.
    """
    edge = make_edge(tmp_path, max_control_body=100)
    request = DummyRequest([b"tunnels", b"create"])
    request.method = b"POST"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.content = io.BytesIO(json.dumps({"region_hint": "x" * 200}).encode())
    with pytest.raises(ApiError) as caught:
        edge.api.create(request)
    assert caught.value.status == 413


@pytest_twisted.ensureDeferred
async def test_bad_host_header(edge: Edge) -> None:
    status, _, body = await edge.create(headers={"Host": "bad host/x"})
    assert (status, body["error"]) == (400, "invalid_request")


# -- delete -----------------------------------------------------------------


async def _owned(edge: Edge, account: str, name: str) -> dict[str, Any]:
    status, _, body = await edge.create({"requested_name": name}, token=edge.management(account))
    assert status == 201
    return body  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_delete_by_owner(edge: Edge) -> None:
    body = await _owned(edge, "alice", "myapp")
    status, headers, result = await edge.call(
        "POST", "/tunnels/delete", {"tunnel_id": body["tunnel_id"]}, token=edge.management("alice")
    )
    assert (status, result) == (200, {"tunnel_id": body["tunnel_id"], "state": "DELETED"})
    assert edge.registry.get(body["tunnel_id"]) is None
    assert edge.registry.by_name("myapp") is None
    assert [t.tunnel_id for t in edge.deleted] == [body["tunnel_id"]]
    # gone: 404 the second time
    assert error_of(
        await edge.call("POST", "/tunnels/delete", {"tunnel_id": body["tunnel_id"]}, token=edge.management("alice"))
    ) == (404, "not_found")


@pytest_twisted.ensureDeferred
async def test_delete_by_recreate_token(edge: Edge) -> None:
    first = await _owned(edge, "alice", "one")
    second = await _owned(edge, "alice", "two")
    # another tunnel's recreate token: valid, but not for this tunnel
    assert error_of(
        await edge.call(
            "POST",
            "/tunnels/delete",
            {"tunnel_id": first["tunnel_id"], "recreate_token": second["recreate_token"]},
        )
    ) == (403, "forbidden")
    status, _, _ = await edge.call(
        "POST",
        "/tunnels/delete",
        {"tunnel_id": first["tunnel_id"], "recreate_token": first["recreate_token"]},
    )
    assert status == 200
    assert edge.registry.by_name("one") is None
    assert edge.registry.by_name("two") is not None


@pytest_twisted.ensureDeferred
async def test_delete_ownership(edge: Edge) -> None:
    body = await _owned(edge, "alice", "myapp")
    _, _, anonymous = await edge.create()
    delete = {"tunnel_id": body["tunnel_id"]}
    assert error_of(await edge.call("POST", "/tunnels/delete", delete)) == (401, "unauthorized")
    assert error_of(await edge.call("POST", "/tunnels/delete", delete, token="garbage")) == (401, "unauthorized")
    assert error_of(await edge.call("POST", "/tunnels/delete", delete, token=body["ephemeral_token"])) == (
        401,
        "unauthorized",
    )
    assert error_of(await edge.call("POST", "/tunnels/delete", delete, token=edge.management("bob"))) == (
        403,
        "forbidden",
    )
    assert error_of(
        await edge.call("POST", "/tunnels/delete", {"tunnel_id": anonymous["tunnel_id"]}, token=edge.management("bob"))
    ) == (403, "forbidden")
    assert error_of(
        await edge.call("POST", "/tunnels/delete", {"tunnel_id": "no-such-id"}, token=edge.management("bob"))
    ) == (404, "not_found")
    assert edge.registry.get(body["tunnel_id"]) is not None
    assert edge.deleted == []
    # an admin may delete anybody's tunnel
    status, _, _ = await edge.call("POST", "/tunnels/delete", delete, token=edge.management("root", "admin"))
    assert status == 200
    assert error_of(await edge.call("POST", "/tunnels/delete", {}, token=edge.management("bob"))) == (
        400,
        "invalid_request",
    )


@pytest_twisted.ensureDeferred
async def test_delete_survives_failing_hook(tmp_path: Any) -> None:
    edge = make_edge(tmp_path)

    def boom(tunnel: Tunnel) -> None:
        raise RuntimeError("hook failed")

    edge.api.on_delete = boom
    _, _, body = await edge.create()
    status, _, _ = await edge.call(
        "POST",
        "/tunnels/delete",
        {"tunnel_id": body["tunnel_id"], "recreate_token": body["recreate_token"]},
    )
    assert status == 200
    assert edge.registry.get(body["tunnel_id"]) is None


# -- list -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_list(edge: Edge) -> None:
    mine = await _owned(edge, "alice", "mine")
    await _owned(edge, "bob", "theirs")
    await edge.create({"requested_name": "anon"})
    tunnel = edge.registry.get(mine["tunnel_id"])
    edge.registry.attach_session(tunnel, object())

    assert error_of(await edge.call("GET", "/tunnels/list")) == (401, "unauthorized")

    status, headers, body = await edge.call("GET", "/tunnels/list", token=edge.management("alice"))
    assert status == 200
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert_valid(load_schema("tunnels-list-response.json"), body)
    [entry] = body["tunnels"]
    assert entry == {
        "tunnel_id": mine["tunnel_id"],
        "name": "mine",
        "public_hostname": "mine.localhost",
        "public_url": "http://mine.localhost:8080",
        "state": "ACTIVE",
        "created_at": iso8601(NOW),
        "expires_at": mine["candidates_expires_at"],
        "held_until": iso8601(NOW + 86400),
        "owner": "alice",
        "edge_id": "edge-1",
        "sessions": 1,
        "connected_at": iso8601(NOW),
        "last_seen_at": None,
        "protocol": "http",
    }

    _, _, body = await edge.call("GET", "/tunnels/list", token=edge.management("root", "admin"))
    assert {(t["name"], t["owner"], t["state"]) for t in body["tunnels"]} == {
        ("mine", "alice", "ACTIVE"),
        ("theirs", "bob", "PENDING"),
        ("anon", None, "PENDING"),
    }
    _, _, body = await edge.call("GET", "/tunnels/list", token=edge.management("carol"))
    assert body == {"tunnels": []}


@pytest_twisted.ensureDeferred
async def test_list_forgets_lapsed_tunnels(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, ephemeral_ttl=60)
    await edge.create({"recreate_token_ttl_seconds": 60}, token=edge.management("alice"))
    edge.clock.advance(61)
    _, _, body = await edge.call("GET", "/tunnels/list", token=edge.management("alice"))
    assert body == {"tunnels": []}


# -- auth/token -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_auth_token_from_api_key(edge: Edge) -> None:
    for how in ["bearer", "body"]:
        if how == "bearer":
            status, headers, body = await edge.call("POST", "/auth/token", token="alice-key")
        else:
            status, headers, body = await edge.call("POST", "/auth/token", {"api_key": "alice-key"})
        assert status == 200
        assert headers.getRawHeaders("cache-control") == ["no-store"]
        assert_valid(load_schema("auth-token-response.json"), body)
        assert body["token_type"] == "Bearer"
        claims = edge.authority.verify(body["management_token"], MANAGEMENT)
        assert (claims.sub, claims.role) == ("alice", "user")
        assert claims.exp == NOW + 86400
        assert body["expires_at"] == iso8601(claims.exp)


@pytest_twisted.ensureDeferred
async def test_auth_token_admin_and_refresh(edge: Edge) -> None:
    _, _, body = await edge.call("POST", "/auth/token", token="root-key")
    claims = edge.authority.verify(body["management_token"], MANAGEMENT)
    assert (claims.sub, claims.role) == ("root", "admin")
    edge.clock.advance(100)
    status, _, refreshed = await edge.call("POST", "/auth/token", token=body["management_token"])
    assert status == 200
    again = edge.authority.verify(refreshed["management_token"], MANAGEMENT)
    assert (again.sub, again.role) == ("root", "admin")
    assert again.exp == claims.exp + 100
    # the token it gives works on the other routes
    status, _, _ = await edge.call("GET", "/tunnels/list", token=refreshed["management_token"])
    assert status == 200


@pytest_twisted.ensureDeferred
async def test_auth_token_errors(edge: Edge) -> None:
    assert error_of(await edge.call("POST", "/auth/token")) == (401, "unauthorized")
    assert error_of(await edge.call("POST", "/auth/token", token="wrong-key")) == (
        401,
        "unauthorized",
    )
    assert error_of(await edge.call("POST", "/auth/token", {"api_key": "wrong"})) == (
        401,
        "unauthorized",
    )
    assert error_of(await edge.call("POST", "/auth/token", {"api_key": "alice-key"}, token="alice-key")) == (
        400,
        "invalid_request",
    )
    assert error_of(await edge.call("POST", "/auth/token", {"key": "alice-key"})) == (
        400,
        "invalid_request",
    )
    assert error_of(await edge.call("POST", "/auth/token", {"api_key": 7})) == (
        400,
        "invalid_request",
    )


# -- jwks, routing, internal errors -----------------------------------------


@pytest_twisted.ensureDeferred
async def test_jwks(edge: Edge) -> None:
    status, _, body = await edge.call("GET", "/.well-known/jwks.json")
    assert status == 200
    assert body == edge.authority.jwks()
    assert body["keys"] and all("kid" in key for key in body["keys"])


@pytest_twisted.ensureDeferred
async def test_unknown_path_and_method(edge: Edge) -> None:
    for path in ["/", "/nope", "/tunnels", "/tunnels/create/x", "/connect"]:
        assert error_of(await edge.call("GET", path)) == (404, "not_found"), path
    # a trailing slash is served, not redirected
    assert error_of(await edge.call("GET", "/tunnels/list/")) == (401, "unauthorized")
    for method, path, allow in [
        ("GET", "/tunnels/create", "POST"),
        ("DELETE", "/tunnels/delete", "POST"),
        ("POST", "/tunnels/list", "GET, HEAD"),
        ("GET", "/auth/token", "POST"),
        ("PUT", "/.well-known/jwks.json", "GET, HEAD"),
    ]:
        status, headers, body = await edge.call(method, path)
        assert (status, body["error"]) == (405, "method_not_allowed")
        assert headers.getRawHeaders("allow") == [allow]


@pytest_twisted.ensureDeferred
async def test_unexpected_exception_is_json_500(tmp_path: Any) -> None:
    class Broken(TokenAuthority):
        def jwks(self) -> dict[str, Any]:
            raise RuntimeError("secret internals")

    clock = Clock()
    edge = make_edge(tmp_path, authority=Broken(load_keyring(str(tmp_path)), "x", clock))
    status, _, body = await edge.call("GET", "/.well-known/jwks.json")
    assert (status, body["error"]) == (500, "internal_error")
    assert "secret internals" not in body["message"]


# -- rate limiting ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_rate_limited_after_failures(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, auth_failures_per_minute=3)
    good = edge.management("alice")
    for _ in range(2):
        assert error_of(await edge.call("GET", "/tunnels/list", token="bad")) == (401, "unauthorized")
        edge.clock.advance(10)
    # below the limit, good credentials still work
    assert (await edge.call("GET", "/tunnels/list", token=good))[0] == 200
    assert error_of(await edge.call("POST", "/auth/token", {"api_key": "wrong"})) == (
        401,
        "unauthorized",
    )
    # first failure at NOW, so the window opens again at NOW + 60
    edge.clock.advance(5)  # NOW + 25
    for method, path in [
        ("GET", "/tunnels/list"),
        ("POST", "/tunnels/create"),
        ("POST", "/tunnels/delete"),
        ("POST", "/auth/token"),
    ]:
        status, headers, body = await edge.call(method, path, token=good)
        assert (status, body["error"]) == (429, "rate_limited"), path
        assert headers.getRawHeaders("retry-after") == ["35"]
    # the JWKS is not an authenticated route
    assert (await edge.call("GET", "/.well-known/jwks.json"))[0] == 200
    edge.clock.advance(34.5)
    assert error_of(await edge.call("GET", "/tunnels/list", token=good)) == (429, "rate_limited")
    edge.clock.advance(0.5)  # the first failure leaves the window
    assert (await edge.call("GET", "/tunnels/list", token=good))[0] == 200
    # the window slides: two failures are still in it, one more blocks again
    await edge.create({"recreate_token": "bad"})
    status, headers, _ = await edge.call("GET", "/tunnels/list", token=good)
    assert status == 429
    assert headers.getRawHeaders("retry-after") == ["10"]


@pytest_twisted.ensureDeferred
async def test_swapped_tokens_count_as_failures(tmp_path: Any) -> None:
    edge = make_edge(tmp_path, auth_failures_per_minute=2)
    _, _, body = await edge.create()
    await edge.create(token=body["ephemeral_token"])
    await edge.create({"recreate_token": edge.management("alice")})
    assert error_of(await edge.create()) == (429, "rate_limited")


# -- issue 10 item 12: bad input is a 4xx, always ------------------------------------


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"[" * 30_000 + b"]" * 30_000, "nested more than 32 levels deep"),
        (b'{"region_hint": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels deep"),
        (b'{"recreate_token_ttl_seconds": 1' + b"0" * 399 + b"}", "is out of range"),
        (b'{"recreate_token_ttl_seconds": 1e400}', "is out of range"),
        (b'{"recreate_token_ttl_seconds": NaN}', "NaN is not a JSON number"),
        (b'{"recreate_token_ttl_seconds": Infinity}', "Infinity is not a JSON number"),
        (b'{"requested_name": "\xff"}', "not valid JSON"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_json_is_a_400(edge: Edge, raw: bytes, message: str) -> None:
    status, _, body = await edge.call("POST", "/tunnels/create", raw=raw, headers={"Content-Type": "application/json"})
    assert (status, body["error"]) == (400, "invalid_request"), body
    assert message in body["message"]
    assert list(edge.registry.all()) == []


@pytest_twisted.ensureDeferred
async def test_a_big_ttl_within_range_is_clamped(edge: Edge) -> None:
    status, _, body = await edge.create({"recreate_token_ttl_seconds": 2**53})
    assert status == 201, body
    assert "clamped to the maximum" in body["note"]


@pytest.mark.parametrize(
    "method, path, data",
    [
        ("GET", "/tunnels/list", b""),
        ("POST", "/tunnels/create", b"{}"),
        ("POST", "/tunnels/delete", b'{"tunnel_id": "t1"}'),
        ("POST", "/auth/token", b"{}"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_authorization_header_that_is_not_utf8_is_a_401(
    edge: Edge, method: str, path: str, data: bytes
) -> None:
    headers = {b"Authorization": [b"Bearer \xff\xfe\xfd"], b"Content-Type": [b"application/json"]}
    response = await edge.stub.request(method, BASE + path, headers=headers, data=data)
    body = json.loads(await response.content())
    assert (response.code, body["error"]) == (401, "unauthorized"), body
    assert body["message"] == "Authorization is not UTF-8 text"
