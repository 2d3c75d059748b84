"""
The edge's tunnel registry: name -> tunnel -> agent sessions.

L{IRegistry} is what the control API and the data plane use;
L{InMemoryRegistry} is the one store so far (seed 000: in memory for M1).

Holding a name
==============

A tunnel holds its name while it has an agent session (C{ACTIVE}) or while
C{held_until} has not passed:

- C{PENDING} (no agent has connected yet): until its latest ephemeral token
  lapses (the candidates it was given are no longer usable);
- C{DOWN} (its last agent left): for C{grace} seconds after the agent left,
  or while its latest recreate token is valid, whichever is longer, and no
  longer (the ephemeral token's lifetime does not count).

A tunnel that is not C{ACTIVE} and whose hold has passed is gone: lookups
forget it lazily.  Each tunnel counts against its C{quota_key} (its owning
account, or the address that created it anonymously) while it is held.

A TCP tunnel (C{protocol} C{"tcp"}) holds its public port (C{tcp_port})
exactly as it holds its name: L{IRegistry.by_port} finds it while it is
live, and no other tunnel may be added with that port.  Whoever listens on
the port learns that a tunnel was forgotten (deleted, or its hold lapsed)
from L{InMemoryRegistry.on_forget}.

Deleted tunnels
===============

Recreate tokens are stateless JWTs, so deleting a tunnel cannot revoke them.
The registry therefore revokes the deleted tunnel's id in an
L{IRevocations} store (persistent, in C{--data-dir}, for the edge) until
every token that can have been issued for it has expired, and the control
API refuses recreate tokens for revoked ids.  Revocations are never evicted
early, however many there are.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger
from zope.interface import Interface, implementer

from .._types import Clock
from .revocations import IRevocations, MemoryRevocations
from .sessiontimes import last_seen, sample

__all__ = [
    "IRegistry",
    "InMemoryRegistry",
    "NameHeld",
    "Tunnel",
    "TunnelState",
]

log = Logger()

#: Seconds of clock skew that token verification tolerates on C{exp}; a
#: deleted tunnel is remembered that much longer than its last token.
TOKEN_LEEWAY = 60.0

#: The longest a token issued for a tunnel can live, by default (the
#: edge's C{--recreate-max-ttl} default); a revocation lasts that long.
TOKEN_LIFETIME = 30 * 86400.0


class TunnelState(enum.Enum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DOWN = "DOWN"


class NameHeld(Exception):
    """
    L{IRegistry.add} was asked to add a tunnel whose name (or id, or TCP
    port) another live tunnel holds.
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
    #: The name is held until then when no agent is connected.
    held_until: float = 0.0
    #: When the latest recreate token handed out expires.
    recreate_until: float = 0.0
    #: What the tunnel counts against for quotas: C{"account:<name>"} or
    #: C{"address:<client address>"}; L{None} counts against nothing.
    quota_key: str | None = None
    #: C{"http"} (served by name) or C{"tcp"} (served on C{tcp_port}).
    protocol: str = "http"
    #: The public port a TCP tunnel holds; L{None} for HTTP tunnels.
    tcp_port: int | None = None
    #: Runtime agent-session objects; the data plane owns them.
    sessions: list[Any] = attrs.field(factory=list)
    #: When the current agent session(s) connected; L{None} while none is.
    connected_at: float | None = None
    #: The last frame read from a session that has since gone (a live
    #: session's own C{last_read} is newer); L{None} if none ever came.
    last_seen_at: float | None = None


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

        @raise NameHeld: its name, id or TCP port is taken by another live
            tunnel.
        """

    def get(tunnel_id: str) -> Tunnel | None:
        """
        The live tunnel with id C{tunnel_id}, or L{None}.
        """

    def by_name(name: str) -> Tunnel | None:
        """
        The live tunnel holding C{name}, or L{None}.
        """

    def by_port(port: int) -> Tunnel | None:
        """
        The live TCP tunnel holding public port C{port}, or L{None}.
        """

    def remove(tunnel_id: str) -> Tunnel | None:
        """
        Delete a tunnel now (its name and port are free at once) and revoke
        its id until every token issued for it has expired.  Returns the
        tunnel, or L{None} if there was none.
        """

    def revoke(tunnel_id: str) -> None:
        """
        Refuse tokens for C{tunnel_id} until every token that can have been
        issued for it has expired, whether or not the tunnel is live (a
        forgotten tunnel's recreate token could bring it back).
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

    def tokens_issued(tunnel: Tunnel, ephemeral_exp: float, recreate_exp: float) -> None:
        """
        Tokens expiring at these times were just handed out for C{tunnel}:
        a C{PENDING} tunnel is held until C{ephemeral_exp}, a C{DOWN} one
        at least until C{recreate_exp}.
        """

    def held_by(quota_key: str) -> int:
        """
        How many live tunnels count against C{quota_key}.
        """

    def expire() -> int:
        """
        Forget every lapsed tunnel and deleted id now; how many tunnels went.
        The edge calls it from a timer to bound memory.
        """


@implementer(IRegistry)
class InMemoryRegistry:
    """
    L{IRegistry} in dicts, on an injected clock; revocations in C{revocations}
    (in memory unless given one).

    @param grace: seconds a name stays held after its last agent session
        goes away (longer while its recreate token is valid).
    @param token_lifetime: the longest any token issued for a tunnel can
        live (the edge's C{--recreate-max-ttl}, or its ephemeral TTL if
        longer): a deleted tunnel's id is revoked for that long plus
        L{TOKEN_LEEWAY}, which covers tokens issued before a restart too.

    @ivar on_forget: called with each tunnel the registry forgets (deleted,
        or its hold lapsed, noticed by a lookup or L{expire}), once, after
        its name and port are free: the owner of a TCP tunnel's listener
        stops it.
    """

    def __init__(
        self,
        clock: Clock,
        grace: float,
        *,
        revocations: IRevocations | None = None,
        token_lifetime: float = TOKEN_LIFETIME,
    ) -> None:
        self._clock = clock
        self._grace = grace
        self._token_lifetime = token_lifetime
        self.revocations: IRevocations = revocations if revocations is not None else MemoryRevocations()
        self._by_id: dict[str, Tunnel] = {}
        self._by_name: dict[str, str] = {}
        # TCP port -> id of the tunnel holding it.
        self._by_port: dict[int, str] = {}
        self.on_forget: list[Callable[[Tunnel], None]] = []
        # quota key -> ids of the tunnels counting against it.
        self._by_quota: dict[str, set[str]] = {}

    # -- expiry ---------------------------------------------------------

    def _lapsed(self, tunnel: Tunnel, now: float) -> bool:
        return tunnel.state is not TunnelState.ACTIVE and tunnel.held_until <= now

    def _forget(self, tunnel: Tunnel) -> None:
        if self._by_id.get(tunnel.tunnel_id) is not tunnel:
            return
        del self._by_id[tunnel.tunnel_id]
        if self._by_name.get(tunnel.name) == tunnel.tunnel_id:
            del self._by_name[tunnel.name]
        if tunnel.tcp_port is not None and self._by_port.get(tunnel.tcp_port) == tunnel.tunnel_id:
            del self._by_port[tunnel.tcp_port]
        if tunnel.quota_key is not None:
            ids = self._by_quota.get(tunnel.quota_key)
            if ids is not None:
                ids.discard(tunnel.tunnel_id)
                if not ids:
                    del self._by_quota[tunnel.quota_key]
        for observer in list(self.on_forget):
            try:
                observer(tunnel)
            except Exception:
                log.failure("on_forget observer failed for {tunnel_id}", tunnel_id=tunnel.tunnel_id)

    def _live(self, tunnel: Tunnel | None) -> Tunnel | None:
        if tunnel is None:
            return None
        if self._lapsed(tunnel, self._clock.seconds()):
            self._forget(tunnel)
            return None
        return tunnel

    def expire(self) -> int:
        """
        Forget every lapsed tunnel and expired revocation now; how many
        tunnels went.  Lookups do this lazily; call it from a timer to bound
        memory.
        """
        now = self._clock.seconds()
        gone = [t for t in self._by_id.values() if self._lapsed(t, now)]
        for tunnel in gone:
            self._forget(tunnel)
        self.revocations.expire(now)
        return len(gone)

    # -- IRegistry ------------------------------------------------------

    def add(self, tunnel: Tunnel) -> None:
        by_name = self.by_name(tunnel.name)
        if by_name is not None and by_name is not tunnel:
            raise NameHeld(f"name {tunnel.name!r} is held by another tunnel")
        by_id = self.get(tunnel.tunnel_id)
        if by_id is not None and by_id is not tunnel:
            raise NameHeld(f"tunnel id {tunnel.tunnel_id!r} exists")
        if tunnel.tcp_port is not None:
            by_port = self.by_port(tunnel.tcp_port)
            if by_port is not None and by_port is not tunnel:
                raise NameHeld(f"port {tunnel.tcp_port} is held by another tunnel")
            self._by_port[tunnel.tcp_port] = tunnel.tunnel_id
        self._by_id[tunnel.tunnel_id] = tunnel
        self._by_name[tunnel.name] = tunnel.tunnel_id
        if tunnel.quota_key is not None:
            self._by_quota.setdefault(tunnel.quota_key, set()).add(tunnel.tunnel_id)

    def get(self, tunnel_id: str) -> Tunnel | None:
        return self._live(self._by_id.get(tunnel_id))

    def by_name(self, name: str) -> Tunnel | None:
        tunnel_id = self._by_name.get(name)
        if tunnel_id is None:
            return None
        return self.get(tunnel_id)

    def by_port(self, port: int) -> Tunnel | None:
        tunnel_id = self._by_port.get(port)
        if tunnel_id is None:
            return None
        return self.get(tunnel_id)

    def remove(self, tunnel_id: str) -> Tunnel | None:
        tunnel = self.get(tunnel_id)
        if tunnel is None:
            return None
        self._revoke(tunnel_id, max(tunnel.recreate_until, tunnel.expires_at))
        self._forget(tunnel)
        return tunnel

    def revoke(self, tunnel_id: str) -> None:
        self._revoke(tunnel_id, 0.0)

    def _revoke(self, tunnel_id: str, last_exp: float) -> None:
        # Tokens for this id may have been issued before a restart, which
        # this registry has forgotten: revoke for the longest any token can
        # live from now, and at least past every token issued here.
        until = max(self._clock.seconds() + self._token_lifetime, last_exp)
        self.revocations.revoke(tunnel_id, until + TOKEN_LEEWAY)

    def is_deleted(self, tunnel_id: str) -> bool:
        return self.revocations.is_revoked(tunnel_id, self._clock.seconds())

    def all(self) -> list[Tunnel]:
        self.expire()
        return sorted(self._by_id.values(), key=lambda t: (t.created_at, t.name))

    def held_by(self, quota_key: str) -> int:
        ids = self._by_quota.get(quota_key)
        if not ids:
            return 0
        # Lookups forget lapsed tunnels (and take them out of this set).
        return sum(1 for tunnel_id in list(ids) if self.get(tunnel_id) is not None)

    def attach_session(self, tunnel: Tunnel, session: object) -> None:
        if not tunnel.sessions:
            tunnel.connected_at = self._clock.seconds()
        if session not in tunnel.sessions:
            tunnel.sessions.append(session)
        tunnel.state = TunnelState.ACTIVE

    def detach_session(self, tunnel: Tunnel, session: object) -> None:
        if session in tunnel.sessions:
            tunnel.sessions.remove(session)
            sample([session], self._clock.seconds())
            tunnel.last_seen_at = last_seen(tunnel.last_seen_at, session)
        if not tunnel.sessions:
            tunnel.connected_at = None
            tunnel.state = TunnelState.DOWN
            # Grace or the recreate token, whichever is longer; not what
            # the hold was while the tunnel was pending or up.
            tunnel.held_until = max(self._clock.seconds() + self._grace, tunnel.recreate_until)

    def tokens_issued(self, tunnel: Tunnel, ephemeral_exp: float, recreate_exp: float) -> None:
        tunnel.expires_at = ephemeral_exp
        tunnel.recreate_until = max(tunnel.recreate_until, recreate_exp)
        if tunnel.state is TunnelState.PENDING:
            tunnel.held_until = max(tunnel.held_until, ephemeral_exp)
        elif tunnel.state is TunnelState.DOWN:
            tunnel.held_until = max(tunnel.held_until, tunnel.recreate_until)
