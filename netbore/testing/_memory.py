"""
The pieces of an in-memory tunnel: loopback TCP on a C{MemoryReactorClock}
(L{MemoryNetwork}), a raw HTTP/1.1 viewer (L{Viewer}, L{Response}) and the
smallest origin (L{HelloOrigin}).
"""

from __future__ import annotations

import http.client
import io
from collections import Counter
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim

__all__ = ["LOOPBACK", "HelloOrigin", "MemoryNetwork", "Response", "Viewer", "hello_origin"]

#: The address every in-memory connection comes from.
LOOPBACK = "127.0.0.1"

_HELLO = b"Hello, World!"
_HELLO_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + _HELLO
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"


class HelloOrigin(Protocol):
    """
    The smallest keep-alive HTTP/1.1 origin, like the benchmark's: C{GET /13}
    answers C{Hello, World!} (13 bytes), anything else a 404.  Request
    bodies are not supported (use a twisted.web C{Site} for those).
    """

    def __init__(self) -> None:
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end], buffer[end + 4 :]
            line = head.split(b"\r\n", 1)[0]
            ok = line.startswith(b"GET /13 ")
            self.transport.write(_HELLO_RESPONSE if ok else _NOT_FOUND)  # type: ignore[union-attr]
        self._buffer = buffer


def hello_origin() -> IProtocolFactory:
    """
    A factory of L{HelloOrigin} connections.
    """
    factory = Factory.forProtocol(HelloOrigin)
    factory.noisy = False
    return factory


class MemoryNetwork:
    """
    Loopback TCP in memory: completes the connections made with
    C{connectTCP} on C{reactor} to the factory listening on their port (or
    refuses them), and moves bytes on every connection until none moves.

    @ivar pumps: one C{iosim.IOPump} per open connection.
    @ivar accepted: how many connections each port has accepted.
    """

    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor
        self.listeners: dict[int, IProtocolFactory] = {}
        self.pumps: list[iosim.IOPump] = []
        self.accepted: Counter[int] = Counter()
        self._next_port = 40000

    def listen(self, port: int, factory: IProtocolFactory) -> None:
        """
        Accept the connections made to C{port} (any host) with C{factory}.
        """
        self.listeners[port] = factory

    def _client_address(self) -> IPv4Address:
        self._next_port += 1
        return IPv4Address("TCP", LOOPBACK, self._next_port)

    def connect(self, port: int, client: Any) -> iosim.IOPump:
        """
        Connect the protocol C{client} to what listens on C{port}; the
        pump is kept in L{pumps} (not flushed: call L{pump}).
        """
        factory = self.listeners[port]
        client_addr = self._client_address()
        server_addr = IPv4Address("TCP", LOOPBACK, port)
        server = factory.buildProtocol(client_addr)
        assert server is not None
        self.accepted[port] += 1
        return self._join(server, server_addr, client, client_addr)

    def _join(self, server: Any, server_addr: IPv4Address, client: Any, client_addr: IPv4Address) -> iosim.IOPump:
        server_io = iosim.FakeTransport(server, isServer=True, hostAddress=server_addr, peerAddress=client_addr)
        client_io = iosim.FakeTransport(client, isServer=False, hostAddress=client_addr, peerAddress=server_addr)
        pump: iosim.IOPump = iosim.connect(server, server_io, client, client_io, greet=False, clock=self.reactor)
        self.pumps.append(pump)
        return pump

    def complete(self) -> int:
        """
        Complete (or refuse) every connection attempt made so far; return
        how many there were.
        """
        reactor = self.reactor
        done = 0
        while reactor.tcpClients:
            _host, port, factory, _timeout, _bind = reactor.tcpClients.pop(0)
            connector = reactor.connectors.pop(0)
            done += 1
            listener = self.listeners.get(port)
            if listener is None:
                factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
                continue
            client_addr = self._client_address()
            server_addr = IPv4Address("TCP", LOOPBACK, port)
            client = factory.buildProtocol(server_addr)
            server = listener.buildProtocol(client_addr)
            assert server is not None
            self.accepted[port] += 1
            self._join(server, server_addr, client, client_addr)
        return done

    def pump(self) -> bool:
        """
        Run what is due now, complete connection attempts and move bytes
        until nothing moves; return whether anything did.
        """
        moved = False
        while True:
            self.reactor.advance(0)
            busy = self.complete() > 0
            for pump in list(self.pumps):
                if pump.pump(advanceClock=False):
                    busy = True
                elif pump.serverIO.disconnected and pump.clientIO.disconnected:
                    self.pumps.remove(pump)
            if not busy:
                return moved
            moved = True


@attrs.frozen
class Response:
    """
    A response as a viewer read it (parsed by the standard library's
    C{http.client}, independent of netbore's own codec).

    @ivar raw: the bytes of this response as they arrived.
    """

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """
        The first value of the field C{name} (any case), or L{None}.
        """
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None


class _Received(io.BytesIO):
    """
    Received bytes as a file that stays readable (and its position known)
    after C{http.client} closes it at the end of a body.
    """

    def close(self) -> None:
        pass


class _Socket:
    """
    What C{http.client.HTTPResponse} reads from: a file over received bytes.
    """

    def __init__(self, stream: _Received) -> None:
        self._stream = stream

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> _Received:
        return self._stream


class Viewer(Protocol):
    """
    A viewer's connection to the edge: sends raw bytes, collects what the
    edge answers.

    @ivar received: every byte received and not yet taken by L{response}.
    @ivar lost: the connection is closed.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = True

    def send(self, data: bytes) -> None:
        """
        Write C{data} to the edge (it moves on the next pump).
        """
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        """
        Close the connection (the viewer goes away).
        """
        assert self.transport is not None
        self.transport.loseConnection()

    def response(self, method: str = "GET") -> Response:
        """
        Take the first complete response out of L{received}.

        @param method: the request's method (a response to C{HEAD} has no
            body).
        @raise http.client.HTTPException: no complete response is there.
        """
        stream = _Received(self.received)
        parsed = http.client.HTTPResponse(_Socket(stream), method=method)  # type: ignore[arg-type]
        parsed.begin()
        if parsed.length is None and not parsed.chunked and method != "HEAD" and not self.lost:
            # Read until close: complete only once the connection is.
            raise http.client.IncompleteRead(self.received)
        body = parsed.read()
        used = stream.tell()
        raw, self.received = self.received[:used], self.received[used:]
        return Response(parsed.status, parsed.reason, parsed.getheaders(), body, raw)
