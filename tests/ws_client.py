"""
A real WebSocket viewer for the integration tests (issue 11, WebSocket
pass-through): autobahn's Twisted client, run as its own process (the test
process has txaio bound already) as
C{python -m tests.ws_client SCENARIO EDGE_PORT HOST}.  It connects to the
edge's port with C{Host: HOST}, plays SCENARIO and prints one JSON line of
what it saw; exit status 0 once it printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint

MiB = 1024 * 1024
TIMEOUT = 60.0


class Client(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.closed: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self.messages: defer.DeferredQueue[tuple[bytes, bool]] = defer.DeferredQueue()
        self.pongs: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        self.negotiated: str | None = None

    def onConnect(self, response: Any) -> None:
        self.negotiated = response.protocol

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put((payload, isBinary))

    def onPong(self, payload: bytes) -> None:
        self.pongs.put(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError(f"opening handshake failed: {reason}"))
        if not self.closed.called:
            self.closed.callback((wasClean, code, reason))


def _accept(response: Any) -> Any:
    return PerMessageDeflateResponseAccept(response) if isinstance(response, PerMessageDeflateResponse) else None


async def scenario(reactor: Any, name: str, port: int, host: str) -> dict[str, Any]:
    factory = WebSocketClientFactory(f"ws://{host}/ws", protocols=["chat.v2"])
    factory.protocol = Client
    options: dict[str, Any] = {"maxMessagePayloadSize": 0, "maxFramePayloadSize": 0, "autoPingInterval": 0}
    # autobahn's closing timers default to 1 s, and a loaded CI machine overran them
    # (the close then reads as unclean, 1006): the tests are about what passes through.
    options.update(openHandshakeTimeout=30, closeHandshakeTimeout=15, serverConnectionDropTimeout=15)
    if name == "basic":
        options.update(perMessageCompressionOffers=[PerMessageDeflateOffer()], perMessageCompressionAccept=_accept)
    factory.setProtocolOptions(**options)
    client: Client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    await client.opened
    out: dict[str, Any] = {"protocol": client.negotiated}
    if name == "basic":
        out["extensions"] = [type(e).__name__ for e in client.websocket_extensions_in_use]
        client.sendMessage("héllo, wörld".encode(), isBinary=False)
        text = await client.messages.get()
        binary = bytes(range(256)) * 3
        client.sendMessage(binary, isBinary=True)
        echoed = await client.messages.get()
        out["text"] = [text[0].decode(), text[1]]
        out["binary_ok"] = echoed == (binary, True)
    elif name == "big":
        payload = os.urandom(10 * MiB)
        client.sendMessage(payload, isBinary=True)
        echoed, is_binary = await client.messages.get()
        out["sent"] = hashlib.sha256(payload).hexdigest()
        out["echoed"] = hashlib.sha256(echoed).hexdigest()
        out["binary"] = is_binary
        out["length"] = len(echoed)
    elif name == "many":
        for i in range(1000):
            client.sendMessage(f"message {i}".encode(), isBinary=False)
        received = [(await client.messages.get())[0].decode() for _ in range(1000)]
        out["in_order"] = received == [f"message {i}" for i in range(1000)]
    elif name == "ping":
        client.sendPing(b"are you there?")
        out["pong"] = (await client.pongs.get()).decode()
    elif name == "close-client":
        client.sendClose(4001, "bye from client")
        out["closed"] = list(await client.closed)
        return out
    elif name == "close-origin":
        client.sendMessage(b"close-me", isBinary=False)
        out["closed"] = list(await client.closed)
        return out
    client.sendClose(1000, "done")
    out["closed"] = list(await client.closed)
    return out


def main(reactor: Any, name: str, port: str, host: str) -> defer.Deferred[None]:
    d = defer.ensureDeferred(scenario(reactor, name, int(port), host))
    d.addTimeout(TIMEOUT, reactor)
    d.addCallback(lambda out: print(json.dumps(out), flush=True))
    return d


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
