"""
Tests for L{netbore.agent.origin}: the origin connection pool, through the
forwarder, over L{StringTransport}s; no sockets.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock

from netbore.agent.forwarder import OriginForwarder
from netbore.agent.origin import OriginPool
from netbore.protocol.errors import ErrorCode

from .test_agent_forwarder import OK, FakeOrigin, RecordingSink


def make(**kw: object) -> tuple[OriginForwarder, FakeOrigin, MemoryReactorClock]:
    clock = MemoryReactorClock()
    origin = FakeOrigin()
    pool = OriginPool(origin, clock, **kw)  # type: ignore[arg-type]
    return OriginForwarder(clock, "http://127.0.0.1:3000", pool=pool), origin, clock


def get(fwd: OriginForwarder, sink: RecordingSink, stream_id: int, method: bytes = b"GET") -> None:
    fwd.forward(sink, stream_id, method, b"/", [(b"Host", b"h")], True)


def test_connections_are_registered_producers() -> None:
    fwd, origin, _ = make()
    get(fwd, RecordingSink(), 1)
    attempt = origin.accept()
    assert attempt.transport.producer is attempt.protocol and attempt.transport.streaming


def test_idle_connections_are_bounded() -> None:
    fwd, origin, _ = make(max_idle=2)
    sink = RecordingSink()
    for sid in (1, 3, 5):
        get(fwd, sink, sid)
    for attempt in origin.attempts:
        attempt.accept().respond(OK)
    assert fwd.pool.idle == 2
    assert [a.transport.disconnecting for a in origin.attempts] == [False, False, True]


def test_a_few_hundred_concurrent_requests_keep_their_connections() -> None:
    # c=200 through the tunnel: every origin connection stays for the next
    # request (with 64 kept, 136 were closed and reopened each round).
    fwd, origin, _ = make()
    sink = RecordingSink()
    for sid in range(1, 401, 2):
        get(fwd, sink, sid)
    for attempt in origin.attempts:
        attempt.accept().respond(OK)
    assert fwd.pool.idle == 200
    assert not any(a.transport.disconnecting for a in origin.attempts)


def test_stale_idle_connection_is_not_reused() -> None:
    fwd, origin, clock = make(idle_timeout=4.0)
    sink = RecordingSink()
    get(fwd, sink, 1)
    first = origin.accept()
    first.respond(OK)
    clock.advance(5)
    get(fwd, sink, 3)
    assert len(origin.attempts) == 2
    assert first.transport.disconnecting


def test_connection_close_is_not_reused() -> None:
    fwd, origin, _ = make()
    sink = RecordingSink()
    get(fwd, sink, 1)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    assert fwd.pool.idle == 0 and attempt.transport.disconnecting
    assert sink.body == b"ok" and sink.finished == [1]


def test_idle_connection_closed_by_origin_leaves_the_pool() -> None:
    fwd, origin, _ = make()
    get(fwd, RecordingSink(), 1)
    attempt = origin.accept()
    attempt.respond(OK)
    assert fwd.pool.idle == 1
    attempt.close()
    assert fwd.pool.idle == 0


def test_unsolicited_bytes_on_idle_connection_close_it() -> None:
    fwd, origin, _ = make()
    get(fwd, RecordingSink(), 1)
    attempt = origin.accept()
    attempt.respond(OK)
    attempt.respond(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert attempt.transport.disconnecting


def test_retry_happens_once() -> None:
    fwd, origin, _ = make()
    sink = RecordingSink()
    get(fwd, sink, 1)
    first = origin.accept()
    first.respond(OK)
    get(fwd, sink, 3, method=b"HEAD")
    first.close(ConnectionLost())
    second = origin.accept()
    assert second.head()[0] == b"HEAD / HTTP/1.1"
    second.close(ConnectionLost())
    assert len(origin.attempts) == 2
    assert [r[:2] for r in sink.resets] == [(3, ErrorCode.ORIGIN_RESET)]


def test_non_idempotent_request_is_not_retried() -> None:
    fwd, origin, _ = make()
    sink = RecordingSink()
    get(fwd, sink, 1)
    first = origin.accept()
    first.respond(OK)
    get(fwd, sink, 3, method=b"POST")
    first.close(ConnectionLost())
    assert len(origin.attempts) == 1
    assert [r[:2] for r in sink.resets] == [(3, ErrorCode.ORIGIN_RESET)]


def test_close_closes_idle_connections() -> None:
    fwd, origin, _ = make()
    get(fwd, RecordingSink(), 1)
    attempt = origin.accept()
    attempt.respond(OK)
    fired: list[object] = []
    fwd.close().addCallback(fired.append)
    assert attempt.transport.disconnecting and fired == []
    attempt.close()
    assert fired == [None]
