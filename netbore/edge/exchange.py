"""
Viewer traffic into tunnels: one L{ViewerExchange} per viewer request, its
two directions explicit state machines (L{exchange_states}), its credit
pump L{netbore.protocol.credit}; the response streams back with the
viewer's connection as the consumer.

What every request runs lives here (each call between modules costs on
every request, see C{bench/trace.py}): the header rules (L{request_fields},
L{response_fields}; RFC 9110 §7.6 and L{netbore.edge.header_rules}), the
ordinary path, its L{Deadlines} and the agent session's handlers of its
streams' events (L{AgentEvents}); the rest is L{netbore.edge.exchange_ends}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from .._types import Clock
from ..http1.grammar import HOP_BY_HOP, content_length, split_list
from ..protocol import DataReceived, ResponseReceived, Session
from ..protocol.credit import ReceiveCredit, SendQueue
from ..protocol.errors import StreamClosedError, StreamError
from ..writes import WriteBatch
from . import pages
from .exchange_checks import CheckedExchange
from .exchange_states import BODY_IN, REQUEST_MOVES, RESPONSE_MOVES, RequestState, ResponseState
from .header_rules import CONTROLS, COOKIE_DOMAIN, FORWARDING, KEPT, TCHARS, UNDERSCORED, strip_cookie_domain

if TYPE_CHECKING:
    from .registry import Tunnel
    from .router import StreamSession, TunnelRouter
    from .viewer import ViewerProtocol

__all__ = ["AgentEvents", "Deadlines", "Fields", "ViewerExchange", "request_fields", "response_fields"]

log = Logger()

# The states as module globals, in definition order (a member read through its class costs a
# descriptor call); tests check that each name is its member.
Q_OPEN, Q_SENDING, Q_ENDING, Q_EMPTY, Q_DONE, Q_DROPPING, Q_DROPPED = RequestState
R_WAITING, R_EARLY, R_EARLY_END, R_FAILED, R_STREAMING, R_DONE = ResponseState

Fields = list[tuple[bytes, bytes]]
Hop = bytes | None

# -- the header rules (RFC 9110 §7.6) ------------------------------------------

#: Request fields never forwarded as sent: hop-by-hop, the forwarding fields
#: the edge sets (it appends to X-Forwarded-For) and their spellings with "_".
_DROP = HOP_BY_HOP | (FORWARDING - {b"x-forwarded-for"}) | UNDERSCORED


def request_fields(
    fields: Fields, connection: frozenset[bytes], host: bytes | None, client: bytes, secure: bool, peer: Hop = None
) -> Fields:
    """
    The viewer's request fields to send on (names lower-cased, as the
    viewer parser gives them): hop-by-hop fields and those named in
    C{connection} (but C{Host} and forwarding fields) removed, forwarding fields set.

    @param host: the request's C{Host}.
    @param client: the viewer's address.
    @param secure: the viewer came over TLS.
    @param peer: a trusted proxy's address, appended to X-Forwarded-For.
    """
    drop = _DROP if connection <= _DROP else _DROP | (connection - KEPT)
    headers: Fields = []
    append = headers.append
    forwarded_for: bytes | None = None
    for field in fields:
        name = field[0]
        if name in drop:
            continue
        if name == b"x-forwarded-for":
            value = field[1]
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        append(field)
    hop = client if peer is None else peer
    append((b"x-forwarded-for", hop if forwarded_for is None else forwarded_for + b", " + hop))
    append((b"x-forwarded-proto", b"https" if secure else b"http"))
    append((b"x-forwarded-host", host or b""))
    append((b"x-netbore-client-ip", client))
    return headers


def response_fields(headers: Fields, host: str) -> tuple[Fields, int | None]:
    """
    The response fields to send the viewer (hop-by-hop fields and those
    named in C{Connection} removed, order and repetitions kept; a
    C{Set-Cookie}'s C{Domain} above the tunnel's name C{host} removed) and
    the body's length by C{Content-Length} (L{None}: not length-delimited).

    A C{Content-Length} the viewer could not rely on is dropped so the
    viewer's connection frames the body itself: one that the one rule of
    L{netbore.http1.grammar.content_length} refuses (not a number, a list,
    a repeat), or any beside C{Transfer-Encoding} (RFC 9112 §6.3: the
    origin's body was delimited otherwise).
    """
    forwarded: Fields = []
    append = forwarded.append
    named: list[bytes] | None = None
    lengths: list[bytes] | None = None
    chunked = False
    for field in headers:
        name = field[0].lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                named = (named or []) + split_list((field[1],))
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name == b"content-length":
            if lengths is None:
                lengths = [field[1].strip()]
            else:
                lengths.append(field[1].strip())
        elif name == b"set-cookie" and COOKIE_DOMAIN.search(field[1]):
            field = (field[0], strip_cookie_domain(field[1], host.encode("ascii").lower()))
        append(field)
    drop = frozenset(named) - HOP_BY_HOP if named else None
    if drop:
        forwarded = [f for f in forwarded if f[0].lower() not in drop]
        if b"content-length" in drop:
            lengths = None
    length: int | None = None
    if lengths is not None:
        length = None if chunked else content_length(lengths)
        if length is None:
            forwarded = [f for f in forwarded if f[0].lower() != b"content-length"]
    return forwarded, length


@implementer(IPushProducer)
class ViewerExchange(CheckedExchange):
    """
    One viewer request and its response, carried by one tunnel stream.

    @ivar request: the request side's L{RequestState}; C{response}: the
        response side's L{ResponseState}.
    @ivar session: the session the stream may still be sent on (L{None}
        once either side reset it); C{peer}: the one it was opened on,
        which gets the response's credit back.
    @ivar credit: response bytes received and not yet acknowledged;
        C{backlog}: request body beyond the send window (made if needed);
        C{waiting}: response bytes the viewer's full connection cannot take
        yet (the stream's own buffer, bounded by its window).
    """

    session: StreamSession | None = None
    peer: StreamSession
    tunnel: Tunnel
    stream_id = 0
    error: pages.ViewerError | None = None
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
            if tunnel is None or tunnel.tcp_port is not None:  # (a TCP tunnel's name serves no HTTP)
                error = pages.NOT_FOUND
            else:
                self.tunnel = tunnel
                error = self._open()
        if error is None:
            router.timeouts.start(self)
            return
        # No stream: answer with the page once the body is in (read and dropped).
        self.error = error
        self.request = Q_DROPPING
        self.response = R_FAILED
        self.credit.close()

    def _open(self) -> pages.ViewerError | None:
        """
        Open the stream on the tunnel's session (when it has several, or
        one refused it, L{_open_among} picks); the error page to answer
        with when there is none.
        """
        sessions = self.tunnel.sessions
        if self.tried is not None or len(sessions) != 1:
            return self._open_among(sessions)
        session = sessions[0]
        head = self.viewer.head
        assert head is not None
        viewer = self.viewer
        fields = request_fields(
            head.headers, head.connection, head.host, viewer.client_ip, viewer.secure, viewer.proxy_ip
        )
        try:
            self.stream_id = session.open_stream(self, head.method, head.target, fields, self.end_stream)
        except StreamClosedError:  # the session is going away (GOAWAY) or out of stream ids
            self.tried = [session]
            return self._open_among(sessions)
        except StreamError as e:
            # A head the wire cannot carry (too large, a value it refuses).
            log.info("request head not forwardable: {why}", why=str(e))
            return pages.HEAD_TOO_LARGE
        self.session = self.peer = session
        return None

    # -- request body, viewer → agent ------------------------------------

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

    # -- response, agent → viewer ----------------------------------------

    def response_head(self, status: int, reason: bytes, headers: Fields, end_stream: bool) -> None:
        if self.response is not R_WAITING:
            return
        names, values = zip(*headers) if headers else ((), ())  # noqa: B905 (header_rules, inline; strict costs)
        text = reason + b"".join(values)
        if b"" in names or b"".join(names).translate(None, TCHARS) or len(text.translate(None, CONTROLS)) != len(text):
            return self._refuse_head(status, reason, headers)
        if not 99 < status < 600 or (status < 300 and self.viewer.head.method == b"CONNECT"):  # type: ignore[union-attr]
            return self._refuse_head(status, reason, headers)
        if self.request in BODY_IN:
            self._cancel_timeout()
            self._respond(status, reason, headers)
            if end_stream:
                self._finish(0)
            return
        self.held_head = (status, reason, headers)
        if end_stream:
            self._complete_early()
        else:
            self.response = R_EARLY

    def _respond(self, status: int, reason: bytes, headers: Fields) -> None:
        assert R_STREAMING in RESPONSE_MOVES[self.response]
        self.response = R_STREAMING
        forwarded, length = response_fields(headers, self.tunnel.public_hostname)
        # The origin's headers as they are; the head goes out now: a streamed
        # response (SSE, long poll) may not have a first byte of body for long.
        self.viewer.respond(status, reason, forwarded, length)

    def data(self, data: bytes, end_stream: bool) -> None:
        n = self.received(data, end_stream)
        if n:
            self.peer.acknowledge(self.stream_id, n)

    def received(self, data: bytes, end_stream: bool) -> int:
        """
        L{data}, but what is to be acknowledged now is returned: the
        caller, the stream's session, acknowledges it.
        """
        response = self.response
        if response is R_STREAMING:
            if self.credit.paused or self.waiting is not None:
                return self._wait(data, end_stream)  # (the viewer's connection is full)
            self.viewer.write_body(data)
            if end_stream:
                return self._finish(len(data), False)
            return self.credit.receive(len(data))
        if response is R_WAITING or response is R_EARLY:
            # Held until the viewer's body is in.
            self.credit.receive(len(data), False)
            if self.early is None:
                self.early = [data]
            else:
                self.early.append(data)
            if end_stream and response is R_EARLY:
                self._complete_early()
            return 0
        # Nobody reads it (and nothing is held in these states): the credit goes straight back.
        return len(data)

    def _finish(self, n: int, acknowledge: bool = True) -> int:
        """
        The response is complete (its last C{n} bytes just written).  What
        is left to acknowledge is, or (not C{acknowledge}) is returned.
        """
        assert R_DONE in RESPONSE_MOVES[self.response]
        if self.request is Q_ENDING:
            # The agent answered in full before taking the whole body.
            self._stop_forwarding()
        self.response = R_DONE
        # The last bytes are in the viewer connection's buffer, bounded by its own backpressure.
        credit = self.credit
        if credit.paused:
            self.router.send_timeouts.stop(self)
        if credit.held:
            n = credit.close(n)
        if n and acknowledge:
            self.peer.acknowledge(self.stream_id, n)
            n = 0
        # Last: the viewer may go on to its next request from here.
        self.viewer.finish()
        return n

    def _rearm_timeout(self) -> None:
        if self in self.router.timeouts.deadlines:
            self.router.timeouts.start(self)

    def _cancel_timeout(self) -> None:
        self.router.timeouts.deadlines.pop(self, None)


class Deadlines:
    """
    Timeouts of a router's exchanges on one timer (an exchange in time costs
    a dict entry, not a delayed call): deadlines are the last (re)start plus
    a fixed timeout, so the dict's order is theirs; the timer calls method
    C{expire} of each exchange due.  The router's two: the response timeout
    (C{timed_out}) and the viewers' send timeout (C{send_timed_out}).
    """

    def __init__(self, clock: Clock, timeout: float, expire: str) -> None:
        self.clock = clock
        self.timeout = timeout
        self.expire = expire
        self.deadlines: dict[Any, float] = {}  # the exchanges waiting, by deadline
        self._timer: IDelayedCall | None = None

    def start(self, exchange: Any) -> None:
        """(Re)start C{exchange}'s clock."""
        deadlines = self.deadlines
        deadlines.pop(exchange, None)
        deadlines[exchange] = self.clock.seconds() + self.timeout
        if self._timer is None:
            self._timer = self.clock.callLater(self.timeout, self._fire)

    def stop(self, exchange: Any) -> None:
        """C{exchange} is in time (or over): no deadline."""
        self.deadlines.pop(exchange, None)

    def _fire(self) -> None:
        self._timer = None
        deadlines = self.deadlines
        now = self.clock.seconds()
        while deadlines:
            exchange, deadline = next(iter(deadlines.items()))
            if deadline > now:
                self._timer = self.clock.callLater(deadline - now, self._fire)
                return
            del deadlines[exchange]
            try:
                getattr(exchange, self.expire)()
            except Exception:
                log.failure("{expire} of stream {stream_id} failed", expire=self.expire, stream_id=exchange.stream_id)


