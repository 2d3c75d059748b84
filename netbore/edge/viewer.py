"""
The edge's connection with a viewer: a lean HTTP/1.1 server for tunnel
traffic, handing everything else to twisted.web.

Every connection the edge accepts starts as a L{ViewerProtocol}.  It reads
each request head (L{netbore.http1.RequestParser}, C{VIEWER} policy); for a
tunnel's C{Host} it serves the request itself, streaming it into a
L{exchange.ViewerExchange}, then the connection's next requests one at a
time (keep-alive; pipelined requests wait, bounded, in the buffer).  For
the edge's own names (the control API, C{/connect}) the connection goes to
a twisted.web channel with the bytes read so far replayed, which serves
that one request and closes (L{site.OneRequestChannel}) unless it became a
WebSocket: Host dispatch happens for every request.

Why not twisted.web for tunnel traffic: its per-request machinery (a
C{Request} with C{Headers} objects, a C{notifyFinish} Deferred, a
line-per-callback parser) cost more CPU per request than the rest of the
data plane.  Here a request costs one head parse (three regex calls), one
write for the response head, and no Deferreds.

Timeouts: a request head must be complete L{IDLE_TIMEOUT} after the
connection opened or its last response (else 408, or a quiet close); while
a request is in flight, the exchange's response timeout applies instead.
"""

from __future__ import annotations

import contextlib
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from .._types import Clock
from ..http1 import (
    CHUNK_END,
    END_OF_MESSAGE,
    LAST_CHUNK,
    Framing,
    ParseError,
    RequestHead,
    RequestParser,
    chunk_head,
    reason_phrase,
    response_framing,
    response_head,
)
from .bytestream import UpgradeExchange
from .viewer_answers import ViewerAnswers

if TYPE_CHECKING:
    from .exchange import ViewerExchange
    from .site import EdgeSite

__all__ = ["IDLE_TIMEOUT", "PIPELINE_BUFFER", "Phase", "ViewerProtocol"]

#: Seconds a connection may take to send a complete request head, counted
#: from its opening or from the end of its last response.
IDLE_TIMEOUT = 60.0

#: Bytes of pipelined requests read ahead while a response is in flight;
#: beyond that the connection is not read until the response is done.
PIPELINE_BUFFER = 64 * 1024


class Phase(Enum):
    """
    Where a viewer connection is: reading a request head (C{IDLE}), a
    tunnel request in flight (C{EXCHANGE}), handed to twisted.web for the
    edge's own names (C{HANDED}), closing or closed (C{CLOSED}).
    """

    IDLE = "idle"
    EXCHANGE = "exchange"
    HANDED = "handed"
    CLOSED = "closed"


