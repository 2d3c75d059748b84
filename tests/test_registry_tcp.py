"""
The in-memory registry's TCP tunnels (issue 11, TCP tunnels): a public port
is held exactly like a name (grace after the agent drops, reclaimed through
the same tunnel, released on delete and when the hold lapses), and whoever
listens on it hears when the registry forgets its tunnel.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from netbore.edge.registry import InMemoryRegistry, IRegistry, NameHeld, Tunnel, TunnelState

NOW = 1_700_000_000.0


def tcp_tunnel(name: str, port: int, tunnel_id: str | None = None, held: float = 100.0) -> Tunnel:
    return Tunnel(
        tunnel_id=tunnel_id or f"id-{name}",
        name=name,
        public_hostname=f"{name}.localhost",
        public_url=f"tcp://localhost:{port}",
        owner=None,
        edge_id="edge-1",
        created_at=NOW,
        expires_at=NOW + 60,
        held_until=NOW + held,
        protocol="tcp",
        tcp_port=port,
    )


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture
def registry(clock: Clock) -> InMemoryRegistry:
    return InMemoryRegistry(clock, grace=30, token_lifetime=1000)


@pytest.fixture
def forgotten(registry: InMemoryRegistry) -> list[Tunnel]:
    seen: list[Tunnel] = []
    registry.on_forget.append(seen.append)
    return seen


def test_tunnels_are_http_without_a_port_by_default() -> None:
    t = Tunnel("id", "myapp", "myapp.localhost", "http://myapp.localhost", None, "edge-1")
    assert (t.protocol, t.tcp_port) == ("http", None)
    assert "by_port" in IRegistry.names()


def test_by_port_finds_the_live_tunnel(registry: InMemoryRegistry) -> None:
    t = tcp_tunnel("db", 20000)
    registry.add(t)
    registry.add(tcp_tunnel("web", 20001))
    assert registry.by_port(20000) is t
    assert registry.by_port(20001).name == "web"  # type: ignore[union-attr]
    assert registry.by_port(20002) is None


def test_a_port_held_by_another_live_tunnel_is_refused(registry: InMemoryRegistry) -> None:
    t = tcp_tunnel("db", 20000)
    registry.add(t)
    registry.add(t)  # the same tunnel again is fine
    with pytest.raises(NameHeld, match="port 20000"):
        registry.add(tcp_tunnel("other", 20000))
    assert registry.by_port(20000) is t
    assert registry.by_name("other") is None
    assert registry.all() == [t]


def test_port_held_through_the_grace_then_released(
    registry: InMemoryRegistry, clock: Clock, forgotten: list[Tunnel]
) -> None:
    t = tcp_tunnel("db", 20000, held=0)
    registry.add(t)
    session = object()
    registry.attach_session(t, session)
    clock.advance(1000)
    assert registry.by_port(20000) is t
    registry.detach_session(t, session)
    clock.advance(29.9)
    assert registry.by_port(20000) is t
    with pytest.raises(NameHeld):
        registry.add(tcp_tunnel("squat", 20000))
    assert forgotten == []
    clock.advance(0.1)
    # the lookup forgets it lazily, and says so once
    assert registry.by_port(20000) is None
    assert forgotten == [t]
    assert registry.by_port(20000) is None
    assert forgotten == [t]
    registry.add(tcp_tunnel("next", 20000, held=10_000))
    assert registry.by_port(20000).name == "next"  # type: ignore[union-attr]


def test_port_reclaimed_by_the_same_tunnel_within_the_hold(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tcp_tunnel("db", 20000, held=0)
    registry.add(t)
    registry.tokens_issued(t, NOW + 600, NOW + 3600)
    one, two = object(), object()
    registry.attach_session(t, one)
    registry.detach_session(t, one)
    clock.advance(3000)  # held by the recreate token, past the grace
    assert registry.get("id-db") is t
    registry.attach_session(t, two)
    assert t.state is TunnelState.ACTIVE
    assert registry.by_port(20000) is t
    clock.advance(10_000)
    assert registry.by_port(20000) is t


def test_port_released_on_delete(registry: InMemoryRegistry, forgotten: list[Tunnel]) -> None:
    t = tcp_tunnel("db", 20000)
    registry.add(t)
    assert registry.remove("id-db") is t
    assert forgotten == [t]
    assert registry.by_port(20000) is None
    registry.add(tcp_tunnel("other", 20000))
    assert registry.remove("id-db") is None
    assert forgotten == [t]


def test_port_released_by_the_sweep(registry: InMemoryRegistry, clock: Clock, forgotten: list[Tunnel]) -> None:
    short = tcp_tunnel("short", 20000, held=10)
    registry.add(short)
    registry.add(tcp_tunnel("long", 20001, held=1000))
    registry.add(Tunnel("id-web", "web", "web.localhost", "http://web.localhost", None, "edge-1", held_until=NOW + 10))
    clock.advance(10)
    assert registry.expire() == 2
    assert [t.name for t in forgotten] == ["short", "web"]
    assert registry.by_port(20000) is None
    assert registry.by_port(20001) is not None


def test_a_failing_observer_does_not_break_lookups(registry: InMemoryRegistry, clock: Clock) -> None:
    seen: list[str] = []

    def boom(tunnel: Tunnel) -> None:
        raise RuntimeError("boom")

    registry.on_forget.append(boom)
    registry.on_forget.append(lambda t: seen.append(t.name))
    registry.add(tcp_tunnel("db", 20000, held=5))
    clock.advance(5)
    assert registry.by_port(20000) is None
    assert seen == ["db"]
