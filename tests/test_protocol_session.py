"""
The session state machine of netbore.protocol: an edge Session and an
agent Session wired together by moving data_to_send() into receive().
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    Data,
    DataReceived,
    End,
    ErrorCode,
    Event,
    FlowControlError,
    FrameType,
    GoAway,
    GoAwayReceived,
    ProtocolError,
    RequestHead,
    RequestReceived,
    Reset,
    ResponseHead,
    ResponseReceived,
    Session,
    Settings,
    StreamClosedError,
    StreamEnded,
    StreamError,
    StreamReset,
    WindowOpened,
    WindowUpdate,
    decode,
    decode_batch,
    encode,
)
from netbore.protocol.frames import HEADER, encode_batch
from netbore.protocol.session import CLOSED_STREAMS_REMEMBERED

GET = (b"GET", b"/", [(b"host", b"app.example")])


def make_pair(
    edge_settings: Optional[Settings] = None,
    agent_settings: Optional[Settings] = None,
) -> tuple[Session, Session]:
    e = edge_settings or Settings()
    a = agent_settings or Settings()
    return Session("edge", e, a), Session("agent", a, e)


def pump(src: Session, dst: Session) -> list[Event]:
    events: list[Event] = []
    for message in src.data_to_send():
        events.extend(dst.receive(message))
    return events


def decode_all(messages: Iterable[bytes]) -> list[Any]:
    """The frames in C{messages}, BATCH frames unpacked."""
    frames: list[Any] = []
    for m in messages:
        if m[0] == FrameType.BATCH:
            frames += [decode(inner) for inner in decode_batch(m)]
        else:
            frames.append(decode(m))
    return frames


def frames_of(session: Session) -> list[Any]:
    return decode_all(session.data_to_send())


def feed(session: Session, *frames: Any) -> list[Event]:
    events: list[Event] = []
    for frame in frames:
        events.extend(session.receive(encode(frame)))
    return events


def refused(session: Session, frame: Any) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        session.receive(encode(frame))
    return info.value.code


def window_updates(messages: Iterable[bytes]) -> list[WindowUpdate]:
    return [f for f in decode_all(messages) if isinstance(f, WindowUpdate)]


# --------------------------------------------------------------------------
# Exchanges


def test_get_without_bodies() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    assert sid == 1
    assert pump(edge, agent) == [
        RequestReceived(1, b"GET", b"/", [(b"host", b"app.example")], True)
    ]
    agent.send_response_head(1, 204, b"No Content", [], end_stream=True)
    assert pump(agent, edge) == [ResponseReceived(1, 204, b"No Content", [], True)]
    assert not edge.is_open(1) and not agent.is_open(1)
    assert edge.open_streams == agent.open_streams == 0


def test_post_with_bodies_both_ways() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/upload", [(b"content-length", b"11")])
    edge.send_data(sid, b"hello ")
    edge.send_data(sid, b"world", end_stream=True)
    events = pump(edge, agent)
    assert events == [
        RequestReceived(sid, b"POST", b"/upload", [(b"content-length", b"11")], False),
        DataReceived(sid, b"hello ", False),
        DataReceived(sid, b"world", True),
    ]
    assert agent.is_open(sid)
    agent.send_response_head(sid, 200, b"OK", [(b"set-cookie", b"a"), (b"set-cookie", b"b")])
    agent.send_data(sid, b"thanks")
    agent.send_end(sid)
    assert not agent.is_open(sid)
    assert pump(agent, edge) == [
        ResponseReceived(sid, 200, b"OK", [(b"set-cookie", b"a"), (b"set-cookie", b"b")], False),
        DataReceived(sid, b"thanks", False),
        StreamEnded(sid),
    ]
    assert not edge.is_open(sid)


def test_end_conventions() -> None:
    # The end of a body is reported once: as end_stream=True on the event of
    # the frame that carried the flag, or as StreamEnded for an END frame.
    edge, agent = make_pair()
    a = edge.send_request_head(*GET)
    edge.send_end(a)
    b = edge.send_request_head(*GET)
    edge.send_data(b, b"", end_stream=True)  # empty: an END frame
    c = edge.send_request_head(*GET)
    edge.send_data(c, b"x", end_stream=True)
    events = pump(edge, agent)
    assert [type(e).__name__ for e in events] == [
        "RequestReceived", "StreamEnded",
        "RequestReceived", "StreamEnded",
        "RequestReceived", "DataReceived",
    ]
    assert events[-1] == DataReceived(c, b"x", True)


def test_informational_then_final_head() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 103, b"Early Hints", [(b"link", b"</a>")])
    with pytest.raises(StreamError):
        agent.send_data(sid, b"x")
    with pytest.raises(StreamError):
        agent.send_response_head(sid, 100, b"", [], end_stream=True)
    agent.send_response_head(sid, 200, b"OK", [], end_stream=True)
    events = pump(agent, edge)
    assert [e.status for e in events if isinstance(e, ResponseReceived)] == [103, 200]
    assert not edge.is_open(sid)


def test_many_concurrent_streams() -> None:
    edge, agent = make_pair()
    ids = [edge.send_request_head(b"GET", b"/%d" % i, []) for i in range(200)]
    assert ids == list(range(1, 201))
    for sid in ids:
        edge.send_data(sid, b"req-%d" % sid, end_stream=True)
    received = pump(edge, agent)
    assert agent.open_streams == 200
    bodies = {e.stream_id: e.data for e in received if isinstance(e, DataReceived)}
    assert bodies == {sid: b"req-%d" % sid for sid in ids}
    for sid in reversed(ids):
        agent.send_response_head(sid, 200, b"OK", [])
    for sid in ids:
        agent.send_data(sid, b"a-%d" % sid)
    for sid in ids:
        agent.send_data(sid, b"b-%d" % sid, end_stream=True)
    events = pump(agent, edge)
    got: dict[int, bytes] = {}
    for e in events:
        if isinstance(e, DataReceived):
            got[e.stream_id] = got.get(e.stream_id, b"") + e.data
    assert got == {sid: b"a-%db-%d" % (sid, sid) for sid in ids}
    assert edge.open_streams == agent.open_streams == 0


def test_data_is_split_at_peer_max_frame_payload() -> None:
    edge, agent = make_pair(agent_settings=Settings(max_frame_payload=1024))
    sid = edge.send_request_head(b"PUT", b"/", [])
    body = bytes(range(256)) * 20  # 5120 bytes
    edge.send_data(sid, memoryview(body), end_stream=True)
    frames = frames_of(edge)[1:]
    assert [len(f.data) for f in frames] == [1024] * 5
    assert [f.end_stream for f in frames] == [False] * 4 + [True]
    assert b"".join(f.data for f in frames) == body


# --------------------------------------------------------------------------
# Flow control


def test_flow_control_blocks_at_window_and_resumes() -> None:
    small = Settings(stream_window=4096, session_window=1 << 20)
    edge, agent = make_pair(agent_settings=small)
    sid = edge.send_request_head(b"POST", b"/", [])
    assert edge.send_window(sid) == 4096
    edge.send_data(sid, b"x" * 4095)
    with pytest.raises(FlowControlError):
        edge.send_data(sid, b"yy")
    edge.send_data(sid, b"y")
    assert edge.send_window(sid) == 0
    with pytest.raises(FlowControlError):
        edge.send_data(sid, b"z")
    received = sum(len(e.data) for e in pump(edge, agent) if isinstance(e, DataReceived))
    assert received == 4096

    # Batched: nothing until half the stream window (2048) is acknowledged.
    for _ in range(2047):
        agent.acknowledge(sid, 1)
    assert agent.data_to_send() == []
    agent.acknowledge(sid, 1)
    updates = window_updates(agent.data_to_send())
    assert updates == [WindowUpdate(sid, 2048)]
    assert feed(edge, *updates) == [WindowOpened(sid)]
    assert edge.send_window(sid) == 2048
    agent.acknowledge(sid, 2048)
    assert feed(edge, *window_updates(agent.data_to_send())) == [WindowOpened(sid)]
    assert edge.send_window(sid) == 4096


def test_window_updates_are_batched_count() -> None:
    settings_ = Settings(stream_window=64 * 1024, session_window=256 * 1024)
    edge, agent = make_pair(agent_settings=settings_)
    sid = edge.send_request_head(b"POST", b"/", [])
    total = 1024 * 1024
    sent = acked = 0
    updates: list[WindowUpdate] = []
    while sent < total:
        n = min(edge.send_window(sid), total - sent, 1024)
        assert n > 0
        edge.send_data(sid, b"\0" * n)
        sent += n
        for e in pump(edge, agent):
            if isinstance(e, DataReceived):
                agent.acknowledge(sid, len(e.data))
                acked += len(e.data)
        messages = agent.data_to_send()
        updates += window_updates(messages)
        for m in messages:
            edge.receive(m)
    assert acked == total
    stream_updates = [u for u in updates if u.stream_id == sid]
    session_updates = [u for u in updates if u.stream_id == 0]
    # One update per half window, never one per frame.
    assert [u.increment for u in stream_updates] == [32 * 1024] * 32
    assert [u.increment for u in session_updates] == [128 * 1024] * 8


def test_session_window_shared_across_streams() -> None:
    s = Settings(stream_window=8192, session_window=10000)
    edge, agent = make_pair(agent_settings=s)
    a = edge.send_request_head(b"POST", b"/a", [])
    b = edge.send_request_head(b"POST", b"/b", [])
    edge.send_data(a, b"x" * 6000)
    assert edge.send_window(a) == 2192
    assert edge.send_window(b) == 4000
    edge.send_data(b, b"x" * 4000)
    assert edge.send_window(a) == edge.send_window(b) == 0
    with pytest.raises(FlowControlError):
        edge.send_data(a, b"x")
    pump(edge, agent)
    # Stream a acknowledges 4000 (under its 4096 threshold): no stream update,
    # but stream b's 1000 more reach the session's 5000 threshold.
    agent.acknowledge(a, 4000)
    assert agent.data_to_send() == []
    agent.acknowledge(b, 1000)
    updates = window_updates(agent.data_to_send())
    assert updates == [WindowUpdate(0, 5000)]
    assert feed(edge, *updates) == [WindowOpened(0)]
    assert edge.send_window(a) == 2192
    assert edge.send_window(b) == 8192 - 4000


def test_acknowledge_after_close_credits_session() -> None:
    s = Settings(stream_window=4096, session_window=4096)
    edge, agent = make_pair(edge_settings=s)
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [])
    agent.send_data(sid, b"x" * 4096, end_stream=True)
    pump(agent, edge)
    assert not edge.is_open(sid)
    assert agent.send_window(sid) == 0
    edge.acknowledge(sid, 4096)
    # The stream is closed: only the session window is reopened.
    assert window_updates(edge.data_to_send()) == [WindowUpdate(0, 4096)]


def test_acknowledge_misuse() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [])
    edge.send_data(sid, b"abc")
    pump(edge, agent)
    with pytest.raises(StreamError):
        agent.acknowledge(sid, 4)
    with pytest.raises(StreamError):
        agent.acknowledge(sid, -1)
    with pytest.raises(StreamError):
        agent.acknowledge(99, 1)
    agent.acknowledge(sid, 0)
    agent.acknowledge(sid, 3)
    with pytest.raises(StreamError):
        agent.acknowledge(sid, 1)


def test_data_beyond_stream_window_is_flow_control_error() -> None:
    edge, agent = make_pair(agent_settings=Settings(stream_window=1000))
    sid = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    feed(agent, Data(sid, b"x" * 1000))
    assert refused(agent, Data(sid, b"x")) == ErrorCode.FLOW_CONTROL_ERROR


def test_data_beyond_session_window_is_flow_control_error() -> None:
    edge, agent = make_pair(agent_settings=Settings(stream_window=1000, session_window=1500))
    a = edge.send_request_head(b"POST", b"/", [])
    b = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    feed(agent, Data(a, b"x" * 1000))
    assert refused(agent, Data(b, b"x" * 501)) == ErrorCode.FLOW_CONTROL_ERROR


def test_data_larger_than_max_frame_payload() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [])
    pump(agent, edge)
    assert refused(edge, Data(sid, b"x" * (64 * 1024 + 1))) == ErrorCode.FRAME_TOO_LARGE


def test_window_overflow() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    assert refused(edge, WindowUpdate(sid, 2**31 - 1)) == ErrorCode.FLOW_CONTROL_ERROR
    edge, agent = make_pair()
    assert refused(agent, WindowUpdate(0, 2**31 - 1)) == ErrorCode.FLOW_CONTROL_ERROR


# --------------------------------------------------------------------------
# Violations


def test_bad_stream_ids() -> None:
    edge, agent = make_pair()
    assert refused(agent, Data(1, b"x")) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    assert refused(agent, End(1)) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    assert refused(agent, Reset(1, 0)) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    assert refused(agent, WindowUpdate(1, 1)) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    feed(agent, RequestHead(5, b"GET", b"/", []))
    assert refused(agent, RequestHead(5, b"GET", b"/", [])) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    feed(agent, RequestHead(5, b"GET", b"/", []))
    assert refused(agent, RequestHead(3, b"GET", b"/", [])) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    edge.send_request_head(*GET)
    assert refused(edge, ResponseHead(2, 200, b"OK", [])) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    assert refused(edge, GoAway(3, 0)) == ErrorCode.PROTOCOL_ERROR


def test_gaps_in_stream_ids_are_closed_streams() -> None:
    edge, agent = make_pair()
    feed(agent, RequestHead(5, b"GET", b"/", []))
    # Stream 3 was skipped: implicitly closed, late frames are ignored.
    assert feed(agent, Data(3, b"x"), End(3), Reset(3, 0), WindowUpdate(3, 5)) == []


def test_wrong_direction() -> None:
    edge, agent = make_pair()
    assert refused(agent, ResponseHead(1, 200, b"OK", [])) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    assert refused(edge, RequestHead(1, b"GET", b"/", [])) == ErrorCode.PROTOCOL_ERROR


def test_data_before_response_head() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    assert refused(edge, Data(sid, b"x")) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    assert refused(edge, End(sid)) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    feed(edge, ResponseHead(sid, 200, b"OK", []))
    assert refused(edge, ResponseHead(sid, 200, b"OK", [])) == ErrorCode.PROTOCOL_ERROR
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    assert refused(edge, ResponseHead(sid, 100, b"", [], True)) == ErrorCode.PROTOCOL_ERROR


def test_data_after_end() -> None:
    # Half-closed (remote): the stream is still live on this side.
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [])
    edge.send_end(sid)
    pump(edge, agent)
    assert agent.is_open(sid)
    assert refused(agent, Data(sid, b"x")) == ErrorCode.STREAM_CLOSED
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [], end_stream=True)
    pump(edge, agent)
    assert refused(agent, End(sid)) == ErrorCode.STREAM_CLOSED
    # Closed both ways: remembered.
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [], end_stream=True)
    pump(agent, edge)
    assert not edge.is_open(sid)
    assert refused(edge, Data(sid, b"x")) == ErrorCode.STREAM_CLOSED
    # ... but late WINDOW_UPDATE and RESET on it are harmless races.
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [], end_stream=True)
    pump(agent, edge)
    assert feed(edge, WindowUpdate(sid, 10), Reset(sid, 7)) == []


def test_data_after_peer_reset_is_an_error() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    assert feed(edge, Reset(sid, ErrorCode.ORIGIN_UNREACHABLE, b"down")) == [
        StreamReset(sid, ErrorCode.ORIGIN_UNREACHABLE, b"down")
    ]
    assert refused(edge, Data(sid, b"x")) == ErrorCode.STREAM_CLOSED


def test_protocol_error_kills_the_session() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET)
    pump(edge, agent)
    with pytest.raises(ProtocolError) as info:
        agent.receive(b"\x00garbage")
    assert agent.error is info.value
    assert agent.closed
    assert agent.open_streams == 0 and not agent.is_open(sid)
    assert frames_of(agent) == [GoAway(sid, ErrorCode.PROTOCOL_ERROR, info.value.message.encode())]
    # Dead: input ignored, no new streams, nothing more queued.
    assert agent.receive(encode(Data(sid, b"x"))) == []
    agent.go_away()
    agent.reset_stream(sid)
    agent.acknowledge(sid, 5)
    assert agent.data_to_send() == []
    with pytest.raises(StreamClosedError):
        agent.send_data(sid, b"x")
    with pytest.raises(ProtocolError):
        edge.receive(encode(RequestHead(9, b"GET", b"/", [])))
    with pytest.raises(StreamClosedError):
        edge.send_request_head(*GET)


# --------------------------------------------------------------------------
# Local misuse


def test_local_misuse() -> None:
    edge, agent = make_pair()
    with pytest.raises(StreamError):
        agent.send_request_head(*GET)
    sid = edge.send_request_head(b"POST", b"/", [])
    with pytest.raises(StreamError):
        edge.send_response_head(sid, 200, b"OK", [])
    with pytest.raises(StreamClosedError):
        edge.send_data(99, b"x")
    with pytest.raises(StreamError):
        edge.send_request_head(b"GET", b"/a b", [])
    with pytest.raises(StreamError):
        edge.send_request_head(b"GET", b"/", [(b"x", b"a\r\nb")])
    assert edge.send_request_head(*GET) == sid + 1  # failures used no id
    pump(edge, agent)
    with pytest.raises(StreamError):
        agent.send_data(sid, b"x")  # before the response head
    with pytest.raises(StreamError):
        agent.send_end(sid)
    with pytest.raises(StreamError):
        agent.send_response_head(sid, 99, b"", [])
    agent.send_response_head(sid, 200, b"OK", [])
    with pytest.raises(StreamError):
        agent.send_response_head(sid, 200, b"OK", [])
    agent.send_end(sid)
    with pytest.raises(StreamClosedError):
        agent.send_end(sid)
    with pytest.raises(StreamClosedError):
        agent.send_data(sid, b"x")
    assert agent.send_window(sid) == 0
    assert agent.send_window(12345) == 0
    with pytest.raises(ValueError):
        Session("viewer", Settings(), Settings())
    # The shells may catch ValueError for every local misuse.
    assert issubclass(StreamError, ValueError)
    assert issubclass(FlowControlError, StreamError)


# --------------------------------------------------------------------------
# Reset


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
    assert pump(agent, edge) == [
        StreamReset(sid, ErrorCode.ORIGIN_UNREACHABLE, b"connection refused")
    ]
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
    # And were not delivered: nothing to acknowledge.
    with pytest.raises(StreamError):
        edge.acknowledge(sid, 1)


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
    assert edge.closed and agent.closed


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
    assert edge.closed and agent.closed


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


# --------------------------------------------------------------------------
# Bookkeeping


def test_bounded_bookkeeping_after_100k_streams() -> None:
    edge, agent = make_pair()
    for i in range(100_000):
        sid = edge.send_request_head(*GET, end_stream=True)
        for message in edge.data_to_send():
            agent.receive(message)
        if i % 3 == 0:
            agent.reset_stream(sid, ErrorCode.ORIGIN_RESET)
        elif i % 3 == 1:
            agent.send_response_head(sid, 200, b"OK", [])
            agent.send_data(sid, b"ok", end_stream=True)
        else:
            agent.send_response_head(sid, 200, b"OK", [])
            edge.reset_stream(sid)  # crosses with the agent's END below
            agent.send_end(sid)
        for message in agent.data_to_send():
            for e in edge.receive(message):
                if isinstance(e, DataReceived):
                    edge.acknowledge(e.stream_id, len(e.data))
        for message in edge.data_to_send():
            agent.receive(message)
    assert sid == 100_000
    for s in (edge, agent):
        assert s.open_streams == 0
        assert len(s._closed) <= CLOSED_STREAMS_REMEMBERED
        assert len(s._streams) == 0


# --------------------------------------------------------------------------
# Fuzzing


@given(st.binary(max_size=100), st.sampled_from(["edge", "agent"]))
@settings(max_examples=1000)
def test_receive_arbitrary_bytes_on_a_fresh_session(message: bytes, role: str) -> None:
    session = Session(role, Settings(), Settings())
    try:
        session.receive(message)
    except ProtocolError:
        assert session.closed


small_ids = st.integers(0, 4)
valid_frames = st.one_of(
    st.builds(RequestHead, st.integers(1, 4), st.just(b"GET"), st.just(b"/"), st.just([]), st.booleans()),
    st.builds(ResponseHead, st.integers(1, 4), st.sampled_from([100, 200, 404]), st.just(b""), st.just([]), st.booleans()),
    st.builds(Data, st.integers(1, 4), st.binary(max_size=3000), st.booleans()),
    st.builds(End, st.integers(1, 4)),
    st.builds(Reset, st.integers(1, 4), st.integers(0, 12)),
    st.builds(WindowUpdate, small_ids, st.integers(1, 2**31 - 1)),
    st.builds(GoAway, small_ids, st.integers(0, 12)),
)


@given(st.lists(valid_frames, max_size=30), st.sampled_from(["edge", "agent"]), st.data())
@settings(max_examples=500)
def test_receive_arbitrary_frame_sequences(frames: list[Any], role: str, data: st.DataObject) -> None:
    small = Settings(stream_window=4000, session_window=6000, max_frame_payload=2048)
    session = Session(role, small, small)
    for frame in frames:
        if role == "edge" and data.draw(st.booleans()):
            try:
                session.send_request_head(*GET)
            except StreamClosedError:
                pass
        try:
            for event in session.receive(encode(frame)):
                if isinstance(event, DataReceived) and event.data:
                    session.acknowledge(event.stream_id, len(event.data))
        except ProtocolError:
            assert session.closed
            break
        session.data_to_send()


@given(
    st.lists(st.integers(0, 20000), min_size=1, max_size=5),
    st.integers(100, 9000),
    st.integers(1024, 5000),
)
@settings(max_examples=100, deadline=None)
def test_flow_controlled_transfer_completes(
    sizes: list[int], window: int, max_payload: int
) -> None:
    """
    Well-behaved peers that send only what the window allows and acknowledge
    everything delivered always finish, with every byte in order.
    """
    s = Settings(stream_window=window, session_window=window + 1000, max_frame_payload=max_payload)
    edge, agent = make_pair(edge_settings=s, agent_settings=s)
    bodies = {}
    for i, size in enumerate(sizes):
        sid = edge.send_request_head(b"POST", b"/", [])
        bodies[sid] = bytes([i]) * size
    offsets = dict.fromkeys(bodies, 0)
    received: dict[int, bytes] = dict.fromkeys(bodies, b"")
    ended: set[int] = set()
    for _ in range(sum(sizes) + 10):
        for sid, body in bodies.items():
            if sid in ended or not edge.is_open(sid):
                continue
            n = min(edge.send_window(sid), len(body) - offsets[sid])
            last = offsets[sid] + n == len(body)
            if n or last:
                edge.send_data(sid, body[offsets[sid] : offsets[sid] + n], end_stream=last)
                offsets[sid] += n
        for e in pump(edge, agent):
            if isinstance(e, DataReceived):
                received[e.stream_id] += e.data
                agent.acknowledge(e.stream_id, len(e.data))
                if e.end_stream:
                    ended.add(e.stream_id)
            elif isinstance(e, StreamEnded):
                ended.add(e.stream_id)
        pump(agent, edge)
        if len(ended) == len(bodies):
            break
    assert received == bodies


def test_window_of_one_byte() -> None:
    s = Settings(stream_window=1, session_window=1)
    edge, agent = make_pair(agent_settings=s)
    sid = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    for byte in b"hello":
        assert edge.send_window(sid) == 1
        edge.send_data(sid, bytes([byte]))
        assert edge.send_window(sid) == 0
        assert pump(edge, agent) == [DataReceived(sid, bytes([byte]), False)]
        agent.acknowledge(sid, 1)
        assert [e for e in pump(agent, edge)] == [WindowOpened(sid), WindowOpened(0)]


class _Peer:
    """
    One side of a randomly driven but well-behaved pair: it only uses the
    API (never forges frames) and acknowledges what it was given.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.in_flight: list[bytes] = []
        self.unacked: dict[int, int] = {}

    def take(self) -> None:
        self.in_flight += self.session.data_to_send()

    def deliver(self, other: "_Peer", count: int) -> None:
        self.take()
        batch, self.in_flight = self.in_flight[:count], self.in_flight[count:]
        for message in batch:
            for event in other.session.receive(message):
                if isinstance(event, DataReceived) and event.data:
                    other.unacked[event.stream_id] = (
                        other.unacked.get(event.stream_id, 0) + len(event.data)
                    )


