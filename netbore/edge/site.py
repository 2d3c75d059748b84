"""
The edge's one Site: Host dispatch between tunnel traffic and the edge's own
routes (control API and the agents' C{/connect} WebSocket), for every
request.
"""

from __future__ import annotations

import signal
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web import http, resource, server
from twisted.web.iweb import IRequest

from .._types import Reactor
from ..auth import TokenAuthority, load_keyring
from ..memory import release_free_heap
from ..writes import WriteBatch
from .agentca import AgentCA
from .agents import AgentEndpoint
from .apiauth import ApiKeysFile
from .clientaddr import TrustedProxies
from .config import EdgeConfig
from .control import ControlAPI
from .controlhttp import DEFAULT_BODY_LIMIT, ControlRequest, OneRequestChannel
from .health import Readiness
from .limits import ConnectionLimits, fd_cap
from .metrics import EdgeMetrics
from .ratelimit import AuthFailureLimiter
from .registry import InMemoryRegistry, IRegistry
from .requestlog import RequestLog
from .revocations import SQLiteRevocations
from .router import TunnelRouter
from .sessiontimes import sample
from .tcp import tcp_factory
from .tcp_ports import TcpPorts
from .tls import ListenerCertificates, request_client_certificates
from .tls import reloads as tls_reloads
from .viewer import ViewerProtocol

__all__ = ["EdgeService", "EdgeSite", "OneRequestChannel", "build_edge"]

log = Logger()


class EdgeRoot(resource.Resource):
    """
    The root of the edge's own routes: C{/connect} is the agents' WebSocket,
    everything else is the Klein control API.

    Tunnel traffic never reaches this resource: L{ViewerProtocol} serves it
    and hands a connection to twisted.web only for the edge's own names.
    """

    def __init__(self, control: resource.IResource, connect: resource.IResource) -> None:
        super().__init__()
        self._control = control
        self._connect = connect

    def getChildWithDefault(self, path: bytes, request: IRequest) -> resource.IResource:
        if path == b"connect" and not request.postpath:
            return self._connect
        # Give the segment back: Klein routes on the whole path.
        request.postpath.insert(0, request.prepath.pop())
        return self._control


class EdgeSite(server.Site):
    """
    The factory of every connection the edge accepts: a L{ViewerProtocol},
    which serves tunnel traffic itself and hands connections for the
    edge's own names to a twisted.web channel of this Site (L{hand_over}).

    @ivar writes: the process's write batch, shared by every viewer
        connection (and the agent endpoint, so that one event's frames and
        viewer bytes leave together).
    """

    protocol = OneRequestChannel  # type: ignore[assignment]
    requestFactory = ControlRequest
    displayTracebacks = False
    #: The largest control API request body (L{OneRequestChannel}).
    body_limit = DEFAULT_BODY_LIMIT
    #: Whose forwarding fields to believe (C{--trusted-proxy}).
    proxies = TrustedProxies()
    #: The connection caps (L{netbore.edge.limits}); none: no caps.
    limits: ConnectionLimits | None = None

    def __init__(
        self, root: resource.IResource, router: TunnelRouter, reactor: Reactor, writes: WriteBatch | None = None
    ) -> None:
        super().__init__(root, reactor=reactor)
        self.router = router
        self.writes = writes if writes is not None else WriteBatch()
        self.channels: weakref.WeakSet[ViewerProtocol] = weakref.WeakSet()
        #: What each tunnel request is counted and logged by (L{None}: neither).
        self.requests: RequestLog | None = None

    def buildProtocol(self, addr: Any) -> Any:
        limits = self.limits
        if limits is None:
            viewer = ViewerProtocol(self, addr)
        else:
            built = limits.build(self, addr)
            if not isinstance(built, ViewerProtocol):
                return built  # over a cap
            viewer = built
        self.channels.add(viewer)
        return viewer

    def hand_over(self, transport: Any, addr: Any, raw: bytes) -> http.HTTPChannel:
        """
        Give a viewer connection's C{transport} to a new twisted.web channel
        (the control API and C{/connect}), replaying C{raw}, the bytes read
        from the start of the request; returns the channel.
        """
        # twisted.web writes to the transport directly from now on.
        self.writes.flush(transport)
        channel: http.HTTPChannel = super().buildProtocol(addr)
        channel.makeConnection(transport)
        channel.dataReceived(raw)
        return channel

    def peer_of(self, transport: Any, settled: bool = False) -> tuple[bytes, bool, bytes | None]:
        """
        A connection's C{(client address, over TLS, proxy)}: the proxy is
        the peer's address when the peer is a trusted proxy
        (C{--trusted-proxy}), whose requests then name client and scheme
        (L{forwarded}); C{b""} when the peer may not be known yet (unless
        C{settled}: a wrapping transport such as the C{haproxy:} endpoint's
        reads its PROXY header after the connection is made); else L{None}.
        """
        host = getattr(transport.getPeer(), "host", "")
        client = host.encode("ascii", "replace") if isinstance(host, str) else b""
        secure = ISSLTransport(transport, None) is not None
        if not settled and isinstance(transport, ProtocolWrapper):
            return client, secure, b""
        proxy = client if self.proxies.networks and self.proxies.trusts(host) else None
        return client, secure, proxy

    def forwarded(self, viewer: ViewerProtocol, fields: list[tuple[bytes, bytes]]) -> tuple[bytes, bool, bytes | None]:
        """
        C{(client address, secure, proxy)} of a request with C{fields} on
        the C{viewer} connection, whose L{peer_of} named a proxy: the client
        and scheme that trusted proxy names in C{fields}; for C{b""}, first
        the peer as the connection knows it now (from its first request on).
        """
        proxy, transport = viewer.proxy_ip, viewer.transport
        if not proxy:
            client, secure, known = self.peer_of(transport, settled=True)
            if known is None:
                return client, secure, None
            proxy = known
        client, secure = self.proxies.forwarded(proxy, fields, ISSLTransport(transport, None) is not None)
        return client, secure, proxy

    def open_channels(self) -> list[ViewerProtocol]:
        """
        Viewer and API connections still open (WebSocket connections, whose
        transport autobahn took over, are not counted).
        """
        return [c for c in self.channels if c.is_open()]

    def log(self, request: Any) -> None:
        # Access logs of viewer traffic would hold viewers' addresses; the
        # edge logs structured events of its own instead.
        pass


