"""
Viewer traffic into tunnels: one L{ViewerExchange} per viewer request.

The exchange opens a stream on one of the tunnel's agent sessions as soon as
the request's headers are in, streams the request body under the stream's
send window (pausing the viewer's connection while the window is shut), and
streams the response back with the viewer's connection as the consumer: the
stream's receive window is re-opened only as fast as the viewer takes the
bytes, so a slow viewer slows the origin instead of filling memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..headers import strip_hop_by_hop
from ..names import split_host
from ..protocol.errors import StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .config import EdgeConfig

if TYPE_CHECKING:
    from .registry import InMemoryRegistry
    from .request import EdgeRequest

__all__ = ["TunnelRouter", "ViewerExchange", "IStreamSession"]

log = Logger()

Headers = list[tuple[bytes, bytes]]

#: Headers the edge sets itself; a viewer's own values are dropped (except
#: X-Forwarded-For, which the edge appends to).
_EDGE_SET = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-netbore-client-ip"})


class IStreamSession(Protocol):
    """
    What an exchange needs of an agent session (L{connect.EdgeSession}).
    """

    def open_stream(
        self, exchange: "ViewerExchange", method: bytes, target: bytes, headers: Headers, end_stream: bool
    ) -> int: ...

    def send_data(self, stream_id: int, data: bytes) -> int: ...

    def send_end(self, stream_id: int) -> None: ...

    def reset(self, stream_id: int, code: int) -> None: ...

    def acknowledge(self, stream_id: int, n: int) -> None: ...

    def stream_count(self) -> int: ...


class TunnelRouter:
    """
    Decides, when a request's headers are in, whether it is tunnel traffic.
    """

    def __init__(self, config: EdgeConfig, registry: "InMemoryRegistry", reactor: Any) -> None:
        self.config = config
        self.registry = registry
        self.reactor = reactor
        self.draining = False

    def route(self, request: "EdgeRequest", length: int | None) -> "ViewerExchange | None":
        label = split_host(request.getHeader(b"host"), self.config.domain)
        if label is None:
            return None
        return ViewerExchange(self, request, label, length)


def _request_head(request: "EdgeRequest") -> Headers:
    """
    The headers to send on: hop-by-hop removed, forwarding headers set.
    """
    raw: Headers = [
        (name.lower(), value)
        for name, values in request.requestHeaders.getAllRawHeaders()
        for value in values
    ]
    headers = [h for h in strip_hop_by_hop(raw) if h[0] not in _EDGE_SET]
    peer = request.getClientAddress()
    client_ip = getattr(peer, "host", "")
    client = client_ip.encode("ascii", "replace")
    forwarded_for = [v for n, v in headers if n == b"x-forwarded-for"]
    if forwarded_for:
        headers = [h for h in headers if h[0] != b"x-forwarded-for"]
        chain = b", ".join(forwarded_for) + b", " + client
    else:
        chain = client
    headers.append((b"x-forwarded-for", chain))
    headers.append((b"x-forwarded-proto", b"https" if request.isSecure() else b"http"))
    headers.append((b"x-forwarded-host", request.getHeader(b"host") or b""))
    headers.append((b"x-netbore-client-ip", client))
    return headers


@implementer(IPushProducer)
class ViewerExchange:
    """
    One viewer request and its response, carried by one tunnel stream.
    """

    session: IStreamSession | None = None
    stream_id = 0

    def __init__(self, router: TunnelRouter, request: "EdgeRequest", label: str, length: int | None) -> None:
        self.router = router
        self.request = request
        self.error: pages.ViewerError | None = None
        self.body_done = False
        self.sent_end = False
        self.pending: list[bytes] = []  # request body beyond the send window
        self.viewer_paused = False  # we paused reading the viewer
        self.head: tuple[int, bytes, Headers, bool] | None = None
        self.early: list[bytes] = []  # response data before the request body ended
        self.early_end = False
        self.responding = False
        self.finished = False
        self.consumer_paused = False
        # Response bytes received from the agent and not yet acknowledged:
        # every byte is acknowledged exactly once, when the viewer's
        # connection has taken it or when it is dropped (a leak here would
        # shrink the whole session's window for good).
        self.held = 0
        self.credit_to: tuple[IStreamSession, int] | None = None
        # The agent ended (or answered all of) the response before the
        # viewer's body was in: the rest of the body is read and dropped.
        self.response_complete = False
        self.timeout: IDelayedCall | None = None
        self.body_started = False  # some of the request body went to an agent
        request.notifyFinish().addErrback(self._viewer_gone)

        if router.draining:
            self.error = pages.OFFLINE
            return
        tunnel = router.registry.by_name(label)
        if tunnel is None:
            self.error = pages.NOT_FOUND
            return
        self.tunnel = tunnel
        self.tried: list[IStreamSession] = []
        self.end_stream = length == 0
        self.sent_end = self.end_stream
        self.error = self._open()
        if self.error is not None:
            return
        self.timeout = router.reactor.callLater(router.config.response_timeout, self._timed_out)

    def _open(self) -> pages.ViewerError | None:
        """
        Open the stream on the tunnel's least busy session not tried yet;
        the error page to answer with when there is none.
        """
        candidates = [s for s in self.tunnel.sessions if s not in self.tried]
        if not candidates:
            return pages.OFFLINE
        session: IStreamSession = min(candidates, key=lambda s: s.stream_count())
        self.tried.append(session)
        request = self.request
        try:
            self.stream_id = session.open_stream(
                self, request.method, request.uri, _request_head(request), self.end_stream
            )
        except StreamClosedError:
            # The session is going away (GOAWAY) or out of stream ids.
            return self._open()
        except StreamError as e:
            # A head the wire cannot carry (too large, a value it refuses).
            log.info("request head not forwardable: {why}", why=str(e))
            return pages.HEAD_TOO_LARGE
        self.session = session
        self.credit_to = (session, self.stream_id)
        return None

    def _release(self) -> None:
        """
        Acknowledge every held response byte to the agent's session.
        """
        held, self.held = self.held, 0
        if held and self.credit_to is not None:
            session, stream_id = self.credit_to
            session.acknowledge(stream_id, held)

    def _retry_refused(self) -> bool:
        """
        The agent refused the stream without processing it (it is going
        away): if none of the request has been consumed, carry it on
        another session of the tunnel's pool instead of failing it.
        """
        if self.body_started or self.head is not None or self.responding:
            return False
        self.session = None
        self.sent_end = self.end_stream
        if self._open() is not None:
            return False
        log.info("stream refused by a departing agent: retried on another session")
        if self.body_done:
            self._maybe_send_end()
        return True

    # -- request body, viewer → agent ------------------------------------

    def body_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.finished or self.response_complete:
            return  # answering with an error page, or already answered: discard
        if self.head is None:
            # The body is still coming: the wait for the answer has not begun.
            self._rearm_timeout()
        if self.pending:
            self.pending.append(data)
            return
        self.body_started = True
        sent = session.send_data(self.stream_id, data)
        if sent < len(data):
            self.pending.append(data[sent:])
            if not self.viewer_paused:
                self.viewer_paused = True
                self.request.viewer_pause()

    def body_complete(self) -> None:
        self.body_done = True
        if self.error is not None:
            self._respond_error(self.error)
            return
        if self.finished:
            return
        self._maybe_send_end()
        if self.head is not None:
            self._start_response()
        elif self.sent_end:
            # The origin has the whole request from now on: that is when
            # the wait for its answer starts.
            self._rearm_timeout()

    def _maybe_send_end(self) -> None:
        if (
            self.body_done
            and not self.pending
            and not self.sent_end
            and not self.response_complete
            and self.session is not None
        ):
            self.sent_end = True
            self.session.send_end(self.stream_id)

    def window_opened(self) -> None:
        """
        The stream's (or the session's) send window grew.
        """
        session = self.session
        if session is None or self.finished:
            return
        if self.head is None and not self.sent_end:
            # The origin is taking the body: it is working, not silent.
            self._rearm_timeout()
        while self.pending:
            chunk = self.pending[0]
            sent = session.send_data(self.stream_id, chunk)
            if sent < len(chunk):
                self.pending[0] = chunk[sent:]
                return
            self.pending.pop(0)
        if self.viewer_paused:
            self.viewer_paused = False
            self.request.viewer_resume()
        self._maybe_send_end()

    # -- response, agent → viewer ----------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Headers, end_stream: bool) -> None:
        if self.finished:
            return
        self._cancel_timeout()
        self.head = (status, reason, headers, end_stream)
        self.early_end = end_stream
        if self.body_done:
            self._start_response()
        elif end_stream:
            self._response_complete_early()

    def _response_complete_early(self) -> None:
        """
        The whole response is in while the viewer is still sending its body
        (an origin that answers without reading it, e.g. 413).  The stream is
        over on the agent's side: stop forwarding, drop the rest of the body
        as it comes (never buffer it, never leave the viewer paused), and
        answer when the body is in.
        """
        self.response_complete = True
        self.pending = []
        if self.session is not None:
            self.session.reset(self.stream_id, ErrorCode.NO_ERROR)
        if self.viewer_paused:
            self.viewer_paused = False
            self.request.viewer_resume()

    def _start_response(self) -> None:
        assert self.head is not None
        if self.responding:
            return
        self.responding = True
        status, reason, headers, end_stream = self.head
        request = self.request
        request.setResponseCode(status, reason or None)
        # The origin's headers as they are: no Content-Type of Twisted's own.
        request.defaultContentType = None
        response_headers = request.responseHeaders
        for name, value in strip_hop_by_hop(headers):
            response_headers.addRawHeader(name, value)
        request.registerProducer(self, True)
        # Send the head now: a streamed response (SSE, long poll) may not
        # have a first byte of body for a long time.
        request.write(b"")
        early, self.early = self.early, []
        for chunk in early:
            self._deliver(chunk)
        if self.early_end:
            self._finish()

    def data(self, data: bytes, end_stream: bool) -> None:
        self.held += len(data)
        if self.finished:
            self._release()
            return
        if not self.responding:
            self.early.append(data)
            self.early_end = end_stream
            if end_stream and not self.body_done:
                self._response_complete_early()
            return
        self._deliver(data)
        if end_stream:
            self._finish()

    def _deliver(self, data: bytes) -> None:
        self.request.write(data)
        if not self.consumer_paused:
            self._release()

    def ended(self) -> None:
        if self.finished:
            return
        if self.responding:
            self._finish()
        else:
            self.early_end = True
            if not self.body_done and self.head is not None:
                self._response_complete_early()

    def reset(self, code: int) -> None:
        """
        The agent reset the stream, or its session went away.
        """
        if self.finished:
            return
        if code == ErrorCode.REFUSED_STREAM and self._retry_refused():
            return
        self.session = None
        self.early = []
        self._release()
        self._cancel_timeout()
        if self.responding:
            # Too late for an error page: cut the connection so the viewer
            # sees a truncated response, never a complete-looking one.
            self.finished = True
            transport: Any = self.request.channel.transport
            if transport is not None:
                transport.abortConnection()
            return
        if code == ErrorCode.TIMEOUT:
            error = pages.TIMEOUT
        elif code == ErrorCode.ORIGIN_UNREACHABLE:
            error = pages.UNREACHABLE
        elif code in (ErrorCode.ORIGIN_RESET, ErrorCode.INTERNAL_ERROR):
            error = pages.ORIGIN_ERROR
        else:
            error = pages.OFFLINE
        self.error = error
        self.pending = []
        if self.viewer_paused:
            self.viewer_paused = False
            self.request.viewer_resume()
        if self.body_done:
            self._respond_error(error)

    def _finish(self) -> None:
        self.finished = True
        self.request.unregisterProducer()
        self.request.finish()
        # The last bytes are in the viewer connection's buffer; that
        # connection's own backpressure bounds them from here on.
        self._release()

    def _respond_error(self, error: pages.ViewerError) -> None:
        self.early = []
        self._release()
        if self.finished:
            return
        self.finished = True
        pages.render_error(self.request, error)

    def _timed_out(self) -> None:
        self.timeout = None
        if self.finished or self.head is not None:
            return
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.TIMEOUT)
        log.info("origin timed out on stream {stream_id}", stream_id=self.stream_id)
        self.error = pages.TIMEOUT
        self.pending = []
        if self.viewer_paused:
            self.viewer_paused = False
            self.request.viewer_resume()
        if self.body_done:
            self._respond_error(pages.TIMEOUT)

    def _rearm_timeout(self) -> None:
        timeout = self.timeout
        if timeout is not None and timeout.active():
            timeout.reset(self.router.config.response_timeout)

    def _cancel_timeout(self) -> None:
        if self.timeout is not None:
            if self.timeout.active():
                self.timeout.cancel()
            self.timeout = None

    def _viewer_gone(self, reason: Failure) -> None:
        """
        The viewer's connection closed before the response was finished.
        """
        self._cancel_timeout()
        was_finished, self.finished = self.finished, True
        session, self.session = self.session, None
        if session is not None and not was_finished:
            session.reset(self.stream_id, ErrorCode.CANCEL)
        self.early = []
        self._release()

    # -- IPushProducer: the viewer's connection as consumer -----------------

    def pauseProducing(self) -> None:
        self.consumer_paused = True

    def resumeProducing(self) -> None:
        self.consumer_paused = False
        if self.responding:
            self._release()

    def stopProducing(self) -> None:
        self._viewer_gone(Failure(ConnectionError("viewer connection lost")))
