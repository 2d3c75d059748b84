"""
When a tunnel's agents connected and were last heard from, for operators
(C{GET /tunnels/list}: C{connected_at}, C{last_seen_at}, C{sessions}).

Nothing here runs per frame: each WebSocket read only sets the session's
C{heard} flag (one attribute store, no clock call); L{sample}, run by the
edge once a second and when a tunnel is listed or a session leaves, turns
a set flag into C{last_read} = the reactor's time.  C{last_seen_at} is
thus exact to the second, as the ISO 8601 times it is shown in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .apirequest import iso8601

if TYPE_CHECKING:
    from .registry import Tunnel

__all__ = ["last_seen", "sample", "session_fields"]


def sample(sessions: Iterable[Any], now: float) -> None:
    """
    Stamp C{now} as C{last_read} on each of C{sessions} read from since
    the last sample.
    """
    for session in sessions:
        if getattr(session, "heard", False):
            session.heard = False
            session.last_read = now


def last_seen(previous: float | None, session: object) -> float | None:
    """
    The later of C{previous} and C{session}'s last read (either may be
    L{None}).
    """
    read: float | None = getattr(session, "last_read", None)
    if read is None:
        return previous
    if previous is None:
        return read
    return max(previous, read)


def session_fields(tunnel: Tunnel, now: float) -> dict[str, Any]:
    """
    The list entry's session fields for C{tunnel} at C{now}: ISO 8601
    times or L{None}, and the number of live sessions.
    """
    sample(tunnel.sessions, now)
    seen = tunnel.last_seen_at
    for session in tunnel.sessions:
        seen = last_seen(seen, session)
    connected = tunnel.connected_at if tunnel.sessions else None
    return {
        "connected_at": None if connected is None else iso8601(connected),
        "last_seen_at": None if seen is None else iso8601(seen),
        "sessions": len(tunnel.sessions),
    }
