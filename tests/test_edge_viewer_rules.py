"""
Issue 10's rules for what passes the edge between viewers and agents,
without sockets (the in-memory edge of L{tests.test_edge_exchange}):
cookie tossing (item 6), response heads from agents (item 14), headers a
viewer may not remove or spoof (item 15), C{100 Continue} only for a
tunnel that exists, and the request targets a tunnel does not serve.
"""

from __future__ import annotations

import pytest

from netbore.edge.header_rules import UNDERSCORED, head_problem, strip_cookie_domain
from netbore.protocol.frames import ErrorCode

from .test_edge_exchange import HOST, Harness, _headers

# -- item 6: cookie tossing ------------------------------------------------------------


def _cookies_through_the_edge(*cookies: bytes) -> list[bytes]:
    h = Harness()
    h.head()
    fields = [(b"Set-Cookie", c) for c in cookies] + [(b"Content-Length", b"2")]
    h.exchange.response_head(200, b"OK", fields, False)
    h.exchange.data(b"ok", True)
    assert h.status() == 200
    return _headers(h.response_headers(), b"set-cookie")


@pytest.mark.parametrize(
    "domain",
    [b"localhost", b".localhost", b"LocalHost", b".LOCALHOST.", b"localhost.", b"%6cocalhost", b"lo\xefcalhost", b""],
)
def test_a_cookie_for_the_edge_s_domain_becomes_host_only(domain: bytes) -> None:
    # Every other tunnel (other.localhost) would be sent a cookie for
    # Domain=localhost: the attribute goes, the cookie stays, host-only.
    cookie = b"sid=abc; Path=/; Domain=" + domain + b"; Secure; HttpOnly"
    assert _cookies_through_the_edge(cookie) == [b"sid=abc; Path=/; Secure; HttpOnly"]


def test_cookies_keep_their_order_and_only_a_parent_domain_is_removed() -> None:
    cookies = [
        b"a=1",  # host-only: as it is
        b"b=2; domain = localhost ;path=/",  # spaces around the name and "=": still the edge's domain
        b"c=3; Domain=app.localhost",  # the tunnel's own name: kept
        b"d=4; Domain=evil.example",  # unrelated: browsers refuse it; as it is
        b"e=domain=localhost; Max-Age=60",  # "domain=" inside the value is not an attribute
    ]
    assert _cookies_through_the_edge(*cookies) == [
        b"a=1",
        b"b=2;path=/",
        b"c=3; Domain=app.localhost",
        b"d=4; Domain=evil.example",
        b"e=domain=localhost; Max-Age=60",
    ]


def test_every_parent_of_a_deeper_domain_is_removed() -> None:
    host = b"app.tunnel.example.com"
    for parent in (b"tunnel.example.com", b"example.com", b"com", b".Example.COM"):
        assert strip_cookie_domain(b"x=1; Domain=" + parent, host) == b"x=1"
    assert strip_cookie_domain(b"x=1; Domain=app.tunnel.example.com", host) == b"x=1; Domain=app.tunnel.example.com"
    assert strip_cookie_domain(b"x=1; Domain=pp.tunnel.example.com", host) == b"x=1; Domain=pp.tunnel.example.com"
    # The last Domain is the one browsers use: each is judged.
    assert strip_cookie_domain(b"x=1; Domain=app.tunnel.example.com; Domain=com", host) == (
        b"x=1; Domain=app.tunnel.example.com"
    )


# -- item 14: response heads from agents ----------------------------------------------

_BAD_HEADS = [
    (200, b"OK", [(b"X Bad", b"1")]),  # SP in a name
    (200, b"OK", [(b"X(Bad)", b"1")]),  # a separator in a name
    (200, b"OK", [(b"X-\xe9", b"1")]),  # non-ASCII in a name
    (200, b"OK", [(b"", b"1")]),  # an empty name
    (200, b"OK", [(b"X-Bad", b"a\x01b")]),  # a control character in a value
    (200, b"OK", [(b"X-Bad", b"a\x7fb")]),  # DEL in a value
    (200, b"OK", [(b"X-Bad", b"a\x0bb")]),  # VT in a value
    (200, b"O\x1bK", []),  # a control character in the reason phrase
    (600, b"OK", []),  # a status above 599
    (999, b"OK", []),
]