actions = st.lists(
    st.tuples(
        st.sampled_from(
            ["open", "head", "data", "end", "reset", "ack", "go_away", "deliver"]
        ),
        st.booleans(),  # which side
        st.integers(0, 7),  # which stream / how many messages
        st.integers(0, 5000),  # how many bytes
    ),
    max_size=80,
)


@given(actions)
@settings(max_examples=400, deadline=None)
def test_well_behaved_peers_never_break_the_protocol(script: list[Any]) -> None:
    """
    Whatever legal calls two sessions make, in whatever order their
    messages cross, neither ever sees a protocol error.
    """
    s = Settings(stream_window=3000, session_window=7000, max_frame_payload=1024)
    edge, agent = _Peer(Session("edge", s, s)), _Peer(Session("agent", s, s))
    for action, on_edge, k, size in script:
        me, other = (edge, agent) if on_edge else (agent, edge)
        session = me.session
        sid = k + 1
        try:
            if action == "open":
                edge.session.send_request_head(b"POST", b"/", [], end_stream=size < 500)
            elif action == "head":
                agent.session.send_response_head(sid, 200 if size % 7 else 103, b"", [], end_stream=size < 500)
            elif action == "data":
                n = min(size, session.send_window(sid))
                session.send_data(sid, b"d" * n, end_stream=size % 3 == 0)
            elif action == "end":
                session.send_end(sid)
            elif action == "reset":
                session.reset_stream(sid, ErrorCode.CANCEL)
            elif action == "ack":
                n = min(size, me.unacked.get(sid, 0))
                session.acknowledge(sid, n)
                me.unacked[sid] = me.unacked.get(sid, 0) - n
            elif action == "go_away":
                session.go_away()
            else:
                me.deliver(other, k)
        except StreamError:
            pass  # a refused call: legal, and nothing was queued
    # Drain everything, acknowledging all, until quiet.
    for _ in range(100):
        for peer in (edge, agent):
            for stream_id, n in list(peer.unacked.items()):
                if n:
                    peer.session.acknowledge(stream_id, n)
                    peer.unacked[stream_id] = 0
        edge.take()
        agent.take()
        if not edge.in_flight and not agent.in_flight:
            break
        edge.deliver(agent, 10**6)
        agent.deliver(edge, 10**6)
    assert edge.session.error is None and agent.session.error is None
    # All credit came home: no leak in the session windows.
    assert edge.session._recv_window + edge.session._session_pending == s.session_window
    assert agent.session._recv_window + agent.session._session_pending == s.session_window


