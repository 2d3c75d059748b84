"""
docs/openapi.yaml describes the control API as implemented: every route is
documented, and the real responses of every documented status (successes
and errors) validate against the document's schema for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import pytest
import pytest_twisted
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from treq.testing import StubTreq
from twisted.internet.task import Clock

from netbore.auth import MANAGEMENT, TokenAuthority, load_keyring
from netbore.edge.config import EdgeConfig
from netbore.edge.control import ControlAPI
from netbore.edge.health import Readiness
from netbore.edge.ratelimit import AuthFailureLimiter
from netbore.edge.registry import InMemoryRegistry

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text("utf-8"))
DOC_URI = DOC_PATH.as_uri()
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
NOW = 1_700_000_000.0


def _retrieve(uri: str) -> Resource[Any]:
    parts = urlsplit(uri)
    assert parts.scheme == "file", uri
    contents = json.loads(Path(url2pathname(parts.path)).read_text("utf-8"))
    return Resource.from_contents(contents, default_specification=DRAFT202012)


SCHEMAS: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def _pointer(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def documented_response(path: str, method: str, status: int) -> dict[str, Any]:
    item = DOC["paths"].get(path)
    if item is None:
        # Undocumented paths answer with the shared NotFound response...
        assert status == 404, (path, status)
        return _pointer("#/components/responses/NotFound")  # type: ignore[no-any-return]
    if method.lower() not in item:
        # ...and documented paths asked with another method, MethodNotAllowed.
        assert status == 405, (path, method, status)
        return _pointer("#/components/responses/MethodNotAllowed")  # type: ignore[no-any-return]
    responses = item[method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} -> {status} is not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = _pointer(response["$ref"])
    return response  # type: ignore[no-any-return]


def validator_for(response: dict[str, Any]) -> Draft202012Validator:
    schema = response["content"]["application/json"]["schema"]
    ref = urljoin(DOC_URI, schema["$ref"])
    return Draft202012Validator({"$ref": ref}, registry=SCHEMAS, format_checker=Draft202012Validator.FORMAT_CHECKER)


class Recorder:
    """
    Calls routes and checks each answer against the document.
    """

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, int]] = set()

    async def call(
        self,
        stub: StubTreq,
        method: str,
        path: str,
        expected: int,
        body: Any = None,
        token: str | None = None,
    ) -> Any:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        response = await stub.request(method, "http://localhost:8080" + path, data=data, headers=headers)
        payload = json.loads(await response.content())
        assert response.code == expected, (method, path, payload)
        documented = documented_response(path, method, response.code)
        validator_for(documented).validate(payload)
        for name, header in documented.get("headers", {}).items():
            if "$ref" in header:
                header = _pointer(header["$ref"])
            values = response.headers.getRawHeaders(name)
            assert values, f"{method} {path} {expected}: no {name} header"
            Draft202012Validator(header["schema"]).validate(
                int(values[0]) if header["schema"].get("type") == "integer" else values[0]
            )
        self.seen.add((path, method.lower(), response.code))
        return payload


def make(
    tmp_path: Path,
    authority: TokenAuthority | None = None,
    random_name: Callable[[], str] | None = None,
    draining: bool = False,
    **config: Any,
) -> tuple[StubTreq, TokenAuthority]:
    clock = Clock()
    clock.advance(NOW)
    cfg = EdgeConfig(**{"data_dir": str(tmp_path), **config})
    if authority is None:
        authority = TokenAuthority(load_keyring(str(tmp_path)), "netbore-test", clock)

    class Keys:
        def authenticate(self, key: str) -> Any:
            class Account:
                name = "alice"
                admin = False

            return Account() if key == "alice-key" else None

    api = ControlAPI(
        cfg,
        InMemoryRegistry(clock, cfg.grace),
        authority,
        Keys(),
        AuthFailureLimiter(clock, cfg.auth_failures_per_minute),
        clock,
    )
    if random_name is not None:
        api.random_name = random_name
    api.readiness = Readiness(SimpleNamespace(draining=draining), SimpleNamespace(running=True))
    return StubTreq(api.app.resource()), authority


class Broken(TokenAuthority):
    def issue(self, *args: Any, **kwargs: Any) -> tuple[str, int]:
        raise RuntimeError("boom")

    def verify(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    def jwks(self) -> dict[str, Any]:
        raise RuntimeError("boom")


def documented_operations() -> set[tuple[str, str, int]]:
    return {
        (path, method, int(status))
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status in operation["responses"]
    }


def test_document_shape() -> None:
    assert DOC["openapi"].startswith("3.1.")
    assert DOC["info"]["title"] and DOC["info"]["version"]
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            assert operation["operationId"]
            for response in operation["responses"].values():
                if "$ref" in response:
                    response = _pointer(response["$ref"])
                # every referenced schema file exists and is a valid schema
                schema = _retrieve(urljoin(DOC_URI, response["content"]["application/json"]["schema"]["$ref"])).contents
                Draft202012Validator.check_schema(schema)
            body = operation.get("requestBody")
            if body is not None:
                ref = body["content"]["application/json"]["schema"]["$ref"]
                Draft202012Validator.check_schema(_retrieve(urljoin(DOC_URI, ref)).contents)


def test_schemas_resolve_and_bite() -> None:
    """
    The validators used below really load the referenced schemas.
    """
    created = validator_for(documented_response("/tunnels/create", "POST", 201))
    assert not created.is_valid({"tunnel_id": "x"})
    error = validator_for(documented_response("/tunnels/list", "GET", 401))
    assert error.is_valid({"error": "unauthorized", "message": "no"})
    assert not error.is_valid({"error": "nope", "message": "no"})


def test_every_route_documented_and_no_more() -> None:
    implemented = {
        (rule.rule, method.lower())
        for rule in ControlAPI.app.url_map.iter_rules()
        for method in (rule.methods or ())
        if method not in {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in DOC["paths"].items() for method in item if method in METHODS}
    assert implemented == documented


def test_request_schemas_are_the_ones_enforced() -> None:
    """
    The document points at the same schema files the edge validates with.
    """
    from netbore.edge import control

    for path, validator in [
        ("/tunnels/create", control._CREATE),
        ("/tunnels/delete", control._DELETE),
        ("/auth/token", control._AUTH_TOKEN),
    ]:
        ref = DOC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert _retrieve(urljoin(DOC_URI, ref)).contents == validator.schema


@pytest_twisted.ensureDeferred
async def test_real_responses_match_document(tmp_path: Path) -> None:
    r = Recorder()
    stub, authority = make(tmp_path / "a", allow_anonymous=True)
    alice = authority.issue(MANAGEMENT, "alice", 3600, role="user")[0]
    bob = authority.issue(MANAGEMENT, "bob", 3600, role="user")[0]

    # create
    created = await r.call(stub, "POST", "/tunnels/create", 201, {"requested_name": "myapp"}, alice)
    await r.call(stub, "POST", "/tunnels/create", 400, {"requested_name": "My_App"})
    await r.call(stub, "POST", "/tunnels/create", 401, {}, "not-a-token")
    await r.call(stub, "GET", "/tunnels/create", 405)
    await r.call(stub, "POST", "/tunnels/create", 409, {"requested_name": "myapp"}, bob)
    full, _ = make(tmp_path / "q", authority=authority, allow_anonymous=True, max_tunnels_per_address=1)
    await r.call(full, "POST", "/tunnels/create", 201, {"requested_name": "anon"})
    await r.call(full, "POST", "/tunnels/create", 403, {})

    # list
    listed = await r.call(stub, "GET", "/tunnels/list", 200, token=alice)
    assert [t["tunnel_id"] for t in listed["tunnels"]] == [created["tunnel_id"]]
    await r.call(stub, "GET", "/tunnels/list", 401)
    await r.call(stub, "POST", "/tunnels/list", 405, {})

    # auth/token
    await r.call(stub, "POST", "/auth/token", 200, {"api_key": "alice-key"})
    await r.call(stub, "POST", "/auth/token", 400, {"api_key": 1})
    await r.call(stub, "POST", "/auth/token", 401, {"api_key": "wrong"})
    await r.call(stub, "GET", "/auth/token", 405)

    # jwks
    await r.call(stub, "GET", "/.well-known/jwks.json", 200)
    await r.call(stub, "POST", "/.well-known/jwks.json", 405, {})

    # health
    await r.call(stub, "GET", "/healthz", 200)
    await r.call(stub, "POST", "/healthz", 405, {})
    await r.call(stub, "GET", "/readyz", 200)
    await r.call(stub, "POST", "/readyz", 405, {})
    draining, _ = make(tmp_path / "d", authority=authority, draining=True)
    await r.call(draining, "GET", "/readyz", 503)

    # delete
    gone = {"tunnel_id": created["tunnel_id"]}
    await r.call(stub, "POST", "/tunnels/delete", 400, {"tunnel": "x"}, alice)
    await r.call(stub, "POST", "/tunnels/delete", 401, gone)
    await r.call(stub, "POST", "/tunnels/delete", 403, gone, bob)
    await r.call(stub, "POST", "/tunnels/delete", 200, gone, alice)
    await r.call(stub, "POST", "/tunnels/delete", 404, gone, alice)
    await r.call(stub, "POST", "/tunnels/create", 410, {"recreate_token": created["recreate_token"]})
    await r.call(stub, "GET", "/tunnels/delete", 405)

    # 413 on every route with a body
    small, _ = make(tmp_path / "b", max_control_body=10)
    for path in ["/tunnels/create", "/tunnels/delete", "/auth/token"]:
        await r.call(small, "POST", path, 413, {"api_key": "x" * 20})

    # 429 on every authenticated route after one failure
    limited, _ = make(tmp_path / "c", auth_failures_per_minute=1)
    await r.call(limited, "GET", "/tunnels/list", 401, token="bad")
    for method, path in [
        ("POST", "/tunnels/create"),
        ("POST", "/tunnels/delete"),
        ("GET", "/tunnels/list"),
        ("POST", "/auth/token"),
    ]:
        await r.call(limited, method, path, 429, {"tunnel_id": "x"} if method == "POST" else None)

    # 503 when no random name is free
    taken, _ = make(tmp_path / "e", allow_anonymous=True, random_name=lambda: "taken-name")
    await r.call(taken, "POST", "/tunnels/create", 201, {"requested_name": "taken-name"})
    await r.call(taken, "POST", "/tunnels/create", 503, {})

    # 500 on every route when the edge itself fails
    broken_dir = tmp_path / "d"
    broken_dir.mkdir()
    clock = Clock()
    broken, _ = make(
        broken_dir,
        authority=Broken(load_keyring(str(broken_dir)), "x", clock),
        allow_anonymous=True,
    )
    await r.call(broken, "POST", "/tunnels/create", 500, {})
    await r.call(broken, "POST", "/tunnels/delete", 500, {"tunnel_id": "x"}, "token")
    await r.call(broken, "GET", "/tunnels/list", 500, token="token")
    await r.call(broken, "POST", "/auth/token", 500, {"api_key": "alice-key"})
    await r.call(broken, "GET", "/.well-known/jwks.json", 500)

    # every documented answer was produced, and 405 for each path
    assert documented_operations() <= r.seen
    assert {(p, s) for p, _, s in r.seen if s == 405} == {(p, 405) for p in DOC["paths"]}


@pytest.mark.parametrize("path", ["/nope", "/tunnels"])
@pytest_twisted.ensureDeferred
async def test_unknown_paths_are_json_errors(tmp_path: Path, path: str) -> None:
    stub, _ = make(tmp_path)
    response = await stub.get("http://localhost:8080" + path)
    assert response.code == 404
    payload = json.loads(await response.content())
    validator_for(documented_response(path, "GET", 404)).validate(payload)
    assert payload["error"] == "not_found"
