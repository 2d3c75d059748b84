"""
The agent's lifetime: create (or re-create) the tunnel, hold a session to
the edge, reconnect with backoff, keep the state file true.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from treq.client import HTTPClient
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web.client import Agent

from .._types import Reactor
from ..auth.apikeys import read_api_key_file
from ..protocol.errors import CLOSE_TUNNEL_DELETED
from ..protocol.handshake import Hello, Settings
from ..writes import WriteBatch
from .backoff import Backoff
from .config import AgentConfig
from .control_client import ControlClient, ControlError, Created, TunnelControl, iso8601, parse_time, token_expiry
from .forwarder import OriginForwarder
from .metrics import AgentMetrics, OriginCounts
from .refresh import TUNNEL_DELETED, TokenRefresh
from .session import AgentSessionFactory, SessionClosed
from .state import AgentState, load_state, save_state
from .tcp import TcpForwarder
from .tls import PeerTLS, origin_reporter

__all__ = ["AgentService"]

log = Logger()

#: A session that stayed up this long resets the backoff.
STABLE_AFTER = 10.0
#: Re-create a little before the ephemeral token runs out.
TOKEN_MARGIN = 30.0
#: The control API's answers that mean "this recreate token will never
#: work": bad request, bad or expired signature, not allowed, and the name
#: taken by another tunnel.
RECREATE_REFUSED = (400, 401, 403, 409)

#: How a session attempt ended (see L{AgentService._session}).
UNREACHABLE = "unreachable"
REFUSED = "refused"
DROPPED = "dropped"
STABLE = "stable"
NO_TUNNEL = "no-tunnel"
DELETED = "deleted"


#: Opens one session: C{(url, token, on_ready, on_closed)}; the result
#: fires when the connection is made (the handshake then reports through
#: the callbacks) and fails when it cannot be.  Tests pass their own.
Connect = Callable[[str, str, Callable[[Hello, Any], None], Callable[[SessionClosed], None]], Awaitable[None]]


class AgentService(TokenRefresh, service.MultiService):
    """
    Keeps one tunnel up for one origin.  Its children (the C{--metrics}
    listener) start and stop with it.
    """

    def __init__(
        self,
        config: AgentConfig,
        reactor: Reactor,
        *,
        control: TunnelControl | None = None,
        connect: Connect | None = None,
    ) -> None:
        service.MultiService.__init__(self)
        self.config = config
        self.reactor = reactor
        self.state = load_state(config.state_file) if config.state_file else AgentState()
        self.agent_id = config.agent_id or self.state.agent_id or "agent-" + secrets.token_hex(6)
        self.api_key = read_api_key_file(config.api_key_file) if config.api_key_file else None
        #: TLS to the edge (control API and wss): verified against
        #: --ca-cert or the system's CAs, never unverified; its refusals
        #: say why (L{PeerTLS.take_problem}).
        self.edge_tls = PeerTLS(
            "edge", config.ca_cert, "--ca-cert", minimum=config.tls_min, client=(config.client_cert, config.client_key)
        )
        self.trust = self.edge_tls.trust
        if control is None:
            control = ControlClient(HTTPClient(Agent(reactor, contextFactory=self.edge_tls)), config.control_url)
        self.control: TunnelControl = control
        self._connect: Connect = connect if connect is not None else self._connect_websocket
        #: The process's one write batch: the forwarder's origin connections
        #: and the session's WebSocket hold their writes in it while one
        #: input event is handled, and each sends once at its end.
        self.writes = WriteBatch()
        self.forwarder: OriginForwarder | TcpForwarder
        counts = OriginCounts()
        if config.tcp:
            self.forwarder = TcpForwarder(reactor, config.tcp, counts=counts)
        else:
            assert config.origin is not None
            report = origin_reporter(reactor.seconds, config.origin)
            origin_tls = PeerTLS("origin", config.origin_ca_cert, "--origin-ca-cert", report=report)
            self.forwarder = OriginForwarder(
                reactor,
                config.origin,
                host_header=config.host_header,
                writes=self.writes,
                tls=origin_tls,
                counts=counts,
            )
        self.backoff = Backoff(config.backoff_base, config.backoff_cap)
        self.created: Created | None = None
        self.protocol: Any = None
        self._loop: defer.Deferred[None] | None = None
        self._sleep: IDelayedCall | None = None
        self._sleeping: defer.Deferred[None] = defer.Deferred()
        self._refresh: IDelayedCall | None = None  # the next recreate-token refresh
        #: The edge deleted the tunnel: the loop ends, nothing is re-created.
        self.deleted = False
        #: Sessions that came up (their handshake done), the first included.
        self.sessions_opened = 0
        #: What C{--metrics} serves (L{netbore.agent.metrics}).
        self.metrics = AgentMetrics(self)

    # -- state ------------------------------------------------------------------

    def _save(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        if self.config.state_file:
            save_state(self.config.state_file, self.state)

    # -- lifetime -----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        # A state file left by a process that was killed still says
        # "ready": it is not, until this process's session is up.
        self._save(state="offline")
        self._loop = defer.ensureDeferred(self._run())
        self._loop.addErrback(lambda f: log.failure("agent loop failed", f))

    def stopService(self) -> Any:
        children = super().stopService()
        if self._sleep is not None and self._sleep.active():
            self._sleep.cancel()
            self._sleeping.callback(None)  # let the loop see running is False
        self._cancel_refresh()
        protocol, self.protocol = self.protocol, None
        done: defer.Deferred[Any] = defer.succeed(None)
        if protocol is not None:
            done = protocol.drain()
            done.addTimeout(self.config.drain_timeout, self.reactor)
            done.addErrback(lambda f: protocol.close("drain timeout"))
        self._save(state="offline")
        return defer.gatherResults([children, done]).addCallback(lambda _: None)

    async def _run(self) -> None:
        refused_in_a_row = 0
        while self.running:
            outcome = await self._attempt()
            if not self.running or self.deleted:
                return
            if outcome == REFUSED:
                # The token is no good here (expired, or the edge restarted
                # and forgot the tunnel): re-create at once with the
                # recreate token; back off only if that is refused too.
                self.created = None
                refused_in_a_row += 1
                if refused_in_a_row == 1:
                    continue
            else:
                refused_in_a_row = 0
            if outcome == STABLE:
                self.backoff.reset()
            delay = self.backoff.next()
            log.info("reconnecting in {delay:.1f} s", delay=delay)
            await self._wait(delay)

    async def _attempt(self) -> str:
        """
        Create (or re-create) the tunnel if need be, then hold a session
        with the first candidate that takes it, in order.
        """
        try:
            created = await self._ensure_created()
        except ControlError as e:
            if e.code == TUNNEL_DELETED:
                self._tunnel_deleted(e.message)
                return DELETED
            log.error("control API refused the tunnel: {error}", error=str(e))
            return NO_TUNNEL
        except Exception as e:
            problem = self.edge_tls.take_problem()
            (log.error if problem else log.warn)(
                "cannot reach the control API at {url}: {error}",
                url=self.config.control_url,
                error=problem or str(e) or repr(e),
            )
            return NO_TUNNEL
        outcome = UNREACHABLE
        for candidate in created.candidates:
            if not self.running:
                break
            url = str(candidate["edge_url"])
            if downgraded(self.config.control_url, url):
                log.error(
                    "refusing the edge's candidate {url}: the control API is https, the tunnel must be wss "
                    "(the token would travel in clear; give the edge --advertise-url wss://...)",
                    url=url,
                )
                continue
            outcome = await self._session(url, created.ephemeral_token)
            if outcome != UNREACHABLE:
                break  # refused, or it was up: start over from the first
        return outcome

    def _wait(self, seconds: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._sleep = self.reactor.callLater(seconds, d.callback, None)
        self._sleeping = d
        return d

    # -- control plane -----------------------------------------------------------

    def _create_args(self) -> dict[str, Any]:
        """What a create request carries beside the name and tokens."""
        return {"protocol": "tcp"} if self.config.tcp else {}

    async def _ensure_created(self) -> Created:
        created = self.created
        if created is not None and parse_time(created.candidates_expires_at) - TOKEN_MARGIN > self.reactor.seconds():
            return created
        management = await self.control.management_token(self.api_key) if self.api_key else None
        state = self.state
        ttl = self.config.recreate_ttl
        if state.recreate_token and self.config.name and self.config.name != state.name:
            log.info(
                "--name {name} differs from the state file's {old}: creating a new tunnel",
                name=self.config.name,
                old=state.name,
            )
            self._save(recreate_token=None, tunnel_id=None, name=None)
        if state.recreate_token and (state.tcp is None) != (self.config.tcp is None) and (state.tcp or state.origin):
            log.info(
                "the state file's tunnel serves {old}, this agent {new}: creating a new tunnel",
                old=state.tcp and "TCP" or "HTTP",
                new=self.config.tcp and "TCP" or "HTTP",
            )
            self._save(recreate_token=None, tunnel_id=None, name=None)
        if state.recreate_token:
            try:
                created = await self.control.create(
                    requested_name=state.name,
                    recreate_token=state.recreate_token,
                    management_token=management,
                    recreate_ttl=ttl,
                    **self._create_args(),
                )
            except ControlError as e:
                if e.status not in RECREATE_REFUSED:
                    raise
                log.warn(
                    "the recreate token for {name} was refused ({error}); creating a new tunnel: THE NAME MAY CHANGE",
                    name=state.name,
                    error=str(e),
                )
                self._save(recreate_token=None, tunnel_id=None)
                created = await self.control.create(
                    requested_name=self.config.name,
                    management_token=management,
                    recreate_ttl=ttl,
                    **self._create_args(),
                )
        else:
            created = await self.control.create(
                requested_name=self.config.name or state.name,
                management_token=management,
                recreate_ttl=ttl,
                **self._create_args(),
            )
        if state.name and created.name != state.name:
            log.warn(
                "TUNNEL NAME CHANGED: {old} is now {new} ({url})",
                old=state.name,
                new=created.name,
                url=created.public_url,
            )
        self.created = created
        self._save(
            tunnel_id=created.tunnel_id,
            name=created.name,
            public_url=created.public_url,
            recreate_token=created.recreate_token or state.recreate_token,
            recreate_expires_at=iso8601(token_expiry(created.recreate_token or state.recreate_token)),
            origin=self.config.origin,
            tcp=self.config.tcp,
            control_url=self.config.control_url,
            agent_id=self.agent_id,
        )
        return created

    def _tunnel_deleted(self, why: str) -> None:
        """
        The edge deleted the tunnel (its owner or an admin did): say so and
        stop; bringing it back with its revoked recreate token is refused,
        and creating the name afresh would undo the delete.
        """
        if self.deleted:
            return
        self.deleted = True
        log.error(
            "TUNNEL DELETED: {name} ({tunnel_id}) was deleted on the edge ({why}); not re-creating it. "
            "Run the agent with another --name, or without its state file, for a new tunnel",
            name=self.state.name,
            tunnel_id=self.state.tunnel_id,
            why=why,
        )
        self.created = None
        self._save(state="deleted")

    # -- data plane ----------------------------------------------------------------

    async def _session(self, url: str, token: str) -> str:
        """
        Hold one session; how it ended: L{UNREACHABLE} (no connection or
        no handshake), L{REFUSED} (the edge refused the token), L{DROPPED}
        (after being up briefly) or L{STABLE} (after being up for
        L{STABLE_AFTER} seconds or more).
        """
        ended: defer.Deferred[str] = defer.Deferred()
        opened_at: list[float] = []

        def on_ready(hello: Hello, protocol: Any) -> None:
            opened_at.append(self.reactor.seconds())
            self.protocol = protocol
            self.sessions_opened += 1
            if not self.running:
                # Stopped while the handshake was under way.
                if protocol is not None:
                    protocol.close("agent stopping")
                return
            public_url = hello.public_url or (self.created.public_url if self.created else "")
            # The log line first: whoever sees "ready" in the state file
            # finds the line in the log too.
            log.info("tunnel ready: {url} -> {origin}", url=public_url, origin=self.config.origin or self.config.tcp)
            self._save(state="ready", public_url=public_url)
            self._schedule_refresh()

        def on_closed(closed: SessionClosed) -> None:
            self.protocol = None
            self._cancel_refresh()
            if ended.called:
                return
            if closed.code == CLOSE_TUNNEL_DELETED:
                self._tunnel_deleted(closed.reason or "the edge closed the session: tunnel deleted")
                ended.callback(DELETED)
                return
            if not closed.ready:
                if closed.http_status is not None:
                    log.warn(
                        "edge refused the session ({status}): {reason}", status=closed.http_status, reason=closed.reason
                    )
                    ended.callback(REFUSED)
                else:
                    problem = self.edge_tls.take_problem()
                    (log.error if problem else log.warn)(
                        "session to {url} failed: {reason}", url=url, reason=problem or closed.reason
                    )
                    ended.callback(UNREACHABLE)
                return
            up = self.reactor.seconds() - opened_at[0] if opened_at else 0.0
            if self.running and not self.deleted:
                self._save(state="offline")
                log.warn("session to {url} closed after {up:.1f} s: {reason}", url=url, up=up, reason=closed.reason)
            else:
                log.info("session to {url} closed: {reason}", url=url, reason=closed.reason)
            ended.callback(STABLE if up >= STABLE_AFTER else DROPPED)

        try:
            await self._connect(url, token, on_ready, on_closed)
        except Exception as e:
            problem = self.edge_tls.take_problem()
            (log.error if problem else log.warn)(
                "cannot connect to {url}: {error}", url=url, error=problem or str(e) or repr(e)
            )
            return UNREACHABLE
        return await ended

    async def _connect_websocket(
        self,
        url: str,
        token: str,
        on_ready: Callable[[Hello, Any], None],
        on_closed: Callable[[SessionClosed], None],
    ) -> None:
        factory: AgentSessionFactory

        def ready(hello: Hello) -> None:
            on_ready(hello, factory.current)

        factory = AgentSessionFactory(
            url=url,
            token=token,
            agent_id=self.agent_id,
            forwarder=self.forwarder,
            reactor=self.reactor,
            settings=Settings(byte_streams=True),
            heartbeat_interval=self.config.heartbeat_interval,
            heartbeat_timeout=self.config.heartbeat_timeout,
            on_ready=ready,
            on_closed=on_closed,
            tunnel_id=self.created.tunnel_id if self.created else None,
            writes=self.writes,
        )
        parts = urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        endpoint: Any = HostnameEndpoint(self.reactor, host, port, timeout=10)
        if secure:
            endpoint = wrapClientTLS(self.edge_tls.creator(host), endpoint)
        await endpoint.connect(factory)


def downgraded(control_url: str, edge_url: str) -> bool:
    """
    The control API was reached over TLS but the candidate is plain
    (C{ws://}): the ephemeral token would go out in clear.
    """
    return urlsplit(control_url).scheme == "https" and urlsplit(edge_url).scheme not in ("wss", "https")
