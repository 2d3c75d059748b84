"""
Connection caps on the edge's listeners (issue 10, item 10), without
sockets: the total and per-address caps of L{netbore.edge.limits}, a
connection counted until it closes (also once autobahn took it over for
an agent's WebSocket), and the options.  With real processes, and
C{EMFILE}: L{tests.test_integration_connection_caps}.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from netbore.edge import limits as limits_module
from netbore.edge.limits import FD_RESERVE, ConnectionLimits, CountedViewer, fd_cap
from netbore.edge.tap import Options, makeService

from .test_edge_agents import Harness as AgentsHarness
from .test_edge_exchange import Harness as ExchangeHarness


def _connect(site: Any, host: str, port: int = 50000) -> tuple[Any, StringTransport]:
    addr = IPv4Address("TCP", host, port)
    protocol = site.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr)
    protocol.makeConnection(transport)
    return protocol, transport


def _closed(protocol: Any) -> None:
    protocol.connectionLost(Failure(ConnectionDone()))


def test_over_the_per_address_cap_a_viewer_gets_429_and_is_closed() -> None:
    h = ExchangeHarness()
    site = h.site
    site.limits = limits = ConnectionLimits(total=100, per_address=2)
    first = [_connect(site, "192.0.2.1") for _ in range(2)]
    assert all(isinstance(p, CountedViewer) for p, _ in first)
    refused, transport = _connect(site, "192.0.2.1")
    assert not isinstance(refused, CountedViewer)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 ")
    assert b"too_many_connections" in head.lower() + body
    assert b"connection: close" in head.lower()
    assert transport.disconnecting and not transport.disconnected
    # Another address is not concerned.
    other, _ = _connect(site, "192.0.2.2")
    assert isinstance(other, CountedViewer)
    assert (limits.count, limits.by_address) == (3, {"192.0.2.1": 2, "192.0.2.2": 1})
    # One closed: room for one more from that address.
    _closed(first[0][0])
    assert isinstance(_connect(site, "192.0.2.1")[0], CountedViewer)
    assert limits.refused == 1


def test_over_the_total_cap_a_connection_is_closed_at_once_unanswered() -> None:
    h = ExchangeHarness()
    site = h.site
    site.limits = limits = ConnectionLimits(total=3, per_address=10)
    opened = [_connect(site, f"192.0.2.{i}") for i in range(3)]
    refused, transport = _connect(site, "192.0.2.9")
    assert not isinstance(refused, CountedViewer)
    assert transport.value() == b""
    assert transport.disconnected  # aborted
    for protocol, _ in opened:
        _closed(protocol)
    assert (limits.count, limits.by_address) == (0, {})
    assert isinstance(_connect(site, "192.0.2.9")[0], CountedViewer)


def test_a_counted_connection_keeps_being_served() -> None:
    h = ExchangeHarness()
    site = h.site
    site.limits = ConnectionLimits(total=1, per_address=1)
    viewer, transport = _connect(site, "192.0.2.1")
    viewer.dataReceived(b"GET / HTTP/1.1\r\nHost: app.localhost:8080\r\n\r\n")
    assert h.session.heads  # the request went into the tunnel
    # A second connection is refused, the first one is untouched.
    _connect(site, "192.0.2.1")
    assert not transport.disconnecting


def test_release_is_once_per_connection() -> None:
    limits = ConnectionLimits(total=5, per_address=5)
    h = ExchangeHarness()
    h.site.limits = limits
    viewer, transport = _connect(h.site, "192.0.2.1")
    _closed(viewer)
    limits.release(transport)
    _closed(viewer)
    assert (limits.count, limits.by_address) == (0, {})


def test_an_agent_session_taken_over_from_a_counted_connection_releases_it(tmp_path: Path) -> None:
    h = AgentsHarness(tmp_path)
    limits = ConnectionLimits(total=5, per_address=5)
    h.endpoint.limits = limits
    agent, edge, pump = h.connect(h.token())
    # As if the site had counted the connection autobahn took over.
    limits.count, limits.by_address = 1, {"127.0.0.1": 1}
    limits.bind(edge.transport, "127.0.0.1")
    edge.transport.loseConnection()  # type: ignore[union-attr]
    pump.flush()
    assert (limits.count, limits.by_address) == (0, {})


def test_the_total_cap_is_never_above_the_descriptor_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module.resource, "getrlimit", lambda which: (1024, 4096))
    assert fd_cap(10000) == 1024 - FD_RESERVE
    assert fd_cap(100) == 100
    monkeypatch.setattr(limits_module.resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    assert fd_cap(10000) == 10000


def test_options_and_the_site_s_caps(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path / "data")])
    config = options.config()
    assert (config.max_connections, config.max_connections_per_ip) == (10000, 256)
    options = Options()
    options.parseOptions(
        ["--data-dir", str(tmp_path / "data"), "--max-connections", "50", "--max-connections-per-ip", "7"]
    )
    edge = makeService(options, reactor=MemoryReactorClock()).getServiceNamed("edge")
    limits = edge.site.limits  # type: ignore[attr-defined]
    assert (limits.total, limits.per_address) == (50, 7)
    assert edge.endpoint.limits is limits  # type: ignore[attr-defined]


def test_the_429_page_is_the_documented_json_shape_when_rendered_as_json() -> None:
    from netbore.edge import pages

    ctype, body = pages.render(limits_module.TOO_MANY_CONNECTIONS, b"", b"application/json")
    assert json.loads(body)["error"] == "too_many_connections"
