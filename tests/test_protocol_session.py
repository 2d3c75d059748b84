"""
The session state machine of netbore.protocol: an edge Session and an
agent Session wired together by moving data_to_send() into receive().
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from netbore.protocol import (
    Data,
    DataReceived,
    End,
    ErrorCode,
    Event,
    FlowControlError,
    FrameType,
    GoAway,
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
    WindowUpdate,
    decode,
    decode_batch,
    encode,
)
from netbore.protocol.session import CLOSED_STREAMS_REMEMBERED

GET = (b"GET", b"/", [(b"host", b"app.example")])


def make_pair(
    edge_settings: Settings | None = None,
    agent_settings: Settings | None = None,
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
    assert pump(edge, agent) == [RequestReceived(1, b"GET", b"/", [(b"host", b"app.example")], True)]
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
        "RequestReceived",
        "StreamEnded",
        "RequestReceived",
        "StreamEnded",
        "RequestReceived",
        "DataReceived",
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
