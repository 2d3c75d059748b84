"""
Flow control of netbore.protocol's Session: stream and session windows,
acknowledgement and WINDOW_UPDATE batching.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    Data,
    DataReceived,
    ErrorCode,
    FlowControlError,
    Settings,
    StreamEnded,
    StreamError,
    WindowOpened,
    WindowUpdate,
)

from .test_protocol_session import GET, feed, make_pair, pump, refused, window_updates

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
    # The session's credit went back as the bytes came in (once half the
    # window had), before any of them was acknowledged.
    updates = window_updates(agent.data_to_send())
    assert updates == [WindowUpdate(0, 6000)]
    # Both streams were told 0 because of the session: both are woken.
    assert feed(edge, *updates) == [WindowOpened(a), WindowOpened(b)]
    assert edge.send_window(a) == 2192
    assert edge.send_window(b) == 8192 - 4000
    # Acknowledging returns stream credit only (under the 4096 threshold: none yet).
    agent.acknowledge(a, 4000)
    agent.acknowledge(b, 1000)
    assert agent.data_to_send() == []


def test_a_stalled_stream_holds_only_its_own_window() -> None:
    """
    Issue 10, item 1: a consumer that never acknowledges keeps its stream's
    window shut, never the session's; the other streams go on.
    """
    s = Settings(stream_window=4096, session_window=8192)
    edge, agent = make_pair(edge_settings=s)
    stalled = [edge.send_request_head(*GET, end_stream=True) for _ in range(4)]
    other = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    for sid in [*stalled, other]:
        agent.send_response_head(sid, 200, b"OK", [])
    for sid in stalled:
        # (never acknowledged by the edge: its viewer does not read)
        assert agent.send_some(sid, b"s" * 10000) == 4096
        pump(agent, edge)
        pump(edge, agent)
    # Four stream windows (twice the session window) went out, and the
    # session still has room for the other stream.
    received = 0
    for _ in range(10):
        n = agent.send_some(other, b"o" * 4096)
        assert n > 0
        events = pump(agent, edge)
        got = sum(len(e.data) for e in events if isinstance(e, DataReceived))
        edge.acknowledge(other, got)
        received += got
        pump(edge, agent)
    assert received == 10 * 4096


def test_acknowledge_after_close_does_nothing() -> None:
    s = Settings(stream_window=4096, session_window=4096)
    edge, agent = make_pair(edge_settings=s)
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 200, b"OK", [])
    agent.send_data(sid, b"x" * 4096, end_stream=True)
    pump(agent, edge)
    assert not edge.is_open(sid)
    assert agent.send_window(sid) == 0
    # The session's credit went back on receipt.
    assert window_updates(edge.data_to_send()) == [WindowUpdate(0, 4096)]
    edge.acknowledge(sid, 4096)
    assert edge.data_to_send() == []


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
    edge, agent = make_pair(agent_settings=Settings(stream_window=2000, session_window=1500))
    a = edge.send_request_head(b"POST", b"/", [])
    b = edge.send_request_head(b"POST", b"/", [])
    pump(edge, agent)
    feed(agent, Data(a, b"x" * 1000))  # (its session credit goes back at once)
    assert refused(agent, Data(b, b"x" * 1501)) == ErrorCode.FLOW_CONTROL_ERROR


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


@given(
    st.lists(st.integers(0, 20000), min_size=1, max_size=5),
    st.integers(100, 9000),
    st.integers(1024, 5000),
)
@settings(max_examples=100, deadline=None)
def test_flow_controlled_transfer_completes(sizes: list[int], window: int, max_payload: int) -> None:
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
        # (the session's update wakes nobody: no stream waits on it)
        assert [e for e in pump(agent, edge)] == [WindowOpened(sid)]


def test_send_some_takes_what_the_window_allows_and_ends_only_with_all() -> None:
    small = Settings(stream_window=4096, session_window=1 << 20)
    edge, agent = make_pair(agent_settings=small)
    sid = edge.send_request_head(b"POST", b"/", [])
    assert edge.send_some(sid, b"x" * 4000) == 4000
    assert edge.send_some(sid, b"y" * 200, end_stream=True) == 96  # the rest of the window; no END
    assert edge.send_some(sid, b"z", end_stream=True) == 0  # shut: nothing taken
    events = pump(edge, agent)
    assert [(len(e.data), e.end_stream) for e in events if isinstance(e, DataReceived)] == [(4000, False), (96, False)]
    agent.acknowledge(sid, 4096)
    pump(agent, edge)
    assert edge.send_some(sid, b"z", end_stream=True) == 1
    assert [e for e in pump(edge, agent) if isinstance(e, DataReceived)] == [DataReceived(sid, b"z", True)]
    # Empty with end_stream ends the body; a stream that is not open takes nothing.
    other = edge.send_request_head(b"POST", b"/", [])
    assert edge.send_some(other, b"", end_stream=True) == 0
    assert pump(edge, agent)[-1] == StreamEnded(other)
    assert edge.send_some(other, b"late") == 0


def test_the_outbox_shows_whether_there_is_anything_to_send() -> None:
    edge, agent = make_pair()
    assert edge.outbox == []
    sid = edge.send_request_head(b"GET", b"/", [], end_stream=True)
    assert len(edge.outbox) == 1
    messages = edge.data_to_send()
    assert len(messages) == 1 and edge.outbox == []
    assert edge.data_to_send() == []
    assert [type(e).__name__ for m in messages for e in agent.receive(m)] == ["RequestReceived"]
    assert agent.is_open(sid)


# --------------------------------------------------------------------------
# Issue 10, item 16: a session WINDOW_UPDATE costs what waits on it


def test_a_session_window_update_wakes_only_the_streams_waiting_on_it() -> None:
    s = Settings(stream_window=4096, session_window=4096)
    edge, agent = make_pair(agent_settings=s)
    idle = [edge.send_request_head(b"POST", b"/", []) for _ in range(200)]
    pump(edge, agent)
    # None waits: an update of the session window wakes none of the 200.
    assert feed(edge, WindowUpdate(0, 1000)) == []
    a, b = idle[10], idle[20]
    assert edge.send_some(a, b"x" * 5000) == 4096  # short by its own window, not the session's
    assert edge.send_some(b, b"x" * 100) == 100
    assert feed(edge, WindowUpdate(0, 1)) == []  # nobody found the session's window shut
    # Two streams do: one by send_some, one by asking send_window.
    assert edge.send_some(b, b"z" * 5000) == 5097 - 4096 - 100
    assert edge.send_window(idle[30]) == 0  # told 0 because of the session
    assert feed(edge, WindowUpdate(0, 10)) == [WindowOpened(b), WindowOpened(idle[30])]
    # Woken once: the next update finds nobody waiting.
    assert feed(edge, WindowUpdate(0, 10)) == []


def test_streams_waiting_on_the_session_that_close_are_not_woken() -> None:
    s = Settings(stream_window=4096, session_window=100)
    edge, agent = make_pair(agent_settings=s)
    a = edge.send_request_head(b"POST", b"/", [])
    b = edge.send_request_head(b"POST", b"/", [])
    assert edge.send_some(a, b"x" * 200) == 100
    assert edge.send_window(b) == 0
    edge.reset_stream(a)
    assert feed(edge, WindowUpdate(0, 50)) == [WindowOpened(b)]
