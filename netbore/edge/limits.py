"""
Connection caps on the edge's listeners (issue 10, item 10): one address
must not be able to take every file descriptor of the process.

  - C{--max-connections}: connections open at once, all addresses
    together (viewers, API clients and agents alike; a WebSocket taken
    over by autobahn still counts).  Never more than the process's
    file-descriptor limit less L{FD_RESERVE}, so that accepting viewers
    cannot run the process out of descriptors (C{EMFILE}) for its own
    files.  A connection over it is closed at once, unanswered.
  - C{--max-connections-per-ip}: connections open at once from one
    address.  One over it gets a short 429 page
    (C{too_many_connections}) and is closed.

Should the process run out of descriptors anyway (the limit lowered under
it, other files), Twisted's listening port copes: on C{EMFILE} it frees a
descriptor it keeps in reserve, accepts and closes what waits, and takes
the reserve again, so the connections already open go on being served
(C{tests/test_integration_connection_caps.py} checks both).

A connection is counted from its C{buildProtocol} to its C{connectionLost},
keyed by its transport: L{CountedViewer} releases it, or, once autobahn
has taken the connection over for an agent's WebSocket, the agent
session (L{netbore.edge.agents.EdgeSession.connectionLost}).
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..http1 import reason_phrase, response_head
from . import pages
from .viewer import ViewerProtocol

if TYPE_CHECKING:
    from .site import EdgeSite

__all__ = ["FD_RESERVE", "TOO_MANY_CONNECTIONS", "ConnectionLimits", "CountedViewer", "fd_cap"]

log = Logger()

#: Descriptors kept free for the process's own files (keys, logs, state).
FD_RESERVE = 64

TOO_MANY_CONNECTIONS = pages.ViewerError(
    429,
    "too_many_connections",
    "Too many connections",
    "Too many connections are open from your address; close some and try again.",
)


def fd_cap(total: int) -> int:
    """
    C{total}, or the process's soft file-descriptor limit less
    L{FD_RESERVE} if that is lower (at least 1).
    """
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return total
    if soft == resource.RLIM_INFINITY:
        return total
    return max(1, min(total, soft - FD_RESERVE))


def _refusal_bytes() -> bytes:
    error = TOO_MANY_CONNECTIONS
    ctype, body = pages.render(error, b"", b"")
    headers = pages.headers(ctype, body, error) + [(b"retry-after", b"1")]
    return response_head(error.status, reason_phrase(error.status), headers, False, b"close") + body


class _Refusal(Protocol):
    """
    A connection over a cap: over its address's, the 429 page, then
    closed; over the total, closed at once, unanswered.  (Not L{None} from
    C{buildProtocol}: a TLS listener's wrapping factory cannot take that.)
    """

    page = b""

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if self.page:
            transport.write(self.page)
            transport.loseConnection()
        else:
            transport.abortConnection()


class ConnectionLimits:
    """
    The open connections, in all and by address.

    @ivar total: the cap on all connections (already cut to the
        descriptor limit by the caller, see L{fd_cap}).
    @ivar per_address: the cap on one address's connections.
    @ivar refused: connections refused so far (for logs and tests).
    """

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.count = 0
        self.by_address: dict[str, int] = {}
        self._hosts: dict[object, str] = {}
        self.refused = 0
        self._page = _refusal_bytes()

    def build(self, site: EdgeSite, addr: Any) -> ViewerProtocol | Protocol:
        """
        The protocol for a new connection from C{addr}: a L{CountedViewer}
        when it is within the caps; over the address's cap, one that
        answers 429 and closes; over the total cap, one that closes at
        once.
        """
        host = str(getattr(addr, "host", ""))
        over = self.admit(host)
        if over is None:
            viewer = CountedViewer(site, addr)
            viewer.limits = self
            viewer.host = host
            return viewer
        refusal = _Refusal()
        if over == "per-address":
            refusal.page = self._page
        return refusal

    def admit(self, host: str) -> str | None:
        """
        Count a new connection from C{host}: L{None} when it is within the
        caps (L{bind} and L{release} it), else which cap it is over
        (C{"total"}, C{"per-address"}), refused and logged.
        """
        if self.count >= self.total:
            self._refused("total", self.total)
            return "total"
        count = self.by_address.get(host, 0)
        if count >= self.per_address:
            self._refused("per-address", self.per_address)
            return "per-address"
        self.count += 1
        self.by_address[host] = count + 1
        return None

    def bind(self, transport: object, host: str) -> None:
        """The connection counted for C{host} has C{transport}."""
        self._hosts[transport] = host

    def release(self, transport: object) -> None:
        """C{transport}'s connection is closed (once; again is nothing)."""
        host = self._hosts.pop(transport, None)
        if host is None:
            return
        self.count -= 1
        left = self.by_address[host] - 1
        if left:
            self.by_address[host] = left
        else:
            del self.by_address[host]

    def _refused(self, which: str, cap: int) -> None:
        self.refused += 1
        n = self.refused
        # The first, then every 1000th: a flood must not flood the log.
        if n == 1 or n % 1000 == 0:
            log.warn(
                "connection refused: over the {which} cap of {cap} ({n} refused so far)", which=which, cap=cap, n=n
            )


class CountedViewer(ViewerProtocol):
    """
    A L{ViewerProtocol} counted by L{ConnectionLimits} while it is open.
    """

    limits: ConnectionLimits
    host: str

    def connectionMade(self) -> None:
        self.limits.bind(self.transport, self.host)
        super().connectionMade()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.limits.release(self.transport)
        super().connectionLost(reason)
