"""
How a L{netbore.edge.exchange.ViewerExchange} ends other than by its
response relayed in order: the agent refusing the stream (retried on
another session) or resetting it, the response timeout, an answer that
comes while the viewer is still sending (held, or its stream ended early),
error pages, and the viewer going away; the exchange as the push
producer of the viewer's connection; and, for uploads only, the request
body (its bytes and its send window opening).

None of it runs for a request answered in the ordinary way: it is kept
apart from the per-request path (L{netbore.edge.exchange}), whose calls
between modules cost on every request (C{bench/trace.py}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.logger import Logger

from ..protocol.credit import ReceiveCredit, SendQueue
from ..protocol.errors import StreamClosedError, StreamError
from ..protocol.frames import ErrorCode
from . import pages
from .exchange_states import RESPONSE_MOVES, RequestState, ResponseState

if TYPE_CHECKING:
    from .router import StreamSession, TunnelRouter
    from .viewer import ViewerProtocol

__all__ = ["ExchangeEnds"]

log = Logger()

Fields = list[tuple[bytes, bytes]]

# The states as module globals (see netbore.edge.exchange).
Q_OPEN, Q_SENDING, Q_ENDING, Q_EMPTY, Q_DONE, Q_DROPPING, Q_DROPPED = RequestState
R_WAITING, R_EARLY, R_EARLY_END, R_FAILED, R_STREAMING, R_DONE = ResponseState

#: The page for an agent's reset before the response head.
_RESET_PAGES: dict[int, pages.ViewerError] = {
    ErrorCode.TIMEOUT: pages.TIMEOUT,
    ErrorCode.ORIGIN_UNREACHABLE: pages.UNREACHABLE,
    ErrorCode.ORIGIN_RESET: pages.ORIGIN_ERROR,
    ErrorCode.INTERNAL_ERROR: pages.ORIGIN_ERROR,
}


class ExchangeEnds:
    """
    The base of L{netbore.edge.exchange.ViewerExchange}: its uncommon
    endings (see the module's docstring).  The attributes are the
    exchange's.
    """

    router: TunnelRouter
    viewer: ViewerProtocol
    credit: ReceiveCredit
    request: RequestState
    response: ResponseState
    session: StreamSession | None
    peer: StreamSession
    stream_id: int
    end_stream: bool
    error: pages.ViewerError | None
    backlog: SendQueue | None
    held_head: tuple[int, bytes, Fields] | None
    #: Response bytes the viewer's connection cannot take yet (it is full),
    #: and whether the response's end came behind them.
    waiting: SendQueue | None = None
    waiting_end = False
    early: list[bytes] | None
    tried: list[StreamSession] | None
    #: Request body bytes since the wait for the response last restarted.
    body_progress = 0

    # -- the exchange's own (netbore.edge.exchange) ---------------------------

    def _open(self) -> pages.ViewerError | None:
        raise NotImplementedError

    def _respond(self, status: int, reason: bytes, headers: Fields) -> None:
        raise NotImplementedError

    def _finish(self, n: int, acknowledge: bool = True) -> int:
        raise NotImplementedError

    def _rearm_timeout(self) -> None:
        raise NotImplementedError

    def _cancel_timeout(self) -> None:
        raise NotImplementedError

    def _open_among(self, sessions: list[StreamSession]) -> pages.ViewerError | None:
        """
        Open the stream on the least busy of C{sessions} not tried yet;
        the error page to answer with when there is none.
        """
        from .exchange import request_fields  # (exchange.py is built on this module)

        tried = self.tried
        viewer = self.viewer
        head = viewer.head
        assert head is not None
        while True:
            candidates = [s for s in sessions if tried is None or s not in tried]
            if not candidates:
                return pages.OFFLINE
            session = min(candidates, key=lambda s: s.stream_count())
            fields = request_fields(head.headers, head.connection, head.host, viewer.client_ip, viewer.secure)
            try:
                self.stream_id = session.open_stream(self, head.method, head.target, fields, self.end_stream)  # type: ignore[arg-type]
            except StreamClosedError:  # the session is going away (GOAWAY) or out of stream ids
                if tried is None:
                    tried = self.tried = []
                tried.append(session)
                continue
            except StreamError as e:
                log.info("request head not forwardable: {why}", why=str(e))
                return pages.HEAD_TOO_LARGE
            self.session = self.peer = session
            return None

    # -- the request body (uploads) --------------------------------------------

    def body_received(self, data: bytes) -> None:
        state = self.request
        if state is not Q_SENDING:
            if state is not Q_OPEN:
                return  # dropping (an error page, an early answer): discard
            self.request = Q_SENDING
        response = self.response
        if response is R_WAITING or response is R_EARLY:
            # The body is still coming: the wait for the answer has not
            # begun, as long as the body comes at the minimum rate or faster
            # (each chunk restarting it would let a body trickled a byte at
            # a time hold the stream for ever).
            progress = self.body_progress + len(data)
            if progress >= self.router.body_quantum:
                progress = 0
                self._rearm_timeout()
            self.body_progress = progress
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

    def window_opened(self) -> None:
        """The stream's (or the session's) send window grew."""
        state = self.request
        if state is not Q_SENDING and state is not Q_ENDING:
            return
        backlog = self.backlog
        if backlog is None:
            return
        response = self.response
        if (response is R_WAITING or response is R_EARLY) and backlog.source_paused:
            # The origin is taking the body the edge holds the viewer back
            # for: it is working, not silent (and the viewer is not late).
            self._rearm_timeout()
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

    def upload_paused(self) -> None:
        """
        The tunnel's connection to the agent is over its high-water mark:
        stop reading the viewer's body now, not at its next read
        (L{window_opened}, called when it drains, resumes the viewer).
        """
        if self.request is not Q_SENDING:
            return
        backlog = self.backlog
        if backlog is None:
            backlog = self.backlog = SendQueue()
        if backlog.pause_source():
            self.viewer.pause_reading()

    # -- endings ----------------------------------------------------------------

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

    def _complete_early(self) -> None:
        """
        The whole response is in while the viewer is still sending (an
        origin that answers without reading, e.g. 413): the stream is over;
        drop the rest of the body as it comes (never buffer it, never leave
        the viewer paused), and answer when it is in.
        """
        assert R_EARLY_END in RESPONSE_MOVES[self.response]
        # (in R_EARLY the timer stayed: the body's minimum rate, timed_out)
        self._cancel_timeout()
        self.response = R_EARLY_END
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.NO_ERROR)
        self._stop_forwarding()

    def _start_response(self) -> None:
        """The viewer's body is in: send the response held meanwhile."""
        self._cancel_timeout()
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

    def ended(self) -> bool:
        """The agent's END; the stream is then forgotten (false)."""
        response = self.response
        if response is R_STREAMING:
            if self.waiting is not None:
                self.waiting_end = True  # (finished once the viewer took the rest)
            else:
                self._finish(0)
        elif response is R_EARLY:
            self._complete_early()
        # WAITING: an END without a head changes nothing; the timer answers.
        return False

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
        self._acknowledge(self.credit.close() + self._drop_waiting())
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

    def _respond_error(self, error: pages.ViewerError) -> None:
        assert R_DONE in RESPONSE_MOVES[self.response]
        self.early = self.held_head = None
        self.response = R_DONE
        self._acknowledge(self.credit.close() + self._drop_waiting())
        self.viewer.error_page(error)

    def timed_out(self) -> None:
        """
        No response head within the response timeout (L{netbore.edge.exchange.Deadlines}),
        or (the head came early, L{R_EARLY}) the viewer's body too slow.
        """
        response = self.response
        if response is not R_WAITING and response is not R_EARLY:
            return
        state = self.request
        backlog = self.backlog
        # The viewer's body came slower than --body-min-rate while the edge
        # was reading it: the viewer is late, not the origin.
        body_late = (state is Q_SENDING or (state is Q_OPEN and not self.end_stream)) and (
            backlog is None or not backlog.source_paused
        )
        if response is R_EARLY and not body_late:
            # Answered, and the edge holds the viewer back: keep watching.
            self.router.timeouts.start(self)
            return
        session, self.session = self.session, None
        if session is not None:
            session.reset(self.stream_id, ErrorCode.TIMEOUT)
        self.early = self.held_head = None
        self._acknowledge(self.credit.close())
        if body_late:
            log.info("request body on stream {stream_id} too slow: 408", stream_id=self.stream_id)
            self.response = R_DONE
            self._stop_forwarding()
            self.viewer.refuse(408)
            return
        log.info("origin timed out on stream {stream_id}", stream_id=self.stream_id)
        self._fail(pages.TIMEOUT)

    def viewer_gone(self) -> None:
        """The viewer's connection closed before the response was finished."""
        self._cancel_timeout()
        response, self.response = self.response, R_DONE
        session, self.session = self.session, None
        if session is not None and response is not R_DONE:
            session.reset(self.stream_id, ErrorCode.CANCEL)
        self.early = self.held_head = None
        self._stop_forwarding()
        self._acknowledge(self.credit.close() + self._drop_waiting())

    # -- the viewer's connection is full (downloads) ------------------------------

    def _wait(self, data: bytes, end_stream: bool) -> int:
        """
        Response bytes for a viewer whose connection is full: they wait in
        the stream's own buffer, their credit held (the stream's only: the
        session's went back as they came in), until the connection resumes
        the exchange (L{resumeProducing}).
        """
        waiting = self.waiting
        if waiting is None:
            if not data:  # an end, nothing waiting: the response is complete
                return self._finish(0, False) if end_stream else 0
            waiting = self.waiting = SendQueue()
        if data:
            waiting.push(data)
        if end_stream:
            self.waiting_end = True
        return 0

    def _drop_waiting(self) -> int:
        """Forget the waiting response bytes (the stream is over): how many."""
        self.router.send_timeouts.stop(self)
        waiting, self.waiting = self.waiting, None
        return waiting.clear() if waiting is not None else 0

    def send_timed_out(self) -> None:
        """
        The viewer's connection took none of what the edge has for it (this
        response, or the end of the last one) for the send timeout
        (C{--send-timeout}, nginx's C{send_timeout}): close it and reset its
        stream, so that a dead or stalled viewer holds its stream (its
        window, its origin request) for a bounded time.  The transport
        resumes a paused exchange only once it wrote out all it had, so
        the clock runs from the pause to the resume: a viewer that took less
        than the connection's buffer (about 64 KiB) in that time.
        """
        if self.response is R_DONE:
            return
        log.info(
            "viewer took no bytes for {timeout} s: stream {stream_id} reset",
            timeout=self.router.send_timeouts.timeout,
            stream_id=self.stream_id,
        )
        self.viewer_gone()
        self.viewer.abort()

    # -- IPushProducer: the viewer's connection as consumer -----------------

    def pauseProducing(self) -> None:
        self.credit.pause()
        if self.response is not R_DONE:
            self.router.send_timeouts.start(self)

    def resumeProducing(self) -> None:
        """
        The viewer's connection wrote out all it had: what waits goes to
        it, until it is full again; the stream's credit for what it took
        goes back.
        """
        self.router.send_timeouts.stop(self)
        credit = self.credit
        n = credit.resume(self.response is R_STREAMING)
        waiting = self.waiting
        if waiting is not None and self.response is R_STREAMING:
            write_body = self.viewer.write_body
            while waiting.size and not credit.paused:
                chunk = waiting.take()
                n += len(chunk)
                write_body(chunk)  # type: ignore[arg-type]  # (whole chunks: bytes)
            if not waiting.size:
                self.waiting = None
                if self.waiting_end:
                    self._finish(n)
                    return
        self._acknowledge(n)

    def stopProducing(self) -> None:
        self.viewer_gone()