@pytest.mark.parametrize(("status", "reason", "fields"), _BAD_HEADS)
def test_an_invalid_response_head_is_refused_with_502_and_counted(
    status: int, reason: bytes, fields: list[tuple[bytes, bytes]]
) -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(status, reason, [(b"Content-Length", b"2"), *fields], False)
    assert h.status() == 502
    assert _headers(h.response_headers(), b"x-netbore-error") == [b"invalid_response"]
    assert h.session.resets == [(1, ErrorCode.PROTOCOL_ERROR)]
    assert h.router.refused_heads == 1
    # Nothing of the refused head reached the viewer.
    out = h.output()
    assert all(marker not in out for marker in (b"X Bad", b"X(Bad)", b"X-\xe9", b"X-Bad", b"O\x1bK", b"\x01", b"\x7f"))
    # Its body, if the agent sends one anyway, goes nowhere; the connection serves on.
    h.exchange.data(b"ok", True)
    assert h.output().count(b"HTTP/1.1 ") == 1
    assert not h.transport.disconnecting
    assert head_problem(b"GET", status, reason, fields) is not None


def test_an_invalid_head_while_the_body_is_coming_is_answered_once_it_is_in() -> None:
    h = Harness()
    h.head(b"POST", length=4)
    h.exchange.response_head(200, b"OK", [(b"X-Bad", b"\x00")], False)
    assert h.output() == b"" and h.session.resets == [(1, ErrorCode.PROTOCOL_ERROR)]
    h.send(b"data")
    assert h.status() == 502 and h.router.refused_heads == 1


def test_valid_heads_pass_with_htab_and_obs_text() -> None:
    h = Harness()
    h.head()
    fields = [
        (b"X-Tab", b"a\tb"),
        (b"X-Latin", b"caf\xe9"),
        (b"!#$%&'*+-.^_`|~09AZaz", b"1"),
        (b"Content-Length", b"2"),
    ]
    h.exchange.response_head(599, b"Custom\tReason \xe9", fields, False)
    h.exchange.data(b"ok", True)
    assert h.output().startswith(b"HTTP/1.1 599 Custom\tReason \xe9\r\n")
    assert _headers(h.response_headers(), b"x-latin") == [b"caf\xe9"]
    assert h.router.refused_heads == 0
    assert head_problem(b"GET", 599, b"Custom\tReason", fields) is None


@pytest.mark.parametrize(("status", "refused"), [(200, 1), (299, 1), (407, 0)])
def test_a_2xx_to_connect_is_refused_by_the_rule(status: int, refused: int) -> None:
    # CONNECT never reaches an agent (the edge answers it, see below); the
    # rule stands on its own all the same: as if one had been forwarded.
    h = Harness()
    h.head()
    h.channel.head.method = b"CONNECT"
    h.exchange.response_head(status, b"Whatever", [], True)
    assert h.router.refused_heads == refused
    assert h.status() == (502 if refused else status)
    assert (head_problem(b"CONNECT", status, b"OK", []) == "2xx answer to CONNECT") is bool(refused)
    assert head_problem(b"GET", status, b"OK", []) is None


# -- item 15: fields a viewer may not remove or spoof -----------------------------------


def test_connection_never_removes_host_or_the_forwarding_fields() -> None:
    h = Harness()
    h.head(
        headers=[
            b"Connection: host, x-forwarded-for, X-Forwarded-Host, x-netbore-client-ip, x-forwarded-proto, x-hop",
            b"X-Forwarded-For: 203.0.113.1",
            b"X-Hop: 1",
        ]
    )
    fields = h.session.heads[0][2]
    assert _headers(fields, b"host") == [HOST]
    assert _headers(fields, b"x-forwarded-for") == [b"203.0.113.1, 192.0.2.7"]
    assert _headers(fields, b"x-forwarded-host") == [HOST]
    assert _headers(fields, b"x-netbore-client-ip") == [b"192.0.2.7"]
    assert _headers(fields, b"x-forwarded-proto") == [b"http"]
    assert _headers(fields, b"x-hop") == []  # what Connection names otherwise still goes


