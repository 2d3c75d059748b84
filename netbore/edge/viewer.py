"""
The edge's connection with a viewer: a lean HTTP/1.1 server for tunnel
traffic, handing everything else to twisted.web.

Every connection the edge accepts starts as a L{ViewerProtocol}.  It reads
the first request head (L{viewer_parse.RequestParser}); when its C{Host} is
a tunnel's, it serves the request itself, streaming it into a
L{tunnel.ViewerExchange}, and goes on serving the connection's requests one
at a time (keep-alive; pipelined requests wait, bounded, in the buffer).
When a head's C{Host} is the edge's own (the control API, C{/connect}), the
connection is handed to the site's twisted.web C{HTTPChannel} with the bytes
read so far replayed, and this protocol only passes bytes on from then on.
Hand-overs happen at a request boundary with nothing in flight, since
requests are read one after the other: a keep-alive connection that turns
from a tunnel's name to the edge's own is handed over at that point; one
that turns the other way stays with twisted.web (which then serves the
control API's answers for the tunnel's name: 404s).

Why not twisted.web for tunnel traffic: its per-request machinery (a
C{Request} with C{Headers} objects, a C{notifyFinish} Deferred, a
line-per-callback parser, header re-formatting) cost the edge more CPU per
request than the rest of the data plane.  Here a request costs one head
parse (one split, two regex calls), one C{transport.write} for the response
head, and no Deferreds.

Timeouts: a connection must complete a request head within
L{IDLE_TIMEOUT} of being opened or of its last response (slow heads and
idle keep-alive connections alike); a partial head then gets 408.  While a
request is in flight, the exchange's response timeout applies instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from zope.interface import implementer

from ..writes import BATCH
from . import pages
from .viewer_parse import END_OF_MESSAGE, NEED_DATA, PAUSED, ParseError, RequestHead, RequestParser

if TYPE_CHECKING:
    from .site import EdgeSite
    from .exchange import ViewerExchange

__all__ = ["ViewerProtocol", "IDLE_TIMEOUT", "PIPELINE_BUFFER"]

#: Seconds a connection may take to send a complete request head, counted
#: from its opening or from the end of its last response.
IDLE_TIMEOUT = 60.0

#: Bytes of pipelined requests read ahead while a response is in flight;
#: beyond that the connection is not read until the response is done.
PIPELINE_BUFFER = 64 * 1024

# Response body framing.
_NONE = 0  # no body (HEAD, 1xx, 204, 304)
_LENGTH = 1  # Content-Length
_CHUNKED = 2
_CLOSE = 3  # delimited by closing the connection (HTTP/1.0)

# Reasons to stop reading the viewer (bit flags).
_BODY = 1  # the request body is beyond the stream's send window
_PIPELINE = 2  # pipelined requests wait for the response in flight

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ERROR_STATUSES = {
    400: pages.BAD_REQUEST,
    408: pages.REQUEST_TIMEOUT,
    431: pages.HEAD_TOO_LARGE,
    501: pages.NOT_IMPLEMENTED,
    505: pages.VERSION_NOT_SUPPORTED,
}


def _reason(status: int) -> bytes:
    return RESPONSES.get(status, b"Unknown")


@implementer(IPushProducer)
class ViewerProtocol(Protocol):
    """
    One viewer connection (see the module's docstring).

    The exchange in flight uses it as its request and response: C{head},
    C{client_ip}, C{secure}; L{pause_reading}/L{resume_reading} for the
    request body; L{respond}, L{write_body}, L{finish}, L{abort},
    L{error_page} for the response.  It is the transport's producer: the
    transport pausing it (its write buffer is full) pauses the exchange,
    which then holds the stream's credit.
    """

    head: RequestHead | None = None
    client_ip = b""
    secure = False

    def __init__(self, site: "EdgeSite", addr: Any) -> None:
        self.site = site
        self.router = site.router
        self.clock: Any = site.reactor
        self.addr = addr
        self._parser: RequestParser | None = RequestParser()
        self._exchange: ViewerExchange | None = None
        self._handed: Any = None  # the twisted.web channel, once handed over
        self._read_blocks = 0
        self._write_paused = False
        self._keep_alive = True
        self._framing = _NONE
        self._remaining = 0
        self._closing = False
        self._driving = False
        self._deadline: float | None = None
        self._timer: IDelayedCall | None = None

    # -- connection ----------------------------------------------------------

    def connectionMade(self) -> None:
        transport: Any = self.transport
        host = getattr(transport.getPeer(), "host", "")
        self.client_ip = host.encode("ascii", "replace") if isinstance(host, str) else b""
        self.secure = ISSLTransport(transport, None) is not None
        # A response head and its body may leave in two writes (the body
        # comes in a later frame): never let Nagle hold the second one.
        nodelay = getattr(transport, "setTcpNoDelay", None)
        if nodelay is not None:
            try:
                nodelay(True)
            except OSError:
                pass
        transport.registerProducer(self, True)
        self._set_deadline()

    def dataReceived(self, data: bytes) -> None:
        if self._handed is not None:
            self._handed.dataReceived(data)
            return
        parser = self._parser
        if parser is None or self._closing:
            return
        parser.feed(data)
        if not self._driving:
            # What this read causes (frames to the agent, an error page)
            # leaves in one write per connection.
            BATCH.hold()
            try:
                self._drive()
            finally:
                BATCH.release()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        if self._handed is not None:
            self._handed.connectionLost(reason)
            return
        self._closing = True
        self._parser = None
        self._deadline = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.viewer_gone()

    def is_open(self) -> bool:
        """
        Is this connection still open (and not taken over by autobahn)?
        """
        if self._handed is not None:
            transport = self._handed.transport
        else:
            transport = self.transport
        return transport is not None and not getattr(transport, "disconnected", False)

    def close_if_idle(self) -> None:
        """
        Close the connection if no request is in flight (drain).
        """
        handed = self._handed
        if handed is not None:
            if not handed.requests and handed.transport is not None and not handed.transport.disconnecting:
                handed.loseConnection()
        elif self._exchange is None and not self._closing:
            self._close()

    def buffered_bytes(self) -> int:
        """
        Bytes read from the viewer and not yet consumed.
        """
        return self._parser.buffered if self._parser is not None else 0

    def _close(self) -> None:
        """
        Close once the written bytes are out.
        """
        self._closing = True
        self._deadline = None
        transport: Any = self.transport
        if transport is not None:
            # A transport with a registered producer does not close.
            transport.unregisterProducer()
            BATCH.flush(transport)
            transport.loseConnection()

    # -- reading requests ------------------------------------------------------

    def _drive(self) -> None:
        """
        Act on the parser's events until it needs bytes or waits for the
        response in flight.
        """
        self._driving = True
        try:
            while not self._closing:
                parser = self._parser
                if parser is None:
                    return
                try:
                    event = parser.next_event()
                except ParseError as e:
                    self._refuse(e.status)
                    return
                if event.__class__ is bytes:
                    exchange = self._exchange
                    if exchange is not None:
                        exchange.body_received(event)  # type: ignore[arg-type]
                elif event is NEED_DATA:
                    return
                elif event is PAUSED:
                    if parser.buffered > PIPELINE_BUFFER:
                        self._block_reading(_PIPELINE)
                    return
                elif event is END_OF_MESSAGE:
                    exchange = self._exchange
                    if exchange is not None:
                        exchange.body_complete()
                else:
                    self._request(event)  # type: ignore[arg-type]
        finally:
            self._driving = False

    def _request(self, head: RequestHead) -> None:
        label = self.router.label_for(head.host)
        if label is None:
            self._hand_over()
            return
        self._deadline = None
        self.head = head
        self._keep_alive = head.keep_alive
        if head.expect_continue and (head.chunked or head.length):
            BATCH.write(self.transport, _CONTINUE)
        exchange = self.router.exchange(self, label, head.length)
        self._exchange = exchange
        if self._write_paused:
            exchange.pauseProducing()

    def _hand_over(self) -> None:
        """
        Give the connection to twisted.web, replaying what was read.
        """
        parser, self._parser = self._parser, None
        assert parser is not None
        self._deadline = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        raw = parser.take_raw()
        transport: Any = self.transport
        # twisted.web writes to the transport directly from now on.
        BATCH.flush(transport)
        channel = self.site.build_channel(self.addr)
        self._handed = channel
        transport.unregisterProducer()
        if self._read_blocks:
            self._read_blocks = 0
            transport.resumeProducing()
        channel.makeConnection(transport)
        channel.dataReceived(raw)

    def _refuse(self, status: int) -> None:
        """
        Answer a request the parser refused, and close.
        """
        self._parser = None
        self._keep_alive = False
        self.head = None
        error = _ERROR_STATUSES.get(status, pages.BAD_REQUEST)
        ctype, body = pages.render(error, b"", b"")
        self._write_head(error.status, _reason(error.status), pages.headers(ctype, body, error), _NONE)
        BATCH.write(self.transport, body)
        self._close()

    def _set_deadline(self) -> None:
        clock = self.clock
        self._deadline = clock.seconds() + IDLE_TIMEOUT
        if self._timer is None:
            self._timer = clock.callLater(IDLE_TIMEOUT, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self._closing or self._handed is not None:
            return
        now = self.clock.seconds()
        if now < deadline:
            self._timer = self.clock.callLater(deadline - now, self._check_deadline)
            return
        if self.buffered_bytes():
            self._refuse(408)
        else:
            self._close()

    def _block_reading(self, why: int) -> None:
        if not self._read_blocks:
            self.transport.pauseProducing()  # type: ignore[union-attr]
        self._read_blocks |= why

    def _unblock_reading(self, why: int) -> None:
        if self._read_blocks & why:
            self._read_blocks &= ~why
            if not self._read_blocks and not self._closing:
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
        if status < 200 or status == 204 or status == 304 or head.method == b"HEAD":
            framing = _NONE
        elif length is not None:
            framing = _LENGTH
            self._remaining = length
        elif head.version == b"HTTP/1.1":
            framing = _CHUNKED
        else:
            framing = _CLOSE
        self._write_head(status, reason or _reason(status), headers, framing)

    def _write_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], framing: int) -> None:
        self._framing = framing
        if framing == _CLOSE or self.router.draining:
            self._keep_alive = False
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        parts += [name + b": " + value + b"\r\n" for name, value in headers]
        if framing == _CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        head = self.head
        if not self._keep_alive:
            parts.append(b"Connection: close\r\n\r\n")
        elif head is not None and head.version == b"HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        BATCH.write(self.transport, b"".join(parts))

    def write_body(self, data: bytes) -> None:
        framing = self._framing
        transport: Any = self.transport
        if framing == _LENGTH:
            n = self._remaining
            if len(data) > n:
                data = data[:n]  # beyond the announced length: never sent
            self._remaining = n - len(data)
            BATCH.write(transport, data)
        elif framing == _CHUNKED:
            if data:
                BATCH.write(transport, b"%x\r\n" % len(data))
                BATCH.write(transport, data)
                BATCH.write(transport, b"\r\n")
        elif framing == _CLOSE:
            BATCH.write(transport, data)

    def finish(self) -> None:
        """
        The response is complete: end its body, then read the next request
        (or close).
        """
        framing = self._framing
        if framing == _CHUNKED:
            BATCH.write(self.transport, b"0\r\n\r\n")
        elif framing == _LENGTH and self._remaining:
            # Shorter than announced: the viewer must see it cut.
            self._keep_alive = False
        self._exchange = None
        self.head = None
        if self._read_blocks & _BODY:
            self._unblock_reading(_BODY)
        if not self._keep_alive or self.router.draining:
            self._close()
            return
        parser = self._parser
        if parser is None:
            return
        parser.start_next()
        self._set_deadline()
        self._unblock_reading(_PIPELINE)
        if not self._driving and parser.buffered:
            self._drive()

    def abort(self) -> None:
        """
        Cut the connection (the response cannot be completed).
        """
        self._closing = True
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def error_page(self, error: pages.ViewerError) -> None:
        """
        Answer with the edge's page for C{error}, and finish.
        """
        head = self.head
        assert head is not None
        ctype, body = pages.render(error, head.host or b"", head.header(b"accept") or b"")
        self.respond(error.status, _reason(error.status), pages.headers(ctype, body, error), len(body))
        self.write_body(body)
        self.finish()

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
        # connectionLost follows and ends the exchange.
        pass
