"""
The in-memory registry: names held by live tunnels and by their holds, lazy
expiry, sessions, deleted ids, quota counts.
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
from netbore.edge.revocations import SQLiteRevocations

NOW = 1_700_000_000.0


def tunnel(name: str, tunnel_id: str | None = None, held: float = 100.0, quota_key: str | None = None) -> Tunnel:
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
        quota_key=quota_key,
    )


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(NOW)
    return c


@pytest.fixture
def registry(clock: Clock) -> InMemoryRegistry:
    return InMemoryRegistry(clock, grace=30, token_lifetime=1000)


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


def test_pending_tunnel_is_held_until_its_ephemeral_token_lapses(registry: InMemoryRegistry, clock: Clock) -> None:
    """
    Issue 10 item 9: a tunnel whose agent never connected releases its name
    when its (latest) ephemeral token lapses, however long its recreate
    token is valid.
    """
    t = tunnel("myapp", held=0)
    registry.add(t)
    registry.tokens_issued(t, NOW + 600, NOW + 30 * 86400)
    assert (t.expires_at, t.held_until, t.recreate_until) == (NOW + 600, NOW + 600, NOW + 30 * 86400)
    clock.advance(300)
    registry.tokens_issued(t, NOW + 900, NOW + 86400)  # asked again: new candidates
    assert t.held_until == NOW + 900
    assert t.recreate_until == NOW + 30 * 86400  # the latest-expiring one counts
    clock.advance(599)
    assert registry.by_name("myapp") is t
    clock.advance(1)
    assert registry.by_name("myapp") is None


def test_dropped_tunnel_is_held_for_grace_or_its_recreate_token_whichever_longer(clock: Clock) -> None:
    """
    Issue 10 item 9: after the agent drops, the name is held for --grace or
    while the recreate token is valid, whichever is longer, and no longer:
    the ephemeral token's lifetime does not extend it (--grace 3 with a 60 s
    recreate token used to hold the name 600 s).
    """
    registry = InMemoryRegistry(clock, grace=3)
    t = tunnel("myapp", held=0)
    registry.add(t)
    registry.tokens_issued(t, NOW + 600, NOW + 60)
    session = object()
    registry.attach_session(t, session)
    clock.advance(10)
    registry.detach_session(t, session)
    assert t.held_until == NOW + 60
    clock.advance(49.9)
    assert registry.by_name("myapp") is t
    clock.advance(0.1)
    assert registry.by_name("myapp") is None

    # Past its recreate token, the grace alone holds it.
    late = tunnel("late", held=0)
    registry.add(late)
    registry.tokens_issued(late, clock.seconds() + 600, clock.seconds() + 60)
    registry.attach_session(late, session)
    clock.advance(100)
    registry.detach_session(late, session)
    assert late.held_until == clock.seconds() + 3
    clock.advance(3)
    assert registry.by_name("late") is None


def test_new_tokens_for_a_down_tunnel_hold_it_by_the_recreate_token_only(
    registry: InMemoryRegistry, clock: Clock
) -> None:
    t = tunnel("myapp", held=0)
    registry.add(t)
    registry.tokens_issued(t, NOW + 600, NOW + 60)
    session = object()
    registry.attach_session(t, session)
    registry.detach_session(t, session)
    assert t.held_until == NOW + 60  # grace 30 is shorter
    registry.tokens_issued(t, NOW + 600, NOW + 120)
    assert t.held_until == NOW + 120  # not the ephemeral token's NOW + 600
    clock.advance(120)
    assert registry.by_name("myapp") is None


def test_held_by_counts_live_tunnels_per_quota_key(registry: InMemoryRegistry, clock: Clock) -> None:
    registry.add(tunnel("a1", held=10, quota_key="account:alice"))
    registry.add(tunnel("a2", held=100, quota_key="account:alice"))
    registry.add(tunnel("b1", held=100, quota_key="address:10.0.0.1"))
    registry.add(tunnel("free", held=100))
    assert registry.held_by("account:alice") == 2
    assert registry.held_by("address:10.0.0.1") == 1
    assert registry.held_by("account:bob") == 0
    clock.advance(10)  # a1's hold lapses
    assert registry.held_by("account:alice") == 1
    registry.remove("id-a2")
    assert registry.held_by("account:alice") == 0
    registry.remove("id-b1")
    assert registry.held_by("address:10.0.0.1") == 0


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


def test_detach_keeps_the_recreate_token_hold(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp", held=3600)
    t.recreate_until = NOW + 3600
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
    # Revoked for the longest a token can live (token_lifetime=1000), from
    # the delete on, whatever tokens this registry saw issued.
    clock.advance(1000 + TOKEN_LEEWAY - 1)
    assert registry.is_deleted("id-myapp")
    clock.advance(1)
    assert not registry.is_deleted("id-myapp")


def test_revocation_outlives_the_tokens_issued_here(registry: InMemoryRegistry, clock: Clock) -> None:
    t = tunnel("myapp")
    registry.add(t)
    registry.tokens_issued(t, NOW + 600, NOW + 5000)
    registry.remove("id-myapp")
    clock.advance(5000 + TOKEN_LEEWAY - 1)
    assert registry.is_deleted("id-myapp")
    clock.advance(1)
    assert not registry.is_deleted("id-myapp")


def test_deleted_ids_are_never_evicted_by_many_deletes(clock: Clock) -> None:
    """
    Issue 10 item 4: 100,000 create+delete pairs by anyone do not push a
    victim's revocation out (there used to be a cap, oldest forgotten first).
    """
    registry = InMemoryRegistry(clock, grace=30, revocations=SQLiteRevocations(":memory:"))
    registry.add(tunnel("victim"))
    registry.remove("id-victim")
    for i in range(100_000):
        registry.add(tunnel("squat", f"id-{i}"))
        registry.remove(f"id-{i}")
    assert registry.is_deleted("id-victim")
    assert registry.is_deleted("id-99999")
    assert len(registry.revocations) == 100_001


def test_readding_a_deleted_id_does_not_clear_it(registry: InMemoryRegistry) -> None:
    registry.add(tunnel("myapp"))
    registry.remove("id-myapp")
    registry.add(tunnel("myapp"))
    assert registry.is_deleted("id-myapp")


def test_expire_sweeps(registry: InMemoryRegistry, clock: Clock) -> None:
    registry.add(tunnel("short", held=10))
    registry.add(tunnel("long", held=1000))
    registry.add(tunnel("gone", held=10))
    registry.remove("id-gone")
    clock.advance(10)
    assert registry.expire() == 1
    assert [t.name for t in registry.all()] == ["long"]
    assert registry.is_deleted("id-gone")
    assert len(registry.revocations) == 1
    clock.advance(1000 + TOKEN_LEEWAY - 10)
    registry.expire()
    assert not registry.is_deleted("id-gone")
    assert len(registry.revocations) == 0


def test_revoke_a_forgotten_id(registry: InMemoryRegistry, clock: Clock) -> None:
    registry.revoke("id-forgotten")
    assert registry.is_deleted("id-forgotten")
    clock.advance(1000 + TOKEN_LEEWAY)
    assert not registry.is_deleted("id-forgotten")
