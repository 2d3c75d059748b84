"""
L{InMemoryTunnel}: an edge, an agent session and an origin on one
C{MemoryReactorClock} (see L{netbore.testing}).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import MemoryReactorClock

from netbore.agent.forwarder import OriginForwarder
from netbore.agent.session import AgentSessionFactory, SessionClosed
from netbore.edge.config import EdgeConfig
from netbore.edge.site import EdgeService, build_edge
from netbore.protocol.handshake import Hello, Settings
from netbore.writes import WriteBatch

from ._memory import LOOPBACK, MemoryNetwork, Response, Viewer, hello_origin

__all__ = ["EDGE_PORT", "ORIGIN_PORT", "InMemoryTunnel"]

#: The ports the edge and the origin listen on.
EDGE_PORT = 80
ORIGIN_PORT = 3000


class InMemoryTunnel:
    """
    An edge, one agent session and an origin on one C{MemoryReactorClock}.

    Build one with L{build}.

    @ivar reactor: the memory reactor (advance it for timeouts).
    @ivar network: the L{MemoryNetwork} joining everything.
    @ivar edge: the edge's L{EdgeService} (not started: nothing in it needs
        C{startService} to serve).
    @ivar created: the JSON body of the C{POST /tunnels/create} answer.
    @ivar host: the tunnel's public host name (a viewer's C{Host}).
    @ivar agent: the agent's session factory; C{agent.current} is the open
        session once it is up.
    @ivar hellos: the edge's hellos the agent received (one per session up).
    @ivar closes: how each of the agent's sessions ended.
    """

    def __init__(
        self,
        reactor: MemoryReactorClock,
        network: MemoryNetwork,
        edge: EdgeService,
        forwarder: OriginForwarder,
        writes: WriteBatch,
        cleanup: str | None,
    ) -> None:
        self.reactor = reactor
        self.network = network
        self.edge = edge
        self.forwarder = forwarder
        self.writes = writes
        self.created: dict[str, Any] = {}
        self.host = ""
        self.agent: AgentSessionFactory | None = None
        self.hellos: list[Hello] = []
        self.closes: list[SessionClosed] = []
        self._cleanup = cleanup

    @classmethod
    def build(
        cls,
        data_dir: str | None = None,
        origin: IProtocolFactory | None = None,
        config: EdgeConfig | None = None,
        name: str = "app",
        host_header: str | None = None,
        now: float = 1_800_000_000.0,
        reactor: MemoryReactorClock | None = None,
    ) -> InMemoryTunnel:
        """
        Build an edge, create the tunnel C{name} through its control API,
        connect an agent session to it and wait until it is up.

        @param data_dir: the edge's key directory (a temporary one, removed
            by L{close}, when L{None}).
        @param origin: the origin's protocol factory (default
            L{hello_origin}); a twisted.web C{Site} works.
        @param config: the edge's settings (default: domain C{tunnel.test},
            anonymous creates allowed); C{data_dir} overrides its own.
        @param host_header: the agent's C{--host-header}.
        @param now: the clock's start (tokens carry real-looking times).
        @param reactor: the memory reactor to use (e.g. one an origin's
            C{Site} was given); a new one, set to C{now}, if L{None}.
        """
        cleanup = None
        if data_dir is None:
            data_dir = cleanup = tempfile.mkdtemp(prefix="netbore-testing-")
        if config is None:
            config = EdgeConfig(domain="tunnel.test", allow_anonymous=True)
        config = attrs.evolve(config, data_dir=data_dir)
        if reactor is None:
            reactor = MemoryReactorClock()
            reactor.advance(now)
        network = MemoryNetwork(reactor)
        edge = build_edge(config, reactor=reactor)
        network.listen(EDGE_PORT, edge.site)
        network.listen(ORIGIN_PORT, origin if origin is not None else hello_origin())
        # As the agent's service does: the origin connections and the
        # session's WebSocket write through one batch.
        writes = WriteBatch()
        forwarder = OriginForwarder(reactor, f"http://{LOOPBACK}:{ORIGIN_PORT}", host_header=host_header, writes=writes)
        tunnel = cls(reactor, network, edge, forwarder, writes, cleanup)
        tunnel.create(name)
        tunnel.connect_agent()
        return tunnel

    # -- setting up ------------------------------------------------------------

    def create(self, name: str) -> None:
        """
        Create the tunnel C{name} with C{POST /tunnels/create} on the edge's
        own name (kept in L{created}).
        """
        domain = self.edge.config.domain
        body = json.dumps({"requested_name": name}).encode()
        response = self.request(
            b"POST /tunnels/create HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (domain.encode(), len(body), body),
        )
        if response.status != 201:
            raise AssertionError(f"create answered {response.status}: {response.body!r}")
        self.created = json.loads(response.body)
        self.host = self.created["public_hostname"]

    def connect_agent(self, agent_id: str = "agent-1", settings: Settings | None = None) -> AgentSessionFactory:
        """
        Open an agent session with the ephemeral token of L{created} and
        pump until it is up (or refused).

        @param settings: the agent's hello settings (default: this
            version's; e.g. C{Settings()} for an agent from before byte streams).
        """
        candidate = self.created["candidates"][0]
        extra: dict[str, Any] = {} if settings is None else {"settings": settings}
        agent = AgentSessionFactory(
            url=candidate["edge_url"],
            token=self.created["ephemeral_token"],
            agent_id=agent_id,
            forwarder=self.forwarder,
            reactor=self.reactor,
            on_ready=self.hellos.append,
            on_closed=self.closes.append,
            tunnel_id=self.created["tunnel_id"],
            writes=self.writes,
            **extra,
        )
        self.agent = agent
        self.reactor.connectTCP(LOOPBACK, EDGE_PORT, agent)
        self.pump()
        return agent

    def disconnect_agent(self) -> None:
        """
        Cut the agent's connection to the edge (no close handshake) and
        pump until both sides know.
        """
        assert self.agent is not None and self.agent.current is not None
        transport = self.agent.current.transport
        assert transport is not None
        transport.loseConnection()
        self.pump()

    # -- traffic ---------------------------------------------------------------

    def viewer(self) -> Viewer:
        """
        Open a viewer connection to the edge (kept alive between requests).
        """
        viewer = Viewer()
        self.network.connect(EDGE_PORT, viewer)
        return viewer

    def request(self, data: bytes, viewer: Viewer | None = None, method: str | None = None) -> Response:
        """
        Send C{data} (one raw HTTP/1.1 request) on C{viewer} (a new
        connection if L{None}), pump until nothing moves and return the
        response.
        """
        if viewer is None:
            viewer = self.viewer()
        viewer.send(data)
        self.pump()
        if method is None:
            method = data.split(b" ", 1)[0].decode("ascii")
        return viewer.response(method)

    def get(
        self, target: str = "/13", headers: Sequence[tuple[str, str]] = (), viewer: Viewer | None = None
    ) -> Response:
        """
        C{GET target} from the tunnel, with C{headers} after C{Host}.
        """
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return self.request(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), viewer)

    def pump(self) -> bool:
        """
        Move bytes on every connection until nothing moves.
        """
        return self.network.pump()

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass, then pump.
        """
        self.reactor.advance(seconds)
        self.pump()

    def close(self) -> None:
        """
        Remove the temporary key directory, if this tunnel made one.
        """
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None
