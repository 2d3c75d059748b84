"""
The exchange's side of the rules a response head from an agent must keep
(L{netbore.edge.header_rules}, issue 10 item 14).

L{netbore.edge.exchange.ViewerExchange.response_head} checks every head
inline (a call into another module on every request costs, see
C{bench/trace.py}); only a head that breaks a rule comes here: it is never
passed on, its stream is reset, the viewer gets a 502 page
(C{invalid_response}) and the router counts it (C{refused_heads}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ..protocol.frames import ErrorCode
from . import pages
from .exchange_ends import ExchangeEnds, Fields
from .header_rules import head_problem

if TYPE_CHECKING:
    from .registry import Tunnel

__all__ = ["CheckedExchange"]

log = Logger()


class CheckedExchange(ExchangeEnds):
    """
    The base of L{netbore.edge.exchange.ViewerExchange} that refuses the
    response heads it must not pass on.
    """

    tunnel: Tunnel
    #: (the session's DATA handler reads it) an exchange is forgotten with
    #: the agent's C{END_STREAM}; a byte stream may still send (L{netbore.edge.byterelay}).
    keeps_after_end = False

    def _refuse_head(self, status: int, reason: bytes, headers: Fields) -> None:
        """
        The agent's response head breaks the rules of
        L{netbore.edge.header_rules}: it is not passed on.  The stream is
        reset, the viewer gets a 502 page, the router counts it.
        """
        head = self.viewer.head
        why = head_problem(head.method if head is not None else b"", status, reason, headers)
        self.router.refused_heads += 1
        log.warn(
            "response head refused on stream {stream_id} of tunnel {name}: {why}",
            stream_id=self.stream_id,
            name=self.tunnel.name,
            why=why,
        )
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.PROTOCOL_ERROR)
        self.early = None
        self._cancel_timeout()
        self._acknowledge(self.credit.close() + self._drop_waiting())
        self._fail(pages.INVALID_RESPONSE)
