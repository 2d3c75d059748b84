"""
Tests for L{netbore.edge.clientaddr}: who the client is behind trusted
proxies (issue 10 item 13).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.address import IPv4Address
from twisted.test import iosim

from netbore.edge.clientaddr import TrustedProxies, normalise, parse_network
from netbore.protocol import SUBPROTOCOL

from .test_edge_agents import FakeAgent, Harness

LB = TrustedProxies(["10.0.0.0/8", "2001:db8::/32"])


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_sends() -> None:
    none = TrustedProxies()
    assert not none
    assert none.client("198.51.100.7", [b"203.0.113.9"]) == "198.51.100.7"
    assert not none.secure("198.51.100.7", [b"https"], False)


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    assert LB.client("198.51.100.7", [b"203.0.113.9, 10.0.0.1"]) == "198.51.100.7"
    assert not LB.secure("198.51.100.7", [b"https"], False)
    assert LB.secure("198.51.100.7", [b"http"], True)


@pytest.mark.parametrize(
    "forwarded, client",
    [
        ([b"203.0.113.9"], "203.0.113.9"),
        # Right to left past trusted hops; what the client itself wrote
        # (left of the first untrusted hop) is never believed.
        ([b"1.1.1.1, 203.0.113.9, 10.1.2.3"], "203.0.113.9"),
        ([b"1.1.1.1", b"203.0.113.9", b"10.1.2.3, 10.9.9.9"], "203.0.113.9"),
        # Every hop trusted: the leftmost.
        ([b"10.1.1.1, 10.2.2.2"], "10.1.1.1"),
        # Not an address: the walk ends at the last trusted hop.
        ([b"203.0.113.9, unknown, 10.2.2.2"], "10.2.2.2"),
        ([b"garbage"], "10.0.0.5"),
        ([], "10.0.0.5"),
        # Ports and brackets, IPv6, IPv4-mapped IPv6.
        ([b"203.0.113.9:4711"], "203.0.113.9"),
        ([b"[2001:db9::1]:443"], "2001:db9::1"),
        ([b"::ffff:203.0.113.9"], "203.0.113.9"),
    ],
)
def test_a_trusted_peer_names_the_last_untrusted_hop(forwarded: list[bytes], client: str) -> None:
    assert LB.client("10.0.0.5", forwarded) == client


def test_a_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert LB.client("10.0.0.5", None) == "10.0.0.5"
    assert LB.client("::ffff:10.0.0.5", None) == "10.0.0.5"


def test_a_trusted_peer_names_the_scheme() -> None:
    assert LB.secure("10.0.0.5", [b"https"], False)
    assert not LB.secure("10.0.0.5", [b"https, http"], True)  # the nearest proxy's word
    assert LB.secure("10.0.0.5", [b"gopher"], True)  # not a scheme: the connection's
    assert not LB.secure("10.0.0.5", None, False)


def test_forwarded_reads_one_requests_fields() -> None:
    fields = [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"), (b"x-forwarded-proto", b"https"), (b"host", b"a")]
    assert LB.forwarded(b"10.0.0.5", fields, False) == (b"203.0.113.9", True)
    assert LB.forwarded(b"10.0.0.5", [], False) == (b"10.0.0.5", False)


def test_one_spelling_per_address() -> None:
    assert normalise("::ffff:127.0.0.1") == "127.0.0.1"
    assert normalise("2001:DB8:0::1") == "2001:db8::1"
    assert normalise("127.0.0.1") == "127.0.0.1"
    assert normalise("unknown") == "unknown"


def test_networks_are_checked() -> None:
    assert str(parse_network("127.0.0.1")) == "127.0.0.1/32"
    assert str(parse_network("10.1.2.3/8")) == "10.0.0.0/8"
    with pytest.raises(ValueError, match="'nonsense' is not an IP address or CIDR range"):
        parse_network("nonsense")


# -- the agents' /connect counts against the control API's key ------------------


def _connect(h: Any, token: str, peer: str, xff: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if xff is not None:
        headers["X-Forwarded-For"] = xff
    factory = WebSocketClientFactory("ws://tunnel.test/connect", protocols=[SUBPROTOCOL], headers=headers)
    factory.protocol = FakeAgent
    factory.agent_id = "agent-1"  # type: ignore[attr-defined]
    addr = IPv4Address("TCP", peer, 40000)
    agent = factory.buildProtocol(addr)
    edge = h.endpoint.factory.buildProtocol(addr)
    server = iosim.FakeTransport(edge, isServer=True, peerAddress=addr)
    iosim.connect(edge, server, agent, iosim.makeFakeClient(agent), clock=h.clock).flush()
    return agent


def test_connect_failures_count_against_the_bare_address(tmp_path: Path) -> None:
    """
    Item 13: /connect keyed its failures C{tcp4:<address>} and the control
    API C{<address>}: two budgets for one client.  Now one key.
    """
    h = Harness(tmp_path, per_minute=2)
    for _ in range(2):
        assert not _connect(h, "bad", "192.0.2.9").opened
    assert h.limiter.check("192.0.2.9") is not None  # the control API's key for this client
    assert h.limiter.check("198.51.100.1") is None


def test_connect_believes_forwarded_for_from_a_trusted_proxy_only(tmp_path: Path) -> None:
    h = Harness(tmp_path, per_minute=1)
    h.endpoint.proxies = TrustedProxies(["10.0.0.0/8"])
    _connect(h, "bad", "10.0.0.2", xff="6.6.6.6, 203.0.113.4")
    _connect(h, "bad", "192.0.2.9", xff="203.0.113.5")
    assert h.limiter.check("203.0.113.4") is not None
    assert h.limiter.check("192.0.2.9") is not None
    assert h.limiter.check("203.0.113.5") is None and h.limiter.check("10.0.0.2") is None