_NONE = Framing.NONE
_LENGTH = Framing.LENGTH
_CHUNKED = Framing.CHUNKED
_CLOSE = Framing.CLOSE
# Why the viewer is not read (bits; plain ints, as IntFlag arithmetic is
# slow): the request body is beyond the stream's send window; pipelined
# requests wait for the response in flight.
_BODY = 1
_PIPELINE = 2

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@implementer(IPushProducer)
class ViewerProtocol(ViewerAnswers, Protocol):
    """
    One viewer connection (see the module's docstring).

    The exchange in flight uses it as its request and response: C{head},
    C{client_ip}, C{secure}; L{pause_reading}/L{resume_reading} for the
    request body; L{respond}, L{write_body}, L{finish}, L{abort},
    L{error_page} for the response.  It is the transport's producer: the
    transport pausing it (its write buffer is full) pauses the exchange,
    which then holds the stream's credit.  C{phase}: a L{Phase}.
    """

    head: RequestHead | None = None
    client_ip = b""
    secure = False
    proxy_ip: bytes | None = None  # a trusted proxy, or b"": client and scheme per request (site.forwarded)
    # The request in flight, for the request log (netbore.edge.requestlog): its
    # tunnel, when its head was read (None: logged) and its answer's went out,
    # the status sent (0: none yet), the body bytes each way.
    label: str | None = None
    started_at: float | None = None
    answered_at = 0.0
    status = 0
    received_bytes = 0
    sent_bytes = 0

    def __init__(self, site: EdgeSite, addr: Any) -> None:
        self.site = site
        self.router = site.router
        self.clock: Clock = site.reactor
        self.addr = addr
        self.phase = Phase.IDLE
        self._writes = site.writes
        self._requests = site.requests
        self._parser = RequestParser()
        self._exchange: ViewerExchange | None = None
        self._handed: Any = None  # the twisted.web channel, once handed over
        self._blocked = 0
        self._write_paused = False
        self._keep_alive = True
        # The response in flight: how its body is framed, what is left of it.
        self._framing = _NONE
        self._remaining = 0
        self._driving = False
        self._deadline: float | None = None
        self._timer: IDelayedCall | None = None

    # -- connection ----------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.client_ip, self.secure, self.proxy_ip = self.site.peer_of(transport)
        # A response head and its body may leave in two writes (the body
        # comes in a later frame): never let Nagle hold the second one.
        with contextlib.suppress(AttributeError, OSError):
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        self._set_deadline()

    def dataReceived(self, data: bytes) -> None:
        phase = self.phase
        if phase is Phase.HANDED:
            self._handed.dataReceived(data)
        elif self._driving:
            self._parser.feed(data)
        elif phase is not Phase.CLOSED:
            # What this read causes (frames to the agent, an error page)
            # leaves in one write per connection.
            writes = self._writes
            writes.hold()
            try:
                self._drive(data)
            finally:
                writes.release()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self.phase is Phase.HANDED:
            self._handed.connectionLost(reason)
            return
        self.phase = Phase.CLOSED
        self._deadline = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            self._done()
            exchange.viewer_gone()

    def is_open(self) -> bool:
        """Is this connection still open (and not taken over by autobahn)?"""
        if self.phase is Phase.HANDED:
            transport = self._handed.transport
        else:
            transport = self.transport
        return transport is not None and not getattr(transport, "disconnected", False)

    def close_if_idle(self) -> None:
        """
        Close the connection if no request is in flight (drain).
        """
        phase = self.phase
        if phase is Phase.HANDED:
            handed = self._handed
            if not handed.requests and handed.transport is not None and not handed.transport.disconnecting:
                handed.loseConnection()
        elif phase is Phase.IDLE:
            self._close()

    def buffered_bytes(self) -> int:
        """Bytes read from the viewer and not yet consumed."""
        return self._parser.buffered if self.phase is not Phase.HANDED else 0

    def _close(self) -> None:
        """Close once the written bytes are out."""
        self.phase = Phase.CLOSED
        self._deadline = None
        transport: Any = self.transport
        if transport is not None:
            # A transport with a registered producer does not close.
            transport.unregisterProducer()
            self._writes.flush(transport)
            transport.loseConnection()

    # -- reading requests ------------------------------------------------------

    def _drive(self, data: bytes) -> None:
        """Parse C{data} and act on its events, until the parser needs more."""
        self._driving = True
        parser = self._parser
        try:
            while True:
                events = parser.receive(data)
                data = b""
                for event in events:
                    phase = self.phase
                    if phase is not Phase.EXCHANGE and phase is not Phase.IDLE:
                        return
                    if event.__class__ is bytes:
                        self.received_bytes += len(event)
                        exchange = self._exchange
                        if exchange is not None:
                            exchange.body_received(event)
                    elif event is END_OF_MESSAGE:
                        exchange = self._exchange
                        if exchange is not None:
                            exchange.body_complete()
                    elif event.__class__ is ParseError:
                        self.refuse(event.status)
                        return
                    else:
                        self._request(event)  # type: ignore[arg-type]
                if not parser.held:
                    return
                if self.phase is not Phase.IDLE:
                    # Pipelined requests wait for the response in flight.
                    if parser.held > PIPELINE_BUFFER:
                        self._block_reading(_PIPELINE)
                    return
                # Answered while read (an error page): on to the next one.
        finally:
            self._driving = False

    def _request(self, head: RequestHead) -> None:
        label = self.router.label_for(head.host)
        if label is None:
            self._hand_over()
            return
        self.phase = Phase.EXCHANGE
        self._deadline = None
        self.head = head
        self.label = label
        self.started_at = self.clock.seconds()
        self.status = self.received_bytes = self.sent_bytes = 0
        if self.proxy_ip is not None:
            self.client_ip, self.secure, self.proxy_ip = self.site.forwarded(self, head.headers)
        self._keep_alive = head.keep_alive
        if head.target[0] != 47 or head.method == b"CONNECT":  # not "/...": see viewer_answers
            self._not_forwarded(head)
            return
        if head.connection and b"upgrade" in head.connection and head.length == 0:
            exchange: Any = UpgradeExchange(self.router, self, label)  # (bytestream: an Upgrade, no body)
        else:
            exchange = self.router.exchange(self, label, head.length)
        if self.head is head:  # not already answered (finish) within
            if head.expect_continue and (head.chunked or head.length):
                # Only once the tunnel is found and its stream open.
                if exchange.error is not None:
                    self._refuse_unread(exchange.error)
                    return
                self._writes.write(self.transport, _CONTINUE)
            self._exchange = exchange
            if self._write_paused:
                exchange.pauseProducing()

    def _hand_over(self) -> None:
        """
        Give the connection to twisted.web, replaying what was read.
        """
        self._release()
        self._handed = self.site.hand_over(self.transport, self.addr, self._parser.take_raw())

    def switch_protocols(self, handler: Any) -> bytes:
        """
        The upgrade's C{101} went out: from now on C{handler} (a
        L{netbore.edge.bytestream.UpgradeExchange}) gets the connection's
        bytes and is its producer.  Returns the bytes read after the request.
        """
        self.status = 101
        self.answered_at = self.clock.seconds()
        self._done()
        self._release()
        self._exchange = self.head = None
        self._handed = handler
        self.transport.registerProducer(handler, True)  # type: ignore[union-attr]
        return self._parser.take_rest()

    def _release(self) -> None:
        self.phase = Phase.HANDED
        self._deadline = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        transport: Any = self.transport
        transport.unregisterProducer()
        if self._blocked:
            self._blocked = 0
            transport.resumeProducing()

    def _set_deadline(self) -> None:
        clock = self.clock
        self._deadline = clock.seconds() + IDLE_TIMEOUT
        if self._timer is None:
            self._timer = clock.callLater(IDLE_TIMEOUT, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.phase is not Phase.IDLE:
            return
        now = self.clock.seconds()
        if now < deadline:
            self._timer = self.clock.callLater(deadline - now, self._check_deadline)
            return
        if self._write_paused:
            # Still full of its last response: closing would wait for ever.
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif self.buffered_bytes():
            self.refuse(408)
        else:
            self._close()

    def _block_reading(self, why: int) -> None:
        if not self._blocked:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self._blocked |= why

    def _unblock_reading(self, why: int) -> None:
        if self._blocked & why:
            self._blocked &= ~why
            if not self._blocked and self.phase is not Phase.CLOSED:
                self.transport.resumeProducing()  # type: ignore[union-attr]

    # -- the exchange's side ---------------------------------------------------

    def pause_reading(self) -> None:
        """
        Stop reading the request body (the stream's window is shut).
        """
        self._block_reading(_BODY)

    def resume_reading(self) -> None:
        self._unblock_reading(_BODY)

    def respond(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], length: int | None) -> None:
        """
        Send the response head: C{headers} as they are (hop-by-hop fields
        already removed), the body framed by C{length} (their
        C{Content-Length}) when it is given, else chunked (HTTP/1.1) or by
        closing the connection (HTTP/1.0).
        """
        head = self.head
        assert head is not None
        framing = response_framing(status, head.method == b"HEAD", length, head.version == b"HTTP/1.1")
        if framing is _LENGTH:
            self._remaining = length  # type: ignore[assignment]
        self._write_head(status, reason or reason_phrase(status), headers, framing)

    def _write_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: Framing) -> None:
        self._framing = framing
        self.status = status
        self.answered_at = self.clock.seconds()
        if framing is _CLOSE or self.router.draining:
            self._keep_alive = False
        if not self._keep_alive:
            connection: bytes | None = b"close"
        else:
            head = self.head
            connection = b"keep-alive" if head is not None and head.version == b"HTTP/1.0" else None
        self._writes.write(self.transport, response_head(status, reason, headers, framing is _CHUNKED, connection))

    def write_body(self, data: bytes) -> None:
        framing = self._framing
        transport = self.transport
        if framing is _LENGTH:
            n = self._remaining
            if len(data) > n:
                data = data[:n]  # beyond the announced length: never sent
            self._remaining = n - len(data)
            self.sent_bytes += len(data)
            self._writes.write(transport, data)
        elif framing is _CHUNKED:
            if data:
                self.sent_bytes += len(data)
                write = self._writes.write
                write(transport, chunk_head(len(data)))
                write(transport, data)
                write(transport, CHUNK_END)
        elif framing is _CLOSE:
            self.sent_bytes += len(data)
            self._writes.write(transport, data)

    def finish(self) -> None:
        """
        The response is complete: end its body, then read the next request
        (or close).
        """
        framing = self._framing
        if framing is _CHUNKED:
            self._writes.write(self.transport, LAST_CHUNK)
        elif framing is _LENGTH and self._remaining:
            # Shorter than announced: the viewer must see it cut.
            self._keep_alive = False
        self._done()
        self._exchange = None
        self.head = None
        if self.phase is not Phase.EXCHANGE:
            return
        self.phase = Phase.IDLE
        if self._blocked & _BODY:
            self._unblock_reading(_BODY)
        if not self._keep_alive or self.router.draining:
            self._close()
            return
        held = self._parser.start_next()
        self._set_deadline()
        self._unblock_reading(_PIPELINE)
        if held and not self._driving:
            self._drive(b"")

    def abort(self) -> None:
        """
        Cut the connection (the response cannot be completed).
        """
        self._done()
        self.phase = Phase.CLOSED
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    # -- IPushProducer: the transport's write buffer -------------------------

    def pauseProducing(self) -> None:
        self._write_paused = True
        exchange = self._exchange
        if exchange is not None:
            exchange.pauseProducing()

    def resumeProducing(self) -> None:
        self._write_paused = False
        exchange = self._exchange
        if exchange is not None:
            exchange.resumeProducing()

    def stopProducing(self) -> None:
        pass  # connectionLost follows and ends the exchange.

    def _done(self) -> None:
        """The request in flight is over (answered or cut): log it, once."""
        started = self.started_at
        if started is not None:
            self.started_at = None
            if self._requests is not None:
                self._requests.done(self, self.status, started)