class AgentEvents:
    """
    The agent session's side of the exchanges' hot path, here beside them (a
    call between modules costs on every request): opening a stream, and the
    handlers of a response.  A mixin of L{netbore.edge.agents.EdgeSession}.
    """

    # The tunnel WebSocket's.
    streams: dict[int, ViewerExchange]
    session: Session | None
    flush_pending: bool
    writes: WriteBatch
    credit_back: Callable[[DataReceived], None]
    _flush_later: Callable[[], None]
    flush: Callable[[], None]

    def _on_response(self, event: ResponseReceived) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is not None:
            if event.status < 200:  # Informational: the final head follows (not relayed); 101: an
                if event.status == 101 and exchange.__class__ is not ViewerExchange:  # upgrade's (bytestream)
                    exchange.response_head(101, event.reason, event.headers, False)
                return
            exchange.response_head(event.status, event.reason, event.headers, event.end_stream)
            if event.end_stream:
                # (after the call: an exchange that raises is told, see
                # TunnelWebSocket.reset_failed_stream)
                self.streams.pop(event.stream_id, None)

    def _on_data(self, event: DataReceived) -> None:
        exchange = self.streams.get(event.stream_id)
        if exchange is None:
            self.credit_back(event)
            return
        n = exchange.received(event.data, event.end_stream)
        if event.end_stream and not exchange.keeps_after_end:
            self.streams.pop(event.stream_id, None)
        if n:
            # (the stream's session is this one, and it flushes after its events)
            session = self.session
            if session is not None:
                session.acknowledge(event.stream_id, n)

    def open_stream(
        self, exchange: ViewerExchange, method: bytes, target: bytes, headers: Fields, end_stream: bool
    ) -> int:
        """(L{StreamSession}) Open a stream for C{exchange} with its request head."""
        session = self.session
        if session is None:
            raise StreamClosedError("the session is closed")
        stream_id = session.send_request_head(method, target, headers, end_stream)
        self.streams[stream_id] = exchange
        if not self.flush_pending:
            # (the tunnel WebSocket's flush, inline: this runs in a viewer's read)
            writes = self.writes
            if writes.holds:
                self.flush_pending = True
                writes.defer(self._flush_later)
            else:
                self.flush()
        return stream_id
