"""
The explicit states of a L{ViewerExchange}: the tables, and the states an
exchange goes through (driven as in test_edge_exchange.py).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from netbore.edge import exchange
from netbore.edge.exchange_states import BODY_IN, REQUEST_MOVES, RESPONSE_MOVES, RequestState, ResponseState
from netbore.protocol.frames import ErrorCode

from .test_edge_exchange import Harness, KiB


def test_module_globals_are_the_members_they_are_named_for() -> None:
    # exchange.py binds the members by unpacking the enums in order.
    for member in RequestState:
        assert getattr(exchange, "Q_" + member.name) is member
    for answer in ResponseState:
        assert getattr(exchange, "R_" + answer.name) is answer


def test_tables_cover_every_state_and_done_is_final() -> None:
    assert set(REQUEST_MOVES) == set(RequestState)
    assert set(RESPONSE_MOVES) == set(ResponseState)
    assert REQUEST_MOVES[RequestState.DONE] == frozenset()
    assert REQUEST_MOVES[RequestState.DROPPED] == frozenset()
    assert RESPONSE_MOVES[ResponseState.DONE] == frozenset()
    # Once the body is in, it stays in.
    for state in BODY_IN:
        assert REQUEST_MOVES[state] <= BODY_IN


def test_a_get_goes_open_empty_then_waiting_streaming_done() -> None:
    h = Harness()
    h.head()
    x = h.exchange
    assert (x.request, x.response) == (RequestState.EMPTY, ResponseState.WAITING)
    x.response_head(200, b"OK", [(b"content-length", b"2")], False)
    assert x.response is ResponseState.STREAMING
    x.data(b"ok", True)
    assert (x.request, x.response) == (RequestState.EMPTY, ResponseState.DONE)
    assert h.session.acked == {1: 2}


def test_an_upload_goes_sending_ending_done() -> None:
    h = Harness(window=4 * KiB)
    h.head(b"POST", b"/", length=8 * KiB)
    x = h.exchange
    assert x.request is RequestState.OPEN
    h.send(b"x" * (8 * KiB))
    assert x.request is RequestState.ENDING  # half of it waits for the window
    assert h.session.ended == []
    h.session.grow_window(1, 4 * KiB)
    assert x.request is RequestState.DONE
    assert h.session.ended == [1]


def test_a_response_complete_while_the_body_is_queued_lets_the_viewer_go_on() -> None:
    # The viewer's whole body is read, part of it still waits for the
    # window, and the agent answers in full: nothing more goes on, and the
    # viewer is not left paused (its next request must be read).
    h = Harness(window=4 * KiB)
    h.head(b"POST", b"/", length=8 * KiB)
    h.send(b"x" * (8 * KiB))
    assert h.transport.producerState == "paused"
    x = h.exchange
    x.response_head(200, b"OK", [(b"content-length", b"2")], False)
    x.data(b"ok", True)
    assert (x.request, x.response) == (RequestState.DROPPED, ResponseState.DONE)
    assert h.transport.producerState == "producing"
    h.session.grow_window(1, 64 * KiB)
    assert len(h.session.sent[1]) == 4 * KiB
    assert h.session.ended == []
    assert h.status() == 200 and h.body() == b"ok"


def test_a_reset_after_a_timeout_keeps_the_504() -> None:
    # (the origin's timeout: the edge holds the viewer's body back, its
    # window shut; a viewer late with its own body is 408, test_body_rate.py)
    h = Harness(window=4)
    h.head(b"POST", b"/", length=20)
    h.send(b"x" * 10)
    h.clock.advance(60)
    x = h.exchange
    assert x.response is ResponseState.FAILED  # the page waits for the body
    x.reset(ErrorCode.ORIGIN_UNREACHABLE)
    h.send(b"x" * 10)
    assert h.status() == 504


def test_an_unknown_name_drops_the_body_and_answers_at_its_end() -> None:
    h = Harness()
    h.send(b"POST / HTTP/1.1\r\nHost: nosuch.localhost\r\nContent-Length: 3\r\n\r\n")
    assert h.output() == b""
    h.send(b"abc")
    assert h.status() == 404


_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("data"), st.integers(0, 300)),
        st.sampled_from([("pause", 0), ("resume", 0), ("ended", 0), ("reset", 0), ("gone", 0), ("body", 0)]),
    ),
    max_size=30,
)


@given(st.booleans(), st.booleans(), _EVENTS)
@settings(max_examples=300, deadline=None)
def test_every_response_byte_is_acknowledged_exactly_once(
    upload: bool, head_first: bool, events: list[tuple[str, int]]
) -> None:
    # Whatever the agent sends and whenever the viewer pauses, finishes its
    # body or leaves, and the stream ends or is reset: once the viewer's
    # connection is gone, the agent has all its credit back, never more.
    h = Harness()
    if upload:
        h.head(b"POST", b"/", length=4)
    else:
        h.head()
    x = h.exchange
    received = 0
    if head_first:
        x.response_head(200, b"OK", [], False)
    else:
        h.send(b"body" if upload else b"")
        x.response_head(200, b"OK", [], False)
    for name, n in events:
        if name == "data":
            received += n
            x.data(b"d" * n, False)
        elif name == "pause":
            x.pauseProducing()
        elif name == "resume":
            x.resumeProducing()
        elif name == "ended":
            x.ended()
        elif name == "reset":
            x.reset(ErrorCode.ORIGIN_RESET)
        elif name == "gone":
            h.channel.connectionLost(Failure(ConnectionDone()))
        elif upload:
            h.send(b"body")
            upload = False  # the body is in
        assert h.session.acked.get(1, 0) <= received
    h.channel.connectionLost(Failure(ConnectionDone()))
    assert h.session.acked.get(1, 0) == received
