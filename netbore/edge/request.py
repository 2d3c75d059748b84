"""
A twisted.web request and channel that stream tunnel traffic.

C{twisted.web.server.Request} reads the whole request body before C{render}
is called.  For tunnel traffic the edge must instead start the stream as soon
as the headers are in and feed the body through as it arrives, under the
stream's flow-control window.  L{EdgeHTTPChannel} hands the request line to
the request when the headers are complete; L{EdgeRequest} asks the site's
tunnel router, at that moment, whether the request is tunnel traffic and if
so hands it the body chunk by chunk instead of buffering it.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.web import http, server

__all__ = ["EdgeHTTPChannel", "EdgeRequest", "IViewerExchange", "ITunnelRouter"]


class IViewerExchange(Protocol):
    """
    One viewer request being streamed into a tunnel.
    """

    def body_received(self, data: bytes) -> None: ...

    def body_complete(self) -> None: ...


class ITunnelRouter(Protocol):
    def route(self, request: "EdgeRequest", length: int | None) -> IViewerExchange | None:
        """
        The exchange for C{request} when its C{Host} addresses a tunnel, or
        L{None} when the request is for the edge itself.
        """


class EdgeHTTPChannel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that tells the request its method, target and
    version when the headers are complete, not only when the body is.
    """

    def allHeadersReceived(self) -> None:
        # HTTPChannel keeps the request line on itself until the body is in;
        # the streaming request needs it now.  These attributes are set by
        # HTTPChannel.lineReceived for every request line (stable since
        # Twisted 16.3); reading them in a subclass keeps the coupling here.
        request = self.requests[-1]
        request.method = self._command
        request.uri = self._path
        request.clientproto = self._version
        super().allHeadersReceived()


class EdgeRequest(server.Request):
    """
    A request that streams its body into a tunnel when its C{Host} is a
    tunnel's, and behaves as a plain L{server.Request} otherwise.
    """

    exchange: IViewerExchange | None = None

    def gotLength(self, length: int | None) -> None:
        router: ITunnelRouter | None = getattr(getattr(self.channel, "site", None), "router", None)
        if router is not None:
            self.exchange = router.route(self, length)
        if self.exchange is None:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            super().handleContentChunk(data)
        else:
            exchange.body_received(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            super().requestReceived(command, path, version)
            return
        self.method, self.uri, self.clientproto = command, path, version
        self.path = path.split(b"?", 1)[0]
        self.args = {}
        self.site = getattr(self.channel, "site", None)
        self.prepath = []
        self.postpath = []
        exchange.body_complete()

    def viewer_pause(self) -> None:
        """
        Stop reading the viewer's connection (request body backpressure).
        """
        transport: Any = self.channel.transport
        if transport is not None:
            transport.pauseProducing()

    def viewer_resume(self) -> None:
        transport: Any = self.channel.transport
        if transport is not None:
            transport.resumeProducing()
