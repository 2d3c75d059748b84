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
from zope.interface import implementer

from ..headers import HOP_BY_HOP
from ..names import split_host
from ..protocol.errors import StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .config import EdgeConfig

if TYPE_CHECKING:
    from .registry import InMemoryRegistry
    from .viewer import ViewerProtocol

__all__ = ["TunnelRouter", "ViewerExchange", "IStreamSession"]

log = Logger()

Headers = list[tuple[bytes, bytes]]

#: Headers the edge sets itself; a viewer's own values are dropped (except
#: X-Forwarded-For, which the edge appends to).
_EDGE_SET = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-netbore-client-ip"})

#: Request fields never forwarded as the viewer sent them.
_DROP = HOP_BY_HOP | _EDGE_SET

#: Distinct Host values whose tunnel label is remembered (bounded: the
#: values come from viewers).
_LABEL_CACHE = 4096


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
    Decides, when a request's head is in, whether it is tunnel traffic, and
    starts its exchange.
    """

    def __init__(self, config: EdgeConfig, registry: "InMemoryRegistry", reactor: Any) -> None:
        self.config = config
        self.registry = registry
        self.reactor = reactor
        self.draining = False
        self._labels: dict[bytes | None, str | None] = {}

    def label_for(self, host: bytes | None) -> str | None:
        """
        The tunnel label C{host} addresses, or L{None} when it is the
        edge's own (the control API and C{/connect}).
        """
        labels = self._labels
        try:
            return labels[host]
        except KeyError:
            pass
        label = split_host(host, self.config.domain)
        if len(labels) >= _LABEL_CACHE:
            labels.clear()
        labels[host] = label
        return label

    def exchange(self, viewer: "ViewerProtocol", label: str, length: int | None) -> "ViewerExchange":
        """
        Start the exchange of the request C{viewer} has just read, for the
        tunnel C{label}; C{length} is its body's (L{None}: chunked).
        """
        return ViewerExchange(self, viewer, label, length)


def _request_head(viewer: "ViewerProtocol") -> Headers:
    """
    The headers to send on: hop-by-hop removed, forwarding headers set.
    """
    head = viewer.head
    assert head is not None
    drop = _DROP | head.connection if head.connection else _DROP
    headers: Headers = []
    append = headers.append
    forwarded_for: bytes | None = None
    for field in head.headers:
        name = field[0]
        if name in drop:
            continue
        if name == b"x-forwarded-for":
            value = field[1]
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        append(field)
    client = viewer.client_ip
    append((b"x-forwarded-for", client if forwarded_for is None else forwarded_for + b", " + client))
    append((b"x-forwarded-proto", b"https" if viewer.secure else b"http"))
    append((b"x-forwarded-host", head.host or b""))
    append((b"x-netbore-client-ip", client))
    return headers


def _response_head(headers: Headers) -> tuple[Headers, int | None]:
    """
    The response headers to send the viewer (hop-by-hop fields and those
    named in C{Connection} removed, order and repetitions kept) and the
    body's length by C{Content-Length} (L{None}: not length-delimited).

    A C{Content-Length} the viewer could not rely on is dropped so the
    viewer's connection frames the body itself: one that is not a number,
    several different ones, or any beside C{Transfer-Encoding} (RFC 9112
    §6.3: the origin's body was delimited otherwise).
    """
    forwarded: Headers = []
    append = forwarded.append
    named: list[bytes] | None = None
    lengths: list[bytes] | None = None
    chunked = False
    for field in headers:
        name = field[0].lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                named = (named or []) + [t.strip(b" \t").lower() for t in field[1].split(b",")]
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name == b"content-length":
            if lengths is None:
                lengths = [field[1]]
                append(field)
            else:
                lengths.append(field[1])
            continue
        append(field)
    drop = frozenset(named) - HOP_BY_HOP if named else None
    if drop:
        forwarded = [f for f in forwarded if f[0].lower() not in drop]
        if b"content-length" in drop:
            lengths = None
    length: int | None = None
    if lengths is not None:
        value = lengths[0].strip()
        if not chunked and value.isdigit() and len(value) <= 18 and all(v.strip() == value for v in lengths):
            length = int(value)
        else:
            forwarded = [f for f in forwarded if f[0].lower() != b"content-length"]
    return forwarded, length


@implementer(IPushProducer)
class ViewerExchange:
    """
    One viewer request and its response, carried by one tunnel stream.
    """

    session: IStreamSession | None = None
    stream_id = 0

    def __init__(self, router: TunnelRouter, viewer: "ViewerProtocol", label: str, length: int | None) -> None:
        self.router = router
        self.viewer = viewer
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
        sessions = self.tunnel.sessions
        session: IStreamSession
        if len(sessions) == 1 and not self.tried:
            session = sessions[0]
        else:
            candidates = [s for s in sessions if s not in self.tried]
            if not candidates:
                return pages.OFFLINE
            session = min(candidates, key=lambda s: s.stream_count())
        self.tried.append(session)
        head = self.viewer.head
        assert head is not None
        try:
            self.stream_id = session.open_stream(
                self, head.method, head.target, _request_head(self.viewer), self.end_stream
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
                self.viewer.pause_reading()

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
            self.viewer.resume_reading()
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
            self.viewer.resume_reading()

    def _start_response(self) -> None:
        assert self.head is not None
        if self.responding:
            return
        self.responding = True
        status, reason, headers, end_stream = self.head
        forwarded, length = _response_head(headers)
        # The origin's headers as they are (no Content-Type or Server of the
        # edge's own); the head goes out now: a streamed response (SSE, long
        # poll) may not have a first byte of body for a long time.
        self.viewer.respond(status, reason, forwarded, length)
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
        self.viewer.write_body(data)
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
            self.viewer.abort()
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
            self.viewer.resume_reading()
        if self.body_done:
            self._respond_error(error)

    def _finish(self) -> None:
        self.finished = True
        # The last bytes are in the viewer connection's buffer; that
        # connection's own backpressure bounds them from here on.
        self._release()
        # Last: the viewer may go on to its next request from here.
        self.viewer.finish()

    def _respond_error(self, error: pages.ViewerError) -> None:
        self.early = []
        self._release()
        if self.finished:
            return
        self.finished = True
        self.viewer.error_page(error)

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
            self.viewer.resume_reading()
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

    def viewer_gone(self) -> None:
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
        self.viewer_gone()
