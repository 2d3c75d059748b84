"""
L{netbore.writes}: direct sends on plain TCP transports, batching per input
event.  The transports are real C{twisted.internet.tcp.Connection}s over an
in-process socket pair (never registered with the reactor, so only the
direct-send path moves bytes).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.internet import abstract, reactor, tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport

from netbore import writes
from netbore.writes import WriteBatch, direct_send_capable, send_now, twisted_write_path_known


@pytest.fixture
def pair() -> Iterator[tuple[tcp.Connection, socket.socket]]:
    ours, theirs = socket.socketpair()
    conn = tcp.Connection(ours, Protocol(), reactor)
    conn.connected = True
    theirs.setblocking(False)
    yield conn, theirs
    conn.stopWriting()
    ours.close()
    theirs.close()


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_send_now_sends_at_once(pair: tuple[tcp.Connection, socket.socket]) -> None:
    conn, peer = pair
    send_now(conn, b"HTTP/1.1 200 OK\r\n\r\n")
    # No reactor turn happened: the bytes are in the peer's socket already.
    assert _read_all(peer) == b"HTTP/1.1 200 OK\r\n\r\n"
    assert not conn.dataBuffer and not conn._tempDataLen


def test_send_now_queues_behind_buffered_bytes(pair: tuple[tcp.Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.write(b"first ")  # queued for the reactor's next turn
    send_now(conn, b"second")
    assert _read_all(peer) == b""  # nothing overtook the queued bytes
    conn.doWrite()
    assert _read_all(peer) == b"first second"


def test_send_now_queues_what_the_socket_does_not_take(pair: tuple[tcp.Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 4096  # 1 MiB: more than the socket buffers hold
    send_now(conn, data)
    queued = len(conn.dataBuffer) + conn._tempDataLen
    assert 0 < queued < len(data)
    received = _read_all(peer)
    while conn.dataBuffer or conn._tempDataLen:
        conn.doWrite()
        received += _read_all(peer)
    assert received == data


def test_send_now_writes_through_other_transports() -> None:
    transport = StringTransport()
    send_now(transport, b"abc")
    assert transport.value() == b"abc"


def test_send_now_after_lose_connection_keeps_order(pair: tuple[tcp.Connection, socket.socket]) -> None:
    conn, peer = pair
    conn.loseConnection()
    send_now(conn, b"last words")
    assert _read_all(peer) == b""  # left to the transport, which writes then closes
    assert conn._tempDataLen == len(b"last words")


def test_batch_holds_and_joins_per_transport() -> None:
    batch = WriteBatch()
    a, b = StringTransport(), StringTransport()
    batch.hold()
    batch.write(a, b"head ")
    batch.write(b, b"other")
    batch.write(a, b"body")
    batch.write(a, b"")
    assert a.value() == b"" and b.value() == b""
    batch.release()
    assert a.value() == b"head body" and b.value() == b"other"


def test_batch_nests_and_sends_at_the_outermost_release() -> None:
    batch = WriteBatch()
    t = StringTransport()
    batch.hold()
    batch.hold()
    batch.write(t, b"x")
    batch.release()
    assert t.value() == b""
    batch.release()
    assert t.value() == b"x"


def test_batch_writes_at_once_when_not_held(pair: tuple[tcp.Connection, socket.socket]) -> None:
    conn, peer = pair
    batch = WriteBatch()
    batch.write(conn, b"now")
    assert _read_all(peer) == b"now"


def test_batch_flush_sends_one_transport_early() -> None:
    batch = WriteBatch()
    a, b = StringTransport(), StringTransport()
    batch.hold()
    batch.write(a, b"a")
    batch.write(b, b"b")
    batch.flush(a)
    assert a.value() == b"a" and b.value() == b""
    batch.write(a, b"2")
    batch.release()
    assert a.value() == b"a2" and b.value() == b"b"


def test_a_failing_deferred_flush_costs_nothing_else() -> None:
    batch = WriteBatch()
    t = StringTransport()
    ran: list[str] = []

    def bad() -> None:
        raise RuntimeError("bug")

    batch.hold()
    batch.write(t, b"held")
    assert batch.later(bad)
    assert batch.later(lambda: ran.append("good"))
    batch.release()
    assert ran == ["good"]
    assert t.value() == b"held"
    assert batch.depth == 0


def test_later_without_a_batch_does_nothing_and_run_now_runs_once() -> None:
    batch = WriteBatch()
    ran: list[int] = []

    def call() -> None:
        ran.append(1)

    assert not batch.later(call)
    batch.hold()
    assert batch.later(call)
    assert batch.later(call)  # asked twice: runs once
    batch.run_now(call)
    batch.run_now(call)  # no longer pending: not run again
    batch.release()
    assert ran == [1]


# -- the capability check (one per transport class) ---------------------------


class _OwnWrite(tcp.Connection):
    """
    A TCP connection whose C{write} does something of its own.
    """

    written: list[bytes]

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_a_tcp_connection_with_its_own_write_is_written_through_it() -> None:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    conn = _OwnWrite(ours, Protocol(), reactor)
    conn.connected = True
    conn.written = []
    try:
        assert not direct_send_capable(_OwnWrite)
        send_now(conn, b"through write")
        assert conn.written == [b"through write"]
        assert _read_all(theirs) == b""
    finally:
        ours.close()
        theirs.close()


def test_a_twisted_whose_write_path_changed_is_written_through_transport_write(
    pair: tuple[tcp.Connection, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn, peer = pair
    # Twisted's write no longer reads what send_now reads: the check says
    # so, and send_now leaves every byte to transport.write.
    monkeypatch.setattr(abstract.FileDescriptor, "write", lambda self, data: self._tempDataBuffer.append(data))
    assert not twisted_write_path_known()
    monkeypatch.undo()
    assert twisted_write_path_known()
    monkeypatch.setattr(writes, "_TWISTED_KNOWN", False)
    monkeypatch.setattr(writes, "_DIRECT", {})
    send_now(conn, b"queued")
    assert _read_all(peer) == b""
    assert conn._tempDataLen == len(b"queued")


def test_the_installed_twisted_takes_the_direct_path() -> None:
    # Run against Twisted's newest release too (tox -e newest): a change
    # there shows here, not as a silent slowdown.
    assert twisted_write_path_known()
    assert direct_send_capable(tcp.Connection) and direct_send_capable(tcp.Server)
    assert not direct_send_capable(StringTransport)
