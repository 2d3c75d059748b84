"""
Tests for L{netbore.edge.controlhttp}: the twisted.web channel and request
of the edge's own names bound the request body (issue 10 item 5) and know
the client behind a trusted proxy (item 13).  In memory; the same over real
sockets is in C{test_integration_security.py}.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource

from netbore.edge.clientaddr import TrustedProxies
from netbore.edge.config import EdgeConfig
from netbore.edge.registry import InMemoryRegistry
from netbore.edge.router import TunnelRouter
from netbore.edge.site import EdgeSite

LIMIT = 1000


class Recorder(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, str, bool]] = []

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        self.seen.append((body, request.getClientAddress().host, request.isSecure()))
        return b"ok"


def make_site(proxies: list[str] | None = None) -> tuple[EdgeSite, Recorder]:
    clock = Clock()
    config = EdgeConfig()
    root = Recorder()
    site = EdgeSite(root, TunnelRouter(config, InMemoryRegistry(clock, grace=1), clock), clock)
    site.body_limit = LIMIT
    site.proxies = TrustedProxies(proxies or [])
    return site, root


def hand_over(site: EdgeSite, raw: bytes, peer: str = "192.0.2.7") -> tuple[StringTransport, Any]:
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    channel = site.hand_over(transport, transport.getPeer(), raw)
    return transport, channel


def too_large(transport: StringTransport) -> dict[str, Any]:
    data = transport.value()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), data
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert b"\r\nConnection: close\r\n" in head
    assert transport.disconnecting
    parsed: dict[str, Any] = json.loads(body)
    assert parsed == {"error": "payload_too_large", "message": f"request body is larger than {LIMIT} bytes"}
    return parsed


@pytest.mark.parametrize("path", [b"/tunnels/create", b"/connect", b"/auth/token", b"/nowhere"])
def test_a_content_length_over_the_limit_is_refused_before_the_body(path: bytes) -> None:
    site, root = make_site()
    head = b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n"
    transport, channel = hand_over(site, head % path)
    too_large(transport)
    assert b"100 Continue" not in transport.value()
    # What follows is not read into the request, and nothing is rendered.
    channel.dataReceived(b"x" * 10_000)
    assert root.seen == []
    assert channel.requests[0].content is None or channel.requests[0].content.tell() == 0


@pytest.mark.parametrize("path", [b"/tunnels/create", b"/connect"])
def test_a_chunked_body_past_the_limit_is_refused_there(path: bytes) -> None:
    site, root = make_site()
    head = b"POST %s HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" % path
    transport, channel = hand_over(site, head)
    channel.dataReceived(b"200\r\n" + b"a" * 0x200 + b"\r\n")
    assert transport.value() == b"" and not transport.disconnecting
    channel.dataReceived(b"200\r\n" + b"a" * 0x200 + b"\r\n")  # 1024 > 1000
    too_large(transport)
    channel.dataReceived(b"0\r\n\r\n")
    assert root.seen == []


def test_a_body_within_the_limit_is_kept_in_memory_and_served() -> None:
    site, root = make_site()
    body = b"b" * LIMIT
    raw = b"POST /tunnels/create HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    transport, channel = hand_over(site, raw)
    assert root.seen == [(body, "192.0.2.7", False)]
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    chunked = b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n%s\r\n0\r\n\r\n" % body
    hand_over(site, chunked)
    assert root.seen[-1][0] == body


def test_the_client_behind_a_trusted_proxy() -> None:
    site, root = make_site(["10.0.0.0/8"])
    raw = (
        b"GET /tunnels/list HTTP/1.1\r\nHost: localhost\r\n"
        b"X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    hand_over(site, raw, peer="10.1.2.3")
    hand_over(site, raw, peer="192.0.2.7")  # not a trusted proxy: its fields are not believed
    assert [(host, secure) for _, host, secure in root.seen] == [("203.0.113.9", True), ("192.0.2.7", False)]
