"""
A WebSocket echo origin for the integration tests (issue 11, WebSocket
pass-through), run as its own process: C{python -m tests.ws_origin PORT}.

  - C{/ws}: autobahn's Twisted server; echoes every message as it came
    (text or binary; while the peer does not read, it stops reading), selects the C{chat.v2} subprotocol when offered,
    accepts permessage-deflate, answers pings (autobahn does), closes with
    4002 "bye from origin" when sent the text C{close-me}, and prints how
    each connection was closed (the tests read it in its log).
  - C{/refuse}: an upgrade request gets C{403} and a body; a request that
    is not an upgrade (its C{Upgrade} field was dropped on the way) gets
    C{400}.
"""

from __future__ import annotations

import sys
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

REFUSED = b"upgrade refused by origin\n"


class Echo(WebSocketServerProtocol):
    def onOpen(self) -> None:
        # Backpressure: a peer that does not read stops this connection's
        # reading (the transport is its own producer), as a careful server does.
        transport: Any = self.transport
        transport.unregisterProducer()
        transport.registerProducer(transport, True)

    def onConnect(self, request: Any) -> str | None:
        print(f"upgrade from {request.peer} protocols={request.protocols}", flush=True)
        return "chat.v2" if "chat.v2" in request.protocols else None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and payload == b"close-me":
            self.sendClose(4002, "bye from origin")
            return
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        print(f"closed: clean={wasClean} code={code} reason={reason}", flush=True)


class Refuse(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        if request.getHeader("upgrade") is None or request.getHeader("sec-websocket-key") is None:
            request.setResponseCode(400)
            return b"not an upgrade\n"
        request.setResponseCode(403)
        request.setHeader("content-type", "text/plain")
        return REFUSED


def accept(offers: list[Any]) -> Any:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


def main(port: int) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(
        maxMessagePayloadSize=0,
        maxFramePayloadSize=0,
        autoPingInterval=0,
        perMessageCompressionAccept=accept,
        openHandshakeTimeout=30,  # (autobahn's defaults are tight for a loaded CI machine)
        closeHandshakeTimeout=15,
    )
    root = Resource()
    root.putChild(b"ws", WebSocketResource(factory))
    root.putChild(b"refuse", Refuse())
    reactor.listenTCP(port, Site(root), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(int(sys.argv[1]))
