"""
Writes on the hot path: sent at once, one C{send()} per connection per
input event.

Twisted's C{transport.write} never sends: it appends to the transport's
buffer and registers the socket for writing (C{epoll_ctl}); the reactor
sends on its next turn and unregisters it (another C{epoll_ctl}).  For a
request relayed by edge and agent that is, in each process and for each of
its two writes, two extra system calls and one extra reactor turn -- about
half of the CPU a small request costs at one connection (see
C{docs/performance.rst}).

L{send_now} sends directly when the transport is a plain TCP connection
with nothing queued, and hands whatever the kernel did not take (or any
other transport, e.g. TLS) to C{transport.write} as before, so ordering,
buffering and producer pausing are Twisted's.

L{WriteBatch} holds the writes made while one input event is handled
(C{dataReceived} of a viewer, origin or WebSocket connection) and sends
them when it returns, joined per connection: a response head and its first
body bytes, or several tunnel frames, leave in one C{send()}.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import tcp
from twisted.logger import Logger

__all__ = ["BATCH", "WriteBatch", "send_now"]

_TCP = tcp.Connection

log = Logger()


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to its socket when it is a
    plain TCP connection that is open, not closing and has nothing queued;
    else (and for what the socket did not take) through C{transport.write}.
    """
    if (
        isinstance(transport, _TCP)
        and not transport.TLS
        and not transport._tempDataLen
        and not transport.dataBuffer
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnecting
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # Reset or broken: let the reactor find out and report it.
            transport.write(data)
            return
        if sent < len(data):
            transport.write(data[sent:])
        return
    transport.write(data)


class WriteBatch:
    """
    Holds writes while input is being handled; L{release} sends each
    connection's held bytes with one L{send_now}.

    Calls nest: only the outermost L{release} sends.  Everything written to
    a connection while a batch is open must go through L{write}, or its
    order would change.
    """

    def __init__(self) -> None:
        self.depth = 0
        self._held: dict[Any, list[bytes]] = {}
        self._later: dict[Callable[[], object], None] = {}

    def hold(self) -> None:
        self.depth += 1

    def release(self) -> None:
        if self.depth > 1:
            self.depth -= 1
            return
        # Deferred flushes may write (held too: depth is still 1).  One that
        # fails must not cost the others their turn, nor other connections
        # their bytes.
        while self._later:
            later, self._later = self._later, {}
            for call in later:
                try:
                    call()
                except Exception:
                    log.failure("deferred flush {call!r} failed", call=call)
        self.depth -= 1
        if self._held:
            held, self._held = self._held, {}
            for transport, chunks in held.items():
                try:
                    send_now(transport, chunks[0] if len(chunks) == 1 else b"".join(chunks))
                except Exception:
                    log.failure("write to {transport!r} failed", transport=transport)

    def later(self, call: Callable[[], object]) -> bool:
        """
        While a batch is open, run C{call} once when it is released (before
        the held bytes leave; the same call asked for twice runs once) and
        return C{True}; else return C{False} and do nothing.

        A tunnel session's frames queued by several callbacks of one event
        then leave as one message (see C{Session.data_to_send}).
        """
        if not self.depth:
            return False
        self._later[call] = None
        return True

    def run_now(self, call: Callable[[], object]) -> None:
        """
        Run C{call} now if it was deferred by L{later} (before writing
        something that must follow what it writes).
        """
        if self._later.pop(call, False) is None:
            call()

    def write(self, transport: Any, data: bytes) -> None:
        if not data:
            return
        if not self.depth:
            send_now(transport, data)
            return
        chunks = self._held.get(transport)
        if chunks is None:
            self._held[transport] = [data]
        else:
            chunks.append(data)

    def flush(self, transport: Any) -> None:
        """
        Send what is held for C{transport} now (before something that
        writes to it directly, e.g. twisted.web taking the connection over).
        """
        chunks = self._held.pop(transport, None)
        if chunks:
            send_now(transport, b"".join(chunks))


#: The process's batch: one reactor, one event handled at a time.
BATCH = WriteBatch()
