"""
Keeping the recreate token fresh: while the tunnel is up, the agent
re-creates it (same id, same name) before its recreate token runs out, for
a new one.  A mixin of L{netbore.agent.service.AgentService}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .._types import Reactor
from .config import AgentConfig
from .control_client import ControlError, Created, TunnelControl, iso8601, token_expiry
from .state import AgentState

__all__ = ["REFRESH_AT", "REFRESH_MIN", "REFRESH_RETRY_MAX", "TokenRefresh"]

log = Logger()

#: Refresh the recreate token (by re-creating) at this fraction of its
#: remaining lifetime, so that an agent connected for longer than the
#: token's lifetime can still reclaim its name after an edge restart.
REFRESH_AT = 0.5
#: Shortest and longest wait between refresh attempts.
REFRESH_MIN = 1.0
REFRESH_RETRY_MAX = 60.0
#: The edge's ways of saying "this tunnel was deleted, do not bring it
#: back": the control API's error code (410) and the WebSocket close code
#: of a deleted tunnel's sessions (docs/protocol.rst).
TUNNEL_DELETED = "tunnel_deleted"


class TokenRefresh:
    """
    The recreate-token refresh of L{netbore.agent.service.AgentService}.
    """

    config: AgentConfig
    reactor: Reactor
    state: AgentState
    control: TunnelControl
    api_key: str | None
    created: Created | None
    protocol: Any
    running: int  # (twisted.application.service.Service's)
    _refresh: IDelayedCall | None = None  # the next refresh

    def _save(self, **changes: Any) -> None:
        raise NotImplementedError

    def _tunnel_deleted(self, why: str) -> None:
        raise NotImplementedError

    def _create_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def _schedule_refresh(self, delay: float | None = None) -> None:
        """
        While the tunnel is up, re-create it (same id, same name: the edge
        answers a valid recreate token for a live tunnel with that tunnel)
        before the recreate token runs out, for a new one.
        """
        self._cancel_refresh()
        if delay is None:
            exp = token_expiry(self.state.recreate_token)
            if exp is None:
                return
            delay = max(REFRESH_MIN, (exp - self.reactor.seconds()) * REFRESH_AT)
        self._refresh = self.reactor.callLater(delay, self._refresh_now)

    def _cancel_refresh(self) -> None:
        if self._refresh is not None and self._refresh.active():
            self._refresh.cancel()
        self._refresh = None

    def _refresh_now(self) -> None:
        self._refresh = None
        d = defer.ensureDeferred(self._refresh_token())
        d.addErrback(lambda f: log.failure("refreshing the recreate token failed", f))

    async def _refresh_token(self) -> None:
        if not self.running or self.protocol is None or not self.state.recreate_token:
            return
        before = self.state.tunnel_id
        try:
            management = await self.control.management_token(self.api_key) if self.api_key else None
            created = await self.control.create(
                requested_name=self.state.name,
                recreate_token=self.state.recreate_token,
                management_token=management,
                recreate_ttl=self.config.recreate_ttl,
                **self._create_args(),
            )
        except Exception as e:
            if isinstance(e, ControlError) and e.code == TUNNEL_DELETED:
                self._tunnel_deleted(e.message)
                if self.protocol is not None:
                    self.protocol.close("tunnel deleted")
                return
            exp = token_expiry(self.state.recreate_token) or 0.0
            retry = min(REFRESH_RETRY_MAX, max(REFRESH_MIN, (exp - self.reactor.seconds()) * REFRESH_AT))
            log.warn(
                "cannot refresh the recreate token ({error}); retrying in {retry:.0f} s",
                error=str(e) or repr(e),
                retry=retry,
            )
            if self.protocol is not None and self.running:
                self._schedule_refresh(retry)
            return
        if created.tunnel_id != before:
            # Cannot happen with a valid token; do not adopt a stranger.
            log.warn(
                "refreshing the recreate token gave another tunnel ({tunnel_id}); ignored", tunnel_id=created.tunnel_id
            )
            return
        self.created = created
        self._save(
            recreate_token=created.recreate_token or self.state.recreate_token,
            recreate_expires_at=iso8601(token_expiry(created.recreate_token or self.state.recreate_token)),
        )
        if self.protocol is not None and self.running:
            self._schedule_refresh()
