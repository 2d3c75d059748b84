"""
The edge's one Site: Host dispatch between tunnel traffic and the edge's own
routes (control API and the agents' C{/connect} WebSocket).
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from ..apikeys import ApiKeys
from ..tokens import TokenAuthority, load_keyring
from .config import EdgeConfig
from .connect import AgentEndpoint
from .control import ControlAPI
from .ratelimit import AuthFailureLimiter
from .registry import InMemoryRegistry
from .request import EdgeHTTPChannel, EdgeRequest
from .tunnel import TunnelRouter

__all__ = ["EdgeService", "EdgeSite", "build_edge"]

log = Logger()


class EdgeRoot(resource.Resource):
    """
    The root of the edge's own routes: C{/connect} is the agents' WebSocket,
    everything else is the Klein control API.

    Tunnel traffic never reaches this resource: L{EdgeRequest} hands it to
    the L{TunnelRouter} as soon as its headers are in.
    """

    def __init__(self, control: resource.IResource, connect: resource.IResource) -> None:
        super().__init__()
        self._control = control
        self._connect = connect

    def getChildWithDefault(self, path: bytes, request: IRequest) -> resource.IResource:
        if path == b"connect" and not request.postpath:  # type: ignore[attr-defined]
            return self._connect
        # Give the segment back: Klein routes on the whole path.
        request.postpath.insert(0, request.prepath.pop())  # type: ignore[attr-defined]
        return self._control


class EdgeSite(server.Site):
    """
    A Site whose channels stream tunnel requests (see L{EdgeRequest}).
    """

    protocol = EdgeHTTPChannel  # type: ignore[assignment]
    requestFactory = EdgeRequest
    displayTracebacks = False

    def __init__(self, root: resource.IResource, router: TunnelRouter, reactor: Any) -> None:
        super().__init__(root, reactor=reactor)
        self.router = router

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
        registry: InMemoryRegistry,
        authority: TokenAuthority,
        endpoint: AgentEndpoint,
    ) -> None:
        super().__init__()
        self.config = config
        self.site = site
        self.registry = registry
        self.authority = authority
        self.endpoint = endpoint

    def startService(self) -> None:
        super().startService()
        # Lookups drop lapsed tunnels lazily; the sweep bounds memory for
        # names nobody asks for again.
        self._sweep = LoopingCall(self.registry.expire)
        self._sweep.clock = self.site.reactor
        self._sweep.start(60, now=False)
        log.info(
            "netbore edge ready for *.{domain} (edge {edge_id})",
            domain=self.config.domain,
            edge_id=self.config.edge_id,
        )

    def stopService(self) -> Any:
        if self._sweep.running:
            self._sweep.stop()
        self.endpoint.go_away_all()
        return super().stopService()


def build_edge(
    config: EdgeConfig,
    *,
    reactor: Any,
    api_keys_file: str | None = None,
    jwt_secret_file: str | None = None,
) -> EdgeService:
    """
    Build the whole edge: keys, registry, control API, agent endpoint,
    tunnel router and the Site that serves them.
    """
    keyring = load_keyring(config.data_dir, jwt_secret_file)
    authority = TokenAuthority(keyring, issuer=f"netbore:{config.edge_id}", clock=reactor)
    api_keys = ApiKeys.load(api_keys_file) if api_keys_file else ApiKeys.empty()
    registry = InMemoryRegistry(clock=reactor, grace=config.grace)
    limiter = AuthFailureLimiter(reactor, config.auth_failures_per_minute)
    endpoint = AgentEndpoint(config, registry, authority, limiter, reactor)
    control = ControlAPI(
        config,
        registry,
        authority,
        api_keys,
        limiter,
        reactor,
        on_delete=endpoint.tunnel_deleted,
    )
    router = TunnelRouter(config, registry, reactor)
    root = EdgeRoot(control.app.resource(), endpoint.resource())
    site = EdgeSite(root, router, reactor)
    return EdgeService(config, site, registry, authority, endpoint)
