"""
A request body trickled to the edge must not hold its stream for ever
(issue 10, item 11): while the edge reads it, a body must come at
C{--body-min-rate} bytes a second or faster, on average over each
C{--response-timeout}; a slower one is answered 408, its stream reset and
its connection closed.  On a L{Clock}, through the edge's real viewer
shell (L{tests.test_edge_exchange.Harness}: response timeout 5 s).
"""

from __future__ import annotations

from netbore.edge.config import EdgeConfig
from netbore.edge.tap import Options
from netbore.protocol.frames import ErrorCode

from .test_edge_exchange import TIMEOUT, Harness

KiB = 1024
MIN_RATE = EdgeConfig().body_min_rate


def _trickle(h: Harness) -> float:
    """Send a byte every two seconds until the edge answers: the seconds that took."""
    elapsed = 0.0
    while h.output() == b"" and elapsed < 120:
        h.clock.advance(2)
        elapsed += 2
        h.send(b"x")
    return elapsed


def _assert_timed_out(h: Harness) -> None:
    """Answered 408, the connection closing, the stream reset for the timeout."""
    assert h.status() == 408
    assert h.transport.disconnecting
    assert h.session.resets == [(1, ErrorCode.TIMEOUT)]


def test_a_body_trickled_a_byte_every_two_seconds_is_408_and_closed() -> None:
    h = Harness(window=1024 * KiB)
    h.head(b"POST", b"/upload", length=1000)
    elapsed = _trickle(h)
    # Within one response timeout of the head (not re-armed by each byte).
    assert elapsed <= TIMEOUT + 2
    _assert_timed_out(h)
    assert b"connection: close" in h.output().lower()
    assert h.session.ended == []


def test_a_body_at_less_than_half_the_minimum_rate_is_408() -> None:
    h = Harness(window=1024 * KiB)
    h.head(b"POST", b"/upload", length=100 * KiB)
    rate = MIN_RATE // 2 - 10
    for _ in range(int(TIMEOUT * 4)):
        h.clock.advance(1)
        if h.output():
            break
        h.send(b"x" * rate)
    assert h.status() == 408


def test_a_body_trickled_after_an_early_answer_is_408_too() -> None:
    # The origin answered (head, no end) while the body still comes: the
    # answer is held until the body is in, so the body's rate still counts.
    h = Harness(window=1024 * KiB)
    h.head(b"POST", b"/upload", length=1000)
    h.send(b"x")
    h.exchange.response_head(200, b"OK", [(b"content-length", b"2")], False)
    elapsed = _trickle(h)
    assert elapsed <= TIMEOUT + 2
    _assert_timed_out(h)


def test_an_early_answer_is_sent_once_a_body_at_the_minimum_rate_is_in() -> None:
    h = Harness(window=1024 * KiB)
    seconds = int(TIMEOUT * 4)
    h.head(b"POST", b"/upload", length=MIN_RATE * seconds)
    h.exchange.response_head(200, b"OK", [(b"content-length", b"2")], False)
    h.exchange.data(b"ok", True)
    for _ in range(seconds):
        h.clock.advance(1)
        h.send(b"x" * MIN_RATE)
    assert h.status() == 200
    assert h.body() == b"ok"
    assert h.session.resets == [(1, ErrorCode.NO_ERROR)]  # (the stream ended early, the rest of the body dropped)
    h.clock.advance(TIMEOUT * 3)
    assert h.output().count(b"HTTP/1.1") == 1


def test_a_body_that_never_starts_is_408() -> None:
    h = Harness()
    h.head(b"POST", b"/upload", length=1000)
    h.clock.advance(TIMEOUT + 0.1)
    _assert_timed_out(h)


def test_a_body_at_the_minimum_rate_is_never_timed_out() -> None:
    h = Harness(window=1024 * KiB)
    seconds = int(TIMEOUT * 10)
    h.head(b"POST", b"/upload", length=MIN_RATE * seconds)
    for _ in range(seconds):
        h.clock.advance(1)
        h.send(b"x" * MIN_RATE)
    assert h.output() == b""
    assert h.session.resets == []
    assert h.session.ended == [1]
    assert len(h.session.sent[1]) == MIN_RATE * seconds


def test_a_viewer_the_edge_holds_back_is_not_late_while_the_origin_takes_its_body() -> None:
    # The stream's window is shut: the edge stops reading the viewer; the
    # origin taking the body slowly restarts the wait, and a silent origin
    # is the origin's timeout (504), not the viewer's.
    h = Harness(window=KiB)
    h.head(b"POST", b"/upload", length=100 * KiB)
    h.send(b"x" * 100 * KiB)
    assert h.transport.producerState == "paused"
    for _ in range(10):
        h.clock.advance(TIMEOUT * 0.6)
        h.session.grow_window(1, 100)
    assert h.output() == b""
    h.clock.advance(TIMEOUT + 0.1)
    assert h.status() == 504


def test_body_min_rate_option() -> None:
    options = Options()
    options.parseOptions(["--body-min-rate", "2000"])
    assert options.config().body_min_rate == 2000
    options = Options()
    options.parseOptions([])
    assert options.config().body_min_rate == 500
