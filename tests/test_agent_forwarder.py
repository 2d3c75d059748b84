"""
Unit tests for L{netbore.agent.forwarder}: a fake L{IAgent} and a recording
stream sink, no sockets.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from netbore.agent.forwarder import OriginForwarder, OriginStream
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

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        assert len(data) <= self.window
        assert len(data) <= self.max_payload
        self.window -= len(data)
        self.data.append((stream_id, data, end_stream))

    def send_end(self, stream_id: int) -> None:
        self.ends.append(stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCode, message: bytes = b"") -> None:
        self.resets.append((stream_id, code, message))

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acks.append((stream_id, n))

    def send_window(self, stream_id: int) -> int:
        return self.window

    def max_data_payload(self) -> int:
        return self.max_payload

    def stream_finished(self, stream_id: int) -> None:
        self.finished.append(stream_id)

    @property
    def body(self) -> bytes:
        return b"".join(d for _, d, _ in self.data)

    @property
    def acked(self) -> int:
        return sum(n for _, n in self.acks)


class FakeTransport:
    """
    The producer a response body protocol gets from Twisted.
    """

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True


class FakeResponse:
    def __init__(
        self,
        code: int = 200,
        phrase: bytes = b"OK",
        headers: list[tuple[bytes, bytes]] | None = None,
        length: int | object = UNKNOWN_LENGTH,
    ) -> None:
        self.code = code
        self.phrase = phrase
        self.headers = Headers()
        for name, value in headers or []:
            self.headers.addRawHeader(name, value)
        self.length = length
        self.protocol: Protocol | None = None
        self.transport = FakeTransport()

    def deliverBody(self, protocol: Protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)  # type: ignore[arg-type]


class TwistedLikeResponse(FakeResponse):
    """
    Like Twisted's Response: bytes read with the head are handed over
    inside deliverBody, which then resumes the transport.
    """

    def __init__(self, buffered: bytes, **kw: Any) -> None:
        super().__init__(**kw)
        self.buffered = buffered

    def deliverBody(self, protocol: Protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)  # type: ignore[arg-type]
        protocol.dataReceived(self.buffered)
        self.transport.resumeProducing()


class FakeRequest:
    def __init__(
        self, method: bytes, uri: bytes, headers: Headers | None, body: Any
    ) -> None:
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.cancelled = False
        self.deferred: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[Any]) -> None:
        self.cancelled = True

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        assert self.headers is not None
        return [
            (name.lower(), value)
            for name, values in self.headers.getAllRawHeaders()
            for value in values
        ]


class FakeAgent:
    def __init__(self) -> None:
        self.requests: list[FakeRequest] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,
    ) -> Deferred[Any]:
        req = FakeRequest(method, uri, headers, bodyProducer)
        self.requests.append(req)
        return req.deferred


class Consumer:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def make(
    host_header: str | None = None, origin: str = "http://127.0.0.1:3000"
) -> tuple[OriginForwarder, FakeAgent]:
    agent = FakeAgent()
    return (
        OriginForwarder(MemoryReactorClock(), origin, host_header=host_header, agent=agent),
        agent,
    )


HEAD = [
    (b"Host", b"app.tunnel.example"),
    (b"Connection", b"keep-alive, X-Hop"),
    (b"X-Hop", b"1"),
    (b"Keep-Alive", b"timeout=5"),
    (b"X-Forwarded-For", b"192.0.2.1"),
    (b"Accept", b"*/*"),
]


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


def test_request_uri_is_origin_plus_exact_target() -> None:
    fwd, agent = make()
    target = b"/a%2Fb/caf%C3%A9;p?q=%20x&r=a+b&s=%zz&"
    start(fwd, RecordingSink(), target=target)
    (req,) = agent.requests
    assert req.method == b"GET"
    assert req.uri == b"http://127.0.0.1:3000" + target
    assert req.body is None


def test_request_headers_drop_hop_by_hop_and_keep_host_and_forwarded() -> None:
    fwd, agent = make()
    start(fwd, RecordingSink())
    assert agent.requests[0].raw_headers() == [
        (b"host", b"app.tunnel.example"),
        (b"x-forwarded-for", b"192.0.2.1"),
        (b"accept", b"*/*"),
    ]


@pytest.mark.parametrize(
    "host_header, expected",
    [("rewrite", b"127.0.0.1:3000"), ("internal.local", b"internal.local")],
)
def test_host_header_rewritten(host_header: str, expected: bytes) -> None:
    fwd, agent = make(host_header)
    start(fwd, RecordingSink())
    assert (b"host", expected) in agent.requests[0].raw_headers()
    assert [n for n, _ in agent.requests[0].raw_headers()].count(b"host") == 1


def test_origin_with_path_is_refused() -> None:
    with pytest.raises(ValueError):
        OriginForwarder(MemoryReactorClock(), "http://127.0.0.1:3000/app", agent=FakeAgent())
    with pytest.raises(ValueError):
        OriginForwarder(MemoryReactorClock(), "ftp://127.0.0.1", agent=FakeAgent())


def test_post_with_content_length_zero_gets_empty_body() -> None:
    fwd, agent = make()
    start(fwd, RecordingSink(), method=b"PATCH", headers=[(b"Host", b"h"), (b"Content-Length", b"0")])
    (req,) = agent.requests
    assert req.body is not None and req.body.length == 0
    # Agent writes Content-Length itself; it must not be there twice.
    assert b"content-length" not in [n for n, _ in req.raw_headers()]


def test_unsupported_target_is_refused() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink, method=b"OPTIONS", target=b"*")
    assert agent.requests == []
    assert sink.resets[0][:2] == (1, ErrorCode.REFUSED_STREAM)
    assert sink.finished == [1]


def test_request_body_streams_under_flow_control() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(
        fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"9")], end_stream=False
    )
    producer = agent.requests[0].body
    assert producer.length == 9

    # Data before the origin connection takes it is held, not acknowledged.
    stream.data_received(b"abc")
    assert sink.acked == 0
    assert stream.buffered_bytes == 3

    consumer = Consumer()
    done = producer.startProducing(consumer)
    assert consumer.written == [b"abc"]
    assert sink.acked == 3

    # The origin connection is full: hold and do not acknowledge.
    producer.pauseProducing()
    stream.data_received(b"def")
    assert consumer.written == [b"abc"]
    assert sink.acked == 3

    producer.resumeProducing()
    assert consumer.written == [b"abc", b"def"]
    assert sink.acked == 6

    results: list[object] = []
    done.addCallback(results.append)
    stream.data_received(b"ghi", end_stream=True)
    assert b"".join(consumer.written) == b"abcdefghi"
    assert results == [None]


def test_request_body_of_unknown_length_ends_on_end_frame() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"PUT", headers=[(b"Host", b"h")], end_stream=False)
    producer = agent.requests[0].body
    assert producer.length is UNKNOWN_LENGTH
    consumer = Consumer()
    results: list[object] = []
    producer.startProducing(consumer).addCallback(results.append)
    stream.data_received(b"x" * 10)
    assert results == []
    stream.end_received()
    assert results == [None]


# Response side.


def test_response_head_headers_and_content_length() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink)
    response = FakeResponse(
        201,
        b"Created",
        [
            (b"Set-Cookie", b"a=1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Set-Cookie", b"b=2"),
            (b"X-Thing", b"t"),
            (b"Set-Cookie", b"c=3"),
        ],
        length=5,
    )
    agent.requests[0].deferred.callback(response)
    ((sid, status, reason, headers, end),) = sink.heads
    assert (sid, status, reason, end) == (1, 201, b"Created", False)
    lowered = [(n.lower(), v) for n, v in headers]
    assert [v for n, v in lowered if n == b"set-cookie"] == [b"a=1", b"b=2", b"c=3"]
    assert (b"content-length", b"5") in lowered
    assert b"keep-alive" not in [n for n, _ in lowered]


@pytest.mark.parametrize(
    "method, status, length",
    [(b"HEAD", 200, 0), (b"GET", 204, 0), (b"GET", 304, 0), (b"GET", 200, 0)],
)
def test_bodiless_responses_end_with_the_head(method: bytes, status: int, length: int) -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink, method=method)
    headers = [(b"Content-Length", b"1234")] if method == b"HEAD" else []
    agent.requests[0].deferred.callback(FakeResponse(status, b"X", headers, length=length))
    (head,) = sink.heads
    assert head[4] is True
    cls = [v for n, v in head[3] if n.lower() == b"content-length"]
    if method == b"HEAD":
        assert cls == [b"1234"]
    elif status in (204, 304):
        assert cls == []
    else:
        assert cls == [b"0"]
    assert sink.data == [] and sink.ends == []
    assert sink.finished == [1]


def test_response_body_follows_window_and_pauses_origin() -> None:
    fwd, agent = make()
    sink = RecordingSink(window=10, max_payload=4)
    stream = start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None

    response.protocol.dataReceived(b"0123456789abcdef")
    # Split by max payload, stopped at the window, the rest kept.
    assert [d for _, d, _ in sink.data] == [b"0123", b"4567", b"89"]
    assert response.transport.paused
    assert stream.buffered_bytes == 6

    sink.window = 3
    stream.window_opened()
    assert sink.body == b"0123456789abc"
    assert response.transport.paused

    sink.window = 100
    stream.window_opened()
    assert sink.body == b"0123456789abcdef"
    assert not response.transport.paused

    response.protocol.connectionLost(Failure(ResponseDone()))
    assert sink.ends == [1]
    assert sink.finished == [1]


def test_last_data_carries_end_when_body_completes_while_blocked() -> None:
    fwd, agent = make()
    sink = RecordingSink(window=2)
    stream = start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None
    response.protocol.dataReceived(b"abcd")
    response.protocol.connectionLost(Failure(ResponseDone()))
    assert sink.finished == []
    sink.window = 10
    stream.window_opened()
    assert sink.data[-1] == (1, b"cd", True)
    assert sink.ends == []
    assert sink.finished == [1]


def test_close_delimited_body_ends_normally() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None
    response.protocol.dataReceived(b"all")
    response.protocol.connectionLost(Failure(PotentialDataLoss()))
    assert sink.body == b"all"
    assert sink.ends == [1]
    assert sink.resets == []


def test_origin_failure_mid_body_resets_origin_reset() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None
    response.protocol.dataReceived(b"part")
    response.protocol.connectionLost(Failure(ResponseFailed([Failure(Exception("boom"))])))
    assert [r[:2] for r in sink.resets] == [(1, ErrorCode.ORIGIN_RESET)]
    assert sink.ends == []
    assert sink.finished == [1]


@pytest.mark.parametrize(
    "exc", [ConnectionRefusedError(), DNSLookupError("nope"), TimeoutError()]
)
def test_origin_unreachable(exc: Exception) -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink)
    agent.requests[0].deferred.errback(Failure(exc))
    ((sid, code, message),) = sink.resets
    assert (sid, code) == (1, ErrorCode.ORIGIN_UNREACHABLE)
    assert 0 < len(message) <= 200
    assert sink.heads == []
    assert sink.finished == [1]


def test_origin_closing_before_head_resets_origin_reset() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    start(fwd, sink)
    agent.requests[0].deferred.errback(Failure(ResponseFailed([Failure(Exception("x"))])))
    assert sink.resets[0][1] == ErrorCode.ORIGIN_RESET


def test_edge_reset_before_head_cancels_request() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    stream.reset_received(ErrorCode.CANCEL)
    req = agent.requests[0]
    assert req.cancelled
    # Agent errbacks the cancelled request; nothing goes back to the edge.
    assert sink.resets == [] and sink.heads == []
    assert sink.finished == [1]
    # Late data delivered for the reset stream is thrown away, and its
    # credit given back (the session charges it until acknowledged).
    stream.data_received(b"late")
    assert sink.acks == [(1, 4)]


def test_edge_reset_mid_body_stops_origin_transport() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None
    response.protocol.dataReceived(b"some")
    stream.reset_received(ErrorCode.CANCEL)
    assert response.transport.stopped
    response.protocol.connectionLost(Failure(ResponseFailed([Failure(CancelledError())])))
    assert sink.resets == []
    assert sink.ends == []


def test_abort_stops_everything_silently() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    stream.abort()
    assert response.transport.stopped
    assert sink.resets == []


def test_tunnel_backpressure_pauses_origin_reads() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    response = FakeResponse()
    agent.requests[0].deferred.callback(response)
    assert response.protocol is not None
    stream.pause_sending()
    assert response.transport.paused
    response.protocol.dataReceived(b"held")
    assert sink.data == []
    stream.resume_sending()
    assert sink.body == b"held"
    assert not response.transport.paused


def test_early_response_while_uploading_resets_no_error() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    producer = agent.requests[0].body
    done = producer.startProducing(Consumer())
    failures: list[Failure] = []
    done.addErrback(failures.append)
    agent.requests[0].deferred.callback(FakeResponse(413, b"Too Large", length=0))
    assert sink.heads[0][1] == 413
    assert [r[:2] for r in sink.resets] == [(1, ErrorCode.NO_ERROR)]
    assert len(failures) == 1
    assert sink.finished == [1]
    stream.data_received(b"more")
    assert sink.acks == [(1, 4)]


def test_bytes_held_for_origin_are_acknowledged_when_dropped() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    stream.data_received(b"held-before-connect")
    assert sink.acked == 0
    stream.reset_received(ErrorCode.CANCEL)
    assert sink.acked == len(b"held-before-connect")
    assert sink.resets == []


def test_declared_length_ends_body_without_end_frame() -> None:
    fwd, agent = make()
    sink = RecordingSink()
    stream = start(
        fwd, sink, method=b"POST", headers=[(b"Host", b"h"), (b"Content-Length", b"3")], end_stream=False
    )
    results: list[object] = []
    agent.requests[0].body.startProducing(Consumer()).addCallback(results.append)
    stream.data_received(b"abc")
    assert results == [None]
    agent.requests[0].deferred.callback(FakeResponse(200, b"OK", length=0))
    assert sink.resets == []


def test_pause_survives_twisted_resuming_after_deliver_body() -> None:
    fwd, agent = make()
    sink = RecordingSink(window=0)
    stream = start(fwd, sink)
    response = TwistedLikeResponse(b"read-with-the-head")
    agent.requests[0].deferred.callback(response)
    assert response.transport.paused
    assert stream.buffered_bytes == len(b"read-with-the-head")


def test_unsendable_request_resets_instead_of_raising() -> None:
    class RaisingAgent(FakeAgent):
        def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred[Any]:
            raise ValueError("Invalid method")

    sink = RecordingSink()
    fwd = OriginForwarder(MemoryReactorClock(), "http://127.0.0.1:3000", agent=RaisingAgent())
    fwd.forward(sink, 1, b"G ET", b"/", [], True)
    assert sink.resets[0][:2] == (1, ErrorCode.INTERNAL_ERROR)
    assert sink.finished == [1]
