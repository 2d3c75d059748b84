"""
The edge's tunnel registry: name -> tunnel -> agent sessions.

L{IRegistry} is what the control API and the data plane use;
L{InMemoryRegistry} is the one store so far (seed 000: in memory for M1).

Holding a name
==============

A tunnel holds its name while it has an agent session (C{ACTIVE}) or while
C{held_until} has not passed.  C{held_until} only ever grows: the control API
pushes it to the expiry of every token it issues for the tunnel (so the name
stays held while a recreate token is outstanding), and an agent leaving
pushes it to C{now + grace}.  A tunnel that is not C{ACTIVE} and whose hold
has passed is gone: lookups forget it lazily.

Deleted tunnels
===============

Recreate tokens are stateless JWTs, so deleting a tunnel cannot revoke them.
The registry therefore remembers deleted tunnel ids until the last recreate
token issued for them would have expired anyway (bounded; oldest forgotten
first), and the control API refuses recreate tokens for those ids.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from typing import Any

import attrs
from zope.interface import Interface, implementer

from .._types import Clock

__all__ = [
    "IRegistry",
    "InMemoryRegistry",
    "NameHeld",
    "Tunnel",
    "TunnelState",
]

#: Seconds of clock skew that token verification tolerates on C{exp}; a
#: deleted tunnel is remembered that much longer than its last token.
TOKEN_LEEWAY = 60.0

#: Deleted tunnel ids remembered at most.
MAX_DELETED = 100_000


class TunnelState(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DOWN = "DOWN"


class NameHeld(Exception):
    """
    L{IRegistry.add} was asked to add a tunnel whose name (or id) another
    live tunnel holds.
    """


@attrs.define(eq=False)
class Tunnel:
    """
    One tunnel (seed 001 §6).  Times are seconds since the epoch.
    """

    tunnel_id: str
    name: str
    public_hostname: str
    public_url: str
    owner: str | None
    edge_id: str
    state: TunnelState = TunnelState.PENDING
    created_at: float = 0.0
    #: When the candidates handed out last expire (C{candidates_expires_at}).
    expires_at: float = 0.0
    #: The name is held at least until then, even with no agent connected.
    held_until: float = 0.0
    #: Runtime agent-session objects; the data plane owns them.
    sessions: list[Any] = attrs.field(factory=list)


class IRegistry(Interface):
    """
    Where tunnels live: what the control API, the agent endpoint and the
    tunnel router use, so that another store (Redis, for several edges) can
    drop in for L{InMemoryRegistry}.

    Lookups never return a tunnel whose hold has lapsed.
    """

    def add(tunnel: Tunnel) -> None:
        """
        Add C{tunnel}.

        @raise NameHeld: its name or id is taken by another live tunnel.
        """

    def get(tunnel_id: str) -> Tunnel | None:
        """
        The live tunnel with id C{tunnel_id}, or L{None}.
        """

    def by_name(name: str) -> Tunnel | None:
        """
        The live tunnel holding C{name}, or L{None}.
        """

    def remove(tunnel_id: str) -> Tunnel | None:
        """
        Delete a tunnel now (its name is free at once) and remember its id as
        deleted.  Returns the tunnel, or L{None} if there was none.
        """

    def is_deleted(tunnel_id: str) -> bool:
        """
        Was C{tunnel_id} deleted while tokens for it may still verify?
        """

    def all() -> list[Tunnel]:
        """
        Every live tunnel, oldest first.
        """

    def attach_session(tunnel: Tunnel, session: object) -> None:
        """
        C{session} (an agent session) now serves C{tunnel}: it is C{ACTIVE}.
        """

    def detach_session(tunnel: Tunnel, session: object) -> None:
        """
        C{session} is gone; with no session left the tunnel is C{DOWN} and
        its name held for the grace period.
        """

    def extend_hold(tunnel: Tunnel, until: float) -> None:
        """
        Hold C{tunnel}'s name at least until C{until} (the hold only grows).
        """

    def expire() -> int:
        """
        Forget every lapsed tunnel and deleted id now; how many tunnels went.
        The edge calls it from a timer to bound memory.
        """


@implementer(IRegistry)
class InMemoryRegistry:
    """
    L{IRegistry} in two dicts, on an injected clock.

    @param grace: seconds a name stays held after its last agent session
        goes away.
    """

    def __init__(self, clock: Clock, grace: float, *, max_deleted: int = MAX_DELETED) -> None:
        self._clock = clock
        self._grace = grace
        self._max_deleted = max(1, max_deleted)
        self._by_id: dict[str, Tunnel] = {}
        self._by_name: dict[str, str] = {}
        # tunnel_id -> time until which its tokens must be refused; ordered
        # by insertion, oldest first.
        self._deleted: OrderedDict[str, float] = OrderedDict()

    # -- expiry ---------------------------------------------------------

    def _lapsed(self, tunnel: Tunnel, now: float) -> bool:
        return tunnel.state is not TunnelState.ACTIVE and tunnel.held_until <= now

    def _forget(self, tunnel: Tunnel) -> None:
        self._by_id.pop(tunnel.tunnel_id, None)
        if self._by_name.get(tunnel.name) == tunnel.tunnel_id:
            del self._by_name[tunnel.name]

    def _live(self, tunnel: Tunnel | None) -> Tunnel | None:
        if tunnel is None:
            return None
        if self._lapsed(tunnel, self._clock.seconds()):
            self._forget(tunnel)
            return None
        return tunnel

    def expire(self) -> int:
        """
        Forget every lapsed tunnel and deleted id now; how many tunnels went.
        Lookups do this lazily; call it from a timer to bound memory.
        """
        now = self._clock.seconds()
        gone = [t for t in self._by_id.values() if self._lapsed(t, now)]
        for tunnel in gone:
            self._forget(tunnel)
        for tunnel_id, horizon in list(self._deleted.items()):
            if horizon <= now:
                del self._deleted[tunnel_id]
        return len(gone)

    # -- IRegistry ------------------------------------------------------

    def add(self, tunnel: Tunnel) -> None:
        by_name = self.by_name(tunnel.name)
        if by_name is not None and by_name is not tunnel:
            raise NameHeld(f"name {tunnel.name!r} is held by another tunnel")
        by_id = self.get(tunnel.tunnel_id)
        if by_id is not None and by_id is not tunnel:
            raise NameHeld(f"tunnel id {tunnel.tunnel_id!r} exists")
        self._by_id[tunnel.tunnel_id] = tunnel
        self._by_name[tunnel.name] = tunnel.tunnel_id
        self._deleted.pop(tunnel.tunnel_id, None)

    def get(self, tunnel_id: str) -> Tunnel | None:
        return self._live(self._by_id.get(tunnel_id))

    def by_name(self, name: str) -> Tunnel | None:
        tunnel_id = self._by_name.get(name)
        if tunnel_id is None:
            return None
        return self.get(tunnel_id)

    def remove(self, tunnel_id: str) -> Tunnel | None:
        tunnel = self.get(tunnel_id)
        if tunnel is None:
            return None
        self._forget(tunnel)
        # Every recreate token issued for the tunnel expired no later than
        # held_until (the control API extends the hold to each one's exp).
        self._deleted[tunnel_id] = tunnel.held_until + TOKEN_LEEWAY
        self._deleted.move_to_end(tunnel_id)
        while len(self._deleted) > self._max_deleted:
            self._deleted.popitem(last=False)
        return tunnel

    def is_deleted(self, tunnel_id: str) -> bool:
        horizon = self._deleted.get(tunnel_id)
        if horizon is None:
            return False
        if horizon <= self._clock.seconds():
            del self._deleted[tunnel_id]
            return False
        return True

    def all(self) -> list[Tunnel]:
        self.expire()
        return sorted(self._by_id.values(), key=lambda t: (t.created_at, t.name))

    def attach_session(self, tunnel: Tunnel, session: object) -> None:
        if session not in tunnel.sessions:
            tunnel.sessions.append(session)
        tunnel.state = TunnelState.ACTIVE

    def detach_session(self, tunnel: Tunnel, session: object) -> None:
        if session in tunnel.sessions:
            tunnel.sessions.remove(session)
        if not tunnel.sessions:
            tunnel.state = TunnelState.DOWN
            self.extend_hold(tunnel, self._clock.seconds() + self._grace)

    def extend_hold(self, tunnel: Tunnel, until: float) -> None:
        tunnel.held_until = max(tunnel.held_until, until)
