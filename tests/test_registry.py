"""
The in-memory registry: names held by live tunnels and by their holds, lazy
expiry, sessions, deleted ids.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from netbore.edge.registry import (
    TOKEN_LEEWAY,
    InMemoryRegistry,
    IRegistry,
    NameHeld,
    Tunnel,
    TunnelState,
)

NOW = 1_700_000_000.0


def tunnel(name: str, tunnel_id: str | None = None, held: float = 100.0) -> Tunnel:
    return Tunnel(
        tunnel_id=tunnel_id or f"id-{name}",
        name=name,
        public_hostname=f"{name}.localhost",
        public_url=f"http://{name}.localhost",
        owner=None,
        edge_id="edge-1",
        created_at=NOW,
        expires_at=NOW + 60,
        held_until=NOW + held,
    )


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture
def registry(clock: Clock) -> InMemoryRegistry:
    return InMemoryRegistry(clock, grace=30)


def test_provides_iregistry(registry: InMemoryRegistry) -> None:
    """
    L{InMemoryRegistry} declares L{IRegistry} and has every method it names,
    with matching signatures.
    """
    assert IRegistry.providedBy(registry)
    assert verifyObject(IRegistry, registry)
    assert {"add", "get", "by_name", "remove", "is_deleted", "all", "expire"} <= set(IRegistry.names())


def test_add_and_look_up(registry: InMemoryRegistry) -> None:
    t = tunnel("myapp")
    registry.add(t)
    assert t.state is TunnelState.PENDING
    assert TunnelState.PENDING.value == "PENDING"
    assert registry.get("id-myapp") is t
    assert registry.by_name("myapp") is t
    assert registry.by_name("other") is None
    assert registry.get("nope") is None
    assert registry.all() == [t]


def test_name_and_id_are_unique(registry: InMemoryRegistry) -> None:
    t = tunnel("myapp")
    registry.add(t)
    registry.add(t)  # the same tunnel again is fine
    with pytest.raises(NameHeld):
        registry.add(tunnel("myapp", "id-other"))
    with pytest.raises(NameHeld):
        registry.add(tunnel("other", "id-myapp"))
    assert registry.all() == [t]


def test_hold_lapses_lazily(registry: InMemoryRegistry, clock: Clock) -> None:
    registry.add(tunnel("myapp", held=100))
    clock.advance(99)
    assert registry.by_name("myapp") is not None
    clock.advance(1)
    assert registry.by_name("myapp") is None
    assert registry.get("id-myapp") is None
    # the name can be taken by a new tunnel now
    registry.add(tunnel("myapp", "id-new", held=1000))
    assert registry.by_name("myapp").tunnel_id == "id-new"  # type: ignore[union-attr]


def test_extend_hold_only_grows(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp", held=100)
    registry.add(t)
    registry.extend_hold(t, NOW + 500)
    registry.extend_hold(t, NOW + 200)
    assert t.held_until == NOW + 500
    clock.advance(499)
    assert registry.by_name("myapp") is t


def test_active_tunnel_never_lapses(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp", held=10)
    registry.add(t)
    one, two = object(), object()
    registry.attach_session(t, one)
    registry.attach_session(t, two)
    registry.attach_session(t, two)
    assert t.state is TunnelState.ACTIVE
    assert t.sessions == [one, two]
    clock.advance(1000)
    assert registry.by_name("myapp") is t
    registry.detach_session(t, one)
    assert t.state is TunnelState.ACTIVE
    registry.detach_session(t, two)
    registry.detach_session(t, two)
    assert t.state is TunnelState.DOWN
    assert t.sessions == []
    assert t.held_until == NOW + 1000 + 30
    clock.advance(29)
    assert registry.by_name("myapp") is t
    # reconnecting within the grace keeps it
    registry.attach_session(t, one)
    assert t.state is TunnelState.ACTIVE
    registry.detach_session(t, one)
    clock.advance(30)
    assert registry.by_name("myapp") is None


def test_detach_keeps_longer_hold(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp", held=3600)
    registry.add(t)
    s = object()
    registry.attach_session(t, s)
    registry.detach_session(t, s)
    assert t.held_until == NOW + 3600


def test_remove_frees_name_and_remembers_id(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp", held=100)
    registry.add(t)
    assert not registry.is_deleted("id-myapp")
    assert registry.remove("id-myapp") is t
    assert registry.remove("id-myapp") is None
    assert registry.by_name("myapp") is None
    assert registry.all() == []
    assert registry.is_deleted("id-myapp")
    registry.add(tunnel("myapp", "id-new"))
    clock.advance(100 + TOKEN_LEEWAY - 1)
    assert registry.is_deleted("id-myapp")
    clock.advance(1)
    assert not registry.is_deleted("id-myapp")


def test_deleted_ids_bounded(clock: Clock) -> None:
    registry = InMemoryRegistry(clock, grace=30, max_deleted=3)
    for i in range(5):
        registry.add(tunnel(f"t{i}"))
        registry.remove(f"id-t{i}")
    assert [registry.is_deleted(f"id-t{i}") for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_readding_a_deleted_id_clears_it(registry: InMemoryRegistry) -> None:
    registry.add(tunnel("myapp"))
    registry.remove("id-myapp")
    registry.add(tunnel("myapp"))
    assert not registry.is_deleted("id-myapp")


def test_expire_sweeps(registry: InMemoryRegistry, clock: Clock) -> None:
    registry.add(tunnel("short", held=10))
    registry.add(tunnel("long", held=1000))
    registry.add(tunnel("gone", held=10))
    registry.remove("id-gone")
    clock.advance(10 + TOKEN_LEEWAY)
    assert registry.expire() == 1
    assert [t.name for t in registry.all()] == ["long"]
    assert not registry.is_deleted("id-gone")
