"""
A small HTTP origin for the demo, the integration tests and the benchmarks.

Routes (all under any Host):

- C{/}: a hello page.
- C{/echo}: JSON of what arrived (method, target, headers in order, body
  length and SHA-256).
- C{/bytes/<n>}: C{n} deterministic bytes with C{Content-Length}; C{?chunked=1}
  sends them chunked.
- C{/upload}: reads the request body and answers its length and SHA-256.
- C{/stream?count=N&interval=S}: N chunks, one every S seconds (chunked);
  with C{&head_first=1} the head goes out at once and the first chunk only
  after an interval.
- C{/sse?count=N&interval=S}: the same as server-sent events.
- C{/status/<code>}: that status, no body for 204/304.
- C{/cookies}: three C{Set-Cookie} headers in order.
- C{/silent}: never answers (for response timeouts).
- C{/hits}: JSON counters (requests served, connections closed mid-response).
- C{/hop}: a response carrying hop-by-hop headers (C{Keep-Alive}, and
  C{X-Origin-Hop} named in C{Connection}) beside an end-to-end one.
- C{/plain}: a body with no C{Content-Type} at all.

Run: C{python -m netbore.demo.origin PORT [INTERFACE]}.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.web import resource, server
from twisted.web.iweb import IRequest
from zope.interface import implementer

__all__ = ["Origin", "pattern", "main"]

_BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern(n: int) -> bytes:
    """
    The deterministic bytes C{/bytes/<n>} serves.
    """
    whole, rest = divmod(n, len(_BLOCK))
    return _BLOCK * whole + _BLOCK[:rest]


def _arg(request: IRequest, name: bytes, default: float) -> float:
    values = request.args.get(name)
    try:
        return float(values[0]) if values else default
    except ValueError:
        return default


@implementer(IPushProducer)
class _BytesProducer:
    """
    Writes C{n} pattern bytes to a request, respecting its backpressure.
    """

    def __init__(self, origin: Origin, request: server.Request, n: int) -> None:
        self.origin = origin
        self.request = request
        self.left = n
        self.offset = 0
        self.paused = False
        self.done = False
        request.notifyFinish().addErrback(self._lost)
        request.registerProducer(self, True)
        self.resumeProducing()

    def _lost(self, reason: Any) -> None:
        self.done = True
        self.origin.counters["aborted"] += 1

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.done and self.left > 0:
            size = min(self.left, len(_BLOCK))
            self.request.write(_BLOCK[:size])
            self.left -= size
        if self.left == 0 and not self.done:
            self.done = True
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.done = True


class Origin(resource.Resource):
    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor
        self.counters = {"requests": 0, "aborted": 0}

    def render(self, request: server.Request) -> Any:
        self.counters["requests"] += 1
        parts = request.path.split(b"/")
        route = parts[1] if len(parts) > 1 else b""
        handler = getattr(self, "route_" + route.decode("ascii", "replace"), None)
        if route == b"":
            handler = self.route_index
        if handler is None:
            request.setResponseCode(404)
            return b"no such route\n"
        return handler(request, parts[2:])

    def route_index(self, request: server.Request, rest: list[bytes]) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return b"<!DOCTYPE html><title>netbore</title><h1>Hello through netbore!</h1>\n"

    def route_echo(self, request: server.Request, rest: list[bytes]) -> bytes:
        body = request.content.read() if request.content is not None else b""
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "target": request.uri.decode("latin-1"),
                "headers": [
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, values in request.requestHeaders.getAllRawHeaders()
                    for value in values
                ],
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        ).encode()

    route_upload = route_echo

    def route_bytes(self, request: server.Request, rest: list[bytes]) -> Any:
        try:
            n = int(rest[0])
        except (IndexError, ValueError):
            request.setResponseCode(400)
            return b"bad length\n"
        request.setHeader(b"content-type", b"application/octet-stream")
        if not _arg(request, b"chunked", 0):
            request.setHeader(b"content-length", str(n).encode())
        if request.method == b"HEAD":
            return b""
        _BytesProducer(self, request, n)
        return server.NOT_DONE_YET

    def _ticker(self, request: server.Request, chunk: Any, content_type: bytes) -> Any:
        count = int(_arg(request, b"count", 5))
        interval = _arg(request, b"interval", 0.5)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-cache")
        state = {"i": 0}

        def tick() -> None:
            if state["i"] >= count:
                loop.stop()
                request.finish()
                return
            request.write(chunk(state["i"]))
            state["i"] += 1

        loop = LoopingCall(tick)
        loop.clock = self.reactor

        def lost(reason: Any) -> None:
            self.counters["aborted"] += 1
            if loop.running:
                loop.stop()

        request.notifyFinish().addErrback(lost)
        head_first = bool(_arg(request, b"head_first", 0))
        if head_first:
            request.write(b"")  # the head alone; Twisted sends no empty chunk
        loop.start(interval, now=not head_first)
        return server.NOT_DONE_YET

    def route_stream(self, request: server.Request, rest: list[bytes]) -> Any:
        return self._ticker(request, lambda i: b"chunk %d\n" % i, b"text/plain")

    def route_sse(self, request: server.Request, rest: list[bytes]) -> Any:
        return self._ticker(request, lambda i: b"data: event %d\n\n" % i, b"text/event-stream")

    def route_status(self, request: server.Request, rest: list[bytes]) -> bytes:
        try:
            code = int(rest[0])
        except (IndexError, ValueError):
            code = 400
        request.setResponseCode(code)
        if code in (204, 304) or request.method == b"HEAD":
            return b""
        return b"status %d\n" % code

    def route_cookies(self, request: server.Request, rest: list[bytes]) -> bytes:
        for cookie in (b"a=1; Path=/", b"b=2; Path=/", b"c=3; Path=/; HttpOnly"):
            request.responseHeaders.addRawHeader(b"set-cookie", cookie)
        return b"cookies\n"

    def route_silent(self, request: server.Request, rest: list[bytes]) -> Any:
        request.notifyFinish().addErrback(lambda r: None)
        return server.NOT_DONE_YET

    def route_hop(self, request: server.Request, rest: list[bytes]) -> bytes:
        request.responseHeaders.addRawHeader(b"connection", b"X-Origin-Hop")
        request.responseHeaders.addRawHeader(b"x-origin-hop", b"1")
        request.responseHeaders.addRawHeader(b"keep-alive", b"timeout=5")
        request.responseHeaders.addRawHeader(b"x-end-to-end", b"kept")
        request.setHeader(b"content-type", b"text/plain")
        return b"hop\n"

    def route_plain(self, request: server.Request, rest: list[bytes]) -> bytes:
        request.defaultContentType = None
        return b"no content type\n"

    def route_hits(self, request: server.Request, rest: list[bytes]) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.counters).encode()


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 3000
    interface = args[1] if len(args) > 1 else "127.0.0.1"
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    site = server.Site(Origin(reactor))
    site.log = lambda request: None  # type: ignore[method-assign]
    listening: Any = reactor.listenTCP(port, site, interface=interface)  # type: ignore[arg-type]
    sys.stdout.write(f"origin listening on http://{interface}:{listening.getHost().port}\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
