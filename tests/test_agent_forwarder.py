"""
Unit tests for L{netbore.agent.forwarder}: the real L{OriginPool} and
connections over L{StringTransport}s from a fake origin endpoint, and a
recording stream sink; no sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from netbore.agent.forwarder import OriginForwarder, OriginStream
from netbore.agent.origin import OriginPool
from netbore.protocol.errors import ErrorCode


class RecordingSink:
    """
    A L{StreamSink} that records what the forwarder sends, with a window
    the test controls.
    """

    def __init__(self, window: int = 1 << 20, max_payload: int = 1 << 16) -> None:
        self.window = window
        self.max_payload = max_payload
        self.heads: list[tuple[int, int, bytes, list[tuple[bytes, bytes]], bool]] = []
        self.data: list[tuple[int, bytes, bool]] = []
        self.ends: list[int] = []
        self.resets: list[tuple[int, int, bytes]] = []
        self.acks: list[tuple[int, int]] = []
        self.finished: list[int] = []

    def send_response_head(
        self,
        stream_id: int,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool = False,
    ) -> None:
        self.heads.append((stream_id, status, reason, headers, end_stream))
        if end_stream:
            self._forget(stream_id)

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        assert len(data) <= self.max_payload
        n = min(len(data), self.window)
        if n < len(data):
            if not n:
                return 0
            data, end_stream = data[:n], False
        self.window -= n
        self.data.append((stream_id, data, end_stream))
        if end_stream:
            self._forget(stream_id)
        return n

    def send_end(self, stream_id: int) -> None:
        self.ends.append(stream_id)
        self._forget(stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        self.resets.append((stream_id, code, message))
        self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        # The stream's last frame went out: the sink forgets it (once).
        if stream_id not in self.finished:
            self.finished.append(stream_id)

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acks.append((stream_id, n))

    def send_window(self, stream_id: int) -> int:
        return self.window

    def max_data_payload(self) -> int:
        return self.max_payload

    def stream_finished(self, stream_id: int) -> None:
        self._forget(stream_id)

    @property
    def body(self) -> bytes:
        return b"".join(d for _, d, _ in self.data)

    @property
    def acked(self) -> int:
        return sum(n for _, n in self.acks)

    @property
    def ended(self) -> bool:
        return bool(self.ends) or any(end for _, _, end in self.data) or any(h[4] for h in self.heads)


class OriginTransport(StringTransport):
    """
    A StringTransport that records C{TCP_NODELAY}.
    """

    nodelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    @property
    def paused(self) -> bool:
        return self.producerState == "paused"

    @property
    def aborted(self) -> bool:
        return bool(self.disconnected)


class Attempt:
    """
    One connection attempt the forwarder made to the fake origin.
    """

    def __init__(self, factory: Factory) -> None:
        self.factory = factory
        self.cancelled = False
        self.deferred: Deferred[Protocol] = Deferred(self._cancel)
        self.protocol: Any = None
        self.transport = OriginTransport()

    def _cancel(self, d: Deferred[Protocol]) -> None:
        self.cancelled = True

    def accept(self) -> Attempt:
        self.protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 3000))
        self.protocol.makeConnection(self.transport)
        self.deferred.callback(self.protocol)
        return self

    def refuse(self, exc: Exception) -> None:
        self.deferred.errback(Failure(exc))

    @property
    def sent(self) -> bytes:
        return self.transport.value()

    def head(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """
        The request line and header fields written so far.
        """
        raw = self.sent.split(b"\r\n\r\n", 1)[0]
        line, *fields = raw.split(b"\r\n")
        return line, [(n, v) for n, _, v in (f.partition(b": ") for f in fields)]

    def body(self) -> bytes:
        return self.sent.split(b"\r\n\r\n", 1)[1]

    def respond(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def close(self, reason: Exception | None = None) -> None:
        self.transport.loseConnection()
        self.protocol.connectionLost(Failure(reason if reason is not None else ConnectionDone()))


class FakeOrigin:
    """
    An IStreamClientEndpoint whose connections the test completes.
    """

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def connect(self, factory: Factory) -> Deferred[Protocol]:
        attempt = Attempt(factory)
        self.attempts.append(attempt)
        return attempt.deferred

    def accept(self, index: int = -1) -> Attempt:
        return self.attempts[index].accept()


def make(
    host_header: str | None = None, origin: str = "http://127.0.0.1:3000", **kw: Any
) -> tuple[OriginForwarder, FakeOrigin]:
    clock = MemoryReactorClock()
    fake = FakeOrigin()
    pool = OriginPool(fake, clock, **kw)
    return OriginForwarder(clock, origin, host_header=host_header, pool=pool), fake


HEAD = [
    (b"Host", b"app.tunnel.example"),
    (b"Connection", b"keep-alive, X-Hop"),
    (b"X-Hop", b"1"),
    (b"Keep-Alive", b"timeout=5"),
    (b"X-Forwarded-For", b"192.0.2.1"),
    (b"Accept", b"*/*"),
]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def start(
    fwd: OriginForwarder,
    sink: RecordingSink,
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    end_stream: bool = True,
    stream_id: int = 1,
) -> OriginStream:
    return fwd.forward(sink, stream_id, method, target, HEAD if headers is None else headers, end_stream)


# Request side.


def test_request_line_has_the_exact_target() -> None:
    fwd, origin = make()
    target = b"/a%2Fb/caf%C3%A9;p?q=%20x&r=a+b&s=%zz&"
    start(fwd, RecordingSink(), target=target)
    line, _ = origin.accept().head()
    assert line == b"GET " + target + b" HTTP/1.1"


def test_request_head_is_one_write_with_nodelay() -> None:
    fwd, origin = make()
    start(fwd, RecordingSink())
    attempt = origin.accept()
    assert attempt.transport.nodelay
    assert attempt.sent.endswith(b"\r\n\r\n")
    assert attempt.sent.count(b"\r\n\r\n") == 1


def test_request_headers_drop_hop_by_hop_and_keep_host_and_forwarded() -> None:
    fwd, origin = make()
    start(fwd, RecordingSink())
    _, fields = origin.accept().head()
    assert fields == [
        (b"Host", b"app.tunnel.example"),
        (b"X-Forwarded-For", b"192.0.2.1"),
        (b"Accept", b"*/*"),
    ]


@pytest.mark.parametrize(
    "host_header, expected",
    [("rewrite", b"127.0.0.1:3000"), ("internal.local", b"internal.local")],
)
def test_host_header_rewritten(host_header: str, expected: bytes) -> None:
    fwd, origin = make(host_header)
    start(fwd, RecordingSink())
    _, fields = origin.accept().head()
    assert [v for n, v in fields if n.lower() == b"host"] == [expected]


def test_missing_host_gets_one() -> None:
    fwd, origin = make()
    start(fwd, RecordingSink(), headers=[(b"Accept", b"*/*")])
    line, fields = origin.accept().head()
    assert fields == [(b"Host", b"127.0.0.1:3000"), (b"Accept", b"*/*")]


def test_origin_with_path_is_refused() -> None:
    with pytest.raises(ValueError):
        OriginForwarder(MemoryReactorClock(), "http://127.0.0.1:3000/app")
    with pytest.raises(ValueError):
        OriginForwarder(MemoryReactorClock(), "ftp://127.0.0.1")


@pytest.mark.parametrize("method", [b"POST", b"PATCH", b"PUT"])
def test_bodiless_post_says_content_length_zero(method: bytes) -> None:
    fwd, origin = make()
    start(fwd, RecordingSink(), method=method, headers=[(b"Host", b"h"), (b"Content-Length", b"0")])
    start(fwd, RecordingSink(), method=method, headers=[(b"Host", b"h")], stream_id=3)
    for attempt in origin.attempts:
        attempt.accept()
        _, fields = attempt.head()
        assert [v for n, v in fields if n.lower() == b"content-length"] == [b"0"]
        assert b"transfer-encoding" not in [n.lower() for n, _ in fields]
        assert attempt.body() == b""


def test_get_without_body_has_no_framing_headers() -> None:
    fwd, origin = make()
    start(fwd, RecordingSink())
    _, fields = origin.accept().head()
    names = [n.lower() for n, _ in fields]
    assert b"content-length" not in names and b"transfer-encoding" not in names


@pytest.mark.parametrize("target", [b"*", b"http://x/", b"/a b", b""])
def test_unsupported_target_is_refused(target: bytes) -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink, method=b"OPTIONS", target=target)
    assert origin.attempts == []
    assert sink.resets[0][:2] == (1, ErrorCode.REFUSED_STREAM)
    assert sink.finished == [1]


def test_request_body_streams_under_flow_control() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"9")], end_stream=False)
    # Data before the origin connection takes it is held, not acknowledged.
    stream.data_received(b"abc")
    assert sink.acked == 0
    assert stream.buffered_bytes == 3

    attempt = origin.accept()
    _, fields = attempt.head()
    assert (b"Content-Length", b"9") in fields
    assert attempt.body() == b"abc"
    assert sink.acked == 3

    # The origin connection is full: hold and do not acknowledge.
    attempt.protocol.pauseProducing()
    stream.data_received(b"def")
    assert attempt.body() == b"abc"
    assert sink.acked == 3

    attempt.protocol.resumeProducing()
    assert attempt.body() == b"abcdef"
    assert sink.acked == 6

    stream.data_received(b"ghi", end_stream=True)
    assert attempt.body() == b"abcdefghi"
    assert sink.acked == 9
    assert stream.buffered_bytes == 0


def test_request_body_of_unknown_length_is_chunked() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"PUT", headers=[(b"Host", b"h")], end_stream=False)
    attempt = origin.accept()
    _, fields = attempt.head()
    assert (b"Transfer-Encoding", b"chunked") in fields
    stream.data_received(b"x" * 10)
    stream.data_received(b"y" * 300)
    assert attempt.body() == b"A\r\n" + b"x" * 10 + b"\r\n12C\r\n" + b"y" * 300 + b"\r\n"
    stream.end_received()
    assert attempt.body().endswith(b"\r\n0\r\n\r\n")
    assert sink.acked == 310


def test_declared_length_ends_body_without_end_frame() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"3")], end_stream=False)
    attempt = origin.accept()
    stream.data_received(b"abc")
    attempt.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert sink.resets == []
    assert sink.finished == [1]
    # The request was complete: the connection is kept.
    assert fwd.pool.idle == 1


def test_body_longer_than_declared_is_refused() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"3")], end_stream=False)
    attempt = origin.accept()
    stream.data_received(b"abcd")
    assert sink.resets[0][1] == ErrorCode.PROTOCOL_ERROR
    assert sink.acked == 4
    assert attempt.transport.aborted


def test_bad_method_resets_instead_of_raising() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    fwd.forward(sink, 1, b"G ET", b"/", [], True)
    assert sink.resets[0][:2] == (1, ErrorCode.INTERNAL_ERROR)
    assert sink.finished == [1]
    assert origin.attempts == []


# Response side.


def test_response_head_headers_and_content_length() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.accept().respond(
        b"HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: b=2\r\n"
        b"X-Thing: t\r\nSet-Cookie: c=3\r\nContent-Length: 5\r\n\r\n"
    )
    ((sid, status, reason, headers, end),) = sink.heads
    assert (sid, status, reason, end) == (1, 201, b"Created", False)
    assert headers == [
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"X-Thing", b"t"),
        (b"Set-Cookie", b"c=3"),
        (b"Content-Length", b"5"),
    ]


def test_response_fields_named_in_connection_are_removed() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.accept().respond(
        b"HTTP/1.1 200 OK\r\nConnection: X-Origin-Hop, keep-alive\r\nX-Origin-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nX-End-To-End: kept\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert sink.heads[0][3] == [(b"X-End-To-End", b"kept")]
    assert sink.body == b"abc"
    assert sink.ended


@pytest.mark.parametrize(
    "method, response, length",
    [
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", [b"1234"]),
        (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", []),
        (b"GET", b"HTTP/1.1 304 Not Modified\r\n\r\n", []),
        (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", [b"0"]),
    ],
)
def test_bodiless_responses_end_with_the_head(method: bytes, response: bytes, length: list[bytes]) -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink, method=method)
    origin.accept().respond(response)
    (head,) = sink.heads
    assert head[4] is True
    assert [v for n, v in head[3] if n.lower() == b"content-length"] == length
    assert sink.data == [] and sink.ends == []
    assert sink.finished == [1]
    assert fwd.pool.idle == 1


def test_interim_responses_are_dropped() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.accept().respond(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
    assert [h[1] for h in sink.heads] == [200]
    assert sink.data == [(1, b"hello", True)]


def test_small_response_is_head_then_data_with_end() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.accept().respond(OK)
    assert sink.data == [(1, b"hello", True)]
    assert sink.ends == [] and sink.finished == [1]


def test_response_body_follows_window_and_pauses_origin() -> None:
    fwd, origin = make()
    sink = RecordingSink(window=10, max_payload=4)
    stream = start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n")
    # Split by max payload, stopped at the window, the rest kept.
    assert [d for _, d, _ in sink.data] == [b"0123", b"4567", b"89"]
    assert attempt.transport.paused
    assert stream.buffered_bytes == 6

    sink.window = 3
    stream.window_opened()
    assert sink.body == b"0123456789abc"
    assert attempt.transport.paused

    sink.window = 100
    stream.window_opened()
    assert sink.body == b"0123456789abcdef"
    assert not attempt.transport.paused

    attempt.respond(b"0\r\n\r\n")
    assert sink.ends == [1]
    assert sink.finished == [1]


def test_last_data_carries_end_when_body_completes_while_blocked() -> None:
    fwd, origin = make()
    sink = RecordingSink(window=2)
    stream = start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
    assert sink.finished == []
    # The response is complete: the connection is back in the pool,
    # reading again, though the last bytes wait for the window.
    assert fwd.pool.idle == 1 and not attempt.transport.paused
    sink.window = 10
    stream.window_opened()
    assert sink.data[-1] == (1, b"cd", True)
    assert sink.ends == []
    assert sink.finished == [1]


def test_close_delimited_body_ends_normally() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\n\r\nall")
    attempt.close()
    assert sink.body == b"all"
    assert sink.ends == [1]
    assert sink.resets == []


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart",
    ],
)
def test_origin_closing_mid_body_resets_origin_reset(response: bytes) -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(response)
    attempt.close(ConnectionLost())
    assert [r[:2] for r in sink.resets] == [(1, ErrorCode.ORIGIN_RESET)]
    assert sink.ends == []
    assert sink.finished == [1]


def test_malformed_response_resets_origin_reset() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    assert [r[:2] for r in sink.resets] == [(1, ErrorCode.ORIGIN_RESET)]
    assert attempt.transport.aborted


@pytest.mark.parametrize("exc", [ConnectionRefusedError(), DNSLookupError("nope"), TimeoutError()])
def test_origin_unreachable(exc: Exception) -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.attempts[0].refuse(exc)
    ((sid, code, message),) = sink.resets
    assert (sid, code) == (1, ErrorCode.ORIGIN_UNREACHABLE)
    assert 0 < len(message) <= 200
    assert sink.heads == []
    assert sink.finished == [1]


def test_origin_closing_before_head_resets_origin_reset() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    origin.accept().close()
    assert sink.resets[0][1] == ErrorCode.ORIGIN_RESET


def test_edge_reset_while_connecting_cancels_the_connection() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    stream.reset_received(ErrorCode.CANCEL)
    assert origin.attempts[0].cancelled
    assert sink.resets == [] and sink.heads == []
    assert sink.finished == [1]
    # Late data delivered for the reset stream is thrown away, and its
    # credit given back (the session charges it until acknowledged).
    stream.data_received(b"late")
    assert sink.acks == [(1, 4)]


def test_edge_reset_mid_body_aborts_origin_connection() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
    stream.reset_received(ErrorCode.CANCEL)
    assert attempt.transport.aborted
    attempt.close(ConnectionLost())
    assert sink.resets == []
    assert sink.ends == []
    assert fwd.pool.idle == 0


def test_abort_stops_everything_silently() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    attempt = origin.accept()
    stream.abort()
    assert attempt.transport.aborted
    assert sink.resets == []


def test_tunnel_backpressure_pauses_origin_reads() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    stream.pause_sending()
    assert attempt.transport.paused
    attempt.respond(b"held")
    assert sink.data == []
    stream.resume_sending()
    assert sink.body == b"held"
    assert not attempt.transport.paused


def test_tunnel_backpressure_before_the_response_head_is_lifted() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    attempt = origin.accept()
    stream.pause_sending()
    assert attempt.transport.paused
    stream.resume_sending()
    assert not attempt.transport.paused
    attempt.respond(OK)
    assert sink.body == b"hello" and sink.finished == [1]


def test_early_response_while_uploading_resets_no_error() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    attempt = origin.accept()
    stream.data_received(b"some")
    attempt.respond(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert sink.heads[0][1] == 413
    assert [r[:2] for r in sink.resets] == [(1, ErrorCode.NO_ERROR)]
    assert sink.finished == [1]
    # The request was cut short: that connection cannot be reused.
    assert attempt.transport.aborted and fwd.pool.idle == 0
    stream.data_received(b"more")
    assert sink.acked == 8


def test_bytes_held_for_origin_are_acknowledged_when_dropped() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    stream.data_received(b"held-before-connect")
    assert sink.acked == 0
    stream.reset_received(ErrorCode.CANCEL)
    assert sink.acked == len(b"held-before-connect")
    assert sink.resets == []


def test_bytes_held_while_origin_paused_are_acknowledged_on_unreachable() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    stream.data_received(b"abc")
    origin.attempts[0].refuse(ConnectionRefusedError())
    assert sink.acked == 3
    assert sink.resets[0][1] == ErrorCode.ORIGIN_UNREACHABLE


# Connection reuse through the forwarder.


def test_keep_alive_connection_is_reused() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    attempt = origin.accept()
    attempt.respond(OK)
    attempt.transport.clear()
    start(fwd, sink, stream_id=3)
    assert len(origin.attempts) == 1
    assert attempt.head()[0] == b"GET / HTTP/1.1"
    attempt.respond(OK)
    assert sink.body == b"hellohello"
    assert sink.finished == [1, 3]


def test_stale_connection_is_retried_once_for_a_get() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    first = origin.accept()
    first.respond(OK)
    start(fwd, sink, stream_id=3, target=b"/again")
    # The origin had closed it: retried on a fresh connection.
    first.close()
    assert len(origin.attempts) == 2
    second = origin.accept()
    assert second.head()[0] == b"GET /again HTTP/1.1"
    second.respond(OK)
    assert sink.resets == [] and sink.finished == [1, 3]


def test_stale_connection_is_not_retried_for_a_post_with_body() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    start(fwd, sink)
    first = origin.accept()
    first.respond(OK)
    stream = start(
        fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"2")], end_stream=False, stream_id=3
    )
    stream.data_received(b"hi", end_stream=True)
    first.close()
    assert len(origin.attempts) == 1
    assert [r[:2] for r in sink.resets] == [(3, ErrorCode.ORIGIN_RESET)]
