"""
Writes on the hot path: sent at once, one C{send()} per connection per
input event.

Twisted's C{transport.write} never sends: it appends to the transport's
buffer and registers the socket for writing (C{epoll_ctl}); the reactor
sends on its next turn and unregisters it (another C{epoll_ctl}).  For a
request relayed by edge and agent that is, in each process and for each of
its two writes, two extra system calls and one extra reactor turn -- about
half of the CPU a small request costs at one connection (see
C{docs/performance.rst}).  Upstream this is Twisted issue #5303, "Default
transport implementation doesn't write out bytes immediately"
(U{https://github.com/twisted/twisted/issues/5303}), open since 2011: there
is no public way to ask a transport to try the socket first.

L{send_now} therefore sends directly when the transport is a plain TCP
connection with nothing queued, and hands whatever the kernel did not take
(or any other transport, e.g. TLS) to C{transport.write} as before, so
ordering, buffering and producer pausing stay Twisted's.  Reading the
connection's state means reading C{tcp.Connection} internals; that is
allowed only behind one capability check, L{direct_send_capable}, made once
per transport class: a class that fails it (another transport, a subclass
that overrides C{write}, or a Twisted whose write path no longer reads the
attributes relied on) is written to with C{transport.write} only.

L{WriteBatch} holds the writes made while one input event is handled
(C{dataReceived} of a viewer, origin or WebSocket connection) and sends
them when it returns, joined per connection: a response head and its first
body bytes, or several tunnel frames, leave in one C{send()}.  One batch
serves a whole process (one reactor, one event handled at a time); it is
made once, where the reactor is chosen (the taps), and injected like the
reactor into whatever writes on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import abstract, tcp
from twisted.logger import Logger

__all__ = ["WriteBatch", "direct_send_capable", "send_now", "twisted_write_path_known"]

log = Logger()

#: What L{send_now} reads of a C{tcp.Connection}, and where Twisted's own
#: write path reads the same: if Twisted stops reading one of them there,
#: its meaning may have changed, and the direct path is not taken.
_READ_BY_WRITE = frozenset({"connected", "_writeDisconnected", "_tempDataLen"})
_READ_BY_DO_WRITE = frozenset({"dataBuffer", "_tempDataLen", "disconnecting", "_writeDisconnecting"})


def _code_names(function: object) -> frozenset[str]:
    code = getattr(function, "__code__", None)
    return frozenset(code.co_names) if code is not None else frozenset()


def twisted_write_path_known() -> bool:
    """
    Does this Twisted's TCP connection buffer writes the way L{send_now}
    assumes (its C{write} is C{FileDescriptor.write} unless C{TLS}, and the
    attributes L{send_now} reads are those its write path reads)?
    """
    return (
        _READ_BY_WRITE <= _code_names(abstract.FileDescriptor.write)
        and _READ_BY_DO_WRITE <= _code_names(abstract.FileDescriptor.doWrite)
        and {"TLS", "FileDescriptor"} <= _code_names(tcp.Connection.write)
        and "socket" in _code_names(tcp.Connection.__init__)
    )


#: Computed once, at import (a check, nothing changed).
_TWISTED_KNOWN = twisted_write_path_known()


def direct_send_capable(cls: type) -> bool:
    """
    May L{send_now} write straight to the socket of a transport of class
    C{cls}?  Only for Twisted's plain TCP connection (or a subclass that
    keeps its write path), and only on a Twisted whose write path reads
    what L{send_now} reads.
    """
    return (
        _TWISTED_KNOWN
        and issubclass(cls, tcp.Connection)
        and getattr(cls, "write", None) is tcp.Connection.write
        and getattr(cls, "doWrite", None) is tcp.Connection.doWrite
    )


#: Transport class -> L{direct_send_capable}, learnt on first use.
_DIRECT: dict[type, bool] = {}


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to its socket when it is a
    plain TCP connection that is open, not closing and has nothing queued;
    else (and for what the socket did not take) through C{transport.write}.
    """
    cls = transport.__class__
    direct = _DIRECT.get(cls)
    if direct is None:
        direct = _DIRECT[cls] = direct_send_capable(cls)
    if (
        direct
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
    a connection while a batch is open must go through L{write} (or
    L{held}), or its order would change.  Make one per process and give it
    to every protocol that writes on the hot path (edge: the site and the
    agents' endpoint; agent: the forwarder and the session factory).

    The hot path's entry points are C-level callables, so that holding a
    batch, asking whether one is open and deferring a flush cost no Python
    call (and no module crossing, see C{bench/trace.py}):

      - L{hold} (a bound C{list.append});
      - L{holds}: non-empty while a batch is open (read it, never change it);
      - L{defer}: C{defer(call)} runs C{call} once at the outermost
        L{release}, before the held bytes leave; only while a batch is
        open, and the caller makes sure it asks once (L{later} checks both);
      - L{held}: per transport, the chunks held; while a batch is open a
        writer may append to C{held[transport]} instead of calling
        L{write} (empty chunks never).
    """

    def __init__(self) -> None:
        self.holds: list[None] = []
        self.hold: Callable[[], None] = partial(self.holds.append, None)
        self.held: defaultdict[Any, list[bytes]] = defaultdict(list)
        self._later: list[Callable[[], object]] = []
        self.defer: Callable[[Callable[[], object]], None] = self._later.append

    @property
    def depth(self) -> int:
        """
        How many holds are open.
        """
        return len(self.holds)

    def release(self) -> None:
        holds = self.holds
        if len(holds) > 1:
            holds.pop()
            return
        # Deferred flushes may write (held too: the batch is still open).
        # One that fails must not cost the others their turn, nor other
        # connections their bytes.
        later = self._later
        if later:
            i = 0
            while i < len(later):
                call = later[i]
                i += 1
                try:
                    call()
                except Exception:
                    log.failure("deferred flush {call!r} failed", call=call)
            later.clear()
        if holds:
            holds.pop()
        held = self.held
        if held:
            self.held = defaultdict(list)
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
        if not self.holds:
            return False
        if call not in self._later:
            self._later.append(call)
        return True

    def run_now(self, call: Callable[[], object]) -> None:
        """
        Run C{call} now if it was deferred by L{later} or L{defer} (before
        writing something that must follow what it writes).
        """
        later = self._later
        if call in later:
            # (not removed: a release may be iterating over the list)
            later[later.index(call)] = _nothing
            call()

    def write(self, transport: Any, data: bytes) -> None:
        if not data:
            return
        if not self.holds:
            send_now(transport, data)
            return
        self.held[transport].append(data)

    def flush(self, transport: Any) -> None:
        """
        Send what is held for C{transport} now (before something that
        writes to it directly, e.g. twisted.web taking the connection over).
        """
        chunks = self.held.pop(transport, None)
        if chunks:
            send_now(transport, b"".join(chunks))


def _nothing() -> None:
    pass