# --------------------------------------------------------------------------
# BATCH frames


def test_small_frames_leave_as_one_batch_when_the_peer_takes_them() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [(b"content-length", b"13")])
    agent.send_data(sid, b"Hello, World!", end_stream=True)
    messages = agent.data_to_send()
    assert len(messages) == 1 and messages[0][0] == FrameType.BATCH
    assert [type(e) for e in edge.receive(messages[0])] == [ResponseReceived, DataReceived]


def test_no_batch_for_a_peer_that_did_not_announce_it() -> None:
    edge, agent = make_pair(edge_settings=Settings(batch=False))
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [])
    agent.send_data(sid, b"x", end_stream=True)
    messages = agent.data_to_send()
    assert [m[0] for m in messages] == [FrameType.RESPONSE_HEAD, FrameType.DATA]


def test_a_batch_to_a_side_that_did_not_announce_it_is_a_protocol_error() -> None:
    edge, agent = make_pair(edge_settings=Settings(batch=False))
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    message = encode_batch([encode(ResponseHead(sid, 200, b"OK", [], True))])
    with pytest.raises(ProtocolError):
        edge.receive(message)
    assert edge.closed


def test_large_frames_go_alone_and_order_is_kept() -> None:
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [])
    agent.send_data(sid, b"a" * 40000)  # over BATCH_FRAME_MAX: alone
    agent.send_data(sid, b"b" * 10)
    agent.send_data(sid, b"c" * 10, end_stream=True)
    messages = agent.data_to_send()
    assert [m[0] for m in messages] == [FrameType.RESPONSE_HEAD, FrameType.DATA, FrameType.BATCH]
    events: list[Event] = []
    for m in messages:
        events += edge.receive(m)
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"a" * 40000 + b"b" * 10 + b"c" * 10


def test_a_bad_frame_inside_a_batch_fails_the_session() -> None:
    edge, agent = make_pair()
    message = encode_batch([encode(WindowUpdate(0, 10)), HEADER.pack(99, 0, 1)])
    with pytest.raises(ProtocolError, match="unknown frame type 99"):
        agent.receive(message)
    assert agent.closed
