"""
Issue 10, item 1, on the edge's viewer side (no sockets, a L{Clock}): the
response bytes a full viewer connection cannot take wait in the stream's
own buffer, their stream credit held until the connection takes them; a
viewer that takes nothing for C{--send-timeout} is closed and its stream
reset.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from netbore.edge.config import EdgeConfig
from netbore.edge.exchange import Deadlines
from netbore.edge.exchange_states import ResponseState
from netbore.edge.tap import Options
from netbore.protocol.frames import ErrorCode

from .test_edge_exchange import Harness

KiB = 1024
SEND_TIMEOUT = EdgeConfig().send_timeout


def _streaming(h: Harness, length: int = 1 << 20) -> None:
    h.head(b"GET", b"/big")
    h.exchange.response_head(200, b"OK", [(b"content-length", b"%d" % length)], False)


def test_the_send_timeout_is_60_seconds_by_default_and_an_edge_option() -> None:
    assert SEND_TIMEOUT == 60.0
    options = Options()
    options.parseOptions([])
    assert options.config().send_timeout == 60.0
    options = Options()
    options.parseOptions(["--send-timeout", "2.5"])
    assert options.config().send_timeout == 2.5


def test_a_viewer_that_takes_nothing_for_the_send_timeout_is_closed_and_its_stream_reset() -> None:
    h = Harness()
    _streaming(h)
    exchange = h.exchange
    exchange.data(b"a" * KiB, False)
    exchange.pauseProducing()  # the viewer's connection is full
    exchange.data(b"b" * KiB, False)
    h.clock.advance(SEND_TIMEOUT - 1)
    assert not h.transport.disconnecting and h.session.resets == []
    h.clock.advance(1)
    assert h.transport.disconnected  # aborted: what it buffers is dropped
    assert h.session.resets == [(1, ErrorCode.CANCEL)]
    # Every byte's credit went back (the waiting ones were dropped).
    assert h.session.acked == {1: 2 * KiB}
    assert h.router.send_timeouts.deadlines == {}
    h.channel.connectionLost(Failure(ConnectionDone()))
    assert h.session.resets == [(1, ErrorCode.CANCEL)]


def test_a_viewer_that_takes_bytes_restarts_its_send_timeout() -> None:
    h = Harness()
    _streaming(h)
    exchange = h.exchange
    for _ in range(5):
        exchange.pauseProducing()
        exchange.data(b"x" * KiB, False)
        h.clock.advance(SEND_TIMEOUT - 1)
        exchange.resumeProducing()  # it took what its connection had
    assert not h.transport.disconnecting and h.session.resets == []
    assert h.session.acked == {1: 5 * KiB}
    exchange.pauseProducing()
    h.clock.advance(SEND_TIMEOUT)
    assert h.session.resets == [(1, ErrorCode.CANCEL)]


def test_a_finished_response_has_no_send_timeout() -> None:
    h = Harness()
    _streaming(h, 4)
    h.exchange.pauseProducing()
    h.exchange.data(b"", False)
    h.exchange.resumeProducing()
    h.exchange.data(b"abcd", False)
    h.exchange.pauseProducing()
    h.exchange.data(b"", True)  # the end, nothing waiting: complete
    assert h.router.send_timeouts.deadlines == {}
    h.clock.advance(SEND_TIMEOUT * 2)
    assert h.session.resets == []
    assert h.body() == b"abcd"


def test_bytes_wait_in_the_stream_s_buffer_until_the_connection_takes_them() -> None:
    h = Harness()
    _streaming(h)
    exchange = h.exchange
    exchange.data(b"a" * KiB, False)
    exchange.pauseProducing()
    before = len(h.output())
    for chunk in (b"b", b"c", b"d"):
        exchange.data(chunk * KiB, False)
    # Nothing more reached the connection; the stream's credit is held.
    assert len(h.output()) == before
    assert h.session.acked == {1: KiB}
    # The connection pauses again after the first waiting chunk: the rest waits.
    transport = h.transport
    write = transport.write

    def write_then_pause(data: bytes) -> None:
        write(data)
        if b"b" in data:
            h.channel.pauseProducing()

    transport.write = write_then_pause  # type: ignore[method-assign]
    h.channel.resumeProducing()
    assert h.body() == b"a" * KiB + b"b" * KiB
    assert h.session.acked == {1: 2 * KiB}
    transport.write = write  # type: ignore[method-assign]
    h.channel.resumeProducing()
    assert h.body() == b"a" * KiB + b"b" * KiB + b"c" * KiB + b"d" * KiB
    assert h.session.acked == {1: 4 * KiB}


def test_the_end_waits_behind_the_waiting_bytes() -> None:
    h = Harness()
    _streaming(h, 3)
    exchange = h.exchange
    exchange.pauseProducing()
    exchange.data(b"ab", False)
    exchange.data(b"c", True)
    exchange.ended()  # (late: ignored)
    assert h.body() == b"" and exchange.response is ResponseState.STREAMING
    h.channel.resumeProducing()
    assert h.body() == b"abc" and exchange.response is ResponseState.DONE
    assert h.session.acked == {1: 3}
    # The connection goes on to its next request.
    h.head(b"GET", b"/next")
    assert len(h.session.heads) == 2


def test_a_reset_drops_the_waiting_bytes_and_cuts_the_viewer() -> None:
    h = Harness()
    _streaming(h)
    exchange = h.exchange
    exchange.pauseProducing()
    exchange.data(b"x" * KiB, False)
    exchange.reset(ErrorCode.ORIGIN_RESET)
    assert h.transport.disconnected
    assert h.session.acked == {1: KiB}
    assert exchange.waiting is None and h.router.send_timeouts.deadlines == {}


def test_send_timeouts_share_one_timer_in_deadline_order() -> None:
    from twisted.internet.task import Clock

    clock = Clock()
    timeouts = Deadlines(clock, 10, "send_timed_out")
    fired: list[int] = []

    class Timed:
        def __init__(self, stream_id: int) -> None:
            self.stream_id = stream_id

        def send_timed_out(self) -> None:
            fired.append(self.stream_id)

    a, b, c = Timed(1), Timed(2), Timed(3)
    timeouts.start(a)
    clock.advance(3)
    timeouts.start(b)
    timeouts.start(c)
    clock.advance(3)
    timeouts.start(a)  # restarted: now last
    timeouts.stop(c)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(4)
    assert fired == []
    clock.advance(3)
    assert fired == [2]
    clock.advance(3)
    assert fired == [2, 1]
    assert clock.getDelayedCalls() == []


# -- the whole credit loop, in memory (edge, agent session, origin) -----------------


def test_stalled_viewers_hold_only_their_own_streams_in_memory() -> None:
    """
    Eight viewers whose connections stay full, on a tunnel whose session
    window is four stream windows: the old code froze the tunnel (the
    session's credit waited for them); now a normal viewer's 1 MiB download
    completes beside them, and the send timeout resets their streams.
    """
    import http.client

    import attrs
    from twisted.internet.testing import MemoryReactorClock
    from twisted.web import server

    from netbore.demo.origin import Origin, pattern
    from netbore.testing import InMemoryTunnel

    reactor = MemoryReactorClock()
    reactor.advance(1_800_000_000.0)
    origin = server.Site(Origin(reactor), reactor=reactor)
    config = EdgeConfig(domain="tunnel.test", allow_anonymous=True)
    config = attrs.evolve(config, stream_window=64 * KiB, session_window=256 * KiB)
    tunnel = InMemoryTunnel.build(origin=origin, config=config, reactor=reactor)
    try:
        edge_sides = []
        for _ in range(8):
            viewer = tunnel.viewer()
            edge_side = tunnel.network.pumps[-1].server
            edge_side.pauseProducing()  # its socket is full, and stays so
            edge_sides.append(edge_side)
            viewer.send(b"GET /bytes/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (1 << 20, tunnel.host.encode()))
        tunnel.pump()
        try:
            response = tunnel.get(f"/bytes/{1 << 20}")
        except http.client.HTTPException as e:  # (the old code: a head, no body)
            raise AssertionError(f"the download did not complete: {e!r}") from None
        assert response.status == 200 and response.body == pattern(1 << 20)
        # Each stalled stream holds at most its own window.
        assert all(side._exchange is not None for side in edge_sides)
        waiting = [side._exchange.waiting for side in edge_sides]
        assert all(w is not None and 0 < w.size <= 64 * KiB for w in waiting)
        # After the send timeout they are cut and their streams reset.
        tunnel.advance(SEND_TIMEOUT)
        assert all(side._exchange is None or side.phase.name == "CLOSED" for side in edge_sides)
        assert tunnel.agent is not None and tunnel.agent.current is not None
        assert tunnel.agent.current.streams == {}
        assert tunnel.get("/bytes/13").body == pattern(13)
    finally:
        tunnel.close()


def test_a_viewer_still_full_of_its_last_response_is_timed_out_during_the_next() -> None:
    """
    The next (pipelined) request's exchange starts while the connection is
    still full of the last response: the clock runs from then, whatever the
    state of the new exchange.
    """
    h = Harness()
    get = b"GET /%d HTTP/1.1\r\nHost: app.localhost:8080\r\n\r\n"
    h.send(get % 1 + get % 2)
    first = h.session.exchanges[1]
    first.response_head(200, b"OK", [(b"content-length", b"2")], False)
    first.data(b"ok", False)
    h.channel.pauseProducing()  # full, and it stays so
    first.data(b"", True)
    second = h.session.exchanges[2]
    h.clock.advance(1)  # (within the response timeout)
    second.response_head(200, b"OK", [(b"content-length", b"9")], False)
    second.data(b"a" * 9, False)  # (waits: the connection is full)
    h.clock.advance(SEND_TIMEOUT - 2)
    assert not h.transport.disconnected
    h.clock.advance(1)
    assert h.transport.disconnected
    assert h.session.resets == [(2, ErrorCode.CANCEL)]