@pytest.mark.parametrize(
    "name",
    [
        b"X_Netbore_Client_IP",
        b"x_netbore-client_ip",
        b"X_Forwarded_For",
        b"X-Forwarded_For",
        b"x_forwarded_proto",
        b"X_Forwarded_Host",
    ],
)
def test_a_forwarding_field_spelt_with_underscores_is_dropped(name: bytes) -> None:
    # WSGI/CGI origins read X_Netbore_Client_IP as HTTP_X_NETBORE_CLIENT_IP.
    h = Harness()
    h.head(headers=[name + b": 10.6.6.6"])
    fields = h.session.heads[0][2]
    assert all(b"10.6.6.6" not in value for _, value in fields)
    assert _headers(fields, b"x-netbore-client-ip") == [b"192.0.2.7"]
    assert _headers(fields, b"x-forwarded-for") == [b"192.0.2.7"]


def test_every_underscored_spelling_is_known() -> None:
    assert len(UNDERSCORED) == 3 + 3 + 3 + 7
    assert b"x_forwarded_for" in UNDERSCORED and b"x-forwarded-for" not in UNDERSCORED
    assert b"x-netbore_client-ip" in UNDERSCORED


# -- 100 Continue --------------------------------------------------------------------


def test_no_100_continue_for_an_unknown_tunnel_404_at_once() -> None:
    h = Harness()
    h.send(b"PUT /up HTTP/1.1\r\nHost: nosuch.localhost\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    out = h.output()
    assert not out.startswith(b"HTTP/1.1 100"), out
    assert h.status() == 404
    # The body was never asked for, so it is not read: the connection closes.
    assert _headers(h.response_headers(), b"connection") == [b"close"]
    assert h.transport.disconnecting
    assert h.session.heads == []


def test_no_100_continue_for_an_offline_tunnel() -> None:
    h = Harness()
    h.registry.detach_session(h.registry.by_name("app"), h.session)  # type: ignore[arg-type]
    h.send(b"PUT /up HTTP/1.1\r\nHost: " + HOST + b"\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert h.status() == 502
    assert b"100 Continue" not in h.output()


def test_100_continue_once_the_stream_is_open() -> None:
    h = Harness()
    h.send(b"PUT /up HTTP/1.1\r\nHost: " + HOST + b"\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(h.session.heads) == 1


# -- request targets a tunnel does not serve -------------------------------------------


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET http://app.localhost:8080/ HTTP/1.1", 400),
        (b"GET https://evil.example/x HTTP/1.1", 400),
        (b"OPTIONS * HTTP/1.1", 400),
        (b"GET * HTTP/1.1", 400),
        (b"CONNECT / HTTP/1.1", 405),
        (b"CONNECT /app.localhost:443 HTTP/1.1", 405),
    ],
)
def test_targets_a_tunnel_does_not_serve_are_answered_at_once(line: bytes, status: int) -> None:
    h = Harness()
    h.send(line + b"\r\nHost: " + HOST + b"\r\n\r\n")
    assert h.status() == status
    assert h.session.heads == []  # never forwarded
    assert h.clock.getDelayedCalls() == [] or all(c.getTime() > 5 for c in h.clock.getDelayedCalls())
    if status == 405:
        assert _headers(h.response_headers(), b"allow") == [b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"]
        assert _headers(h.response_headers(), b"x-netbore-error") == [b"method_not_allowed"]
    # No body: the connection serves the next request.
    assert not h.transport.disconnecting
    h.transport.clear()
    h.send(b"GET /next HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    assert [head[1] for head in h.session.heads] == [b"/next"]


def test_a_refused_target_with_a_body_closes_the_connection() -> None:
    h = Harness()
    h.send(b"POST http://app.localhost/ HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 4\r\n\r\nda")
    assert h.status() == 400
    assert _headers(h.response_headers(), b"connection") == [b"close"]
    assert h.transport.disconnecting
    assert h.session.heads == []


def test_a_refused_target_is_json_when_asked() -> None:
    h = Harness()
    h.send(b"CONNECT / HTTP/1.1\r\nHost: " + HOST + b"\r\nAccept: application/json\r\n\r\n")
    assert h.status() == 405
    assert b'"error": "method_not_allowed"' in h.body()


@pytest.mark.parametrize(("reason", "refused"), [(b"No Content", 0), (b"No\x00Content", 1)])
def test_a_head_without_fields_is_checked_too(reason: bytes, refused: int) -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(204, reason, [], True)
    assert h.status() == (502 if refused else 204)
    assert h.router.refused_heads == refused