class EdgeService(service.MultiService):
    """
    Holds the edge's state for the lifetime of the process.
    """

    def __init__(
        self,
        config: EdgeConfig,
        site: EdgeSite,
        registry: IRegistry,
        authority: TokenAuthority,
        endpoint: AgentEndpoint,
    ) -> None:
        super().__init__()
        self.config = config
        self.site = site
        self.registry = registry
        self.authority = authority
        self.endpoint = endpoint
        #: The TCP tunnels' ports (a child service); L{None}: no TCP tunnels.
        self.tcp_ports: TcpPorts | None = None
        self._sweep: LoopingCall | None = None
        self._seen: LoopingCall | None = None
        self._trim: IDelayedCall | None = None
        #: The C{--api-keys-file}, re-read on SIGHUP.
        self.api_keys = ApiKeysFile()
        #: The C{ssl:} listeners' certificates, re-read on SIGHUP.
        self.tls_listeners: list[ListenerCertificates] = []
        #: C{--agent-ca} and C{--agent-crl}, re-read on SIGHUP.
        self.agent_ca: AgentCA | None = None
        self._sighup_installed = False
        self._previous_sighup: Any = None
        #: What C{GET /readyz} answers from; its listeners are added by tap.
        self.readiness: Readiness | None = None

    def startService(self) -> None:
        super().startService()
        # Lookups drop lapsed tunnels lazily; the sweep bounds memory for
        # names nobody asks for again.
        self._sweep = LoopingCall(self.registry.expire)
        self._sweep.clock = self.site.reactor
        self._sweep.start(60, now=False)
        # Once the reactor runs: start-up is over, its freed heap can go.
        self._trim = self.site.reactor.callLater(0, release_free_heap)
        # Turns the sessions' per-read flags into times (last_seen_at).
        self._seen = LoopingCall(lambda: sample(self.endpoint.sessions, self.site.reactor.seconds()))
        self._seen.clock = self.site.reactor
        self._seen.start(1, now=False)
        self._install_sighup()
        log.info(
            "netbore edge ready for *.{domain} (edge {edge_id})",
            domain=self.config.domain,
            edge_id=self.config.edge_id,
        )

    def stopService(self) -> Any:
        """
        Graceful drain (SIGTERM): the listeners, stopped before this service,
        take no new connections; requests arriving on open connections get
        a 502 "offline" page; agents get go-away; in-flight streams get up
        to C{drain_timeout} to finish and their connections to flush, and
        only then does the reactor stop.  The TCP tunnels' ports (a child
        service) stop listening at once too.
        """
        stopped = super().stopService()
        self._restore_sighup()
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        if self._seen is not None and self._seen.running:
            self._seen.stop()
        if self._trim is not None and self._trim.active():
            self._trim.cancel()
        self.site.router.draining = True
        self.endpoint.go_away_all()
        drained = Deferred.fromCoroutine(self._drain())
        drained.addCallback(lambda _: stopped)
        return drained.addCallback(lambda _: None)

    def _install_sighup(self) -> None:
        """
        SIGHUP re-reads the C{ssl:} listeners' certificates and the
        C{--tls-dir}, C{--agent-ca} and C{--agent-crl}, and the C{--api-keys-file} (in the reactor's thread);
        without one it is logged and ignored, rather than ending the edge
        (its default action) when an operator reloads it.
        """
        if not hasattr(signal, "SIGHUP"):
            return
        try:
            self._previous_sighup = signal.signal(signal.SIGHUP, self._sighup)
        except ValueError:  # not the main thread: no signals here
            return
        self._sighup_installed = True

    def _restore_sighup(self) -> None:
        if self._sighup_installed:
            self._sighup_installed = False
            previous, self._previous_sighup = self._previous_sighup, None
            signal.signal(signal.SIGHUP, previous if previous is not None else signal.SIG_DFL)

    def _sighup(self, signum: int, frame: Any) -> None:
        reloads: list[Callable[[], object]] = list(tls_reloads(self.tls_listeners))
        if self.agent_ca is not None:  # first: the listeners then name its CAs
            log.info("SIGHUP: reloading --agent-ca and --agent-crl", event="sighup")
            reloads.insert(0, self.agent_ca.reload)
        if reloads:
            log.info("SIGHUP: reloading the TLS certificates", event="sighup")
        if self.api_keys.path is None:
            log.info("SIGHUP: no --api-keys-file to reload", event="sighup")
        else:
            log.info("SIGHUP: reloading the API keys file", event="sighup")
            reloads.append(self.api_keys.reload)
        call = getattr(self.site.reactor, "callFromThread", None)
        for reload in reloads:
            if call is not None:
                call(reload)
            else:
                reload()

    async def _drain(self) -> None:
        reactor = self.site.reactor
        deadline = reactor.seconds() + self.config.drain_timeout
        while reactor.seconds() < deadline:
            busy = sum(len(s.streams) for s in self.endpoint.sessions)
            if not busy:
                channels = self.site.open_channels()
                if not channels:
                    break
                # Idle keep-alive connections and finished responses:
                # closing unregisters the connection as the transport's
                # producer (a transport with a producer never closes) and
                # the transport writes out what is buffered, then closes.
                for channel in channels:
                    channel.close_if_idle()
            await deferLater(reactor, 0.05, lambda: None)
        else:
            log.warn(
                "drain timeout: cutting {streams} in-flight streams and {connections} connections",
                streams=sum(len(s.streams) for s in self.endpoint.sessions),
                connections=len(self.site.open_channels()),
            )
        log.info("edge drained")


