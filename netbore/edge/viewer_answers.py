"""
The answers a viewer connection (L{netbore.edge.viewer.ViewerProtocol})
gives itself, without the origin: error pages for a request the parser
refused, for a request the edge does not forward, and for the exchange's
errors.  None of it runs for a request answered by its origin (each call
between modules costs on every request, see C{bench/trace.py}).

A tunnel forwards requests whose target is in origin-form (C{/path?query})
only.  The others are answered at once, never forwarded (issue 10):

  - C{CONNECT} (any target): 405 C{method_not_allowed} with C{Allow}, as
    the edge is not a forward proxy;
  - an absolute-form target (C{http://host/path}, a forward proxy's form)
    and the asterisk-form (C{*}, as in C{OPTIONS *}, which asks about the
    server rather than a resource): 400.

The HTTP/1.1 codec still parses those forms (the differential tests keep
comparing them with other parsers); refusing them is the edge's policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import ITransport

from .._types import Clock
from ..http1 import Framing, RequestHead, reason_phrase
from . import pages

if TYPE_CHECKING:
    from ..writes import WriteBatch

__all__ = ["ViewerAnswers"]

_ERROR_STATUSES = {
    400: pages.BAD_REQUEST,
    408: pages.REQUEST_TIMEOUT,
    431: pages.HEAD_TOO_LARGE,
    501: pages.NOT_IMPLEMENTED,
    505: pages.VERSION_NOT_SUPPORTED,
}


class ViewerAnswers:
    """
    The base of L{netbore.edge.viewer.ViewerProtocol}: the edge's own
    answers (see the module's docstring).  The attributes are the
    protocol's.
    """

    head: RequestHead | None
    transport: ITransport | None
    clock: Clock
    label: str | None
    started_at: float | None
    received_bytes: int
    sent_bytes: int
    _keep_alive: bool
    _writes: WriteBatch

    # -- the protocol's own (netbore.edge.viewer) ---------------------------

    def respond(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        raise NotImplementedError

    def write_body(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def _write_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: Framing) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _done(self) -> None:
        raise NotImplementedError

    # -- answers ----------------------------------------------------------------

    def refuse(self, status: int) -> None:
        """
        Answer with the page for C{status} and close: a request the parser
        refused, or the request in flight (408: its body is too slow).
        """
        self._keep_alive = False
        if self.started_at is None:  # a request refused before its head was whole: logged too
            self.started_at = self.clock.seconds()
            self.head = self.label = None
            self.received_bytes = 0
        error = _ERROR_STATUSES.get(status, pages.BAD_REQUEST)
        ctype, body = pages.render(error, b"", b"")
        self._write_head(error.status, reason_phrase(error.status), pages.headers(ctype, body, error), Framing.NONE)
        self._writes.write(self.transport, body)
        self.sent_bytes = len(body)
        self._done()
        self.head = None
        self._close()

    def _not_forwarded(self, head: RequestHead) -> None:
        """
        Answer a tunnel request the edge does not forward (C{CONNECT}, a
        target not in origin-form) at once; a body it has is not read: the
        connection closes after the answer.
        """
        if head.chunked or head.length:
            self._keep_alive = False
        self.error_page(pages.METHOD_NOT_ALLOWED if head.method == b"CONNECT" else pages.TARGET_NOT_SERVED)

    def _refuse_unread(self, error: pages.ViewerError) -> None:
        """
        Answer C{error} at once to a request that waits for C{100 Continue}
        before it sends its body (the body is never read: the connection
        closes after the answer).
        """
        self._keep_alive = False
        self.error_page(error)

    def error_page(self, error: pages.ViewerError) -> None:
        """
        Answer with the edge's page for C{error}, and finish.
        """
        head = self.head
        assert head is not None
        ctype, body = pages.render(error, head.host or b"", head.header(b"accept") or b"")
        self.respond(error.status, reason_phrase(error.status), pages.headers(ctype, body, error), len(body))
        self.write_body(body)
        self.finish()
