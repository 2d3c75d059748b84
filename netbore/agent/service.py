"""
The agent's lifetime: create (or re-create) the tunnel, hold a session to
the edge, reconnect with backoff, keep the state file true.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from treq.client import HTTPClient

from ..apikeys import read_api_key_file
from ..protocol.handshake import Hello, Settings
from .backoff import Backoff
from .config import AgentConfig
from .control import ControlClient, ControlError, Created
from .forwarder import OriginForwarder, make_pool
from .session import AgentSessionFactory, SessionClosed
from .state import AgentState, load_state, save_state

__all__ = ["AgentService"]

log = Logger()

#: A session that stayed up this long resets the backoff.
STABLE_AFTER = 10.0
#: Re-create a little before the ephemeral token runs out.
TOKEN_MARGIN = 30.0

def _parse_time(text: str) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return 0.0


class AgentService(service.Service):
    """
    Keeps one tunnel up for one origin.
    """

    def __init__(self, config: AgentConfig, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.state = load_state(config.state_file) if config.state_file else AgentState()
        self.agent_id = config.agent_id or self.state.agent_id or "agent-" + secrets.token_hex(6)
        self.api_key = read_api_key_file(config.api_key_file) if config.api_key_file else None
        self.trust = None
        if config.ca_cert:
            with open(config.ca_cert, "rb") as f:
                self.trust = Certificate.loadPEM(f.read())
        policy = BrowserLikePolicyForHTTPS(trustRoot=self.trust) if self.trust else BrowserLikePolicyForHTTPS()
        self.control = ControlClient(HTTPClient(Agent(reactor, contextFactory=policy)), config.control_url)  # type: ignore[arg-type]
        self.forwarder = OriginForwarder(
            reactor, config.origin, host_header=config.host_header, pool=make_pool(reactor)
        )
        self.backoff = Backoff(config.backoff_base, config.backoff_cap)
        self.created: Created | None = None
        self.protocol: Any = None
        self._loop: defer.Deferred[None] | None = None
        self._sleep: Any = None
        self._sleeping: defer.Deferred[None] = defer.Deferred()

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
        super().stopService()
        if self._sleep is not None and self._sleep.active():
            self._sleep.cancel()
            self._sleeping.callback(None)  # let the loop see running is False
        protocol, self.protocol = self.protocol, None
        done: defer.Deferred[Any] = defer.succeed(None)
        if protocol is not None:
            done = protocol.drain()
            done.addTimeout(self.config.drain_timeout, self.reactor)
            done.addErrback(lambda f: protocol.close("drain timeout"))
        self._save(state="offline")
        return done

    async def _run(self) -> None:
        refusals = 0
        while self.running:
            try:
                created = await self._ensure_created()
            except ControlError as e:
                log.error("control API refused the tunnel: {error}", error=str(e))
            except Exception as e:
                log.warn("cannot reach the control API at {url}: {error}", url=self.config.control_url, error=str(e) or repr(e))
            else:
                for candidate in created.candidates:
                    if not self.running:
                        return
                    outcome = await self._session(str(candidate["edge_url"]), created.ephemeral_token)
                    if outcome == "unreachable":
                        continue  # the next candidate, in order
                    if outcome == "refused":
                        # The token is no good here (expired, or the edge
                        # restarted and forgot the tunnel): re-create at
                        # once with the recreate token, backing off only if
                        # that keeps being refused.
                        self.created = None
                        refusals += 1
                    else:
                        refusals = 0
                        if outcome == "stable":
                            self.backoff.reset()
                    break
                if refusals == 1 and self.running:
                    continue
            if not self.running:
                return
            delay = self.backoff.next()
            log.info("reconnecting in {delay:.1f} s", delay=delay)
            await self._wait(delay)

    def _wait(self, seconds: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._sleep = self.reactor.callLater(seconds, d.callback, None)
        self._sleeping = d
        return d

    # -- control plane -----------------------------------------------------------

    async def _ensure_created(self) -> Created:
        created = self.created
        if created is not None and _parse_time(created.candidates_expires_at) - TOKEN_MARGIN > self.reactor.seconds():
            return created
        management = await self.control.management_token(self.api_key) if self.api_key else None
        state = self.state
        ttl = self.config.recreate_ttl
        if state.recreate_token and self.config.name and self.config.name != state.name:
            log.info(
                "--name {name} differs from the state file's {old}: creating a new tunnel",
                name=self.config.name, old=state.name,
            )
            self._save(recreate_token=None, tunnel_id=None, name=None)
        if state.recreate_token:
            try:
                created = await self.control.create(
                    requested_name=state.name, recreate_token=state.recreate_token,
                    management_token=management, recreate_ttl=ttl,
                )
            except ControlError as e:
                if e.status not in (400, 401, 403):
                    raise
                log.warn(
                    "the recreate token for {name} was refused ({error}); creating a new tunnel: "
                    "THE NAME MAY CHANGE",
                    name=state.name, error=str(e),
                )
                self._save(recreate_token=None, tunnel_id=None)
                created = await self.control.create(
                    requested_name=self.config.name, management_token=management, recreate_ttl=ttl
                )
        else:
            created = await self.control.create(
                requested_name=self.config.name or state.name, management_token=management, recreate_ttl=ttl
            )
        if state.name and created.name != state.name:
            log.warn(
                "TUNNEL NAME CHANGED: {old} is now {new} ({url})", old=state.name, new=created.name, url=created.public_url
            )
        self.created = created
        self._save(
            tunnel_id=created.tunnel_id,
            name=created.name,
            public_url=created.public_url,
            recreate_token=created.recreate_token or state.recreate_token,
            origin=self.config.origin,
            control_url=self.config.control_url,
            agent_id=self.agent_id,
        )
        return created

    # -- data plane ----------------------------------------------------------------

    async def _session(self, url: str, token: str) -> str:
        """
        Hold one session; how it ended: "unreachable", "refused", "dropped"
        (after being up briefly) or "stable" (after being up long enough).
        """
        ended: defer.Deferred[str] = defer.Deferred()
        opened_at: list[float] = []
        factory: AgentSessionFactory

        def on_ready(hello: Hello) -> None:
            opened_at.append(self.reactor.seconds())
            self.protocol = factory.current
            public_url = hello.public_url or (self.created.public_url if self.created else "")
            self._save(state="ready", public_url=public_url)
            log.info("tunnel ready: {url} -> {origin}", url=public_url, origin=self.config.origin)

        def on_closed(closed: SessionClosed) -> None:
            self.protocol = None
            if ended.called:
                return
            if not closed.ready:
                if closed.http_status is not None:
                    log.warn("edge refused the session ({status}): {reason}", status=closed.http_status, reason=closed.reason)
                    ended.callback("refused")
                else:
                    log.warn("session to {url} failed: {reason}", url=url, reason=closed.reason)
                    ended.callback("unreachable")
                return
            if self.running:
                self._save(state="offline")
            log.warn("session to {url} closed: {reason}", url=url, reason=closed.reason)
            up = self.reactor.seconds() - opened_at[0] if opened_at else 0.0
            ended.callback("stable" if up >= STABLE_AFTER else "dropped")

        factory = AgentSessionFactory(
            url=url,
            token=token,
            agent_id=self.agent_id,
            forwarder=self.forwarder,
            reactor=self.reactor,
            settings=Settings(),
            heartbeat_interval=self.config.heartbeat_interval,
            heartbeat_timeout=self.config.heartbeat_timeout,
            on_ready=on_ready,
            on_closed=on_closed,
            tunnel_id=self.created.tunnel_id if self.created else None,
        )
        parts = urlsplit(url)
        secure = parts.scheme in ("wss", "https")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        endpoint: Any = HostnameEndpoint(self.reactor, host, port, timeout=10)
        if secure:
            endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=self.trust), endpoint)
        try:
            await endpoint.connect(factory)
        except Exception as e:
            log.warn("cannot connect to {url}: {error}", url=url, error=str(e) or repr(e))
            return "unreachable"
        return await ended
