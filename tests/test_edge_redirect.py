"""
The redirect listener (L{netbore.edge.redirect}, C{--redirect-listen} and
C{--acme-dir}): 308 to HTTPS for the edge's names, 404 for other hosts, ACME
HTTP-01 challenges from the webroot; and one real C{twistd} edge on loopback.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import IServiceCollection
from twisted.internet import testing
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.web.test.requesthelper import DummyRequest

from netbore.edge.listener import Listener
from netbore.edge.redirect import RedirectResource, https_port
from netbore.edge.tap import Options, makeService

from .procs import free_port, start_edge, wait_for
from .tlscerts import TestCA

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"


def get(resource: RedirectResource, host: str | None, target: str) -> tuple[int, dict[str, str], bytes]:
    request = DummyRequest([])
    request.uri = target.encode("ascii")
    if host is not None:
        request.requestHeaders.setRawHeaders(b"host", [host.encode("ascii")])
    body = resource.render(request)
    headers = {k.decode().lower(): v[-1].decode() for k, v in request.responseHeaders.getAllRawHeaders()}
    return request.responseCode or 200, headers, body


@pytest.fixture
def webroot(tmp_path: Path) -> Path:
    challenges = tmp_path / "acme" / ".well-known" / "acme-challenge"
    challenges.mkdir(parents=True)
    (challenges / TOKEN).write_bytes(TOKEN.encode() + b".thumbprint")
    (tmp_path / "acme" / "secret").write_bytes(b"not for you")
    return tmp_path / "acme"


def test_a_tunnel_name_and_the_bare_domain_get_308_to_https() -> None:
    site = RedirectResource("t.example.com", None, None)
    code, headers, body = get(site, "myapp.t.example.com", "/a/b?c=1&d=%20")
    assert code == 308
    assert headers["location"] == "https://myapp.t.example.com/a/b?c=1&d=%20"
    assert b"https://myapp.t.example.com/a/b" in body and len(body) < 200
    # The Host's port (the plain one) is dropped; case and a final dot too.
    code, headers, _ = get(site, "T.Example.COM.:80", "/")
    assert (code, headers["location"]) == (308, "https://t.example.com/")


def test_the_https_port_is_kept_when_it_is_not_443() -> None:
    assert https_port(["tcp:8080", "ssl:8443:privateKey=k.pem:certKey=c.pem"]) == 8443
    assert https_port(["ssl:port=9443:privateKey=k.pem"]) == 9443
    assert https_port(["ssl:443:privateKey=k.pem"]) is None
    assert https_port(["tcp:8080"]) is None  # TLS ends at a proxy on 443
    site = RedirectResource("t.example.com", 8443, None)
    code, headers, _ = get(site, "myapp.t.example.com:8080", "/x")
    assert (code, headers["location"]) == (308, "https://myapp.t.example.com:8443/x")


@pytest.mark.parametrize(
    "host",
    [None, "evil.example.org", "t.example.com.evil.org", "a.b.t.example.com", "xt.example.com", "[::1]:80", "x:y"],
)
def test_other_hosts_get_404_no_open_redirect(host: str | None) -> None:
    code, headers, _ = get(RedirectResource("t.example.com", None, None), host, "/")
    assert code == 404 and "location" not in headers


def test_an_absolute_form_target_is_not_redirected() -> None:
    code, headers, _ = get(RedirectResource("t.example.com", None, None), "t.example.com", "http://evil.org/")
    assert code == 404 and "location" not in headers


@pytest.mark.parametrize("host", ["myapp.t.example.com", "other.example.org", None])
def test_a_challenge_token_is_served_for_every_host(webroot: Path, host: str | None) -> None:
    site = RedirectResource("t.example.com", None, str(webroot))
    code, headers, body = get(site, host, f"/.well-known/acme-challenge/{TOKEN}")
    assert (code, body) == (200, TOKEN.encode() + b".thumbprint")
    assert headers["content-type"].startswith("text/plain") and "location" not in headers


@pytest.mark.parametrize(
    "token",
    ["..%2F..%2Fsecret", "../../secret", "..", ".", "%2e%2e", "a/b", "a.b", "", "x" * 300],
)
def test_traversal_and_tokens_outside_base64url_are_refused(webroot: Path, token: str) -> None:
    site = RedirectResource("t.example.com", None, str(webroot))
    code, _, body = get(site, "t.example.com", "/.well-known/acme-challenge/" + token)
    assert code == 404 and b"not for you" not in body


def test_a_missing_token_or_no_acme_dir_is_404(webroot: Path) -> None:
    code, _, _ = get(
        RedirectResource("t.example.com", None, str(webroot)), "t.example.com", "/.well-known/acme-challenge/nope"
    )
    assert code == 404
    code, _, _ = get(
        RedirectResource("t.example.com", None, None), "t.example.com", f"/.well-known/acme-challenge/{TOKEN}"
    )
    assert code == 404


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_options() -> None:
    assert parse()["redirect-listen"] == [] and parse().config().acme_dir is None
    options = parse("--redirect-listen", "tcp:80", "--redirect-listen", "tcp6:80", "--acme-dir", "/")
    assert options.config().redirect_listen == ("tcp:80", "tcp6:80") and options.config().acme_dir == "/"
    with pytest.raises(usage.UsageError, match="--acme-dir: no such directory: /nonexistent"):
        parse("--acme-dir", "/nonexistent")


def test_service_tree_listens_and_the_drain_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[Any] = []
    monkeypatch.setattr(testing._FakePort, "stopListening", lambda port: stopped.append(port))
    reactor = MemoryReactorClock()
    options = parse("--data-dir", str(tmp_path), "--redirect-listen", "tcp:8000:interface=127.0.0.1")
    parent = makeService(options, reactor=reactor)
    _edge, main, redirect = list(IServiceCollection(parent))
    assert isinstance(redirect, Listener) and redirect.description == "tcp:8000:interface=127.0.0.1"
    parent.privilegedStartService()
    parent.startService()
    (port, factory, _, interface) = reactor.tcpServers[1]
    assert (port, interface) == (8000, "127.0.0.1") and factory is not main.factory
    assert isinstance(factory.resource, RedirectResource)
    parent.stopService()  # SIGTERM
    assert len(stopped) == 2


def test_a_bad_redirect_listen_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        makeService(parse("--data-dir", str(tmp_path), "--redirect-listen", "nope:1"), reactor=MemoryReactorClock())
    assert capsys.readouterr().err.startswith("netbore-edge: bad --redirect-listen:")


@pytest.mark.integration
def test_a_real_edge_redirects_and_answers_challenges(tmp_path: Path, webroot: Path) -> None:
    ca = TestCA()
    key, cert = ca.issue("t.example.com", "*.t.example.com").write_pair(tmp_path / "k.pem", tmp_path / "c.pem")
    plain, tls = free_port(), free_port()
    edge = start_edge(
        tmp_path,
        "--listen", f"ssl:{tls}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
        "--redirect-listen", f"tcp:{plain}:interface=127.0.0.1",
        "--acme-dir", str(webroot),
        domain="t.example.com",
    )  # fmt: skip

    def fetch(host: str, target: str) -> tuple[int, str | None, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", plain, timeout=10)
        try:
            conn.request("GET", target, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.getheader("Location"), response.read()
        except OSError:
            return 0, None, b""
        finally:
            conn.close()

    try:
        wait_for(lambda: fetch("x", "/")[0], 20, "the redirect listener")
        assert fetch(f"myapp.t.example.com:{plain}", "/p?q=1")[:2] == (308, f"https://myapp.t.example.com:{tls}/p?q=1")
        assert fetch("t.example.com", "/")[:2] == (308, f"https://t.example.com:{tls}/")
        assert fetch("evil.example.org", "/")[:2] == (404, None)
        assert fetch("evil.example.org", f"/.well-known/acme-challenge/{TOKEN}") == (
            200,
            None,
            TOKEN.encode() + b".thumbprint",
        )
        assert fetch("t.example.com", "/.well-known/acme-challenge/../secret")[0] == 404
        assert fetch("t.example.com", "/.well-known/acme-challenge/missing")[0] == 404
        assert "Traceback" not in edge.log()
    finally:
        assert edge.stop() in (0, -15)  # twistd ends by the SIGTERM it was sent
    assert fetch("t.example.com", "/")[0] == 0  # the drain closed it too
