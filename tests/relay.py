"""
A test-controlled loopback TCP relay, to put between an agent and an edge.

Modes, for the connections open at the time of the call:

- L{Relay.forward}: bytes flow both ways (the default, and always the mode
  of connections accepted later);
- L{Relay.freeze}: bytes are read and thrown away in both directions while
  the sockets stay open, as on a half-open path (a NAT that forgot the
  flow, a cable pulled out somewhere in between): neither end sees a FIN or
  an RST, only silence;
- L{Relay.drop}: every connection is closed at once, both sides.

Threads, one per direction of each connection, with bounded C{select}
waits; L{Relay.close} stops them all.
"""

from __future__ import annotations

import select
import socket
import threading
import time

__all__ = ["Relay"]


class _Pipe:
    """
    One relayed connection: client (the agent) <-> upstream (the edge).
    """

    def __init__(self, relay: Relay, client: socket.socket, upstream: socket.socket) -> None:
        self.relay = relay
        self.client = client
        self.upstream = upstream
        self.frozen = False
        self.closed = False
        #: When the client end went away (EOF or reset), monotonic time.
        self.client_closed_at: float | None = None
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while not self.closed and not self.relay.stopping:
            try:
                readable, _, _ = select.select([source], [], [], 0.05)
            except (OSError, ValueError):
                break
            if not readable:
                continue
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                if from_client and self.client_closed_at is None:
                    self.client_closed_at = time.monotonic()
                break
            if self.frozen:
                continue  # into the void: nobody hears about it
            try:
                sink.sendall(data)
            except OSError:
                break
        if not self.frozen:
            self.close()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class Relay:
    """
    Listens on 127.0.0.1 (an ephemeral port, L{port}) and relays each
    connection to C{127.0.0.1:upstream_port}.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stopping = False
        self.pipes: list[_Pipe] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.pipes.append(_Pipe(self, client, upstream))

    def live(self) -> list[_Pipe]:
        with self._lock:
            return [p for p in self.pipes if not p.closed]

    def forward(self) -> None:
        for pipe in self.live():
            pipe.frozen = False

    def freeze(self) -> list[_Pipe]:
        """
        Silence every open connection; returns them (see
        L{_Pipe.client_closed_at}).
        """
        pipes = self.live()
        for pipe in pipes:
            pipe.frozen = True
        return pipes

    def drop(self) -> None:
        for pipe in self.live():
            pipe.close()

    def close(self) -> None:
        self.stopping = True
        self._acceptor.join(2)
        self._listener.close()
        for pipe in list(self.pipes):
            pipe.close()
        for pipe in list(self.pipes):
            for thread in pipe._threads:
                thread.join(2)
