"""
The twisted.web side of the edge's own names (the control API and
C{/connect}): the channel a L{netbore.edge.viewer.ViewerProtocol} hands a
connection to, and its request class.

Both bound what a request may make the edge hold: twisted.web's stock
request reads any body (to memory, then a temp file) before the resource
sees it (DESIGN "Known traps").  Here a C{Content-Length} over the limit is
answered with 413 as soon as the head is read, before any of the body, and
a chunked body with 413 as soon as it passes the limit; either way the
connection is closed.  Below the limit, the body is kept in memory.

The request's client address and scheme follow C{--trusted-proxy}
(L{netbore.edge.clientaddr}), so that every route sees the client behind a
trusted load balancer.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet import tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server

from .apierrors import payload_too_large
from .clientaddr import TrustedProxies

__all__ = ["DEFAULT_BODY_LIMIT", "LINGER_BYTES", "LINGER_SECONDS", "ControlRequest", "OneRequestChannel"]

#: The limit when the site names none (L{EdgeConfig.max_control_body}).
DEFAULT_BODY_LIMIT = 64 * 1024

#: After a 413 on a plain TCP connection: how long, and how many more bytes,
#: the edge reads (and drops) of a body the client goes on sending before it
#: closes (nginx's C{lingering_close}).  Closing at once with unread bytes
#: would send a reset, which can destroy the 413 before the client reads it.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

_NO_PROXIES = TrustedProxies()


def _too_large(limit: int) -> bytes:
    """
    A whole 413 response with the control API's JSON error
    (L{netbore.edge.apierrors.payload_too_large}), closing.
    """
    error = payload_too_large(limit)
    body = json.dumps({"error": error.code, "message": error.message}, separators=(",", ":")).encode("ascii") + b"\n"
    return (
        b"HTTP/1.1 413 Content Too Large\r\n"
        b"Content-Type: application/json\r\n"
        b"Cache-Control: no-store\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


class OneRequestChannel(http.HTTPChannel):
    """
    twisted.web's channel for a connection a L{ViewerProtocol} handed over:
    it serves the one request it was handed and closes the connection after
    its response (C{Connection: close}), so the next request is dispatched
    by its C{Host} again, on a new connection (DESIGN "Known traps": a
    handed-over channel would otherwise keep serving the connection, and a
    tunnel's name would reach the control API).  A WebSocket upgrade
    (C{/connect}) is unaffected: autobahn takes the transport over before
    the response would end.

    A body larger than the site's C{body_limit} is refused (L{refuse_body}).
    """

    refused = False
    _lingering: Any = None
    _discarded = 0

    @property
    def body_limit(self) -> int:
        limit: int = getattr(getattr(self, "site", None), "body_limit", DEFAULT_BODY_LIMIT)
        return limit

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False

    def allHeadersReceived(self) -> None:
        # self.length: the Content-Length twisted.web read (None: chunked).
        if self.length is not None and self.length > self.body_limit:
            self.refuse_body()
            return
        super().allHeadersReceived()

    def refuse_body(self) -> None:
        """
        Answer 413 with the JSON error and close, reading no more of the
        request.
        """
        if self.refused:
            return
        self.refused = True
        transport: Any = self.transport
        if transport is None:
            return
        transport.write(_too_large(self.body_limit))
        if not isinstance(transport, tcp.Connection):
            self.loseConnection()
            return
        # Half-close once the answer is out; read and drop what still comes
        # for a while (dataReceived), then close.
        transport.unregisterProducer()
        transport.loseWriteConnection()
        self._lingering = self.callLater(LINGER_SECONDS, self._stop_lingering)

    def _stop_lingering(self) -> None:
        self._lingering = None
        if self.transport is not None:
            self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().dataReceived(data)
        elif self._lingering is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self._lingering.cancel()
                self._stop_lingering()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        lingering, self._lingering = self._lingering, None
        if lingering is not None and lingering.active():
            lingering.cancel()
        super().connectionLost(reason)

    def allContentReceived(self) -> None:
        if not self.refused:
            super().allContentReceived()


class ControlRequest(server.Request):
    """
    A request to the control API or C{/connect}: its body is kept in memory
    up to the channel's limit (L{OneRequestChannel.refuse_body} beyond), and
    its client address and scheme are those C{--trusted-proxy} allows.
    """

    _received = 0

    def gotLength(self, length: int | None) -> None:
        # Never a temp file: the channel refuses what would not fit.
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        channel: Any = self.channel
        if channel is None or getattr(channel, "refused", False):
            return
        self._received += len(data)
        if self._received > getattr(channel, "body_limit", DEFAULT_BODY_LIMIT):
            channel.refuse_body()
            return
        content: Any = self.content
        content.write(data)

    def _proxies(self) -> TrustedProxies:
        site = getattr(self.channel, "site", None)
        proxies: TrustedProxies = getattr(site, "proxies", _NO_PROXIES)
        return proxies

    def getClientAddress(self) -> Any:
        address = super().getClientAddress()
        proxies = self._proxies()
        host = getattr(address, "host", None)
        if not proxies or not isinstance(host, str):
            return address
        client = proxies.client(host, self.requestHeaders.getRawHeaders(b"x-forwarded-for"))
        if client == host:
            return address
        kind = IPv6Address if ":" in client else IPv4Address
        return kind("TCP", client, getattr(address, "port", 0))

    def isSecure(self) -> bool:
        secure = bool(super().isSecure())
        proxies = self._proxies()
        if not proxies:
            return secure
        host = getattr(super().getClientAddress(), "host", None)
        if not isinstance(host, str):
            return secure
        return bool(proxies.secure(host, self.requestHeaders.getRawHeaders(b"x-forwarded-proto"), secure))
