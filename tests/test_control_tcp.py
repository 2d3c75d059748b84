"""
TCP tunnels in the control API (issue 11, TCP tunnels): create, recreate,
delete and list with C{"protocol": "tcp"}, and their errors, through
StubTreq on a memory reactor whose listeners the tests can see; one test
on the real reactor checks that a deleted tunnel's port refuses
connections.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogEvent, globalLogPublisher

from netbore.auth import RECREATE, TokenAuthority, load_keyring
from netbore.edge.apirequest import load_schema
from netbore.edge.config import EdgeConfig
from netbore.edge.control import ControlAPI
from netbore.edge.ratelimit import AuthFailureLimiter
from netbore.edge.registry import InMemoryRegistry, Tunnel, TunnelState
from netbore.edge.tcp_ports import PortRange, TcpPorts

from .fake_ports import PortsReactor
from .test_control_api import KEYS, NOW, Edge, assert_valid, error_of


class TcpEdge(Edge):
    reactor: Any = None
    ports: TcpPorts | None = None


RANGE = PortRange(20000, 20004)


def make_tcp_edge(
    tmp_path: Any,
    ports: PortRange | None = RANGE,
    reactor: Any = None,
    **config: Any,
) -> TcpEdge:
    if reactor is None:
        reactor = PortsReactor()
        reactor.advance(NOW)
    settings: dict[str, Any] = {"data_dir": str(tmp_path), "allow_anonymous": True, "tcp_ports": ports}
    settings.update(config)
    cfg = EdgeConfig(**settings)
    authority = TokenAuthority(load_keyring(str(tmp_path)), "netbore-test", reactor)
    registry = InMemoryRegistry(reactor, grace=cfg.grace)
    tcp_ports = None
    if ports is not None:
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        tcp_ports = TcpPorts(ports, cfg.tcp_interface, registry, reactor, lambda port: factory)
    limiter = AuthFailureLimiter(reactor, cfg.auth_failures_per_minute)
    deleted: list[Tunnel] = []
    api = ControlAPI(cfg, registry, authority, KEYS, limiter, reactor, on_delete=deleted.append, tcp_ports=tcp_ports)
    edge = TcpEdge(api, StubTreq(api.app.resource()), reactor, registry, authority, limiter, deleted)
    edge.reactor = reactor
    edge.ports = tcp_ports
    return edge


@pytest.fixture
def edge(tmp_path: Any) -> TcpEdge:
    return make_tcp_edge(tmp_path)


def listening(edge: TcpEdge) -> list[int]:
    assert edge.ports is not None
    assert edge.ports.listening() == sorted(edge.reactor.open)
    return edge.ports.listening()


# -- create ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_create_tcp(edge: TcpEdge) -> None:
    status, _, body = await edge.create({"protocol": "tcp", "requested_name": "db"})
    assert status == 201
    assert_valid(load_schema("tunnels-create-response.json"), body)
    assert body["protocol"] == "tcp"
    assert body["tcp_port"] == 20000
    # the domain, without the control API's port
    assert body["public_url"] == "tcp://localhost:20000"
    assert body["public_hostname"] == "db.localhost"
    assert listening(edge) == [20000]
    assert edge.reactor.open[20000].interface == "127.0.0.1"

    tunnel = edge.registry.get(body["tunnel_id"])
    assert tunnel is not None
    assert (tunnel.protocol, tunnel.tcp_port, tunnel.state) == ("tcp", 20000, TunnelState.PENDING)
    assert edge.registry.by_port(20000) is tunnel
    claims = edge.authority.verify(body["recreate_token"], RECREATE)
    assert (claims.raw["protocol"], claims.raw["port"]) == ("tcp", 20000)

    _, _, second = await edge.create({"protocol": "tcp"})
    assert (second["tcp_port"], second["public_url"]) == (20001, "tcp://localhost:20001")
    assert listening(edge) == [20000, 20001]


@pytest_twisted.ensureDeferred
async def test_http_tunnels_say_so_and_hold_no_port(edge: TcpEdge) -> None:
    for body in ({}, {"protocol": "http"}):
        status, _, created = await edge.create(body)
        assert status == 201
        assert created["protocol"] == "http"
        assert "tcp_port" not in created
        assert created["public_url"].startswith("http://")
        assert "protocol" not in edge.authority.verify(created["recreate_token"], RECREATE).raw
    assert listening(edge) == []


@pytest_twisted.ensureDeferred
async def test_tcp_public_url_uses_the_edge_domain(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path, domain="tunnel.example.com", public_scheme="https")
    _, _, body = await edge.create({"protocol": "tcp"}, base="https://control.tunnel.example.com:8443")
    assert body["public_url"] == "tcp://tunnel.example.com:20000"


@pytest_twisted.ensureDeferred
async def test_tcp_needs_tcp_ports(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path, ports=None)
    status, _, body = await edge.create({"protocol": "tcp"})
    assert (status, body["error"]) == (400, "tcp_not_enabled")
    assert_valid(load_schema("error.json"), body)
    assert "--tcp-ports" in body["message"]
    assert edge.registry.all() == []
    assert error_of(await edge.create({"protocol": "udp"})) == (400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_ports_exhausted_is_a_409_naming_the_range(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path, ports=PortRange(20000, 20001))
    edge.reactor.taken.add(20001)  # another process's
    assert (await edge.create({"protocol": "tcp"}))[2]["tcp_port"] == 20000
    status, _, body = await edge.create({"protocol": "tcp", "requested_name": "more"})
    assert (status, body["error"]) == (409, "ports_exhausted")
    assert_valid(load_schema("error.json"), body)
    assert "20000-20001" in body["message"]
    assert edge.registry.by_name("more") is None
    assert listening(edge) == [20000]
    # HTTP tunnels are not affected
    assert (await edge.create({}))[0] == 201


@pytest_twisted.ensureDeferred
async def test_a_tcp_tunnel_counts_against_the_quota(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path, max_tunnels_per_address=1)
    assert (await edge.create({}))[0] == 201
    assert error_of(await edge.create({"protocol": "tcp"})) == (403, "quota_exceeded")
    assert listening(edge) == []


@pytest_twisted.ensureDeferred
async def test_owner_cannot_take_over_its_name_as_the_other_protocol(edge: TcpEdge) -> None:
    alice = edge.management("alice")
    _, _, web = await edge.create({"requested_name": "app"}, token=alice)
    status, _, body = await edge.create({"requested_name": "app", "protocol": "tcp"}, token=alice)
    assert (status, body["error"]) == (409, "name_taken")
    assert "http tunnel" in body["message"]
    assert listening(edge) == []
    _, _, db = await edge.create({"requested_name": "db", "protocol": "tcp"}, token=alice)
    # the owner asking again for its TCP tunnel's name gets the same one
    _, _, again = await edge.create({"requested_name": "db", "protocol": "tcp"}, token=alice)
    assert (again["tunnel_id"], again["tcp_port"]) == (db["tunnel_id"], db["tcp_port"])
    assert web["tunnel_id"] != db["tunnel_id"]


# -- recreate ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_recreate_reclaims_the_same_port_while_held(edge: TcpEdge) -> None:
    _, _, first = await edge.create({"protocol": "tcp"})
    await edge.create({"protocol": "tcp"})
    tunnel = edge.registry.get(first["tunnel_id"])
    assert tunnel is not None
    session = object()
    edge.registry.attach_session(tunnel, session)
    edge.registry.detach_session(tunnel, session)
    edge.clock.advance(3600)  # past the grace, within the recreate token
    status, _, again = await edge.create({"recreate_token": first["recreate_token"], "protocol": "tcp"})
    assert status == 201
    assert (again["tunnel_id"], again["tcp_port"], again["public_url"]) == (
        first["tunnel_id"],
        20000,
        "tcp://localhost:20000",
    )
    # without "protocol", the token's tunnel's protocol
    _, _, third = await edge.create({"recreate_token": first["recreate_token"]})
    assert (third["protocol"], third["tcp_port"]) == ("tcp", 20000)
    assert listening(edge) == [20000, 20001]


@pytest_twisted.ensureDeferred
async def test_recreate_token_of_the_other_protocol_is_refused(edge: TcpEdge) -> None:
    _, _, web = await edge.create({})
    _, _, db = await edge.create({"protocol": "tcp"})
    status, _, body = await edge.create({"recreate_token": web["recreate_token"], "protocol": "tcp"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert "http tunnel" in body["message"]
    status, _, body = await edge.create({"recreate_token": db["recreate_token"], "protocol": "http"})
    assert (status, body["error"]) == (400, "invalid_request")
    assert "tcp tunnel" in body["message"]
    assert listening(edge) == [20000]


@pytest_twisted.ensureDeferred
async def test_recreate_after_an_edge_restart_asks_for_the_same_port(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path)
    await edge.create({"protocol": "tcp"})
    await edge.create({"protocol": "tcp"})
    _, _, third = await edge.create({"protocol": "tcp", "requested_name": "db"})
    assert third["tcp_port"] == 20002
    # a new edge process: same keys, empty registry, no listeners
    fresh = make_tcp_edge(tmp_path)
    status, _, again = await fresh.create({"recreate_token": third["recreate_token"]})
    assert status == 201
    assert (again["tunnel_id"], again["tcp_port"], again["public_hostname"]) == (
        third["tunnel_id"],
        20002,
        "db.localhost",
    )
    assert listening(fresh) == [20002]
    assert fresh.registry.by_port(20002).tunnel_id == third["tunnel_id"]  # type: ignore[union-attr]
    # the new token names the port too
    assert fresh.authority.verify(again["recreate_token"], RECREATE).raw["port"] == 20002


@pytest_twisted.ensureDeferred
async def test_recreate_after_a_restart_moves_when_the_port_is_taken(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path)
    _, _, first = await edge.create({"protocol": "tcp"})
    fresh = make_tcp_edge(tmp_path)
    fresh.reactor.taken.add(20000)  # another process took it meanwhile
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        status, _, again = await fresh.create({"recreate_token": first["recreate_token"]})
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert status == 201
    assert (again["tunnel_id"], again["tcp_port"]) == (first["tunnel_id"], 20001)
    assert [e["port"] for e in seen if e.get("event") == "tcp_port_moved"] == [20000]


@pytest_twisted.ensureDeferred
async def test_recreate_of_a_tcp_tunnel_on_an_edge_without_tcp_ports(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path)
    _, _, first = await edge.create({"protocol": "tcp"})
    plain = make_tcp_edge(tmp_path, ports=None)
    assert error_of(await plain.create({"recreate_token": first["recreate_token"]})) == (400, "tcp_not_enabled")


# -- delete, lapse, list ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_delete_releases_the_port_at_once(edge: TcpEdge) -> None:
    alice = edge.management("alice")
    _, _, db = await edge.create({"protocol": "tcp", "requested_name": "db"}, token=alice)
    listener = edge.reactor.open[20000]
    status, _, _ = await edge.call("POST", "/tunnels/delete", {"tunnel_id": db["tunnel_id"]}, token=alice)
    assert status == 200
    assert listener.stopped
    assert listening(edge) == []
    assert edge.registry.by_port(20000) is None
    # the port is free for the next tunnel; the deleted one's token is refused
    _, _, other = await edge.create({"protocol": "tcp"})
    assert other["tcp_port"] == 20000
    assert error_of(await edge.create({"recreate_token": db["recreate_token"]})) == (410, "tunnel_deleted")


@pytest_twisted.ensureDeferred
async def test_a_lapsed_tunnel_releases_its_port(tmp_path: Any) -> None:
    edge = make_tcp_edge(tmp_path, ephemeral_ttl=60)
    await edge.create({"protocol": "tcp", "recreate_token_ttl_seconds": 60})
    assert listening(edge) == [20000]
    edge.clock.advance(61)  # pending: held while its candidates are usable
    assert edge.registry.expire() == 1
    assert listening(edge) == []


@pytest_twisted.ensureDeferred
async def test_list_shows_protocol_and_port(edge: TcpEdge) -> None:
    alice = edge.management("alice")
    await edge.create({"requested_name": "web"}, token=alice)
    await edge.create({"requested_name": "db", "protocol": "tcp"}, token=alice)
    status, _, body = await edge.call("GET", "/tunnels/list", token=alice)
    assert status == 200
    assert_valid(load_schema("tunnels-list-response.json"), body)
    entries = {t["name"]: t for t in body["tunnels"]}
    assert entries["web"]["protocol"] == "http" and "tcp_port" not in entries["web"]
    assert (entries["db"]["protocol"], entries["db"]["tcp_port"], entries["db"]["public_url"]) == (
        "tcp",
        20000,
        "tcp://localhost:20000",
    )


# -- a real listener ------------------------------------------------------------------


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_a_deleted_tunnels_port_refuses_connections(tmp_path: Any) -> None:
    from twisted.internet import reactor

    from .test_tcp_ports import _connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    edge = make_tcp_edge(tmp_path, ports=PortRange(port, port), reactor=reactor)
    _, _, db = await edge.create({"protocol": "tcp"})
    assert db["tcp_port"] == port
    try:
        assert await _connect(port)
    finally:
        status, _, _ = await edge.call(
            "POST", "/tunnels/delete", {"tunnel_id": db["tunnel_id"], "recreate_token": db["recreate_token"]}
        )
    assert status == 200
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.01, lambda: None)
    assert not await _connect(port)