def build_edge(
    config: EdgeConfig,
    *,
    reactor: Reactor,
    api_keys_file: str | None = None,
    jwt_secret_file: str | None = None,
) -> EdgeService:
    """
    Build the whole edge: keys, registry, control API, agent endpoint,
    tunnel router and the Site that serves them.
    """
    keyring = load_keyring(config.data_dir, jwt_secret_file)
    authority = TokenAuthority(keyring, issuer=f"netbore:{config.edge_id}", clock=reactor)
    api_keys = ApiKeysFile(api_keys_file)
    registry = InMemoryRegistry(
        clock=reactor,
        grace=config.grace,
        revocations=SQLiteRevocations.in_directory(config.data_dir),
        token_lifetime=max(config.recreate_max_ttl, config.ephemeral_ttl),
    )
    limiter = AuthFailureLimiter(reactor, config.auth_failures_per_minute)
    agent_ca = AgentCA(reactor, config.agent_ca, config.agent_crl) if config.agent_ca is not None else None
    # Before any ssl: listener builds a context: ask clients for certificates.
    request_client_certificates(agent_ca.cas if agent_ca is not None else None, config.domain)
    # One write batch for the process: viewer bytes and tunnel frames that
    # one event causes leave together.
    writes = WriteBatch()
    endpoint = AgentEndpoint(config, registry, authority, limiter, reactor, writes)
    router = TunnelRouter(config, registry, reactor)
    tcp_ports = None
    if config.tcp_ports is not None:
        tcp_ports = TcpPorts(config.tcp_ports, config.tcp_interface, registry, reactor, partial(tcp_factory, router))
    control = ControlAPI(
        config,
        registry,
        authority,
        api_keys,
        limiter,
        reactor,
        on_delete=endpoint.tunnel_deleted,
        tcp_ports=tcp_ports,
    )
    root = EdgeRoot(control.app.resource(), endpoint.resource())
    site = EdgeSite(root, router, reactor, writes)
    router.metrics = EdgeMetrics(router, registry, config.metrics_per_tunnel)
    site.requests = RequestLog(reactor, router.metrics)
    site.body_limit = config.max_control_body
    site.proxies = TrustedProxies(config.trusted_proxies)
    router.writes = writes
    router.limits = site.limits = endpoint.limits = ConnectionLimits(
        fd_cap(config.max_connections), config.max_connections_per_ip
    )
    edge = EdgeService(config, site, registry, authority, endpoint)
    control.readiness = edge.readiness = Readiness(router, edge)
    edge.api_keys = api_keys
    edge.agent_ca = control.auth.agent_ca = endpoint.agent_ca = agent_ca
    if tcp_ports is not None:
        tcp_ports.setName("tcp-ports")
        tcp_ports.setServiceParent(edge)
        edge.tcp_ports = tcp_ports
    return edge
