"""
The edge's viewer-facing shell without sockets: a real L{EdgeSite} and its
L{ViewerProtocol} driven through a L{StringTransport} on a L{Clock}, with a
fake agent session (the small L{StreamSession} interface of exchange.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web import resource

from netbore.edge.config import EdgeConfig
from netbore.edge.exchange import Deadlines, ViewerExchange
from netbore.edge.registry import InMemoryRegistry, Tunnel
from netbore.edge.router import TunnelRouter
from netbore.edge.site import EdgeSite
from netbore.edge.viewer import ViewerProtocol
from netbore.protocol.errors import StreamClosedError, StreamError
from netbore.protocol.frames import ErrorCode

HOST = b"app.localhost:8080"
TIMEOUT = 5.0
KiB = 1024


class FakeSession:
    """
    An agent session as the exchanges see it: a send window per stream,
    and a record of everything asked of it.
    """

    def __init__(self, window: int = 16 * KiB) -> None:
        self.initial_window = window
        self.windows: dict[int, int] = {}
        self.exchanges: dict[int, ViewerExchange] = {}
        self.heads: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bool]] = []
        self.sent: dict[int, bytearray] = {}
        self.ended: list[int] = []
        self.resets: list[tuple[int, int]] = []
        self.acked: dict[int, int] = {}
        self.refuse: Exception | None = None

    # StreamSession

    def open_stream(
        self,
        exchange: ViewerExchange,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool,
    ) -> int:
        if self.refuse is not None:
            raise self.refuse
        stream_id = len(self.heads) + 1
        self.heads.append((method, target, headers, end_stream))
        self.exchanges[stream_id] = exchange
        self.windows[stream_id] = self.initial_window
        self.sent[stream_id] = bytearray()
        return stream_id

    def send_data(self, stream_id: int, data: bytes) -> int:
        n = min(len(data), self.windows.get(stream_id, 0))
        self.windows[stream_id] = self.windows.get(stream_id, 0) - n
        self.sent[stream_id] += data[:n]
        return n

    def send_end(self, stream_id: int) -> None:
        self.ended.append(stream_id)

    def reset(self, stream_id: int, code: int) -> None:
        self.resets.append((stream_id, code))
        self.windows[stream_id] = 0

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.acked[stream_id] = self.acked.get(stream_id, 0) + n

    def stream_count(self) -> int:
        return len(self.exchanges)

    # test helpers

    def grow_window(self, stream_id: int, n: int) -> None:
        self.windows[stream_id] += n
        self.exchanges[stream_id].window_opened()


class Harness:
    def __init__(self, window: int = 16 * KiB, root: resource.IResource | None = None) -> None:
        self.clock = Clock()
        config = EdgeConfig(domain="localhost", response_timeout=TIMEOUT)
        self.registry = InMemoryRegistry(clock=self.clock, grace=30)
        tunnel = Tunnel(
            tunnel_id="t1",
            name="app",
            public_hostname="app.localhost",
            public_url="http://app.localhost:8080",
            owner=None,
            edge_id="edge-1",
        )
        self.registry.add(tunnel)
        self.session = FakeSession(window)
        self.registry.attach_session(tunnel, self.session)
        self.router = TunnelRouter(config, self.registry, self.clock)
        self.site = EdgeSite(root or resource.Resource(), self.router, self.clock)
        self.channel: Any = self.site.buildProtocol(IPv4Address("TCP", "192.0.2.7", 50000))
        assert isinstance(self.channel, ViewerProtocol)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 50000))
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def head(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: list[bytes] | None = None,
        length: int | None = None,
    ) -> None:
        lines = [b"%s %s HTTP/1.1" % (method, target), b"Host: " + HOST]
        if length is not None:
            lines.append(b"Content-Length: %d" % length)
        lines += headers or []
        self.send(b"\r\n".join(lines) + b"\r\n\r\n")

    @property
    def exchange(self) -> ViewerExchange:
        return self.session.exchanges[1]

    def output(self) -> bytes:
        return bytes(self.transport.value())

    def status(self) -> int:
        out = self.output()
        assert out.startswith(b"HTTP/1.1 "), out
        return int(out.split(b" ", 2)[1])

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        head = self.output().split(b"\r\n\r\n", 1)[0]
        fields = []
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields.append((name.lower(), value.strip()))
        return fields

    def body(self) -> bytes:
        return self.output().split(b"\r\n\r\n", 1)[1]


def _headers(fields: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in fields if n.lower() == name]


# -- request head --------------------------------------------------------------


def test_stream_opened_when_headers_are_in_with_forwarding_headers() -> None:
    h = Harness()
    h.head(
        b"POST",
        b"/a%2Fb?x=%41",
        [
            b"X-Forwarded-For: 203.0.113.1",
            b"X-Netbore-Client-IP: 10.9.9.9",
            b"Connection: X-Hop",
            b"X-Hop: 1",
            b"X-Keep: 1",
        ],
        length=10,
    )
    # The body has not arrived, yet the stream is open.
    assert len(h.session.heads) == 1
    method, target, headers, end_stream = h.session.heads[0]
    assert (method, target, end_stream) == (b"POST", b"/a%2Fb?x=%41", False)
    assert _headers(headers, b"x-forwarded-for") == [b"203.0.113.1, 192.0.2.7"]
    assert _headers(headers, b"x-netbore-client-ip") == [b"192.0.2.7"]
    assert _headers(headers, b"x-forwarded-proto") == [b"http"]
    assert _headers(headers, b"x-forwarded-host") == [HOST]
    assert _headers(headers, b"host") == [HOST]
    assert _headers(headers, b"x-keep") == [b"1"]
    assert _headers(headers, b"x-hop") == [] and _headers(headers, b"connection") == []


def test_no_body_request_ends_the_stream_at_once() -> None:
    h = Harness()
    h.head()
    assert h.session.heads[0][3] is True


# -- request body and backpressure -------------------------------------------------


def test_body_beyond_the_window_pauses_the_viewer_until_a_window_update() -> None:
    h = Harness(window=16 * KiB)
    body = bytes(range(256)) * 400  # 100 KiB
    h.head(b"POST", b"/upload", length=len(body))
    h.send(body[: 40 * KiB])
    assert bytes(h.session.sent[1]) == body[: 16 * KiB]
    assert h.transport.producerState == "paused"
    assert h.session.ended == []

    h.session.grow_window(1, 30 * KiB)
    assert bytes(h.session.sent[1]) == body[: 40 * KiB]
    assert h.transport.producerState == "producing"

    h.send(body[40 * KiB :])
    assert h.transport.producerState == "paused"
    assert h.session.ended == []
    h.session.grow_window(1, 1024 * KiB)
    assert bytes(h.session.sent[1]) == body
    assert h.session.ended == [1]
    assert h.transport.producerState == "producing"


def test_unknown_name_with_a_large_body_is_discarded_not_buffered() -> None:
    h = Harness()
    h.send(b"POST /x HTTP/1.1\r\nHost: nosuch.localhost\r\nContent-Length: %d\r\n\r\n" % (8 * 1024 * KiB))
    for _ in range(127):
        h.send(b"x" * (64 * KiB))
        assert h.channel.buffered_bytes() == 0  # nothing kept
    assert h.output() == b""
    assert h.transport.producerState == "producing"
    h.send(b"x" * (64 * KiB))
    assert h.status() == 404
    assert _headers(h.response_headers(), b"x-netbore-error") == [b"tunnel_not_found"]
    assert b"<html>" in h.body()
    assert h.session.heads == []


def test_error_page_is_json_when_asked() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.1\r\nHost: nosuch.localhost\r\nAccept: application/json\r\n\r\n")
    assert h.status() == 404
    assert _headers(h.response_headers(), b"content-type") == [b"application/json"]
    assert b'"error": "tunnel_not_found"' in h.body()


# -- response ---------------------------------------------------------------------


def test_response_headers_as_sent_no_default_content_type() -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(
        200,
        b"OK",
        [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Keep-Alive", b"timeout=5"), (b"Content-Length", b"3")],
        False,
    )
    h.exchange.data(b"abc", True)
    fields = h.response_headers()
    assert _headers(fields, b"set-cookie") == [b"a=1", b"b=2"]
    assert _headers(fields, b"content-type") == []
    assert _headers(fields, b"keep-alive") == []
    assert h.body() == b"abc"
    assert h.session.acked == {1: 3}


def test_response_data_not_acknowledged_while_the_viewer_is_paused() -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"3000")], False)
    h.exchange.data(b"a" * 1000, False)
    assert h.session.acked == {1: 1000}
    # The viewer's transport buffer is full: it pauses its producer, the channel.
    channel: Any = h.transport.producer
    assert channel is h.channel
    channel.pauseProducing()
    h.exchange.data(b"b" * 1000, False)
    h.exchange.data(b"c" * 500, False)
    assert h.session.acked == {1: 1000}
    channel.resumeProducing()
    assert h.session.acked == {1: 2500}
    h.exchange.data(b"d" * 500, True)
    assert h.session.acked == {1: 3000}
    assert h.body() == b"a" * 1000 + b"b" * 1000 + b"c" * 500 + b"d" * 500


def test_head_and_no_body_statuses() -> None:
    h = Harness()
    h.head(b"HEAD", b"/big")
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"12345")], True)
    assert h.status() == 200
    assert _headers(h.response_headers(), b"content-length") == [b"12345"]
    assert h.body() == b""

    h = Harness()
    h.head()
    h.exchange.response_head(304, b"Not Modified", [(b"ETag", b'"x"')], True)
    assert h.status() == 304
    assert _headers(h.response_headers(), b"transfer-encoding") == []
    assert h.body() == b""


def test_head_goes_out_before_any_body() -> None:
    h = Harness()
    h.head(b"GET", b"/sse")
    h.exchange.response_head(200, b"OK", [(b"Content-Type", b"text/event-stream")], False)
    assert h.status() == 200
    assert _headers(h.response_headers(), b"transfer-encoding") == [b"chunked"]
    assert h.body() == b""  # no chunk yet (an empty one would end the body)
    h.exchange.data(b"data: 1\n\n", False)
    assert h.body() == b"9\r\ndata: 1\n\n\r\n"


def test_response_before_the_body_is_held_until_the_body_is_in() -> None:
    h = Harness()
    h.head(b"POST", b"/", length=4)
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"2")], False)
    h.exchange.data(b"ok", False)
    assert h.output() == b""
    h.send(b"body")
    assert h.session.ended == [1]
    h.exchange.ended()
    assert h.status() == 200 and h.body() == b"ok"


def test_complete_response_before_the_body_drops_the_rest_of_the_body() -> None:
    # An origin that answers 413 without reading: the stream is over on the
    # agent's side, so the viewer must not stay paused on its window.
    h = Harness(window=16 * KiB)
    h.head(b"POST", b"/", length=100 * KiB)
    h.send(b"x" * (32 * KiB))
    assert h.transport.producerState == "paused"
    h.exchange.response_head(413, b"Too Large", [(b"Content-Length", b"4")], False)
    h.exchange.data(b"nope", True)
    assert h.transport.producerState == "producing"
    assert h.session.resets == [(1, ErrorCode.NO_ERROR)]
    h.send(b"x" * (68 * KiB))
    assert len(h.session.sent[1]) == 16 * KiB
    assert h.session.ended == []
    assert h.status() == 413 and h.body() == b"nope"


# -- resets, timeouts, viewers going away ------------------------------------------------


def test_reset_before_the_head_is_a_502_page() -> None:
    h = Harness()
    h.head()
    h.exchange.reset(ErrorCode.ORIGIN_UNREACHABLE)
    assert h.status() == 502
    assert _headers(h.response_headers(), b"x-netbore-error") == [b"origin_unreachable"]


def test_reset_during_the_body_resumes_and_discards_then_502() -> None:
    h = Harness(window=1 * KiB)
    h.head(b"POST", b"/", length=10 * KiB)
    h.send(b"x" * (4 * KiB))
    assert h.transport.producerState == "paused"
    h.exchange.reset(ErrorCode.CANCEL)
    assert h.transport.producerState == "producing"
    assert h.output() == b""
    h.send(b"x" * (6 * KiB))
    assert h.status() == 502
    assert _headers(h.response_headers(), b"x-netbore-error") == [b"tunnel_offline"]


def test_reset_after_the_head_cuts_the_connection() -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"100")], False)
    h.exchange.data(b"x" * 10, False)
    h.exchange.reset(ErrorCode.ORIGIN_RESET)
    assert h.transport.disconnected  # aborted, not a complete-looking response
    assert b"HTTP/1.1 200" in h.output()


def test_timeout_is_504_and_resets_the_stream() -> None:
    h = Harness()
    h.head(b"GET", b"/silent")
    h.clock.advance(TIMEOUT - 0.1)
    assert h.output() == b""
    h.clock.advance(0.2)
    assert h.status() == 504
    assert h.session.resets == [(1, ErrorCode.TIMEOUT)]
    # A head arriving late changes nothing.
    h.exchange.response_head(200, b"OK", [], True)
    assert h.status() == 504


def test_timeout_waits_for_a_slow_body() -> None:
    # (slow, but above the minimum rate: 4 KiB every 3 s; see test_body_rate.py)
    h = Harness(window=1024 * KiB)
    h.head(b"POST", b"/upload", length=40 * KiB)
    for _ in range(10):
        h.clock.advance(TIMEOUT * 0.6)
        h.send(b"x" * 4 * KiB)
    assert h.session.ended == [1]
    assert h.session.resets == []
    h.clock.advance(TIMEOUT - 0.1)
    assert h.output() == b""
    h.clock.advance(0.2)
    assert h.status() == 504


def test_no_timeout_once_the_head_is_in() -> None:
    h = Harness()
    h.head(b"GET", b"/sse")
    h.exchange.response_head(200, b"OK", [(b"Content-Type", b"text/event-stream")], False)
    h.clock.advance(TIMEOUT * 10)
    assert h.session.resets == []
    assert h.status() == 200


def test_viewer_disconnect_cancels_the_stream() -> None:
    h = Harness()
    h.head()
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"100")], False)
    h.exchange.data(b"x" * 10, False)
    h.channel.connectionLost(Failure(ConnectionDone()))
    assert h.session.resets == [(1, ErrorCode.CANCEL)]
    h.exchange.data(b"y" * 10, False)  # late data is ignored, no exception
    h.exchange.ended()
    assert h.session.resets == [(1, ErrorCode.CANCEL)]


def test_viewer_disconnect_during_the_upload_cancels_the_stream() -> None:
    h = Harness()
    h.head(b"POST", b"/", length=100 * KiB)
    h.send(b"x" * KiB)
    h.channel.connectionLost(Failure(ConnectionDone()))
    assert h.session.resets == [(1, ErrorCode.CANCEL)]
    h.clock.advance(TIMEOUT * 2)
    assert h.session.resets == [(1, ErrorCode.CANCEL)]


@pytest.mark.parametrize(
    "refusal, status, code",
    [
        (StreamClosedError("going away"), 502, b"tunnel_offline"),
        (StreamError("head larger than 262144 bytes"), 431, b"request_head_too_large"),
    ],
)
def test_session_refusing_the_stream(refusal: Exception, status: int, code: bytes) -> None:
    h = Harness()
    h.session.refuse = refusal
    h.head(b"POST", b"/", length=3)
    h.send(b"abc")
    assert h.status() == status
    assert _headers(h.response_headers(), b"x-netbore-error") == [code]


# -- agent pools -------------------------------------------------------------------


def test_stream_refused_by_a_departing_agent_is_carried_by_another() -> None:
    h = Harness()
    other = FakeSession()
    tunnel = h.registry.by_name("app")
    assert tunnel is not None
    h.registry.attach_session(tunnel, other)
    h.head(b"GET", b"/x")
    first = h.session if h.session.heads else other
    second = other if first is h.session else h.session
    exchange = first.exchanges[1]
    exchange.reset(ErrorCode.REFUSED_STREAM)
    assert len(second.heads) == 1 and second.heads[0][:2] == (b"GET", b"/x")
    second.exchanges[1].response_head(200, b"OK", [(b"content-length", b"2")], False)
    second.exchanges[1].data(b"ok", True)
    assert h.status() == 200 and h.body() == b"ok"


def test_refused_stream_is_not_retried_once_its_body_was_sent() -> None:
    h = Harness()
    other = FakeSession()
    tunnel = h.registry.by_name("app")
    assert tunnel is not None
    h.registry.attach_session(tunnel, other)
    h.head(b"POST", b"/upload", length=4)
    first = h.session if h.session.heads else other
    second = other if first is h.session else h.session
    h.send(b"da")
    first.exchanges[1].reset(ErrorCode.REFUSED_STREAM)
    h.send(b"ta")
    assert second.heads == []
    assert h.status() == 502


def test_refused_with_no_other_session_is_a_502() -> None:
    h = Harness()
    h.head(b"GET", b"/x")
    h.exchange.reset(ErrorCode.REFUSED_STREAM)
    assert h.status() == 502


# -- credit: every response byte is acknowledged exactly once ------------------


def test_bytes_held_while_the_viewer_is_slow_are_credited_when_the_response_ends() -> None:
    h = Harness()
    h.head(b"GET", b"/big")
    exchange = h.exchange
    exchange.response_head(200, b"OK", [(b"content-length", b"30")], False)
    exchange.data(b"a" * 10, False)
    assert h.session.acked == {1: 10}
    exchange.pauseProducing()  # the viewer's connection is full
    exchange.data(b"b" * 10, False)
    assert h.session.acked == {1: 10}  # held: the agent must slow down
    exchange.data(b"c" * 10, True)  # ends while still paused
    # (issue 10, item 1) The bytes wait in the stream's own buffer, not the
    # connection's, until the connection has written out what it had.
    assert h.session.acked == {1: 10}
    assert h.body() == b"a" * 10
    exchange.resumeProducing()
    assert h.session.acked == {1: 30}
    assert h.body() == b"a" * 10 + b"b" * 10 + b"c" * 10


def test_bytes_held_when_the_viewer_leaves_are_credited() -> None:
    h = Harness()
    h.head(b"GET", b"/big")
    exchange = h.exchange
    exchange.response_head(200, b"OK", [(b"content-length", b"100")], False)
    exchange.pauseProducing()
    exchange.data(b"x" * 40, False)
    h.channel.connectionLost(Failure(ConnectionDone()))
    assert h.session.acked == {1: 40}
    assert h.session.resets == [(1, ErrorCode.CANCEL)]
    exchange.data(b"y" * 20, False)  # in flight before the reset arrived
    assert h.session.acked == {1: 60}


def test_early_response_bytes_are_credited_when_the_agent_resets() -> None:
    h = Harness()
    h.head(b"POST", b"/upload", length=10)
    exchange = h.exchange
    exchange.response_head(200, b"OK", [], False)
    exchange.data(b"z" * 25, False)  # the viewer's body is not in: held
    assert h.session.acked == {}
    exchange.reset(ErrorCode.ORIGIN_RESET)
    assert h.session.acked == {1: 25}


def test_repeated_content_length_in_a_response_is_not_relied_on() -> None:
    # One Content-Length rule for every hop (netbore.http1): a repeat is not
    # a length the viewer may rely on, even when the values agree.
    h = Harness()
    h.head()
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"2"), (b"Content-Length", b"2")], False)
    h.exchange.data(b"ok", True)
    fields = h.response_headers()
    assert _headers(fields, b"content-length") == []
    assert _headers(fields, b"transfer-encoding") == [b"chunked"]
    assert h.body() == b"2\r\nok\r\n0\r\n\r\n"


class _Waiting:
    def __init__(self, stream_id: int, fired: list[tuple[int, float]], clock: Clock) -> None:
        self.stream_id, self.fired, self.clock = stream_id, fired, clock

    def timed_out(self) -> None:
        self.fired.append((self.stream_id, self.clock.seconds()))


def test_response_timeouts_share_one_timer_and_fire_each_at_its_deadline() -> None:
    clock = Clock()
    timeouts = Deadlines(clock, 10.0, "timed_out")
    fired: list[tuple[int, float]] = []
    a, b, c = (_Waiting(i, fired, clock) for i in (1, 2, 3))
    timeouts.start(a)
    clock.advance(2)
    timeouts.start(b)
    timeouts.start(c)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(3)
    timeouts.start(a)  # restarted at 5: due at 15, after b and c
    timeouts.deadlines.pop(c)  # answered in time
    clock.advance(5)  # 10: the timer finds nothing due, re-arms for b
    assert fired == []
    clock.advance(2)
    assert fired == [(2, 12.0)]
    clock.advance(2.9)
    assert fired == [(2, 12.0)]
    clock.advance(0.1)
    assert fired == [(2, 12.0), (1, 15.0)]
    assert timeouts.deadlines == {} and clock.getDelayedCalls() == []


def test_the_router_learns_each_host_s_label_once_and_forgets_beyond_its_bound() -> None:
    h = Harness()
    label_for = h.router.label_for
    assert (label_for(b"app.localhost"), label_for(b"APP.localhost:8080"), label_for(b"localhost")) == (
        "app",
        "app",
        None,
    )
    assert label_for(b"control.localhost") is None and label_for(None) is None
    labels = label_for.__self__  # type: ignore[attr-defined]
    assert labels[b"app.localhost"] == "app" and len(labels) == 5
    for i in range(5000):
        label_for(b"t%d.localhost" % i)
    assert len(labels) <= 4096 and label_for(b"app.localhost") == "app"
