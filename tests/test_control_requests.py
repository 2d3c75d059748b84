"""
The control API's request helpers (L{netbore.edge.apirequest}) and
credential checks (L{netbore.edge.apiauth}), on C{DummyRequest}s.  The
routes that use them are tested in C{test_control_api.py}.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from netbore.auth import MANAGEMENT, ApiKeys, HMACKeyring, TokenAuthority
from netbore.edge.apiauth import ApiAuth
from netbore.edge.apierrors import ApiError
from netbore.edge.apirequest import edge_url, json_body, public_url, request_host, validator
from netbore.edge.ratelimit import AuthFailureLimiter

NOW = 1_700_000_000.0
SCHEMA = validator("tunnels-delete-request.json")


def request(host: str | None = None, *, secure: bool = False, **headers: str) -> DummyRequest:
    made = DummyRequest([b"tunnels", b"delete"])
    made.method = b"POST"
    if host is not None:
        made.requestHeaders.setRawHeaders(b"host", [host.encode()])
    for name, value in headers.items():
        made.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    made.isSecure = lambda: secure  # type: ignore[method-assign]
    made.client = IPv4Address("TCP", "192.0.2.7", 40000)
    return made


def status_of(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    "host, secure, scheme, public, edge",
    [
        ("localhost:8080", False, None, "http://app.localhost:8080", "ws://localhost:8080/connect"),
        ("Tunnel.Example.COM", True, None, "https://app.localhost", "wss://tunnel.example.com/connect"),
        ("tunnel.example.com:443", True, None, "https://app.localhost", "wss://tunnel.example.com/connect"),
        ("tunnel.example.com:80", False, "https", "https://app.localhost:80", "ws://tunnel.example.com/connect"),
        ("[::1]:8443", True, None, "https://app.localhost:8443", "wss://[::1]:8443/connect"),
    ],
)
def test_urls_from_the_host_the_request_came_in_on(
    host: str, secure: bool, scheme: str | None, public: str, edge: str
) -> None:
    made = request(host, secure=secure)
    assert public_url(made, "app.localhost", scheme) == public
    assert edge_url(made, None) == edge
    assert edge_url(made, "wss://edge.example.com/connect") == "wss://edge.example.com/connect"


@pytest.mark.parametrize("host", ["bad host", "a/b", "[::1", "x:99999999", ""])
def test_a_host_that_is_not_a_host_name_is_refused(host: str) -> None:
    assert status_of(lambda: request_host(request(host))) == (400, "invalid_request")


def with_body(body: bytes, **headers: str) -> DummyRequest:
    made = request("localhost", **headers)
    made.content = io.BytesIO(body)
    return made


def test_json_body() -> None:
    made = with_body(b'{"tunnel_id": "t1"}', content_type="application/json; charset=utf-8")
    assert json_body(made, SCHEMA, 100) == {"tunnel_id": "t1"}


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b'{"tunnel_id": "t1"}', {"content_type": "text/plain"}, 400),
        (b'{"tunnel_id": ', {"content_type": "application/json"}, 400),
        (b'["t1"]', {"content_type": "application/json"}, 400),
        (b"{}", {"content_type": "application/json"}, 400),  # the schema wants tunnel_id
        (b"{}", {"content_type": "application/json", "content_length": "ten"}, 400),
        (b"{}", {"content_type": "application/json", "content_length": "101"}, 413),
        (b'{"tunnel_id": "' + b"x" * 100 + b'"}', {"content_type": "application/json"}, 413),
    ],
)
def test_bad_bodies(body: bytes, headers: dict[str, str], status: int) -> None:
    assert status_of(lambda: json_body(with_body(body, **headers), SCHEMA, 100))[0] == status


@pytest.fixture
def auth(tmp_path: Any) -> ApiAuth:
    keys = tmp_path / "keys"
    keys.write_text("alice k-alice admin\nbob k-bob\n")
    clock = Clock()
    clock.advance(NOW)
    authority = TokenAuthority(HMACKeyring([b"s" * 40]), "netbore:test", clock)
    return ApiAuth(authority, ApiKeys.load(str(keys)), AuthFailureLimiter(clock, 2))


def test_refused_credentials_count_until_429(auth: ApiAuth) -> None:
    basic = request("localhost", authorization="Basic YTpi")
    addr = auth.check_rate(basic)
    assert addr == "192.0.2.7"
    assert status_of(lambda: auth.bearer(basic, addr)) == (401, "unauthorized")
    assert status_of(lambda: auth.management(request(authorization="Bearer x.y.z"), addr)) == (401, "unauthorized")
    assert status_of(lambda: auth.check_rate(basic)) == (429, "rate_limited")


def test_api_key_account(auth: ApiAuth) -> None:
    assert auth.api_key_account(request(authorization="Bearer k-alice"), "a", None) == ("alice", "admin")
    assert auth.api_key_account(request(), "a", "k-bob") == ("bob", "user")
    token, _ = auth.authority.issue(MANAGEMENT, "bob", 60, role="user")
    assert auth.api_key_account(request(authorization=f"Bearer {token}"), "a", None) == ("bob", "user")
    assert status_of(lambda: auth.api_key_account(request(authorization="Bearer k-bob"), "a", "k-bob"))[0] == 400
    assert status_of(lambda: auth.api_key_account(request(), "a", None))[0] == 401
    assert status_of(lambda: auth.api_key_account(request(), "a", "nope"))[0] == 401
    assert len(auth.limiter) == 1  # only the unknown key counted


def test_refresh_checks_the_account_against_the_keys_file_as_it_is_now(tmp_path: Any, auth: ApiAuth) -> None:
    """
    Issue 10 item 3: a management token refreshes only for an account the
    keys file still has, with the role the file gives it now.
    """
    gone, _ = auth.authority.issue(MANAGEMENT, "carol", 60, role="admin")
    assert status_of(lambda: auth.api_key_account(request(authorization=f"Bearer {gone}"), "a", None)) == (
        401,
        "unauthorized",
    )
    demoted, _ = auth.authority.issue(MANAGEMENT, "bob", 60, role="admin")
    assert auth.api_key_account(request(authorization=f"Bearer {demoted}"), "a", None) == ("bob", "user")
    promoted, _ = auth.authority.issue(MANAGEMENT, "alice", 60, role="user")
    assert auth.api_key_account(request(authorization=f"Bearer {promoted}"), "a", None) == ("alice", "admin")


def test_a_non_utf8_authorization_header_is_a_401() -> None:
    """
    Issue 10 item 12: bytes that are not UTF-8 in Authorization are refused
    (401, counted), not a 500.
    """
    clock = Clock()
    auth = ApiAuth(
        TokenAuthority(HMACKeyring([b"s" * 40]), "netbore:test", clock), ApiKeys.empty(), AuthFailureLimiter(clock, 2)
    )
    req = request()
    req.requestHeaders.setRawHeaders(b"authorization", [b"Bearer \xff\xfe"])
    assert status_of(lambda: auth.bearer(req, "a")) == (401, "unauthorized")
    assert len(auth.limiter) == 1


def test_one_management_token_as_bearer_or_in_the_body(auth: ApiAuth) -> None:
    token, _ = auth.authority.issue(MANAGEMENT, "alice", 60, role="admin")
    other, _ = auth.authority.issue(MANAGEMENT, "bob", 60, role="user")
    assert auth.management(request(), "a") is None
    claims = auth.management(request(authorization=f"Bearer {token}"), "a", token)
    assert claims is not None and claims.sub == "alice"
    assert status_of(lambda: auth.management(request(authorization=f"Bearer {token}"), "a", other))[0] == 400
