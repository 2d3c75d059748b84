"""
Ending streams and sessions in netbore.protocol's Session: RESET and
GOAWAY.
"""

from __future__ import annotations

import pytest

from netbore.protocol import (
    DataReceived,
    End,
    ErrorCode,
    Event,
    GoAway,
    GoAwayReceived,
    Reset,
    ResponseReceived,
    Session,
    Settings,
    StreamClosedError,
    StreamReset,
    WindowUpdate,
)

from .test_protocol_session import GET, decode_all, feed, frames_of, make_pair, pump, refused, window_updates

# --------------------------------------------------------------------------
# Reset


def all_closed(*sessions: Session) -> bool:
    """
    Are all C{sessions} closed?  (Read through a call: mypy would otherwise
    keep C{session.closed} narrowed by an earlier C{assert not}.)
    """
    return all(session.closed for session in sessions)


def test_reset_from_edge() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [])
    edge.send_data(sid, b"abc")
    pump(edge, agent)
    edge.reset_stream(sid, ErrorCode.CANCEL, b"viewer left")
    assert not edge.is_open(sid)
    edge.reset_stream(sid)  # idempotent
    edge.reset_stream(777)  # unknown: no-op
    assert pump(edge, agent) == [StreamReset(sid, ErrorCode.CANCEL, b"viewer left")]
    assert not agent.is_open(sid)
    agent.acknowledge(sid, 3)  # delivered before the reset: still acknowledged
    agent.reset_stream(sid)
    assert agent.data_to_send() == []


def test_reset_from_agent() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.reset_stream(sid, ErrorCode.ORIGIN_UNREACHABLE, b"connection refused")
    assert pump(agent, edge) == [StreamReset(sid, ErrorCode.ORIGIN_UNREACHABLE, b"connection refused")]
    assert not edge.is_open(sid) and edge.open_streams == 0


def test_frames_after_our_reset_are_ignored_and_credited() -> None:
    s = Settings(stream_window=10000, session_window=10000)
    edge, agent = make_pair(edge_settings=s, agent_settings=s)
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    # The agent answers while the edge's RESET is on its way.
    agent.send_response_head(sid, 200, b"OK", [])
    agent.send_data(sid, b"x" * 3000)
    agent.send_data(sid, b"y" * 3000)
    in_flight = agent.data_to_send()
    edge.reset_stream(sid)
    assert decode_all(edge.data_to_send())[0] == Reset(sid, ErrorCode.CANCEL, b"")
    events: list[Event] = []
    for message in in_flight:
        events += edge.receive(message)
    events += feed(edge, End(sid), WindowUpdate(sid, 5), Reset(sid, 4))
    assert events == []
    # The 6000 ignored bytes went back to the session window (threshold 5000).
    assert window_updates(edge.data_to_send()) == [WindowUpdate(0, 6000)]
    # And were not delivered: acknowledging on the closed stream changes nothing.
    edge.acknowledge(sid, 1)
    assert edge.data_to_send() == []


def test_reset_crossing_reset() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    edge.reset_stream(sid)
    agent.reset_stream(sid, ErrorCode.INTERNAL_ERROR)
    assert pump(edge, agent) == []
    assert pump(agent, edge) == []


# --------------------------------------------------------------------------
# Go-away


def test_go_away_from_agent() -> None:
    edge, agent = make_pair()
    one = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    two = edge.send_request_head(b"POST", b"/", [])
    edge.send_data(two, b"late")
    in_flight = edge.data_to_send()
    agent.go_away(ErrorCode.NO_ERROR, b"draining")
    # The agent refuses stream two, which it had not seen, silently.
    for message in in_flight:
        assert agent.receive(message) == []
    assert not agent.is_open(two)
    events = pump(agent, edge)
    assert events == [
        GoAwayReceived(one, ErrorCode.NO_ERROR, b"draining"),
        StreamReset(two, ErrorCode.REFUSED_STREAM, b"refused: going away"),
    ]
    assert edge.go_away_received and not edge.is_open(two)
    with pytest.raises(StreamClosedError):
        edge.send_request_head(*GET)
    # Stream one goes on to its end.
    edge.send_data(one, b"body", end_stream=True)
    assert pump(edge, agent) == [DataReceived(one, b"body", True)]
    agent.send_response_head(one, 200, b"OK", [], end_stream=True)
    assert pump(agent, edge) == [ResponseReceived(one, 200, b"OK", [], True)]
    assert not edge.closed  # the edge has not said goodbye yet
    edge.go_away()
    assert pump(edge, agent) == [GoAwayReceived(0, ErrorCode.NO_ERROR, b"")]
    assert all_closed(edge, agent)


def test_go_away_from_edge() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    edge.go_away(ErrorCode.NO_ERROR, b"restart")
    with pytest.raises(StreamClosedError):
        edge.send_request_head(*GET)
    events = pump(edge, agent)
    assert events[-1] == GoAwayReceived(0, ErrorCode.NO_ERROR, b"restart")
    assert agent.go_away_received and agent.is_open(sid)
    agent.go_away()
    assert pump(agent, edge) == [GoAwayReceived(sid, ErrorCode.NO_ERROR, b"")]
    assert not edge.closed and not agent.closed
    agent.send_response_head(sid, 200, b"OK", [], end_stream=True)
    pump(agent, edge)
    assert all_closed(edge, agent)


def test_second_go_away_keeps_its_last_stream_id() -> None:
    # Streams refused after the first GOAWAY do not count in the next one.
    edge, agent = make_pair()
    one = edge.send_request_head(*GET)
    pump(edge, agent)
    agent.go_away()
    edge.send_request_head(*GET)
    pump(edge, agent)  # stream 2: refused
    agent.go_away(ErrorCode.INTERNAL_ERROR, b"now")
    assert [f.last_stream_id for f in frames_of(agent)] == [one, one]


def test_go_away_may_not_raise_last_stream_id() -> None:
    edge, agent = make_pair()
    edge.send_request_head(*GET)
    edge.send_request_head(*GET)
    feed(edge, GoAway(1, 0))
    assert refused(edge, GoAway(2, 0)) == ErrorCode.PROTOCOL_ERROR
