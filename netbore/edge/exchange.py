"""
Viewer traffic into tunnels: one L{ViewerExchange} per viewer request.

The exchange opens a stream on one of the tunnel's agent sessions as soon as
the request's head is in, streams the request body under the stream's send
window (pausing the viewer while it is shut), and streams the response back
with the viewer's connection as the consumer: the stream's credit goes back
only as fast as the viewer takes the bytes, so a slow viewer slows the
origin instead of filling memory.  Each direction is an explicit state
machine (L{exchange_states}); the credit pump is L{netbore.protocol.credit}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from ..protocol.credit import ReceiveCredit, SendQueue
from ..protocol.errors import StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .exchange_states import BODY_IN, REQUEST_MOVES, RESPONSE_MOVES, RequestState, ResponseState
from .forwarding import Fields, request_fields, response_fields

if TYPE_CHECKING:
    from .registry import Tunnel
    from .router import StreamSession, TunnelRouter
    from .viewer import ViewerProtocol

__all__ = ["ViewerExchange"]

log = Logger()

# The states as module globals, in definition order (a member read through its class costs a
# descriptor call); tests check that each name is its member.
Q_OPEN, Q_SENDING, Q_ENDING, Q_EMPTY, Q_DONE, Q_DROPPING, Q_DROPPED = RequestState
R_WAITING, R_EARLY, R_EARLY_END, R_FAILED, R_STREAMING, R_DONE = ResponseState

#: The page for an agent's reset before the response head.
_RESET_PAGES: dict[int, pages.ViewerError] = {
    ErrorCode.TIMEOUT: pages.TIMEOUT,
    ErrorCode.ORIGIN_UNREACHABLE: pages.UNREACHABLE,
    ErrorCode.ORIGIN_RESET: pages.ORIGIN_ERROR,
    ErrorCode.INTERNAL_ERROR: pages.ORIGIN_ERROR,
}


@implementer(IPushProducer)
class ViewerExchange:
    """
    One viewer request and its response, carried by one tunnel stream.

    @ivar request: the request side's L{RequestState}; C{response}: the
        response side's L{ResponseState}.
    @ivar session: the session the stream may still be sent on (L{None}
        once either side reset it); C{peer}: the one it was opened on,
        which gets the response's credit back.
    @ivar credit: response bytes received and not yet acknowledged;
        C{backlog}: request body beyond the send window (made if needed).
    """

    session: StreamSession | None = None
    peer: StreamSession
    tunnel: Tunnel
    stream_id = 0
    error: pages.ViewerError | None = None
    timeout: IDelayedCall | None = None
    backlog: SendQueue | None = None
    held_head: tuple[int, bytes, Fields] | None = None
    early: list[bytes] | None = None
    tried: list[StreamSession] | None = None

    def __init__(self, router: TunnelRouter, viewer: ViewerProtocol, label: str, length: int | None) -> None:
        self.router = router
        self.viewer = viewer
        self.credit = ReceiveCredit()
        self.end_stream = length == 0
        self.request = Q_OPEN
        self.response = R_WAITING
        if router.draining:
            error: pages.ViewerError | None = pages.OFFLINE
        else:
            tunnel = router.registry.by_name(label)
            if tunnel is None:
                error = pages.NOT_FOUND
            else:
                self.tunnel = tunnel
                error = self._open()
        if error is None:
            self.timeout = router.reactor.callLater(router.config.response_timeout, self._timed_out)
            return
        # No stream: answer with the page once the body is in (read and dropped).
        self.error = error
        self.request = Q_DROPPING
        self.response = R_FAILED
        self.credit.close()

    def _open(self) -> pages.ViewerError | None:
        """
        Open the stream on the tunnel's least busy session not tried yet;
        the error page to answer with when there is none.
        """
        sessions = self.tunnel.sessions
        tried = self.tried
        viewer = self.viewer
        head = viewer.head
        assert head is not None
        while True:
            session: StreamSession
            if tried is None and len(sessions) == 1:
                session = sessions[0]
            else:
                candidates = [s for s in sessions if tried is None or s not in tried]
                if not candidates:
                    return pages.OFFLINE
                session = min(candidates, key=lambda s: s.stream_count())
            fields = request_fields(head.headers, head.connection, head.host, viewer.client_ip, viewer.secure)
            try:
                self.stream_id = session.open_stream(self, head.method, head.target, fields, self.end_stream)
            except StreamClosedError:  # the session is going away (GOAWAY) or out of stream ids
                if tried is None:
                    tried = self.tried = []
                tried.append(session)
                continue
            except StreamError as e:
                # A head the wire cannot carry (too large, a value it refuses).
                log.info("request head not forwardable: {why}", why=str(e))
                return pages.HEAD_TOO_LARGE
            self.session = self.peer = session
            return None

    def _acknowledge(self, n: int) -> None:
        if n:
            self.peer.acknowledge(self.stream_id, n)

    def _retry_refused(self) -> bool:
        """
        The agent refused the stream without processing it (it is going
        away): if none of the request has been consumed, carry it on
        another session of the tunnel's pool instead of failing it.
        """
        state = self.request
        if self.response is not R_WAITING or (state is not Q_OPEN and state is not Q_EMPTY):
            return False
        if self.tried is None:
            self.tried = [self.peer]
        else:
            self.tried.append(self.peer)
        self.session = None
        if self._open() is not None:
            return False
        log.info("stream refused by a departing agent: retried on another session")
        if state is Q_EMPTY and not self.end_stream:
            # The (empty) body was complete: end it on the new stream too.
            self.peer.send_end(self.stream_id)
        return True

    def _stop_forwarding(self) -> None:
        """Nothing more of the request goes on: drop what waits, let the viewer send the rest to drop."""
        state = self.request
        if state is Q_OPEN or state is Q_SENDING:
            self.request = Q_DROPPING
        elif state is Q_ENDING:
            self.request = Q_DROPPED
        backlog = self.backlog
        if backlog is not None:
            backlog.clear()
            if backlog.drained() and self.response is not R_DONE:
                self.viewer.resume_reading()

    # -- request body, viewer → agent ------------------------------------

    def body_received(self, data: bytes) -> None:
        state = self.request
        if state is not Q_SENDING:
            if state is not Q_OPEN:
                return  # dropping (an error page, an early answer): discard
            self.request = Q_SENDING
        if self.response is R_WAITING:
            # The body is still coming: the wait for the answer has not begun.
            self._rearm_timeout()
        backlog = self.backlog
        if backlog is not None and backlog.size:
            backlog.push(data)
            return
        session = self.session
        assert session is not None
        sent = session.send_data(self.stream_id, data)
        if sent < len(data):
            if backlog is None:
                backlog = self.backlog = SendQueue()
            if backlog.push(data[sent:]):
                self.viewer.pause_reading()

    def body_complete(self) -> None:
        state = self.request
        if state is Q_DROPPING:
            self.request = Q_DROPPED
            response = self.response
            if response is R_FAILED:
                assert self.error is not None
                self._respond_error(self.error)
            elif response is R_EARLY_END:
                self._start_response()
            return
        backlog = self.backlog
        if backlog is not None and backlog.size:
            assert Q_ENDING in REQUEST_MOVES[state]
            self.request = Q_ENDING
        else:
            session = self.session
            assert session is not None
            if state is Q_SENDING:
                self.request = Q_DONE
                session.send_end(self.stream_id)
            else:
                assert state is Q_OPEN, state
                self.request = Q_EMPTY
                if not self.end_stream:
                    session.send_end(self.stream_id)
        response = self.response
        if response is R_EARLY:
            self._start_response()
        elif response is R_WAITING and self.request is not Q_ENDING and not self.end_stream:
            # The origin has the whole request: the wait for its answer starts.
            self._rearm_timeout()

    def window_opened(self) -> None:
        """The stream's (or the session's) send window grew."""
        state = self.request
        if state is not Q_SENDING and state is not Q_ENDING:
            return
        if self.response is R_WAITING:
            # The origin is taking the body: it is working, not silent.
            self._rearm_timeout()
        backlog = self.backlog
        if backlog is None:
            return
        session = self.session
        assert session is not None
        stream_id = self.stream_id
        while backlog.size:
            chunk = backlog.peek()
            sent = session.send_data(stream_id, chunk)
            backlog.advance(sent)
            if sent < len(chunk):
                return
        if backlog.drained():
            self.viewer.resume_reading()
        if state is Q_ENDING:
            self.request = Q_DONE
            session.send_end(stream_id)

    # -- response, agent → viewer ----------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Fields, end_stream: bool) -> None:
        if self.response is not R_WAITING:
            return
        self._cancel_timeout()
        if self.request in BODY_IN:
            self._respond(status, reason, headers)
            if end_stream:
                self._finish(0)
            return
        self.held_head = (status, reason, headers)
        if end_stream:
            self._complete_early()
        else:
            self.response = R_EARLY

    def _complete_early(self) -> None:
        """
        The whole response is in while the viewer is still sending (an
        origin that answers without reading, e.g. 413): the stream is over;
        drop the rest of the body as it comes (never buffer it, never leave
        the viewer paused), and answer when it is in.
        """
        assert R_EARLY_END in RESPONSE_MOVES[self.response]
        self.response = R_EARLY_END
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.NO_ERROR)
        self._stop_forwarding()

    def _respond(self, status: int, reason: bytes, headers: Fields) -> None:
        assert R_STREAMING in RESPONSE_MOVES[self.response]
        self.response = R_STREAMING
        forwarded, length = response_fields(headers)
        # The origin's headers as they are (no Content-Type or Server of the
        # edge's own); the head goes out now: a streamed response (SSE, long
        # poll) may not have a first byte of body for a long time.
        self.viewer.respond(status, reason, forwarded, length)

    def _start_response(self) -> None:
        """The viewer's body is in: send the response held meanwhile."""
        head, self.held_head = self.held_head, None
        assert head is not None
        complete = self.response is R_EARLY_END
        self._respond(*head)
        early, self.early = self.early, None
        if early:
            write_body = self.viewer.write_body
            for chunk in early:
                write_body(chunk)
        if complete:
            self._finish(0)
        else:
            self._acknowledge(self.credit.delivered())

    def data(self, data: bytes, end_stream: bool) -> None:
        response = self.response
        if response is R_STREAMING:
            self.viewer.write_body(data)
            if end_stream:
                self._finish(len(data))
                return
            n = self.credit.receive(len(data))
            if n:
                self.peer.acknowledge(self.stream_id, n)
            return
        if response is R_WAITING or response is R_EARLY:
            # Held until the viewer's body is in.
            self.credit.receive(len(data), False)
            if self.early is None:
                self.early = [data]
            else:
                self.early.append(data)
            if end_stream and response is R_EARLY:
                self._complete_early()
            return
        # Nobody reads it (and nothing is held in these states): the credit goes straight back.
        self._acknowledge(len(data))

    def ended(self) -> None:
        response = self.response
        if response is R_STREAMING:
            self._finish(0)
        elif response is R_EARLY:
            self._complete_early()
        # WAITING: an END without a head changes nothing; the timer answers.

    def reset(self, code: int) -> None:
        """The agent reset the stream, or its session went away."""
        response = self.response
        if response is R_DONE or response is R_FAILED:
            return
        if code == ErrorCode.REFUSED_STREAM and self._retry_refused():
            return
        self.session = None
        self.early = self.held_head = None
        self._cancel_timeout()
        self._acknowledge(self.credit.close())
        if response is R_STREAMING:
            # Too late for an error page: cut the connection so the viewer
            # sees a truncated response, never a complete-looking one.
            self.response = R_DONE
            self._stop_forwarding()
            self.viewer.abort()
            return
        self._fail(_RESET_PAGES.get(code, pages.OFFLINE))

    def _fail(self, error: pages.ViewerError) -> None:
        """Answer with C{error}: now if the viewer's body is in, else once it is."""
        self._stop_forwarding()
        if self.request is Q_DROPPING:
            assert R_FAILED in RESPONSE_MOVES[self.response]
            self.error = error
            self.response = R_FAILED
        else:
            self._respond_error(error)

    def _finish(self, n: int) -> None:
        """The response is complete (its last C{n} bytes just written)."""
        assert R_DONE in RESPONSE_MOVES[self.response]
        if self.request is Q_ENDING:
            # The agent answered in full before taking the whole body.
            self._stop_forwarding()
        self.response = R_DONE
        # The last bytes are in the viewer connection's buffer, bounded by its own backpressure.
        credit = self.credit
        if credit.held:
            n = credit.close(n)
        if n:
            self.peer.acknowledge(self.stream_id, n)
        # Last: the viewer may go on to its next request from here.
        self.viewer.finish()

    def _respond_error(self, error: pages.ViewerError) -> None:
        assert R_DONE in RESPONSE_MOVES[self.response]
        self.early = self.held_head = None
        self.response = R_DONE
        self._acknowledge(self.credit.close())
        self.viewer.error_page(error)

    def _timed_out(self) -> None:
        self.timeout = None
        if self.response is not R_WAITING:
            return
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.TIMEOUT)
        log.info("origin timed out on stream {stream_id}", stream_id=self.stream_id)
        self.early = None
        self._acknowledge(self.credit.close())
        self._fail(pages.TIMEOUT)

    def _rearm_timeout(self) -> None:
        timeout = self.timeout
        if timeout is not None:
            timeout.reset(self.router.config.response_timeout)

    def _cancel_timeout(self) -> None:
        # self.timeout is set only while its call is pending: no active() check.
        timeout, self.timeout = self.timeout, None
        if timeout is not None:
            timeout.cancel()

    def viewer_gone(self) -> None:
        """The viewer's connection closed before the response was finished."""
        self._cancel_timeout()
        response, self.response = self.response, R_DONE
        session, self.session = self.session, None
        if session is not None and response is not R_DONE:
            session.reset(self.stream_id, ErrorCode.CANCEL)
        self.early = self.held_head = None
        self._stop_forwarding()
        self._acknowledge(self.credit.close())

    # -- IPushProducer: the viewer's connection as consumer -----------------

    def pauseProducing(self) -> None:
        self.credit.pause()

    def resumeProducing(self) -> None:
        self._acknowledge(self.credit.resume(self.response is R_STREAMING))

    def stopProducing(self) -> None:
        self.viewer_gone()


def __getattr__(name: str) -> Any:
    # TunnelRouter is in edge/router.py; importable from here until edge/site.py imports it there.
    if name == "TunnelRouter":
        from .router import TunnelRouter

        return TunnelRouter
    raise AttributeError(name)
