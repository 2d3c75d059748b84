"""
Random input to netbore.protocol's Session: arbitrary bytes and frame
sequences are refused only with ProtocolError, and well-behaved peers
never break the protocol.
"""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    Data,
    DataReceived,
    End,
    ErrorCode,
    FrameType,
    GoAway,
    ProtocolError,
    RequestHead,
    Reset,
    ResponseHead,
    Session,
    Settings,
    StreamClosedError,
    StreamError,
    WindowUpdate,
    decode,
    encode,
)

from .test_protocol_session import GET

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
    st.builds(
        ResponseHead, st.integers(1, 4), st.sampled_from([100, 200, 404]), st.just(b""), st.just([]), st.booleans()
    ),
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

    def deliver(self, other: _Peer, count: int) -> None:
        self.take()
        batch, self.in_flight = self.in_flight[:count], self.in_flight[count:]
        for message in batch:
            for event in other.session.receive(message):
                if isinstance(event, DataReceived) and event.data:
                    other.unacked[event.stream_id] = other.unacked.get(event.stream_id, 0) + len(event.data)


actions = st.lists(
    st.tuples(
        st.sampled_from(["open", "head", "data", "end", "reset", "ack", "go_away", "deliver"]),
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
        sid = k + 1
        try:
            if action == "open":
                edge.session.send_request_head(b"POST", b"/", [], end_stream=size < 500)
            elif action == "head":
                agent.session.send_response_head(sid, 200 if size % 7 else 103, b"", [], end_stream=size < 500)
            else:
                common_action(action, me, other, sid, k, size)
        except StreamError:
            pass  # a refused call: legal, and nothing was queued
    drain_and_check(edge, agent, s)


# --------------------------------------------------------------------------
# Heads and DATA read in place (Receiving._frame) against decode()

_TOKENS = st.binary(min_size=0, max_size=6)


def _outcome(session: Session, message: bytes, in_place: bool) -> object:
    try:
        if in_place:
            return session.receive(message)
        frame = decode(message)
        return session._handlers[type(frame)](frame)
    except ProtocolError as e:
        return ("refused", str(e), e.code)


def _edge_waiting() -> Session:
    edge = Session("edge", Settings(), Settings())
    edge.send_request_head(b"GET", b"/", [], end_stream=True)
    return edge


@given(
    st.data(),
    st.sampled_from(["request", "response", "data"]),
    st.lists(st.tuples(_TOKENS, _TOKENS), max_size=3),
)
@settings(max_examples=500)
def test_frames_read_in_place_are_read_as_decode_reads_them(
    data: st.DataObject, kind: str, headers: list[tuple[bytes, bytes]]
) -> None:
    # Valid heads (as far as encode allows) and DATA, then cut, extended or
    # with one byte changed: the session reads each exactly as decode()
    # and the frame's handler do, refusals and their reasons included.
    try:
        if kind == "request":
            frame: Any = RequestHead(1, b"GET", data.draw(st.sampled_from([b"/", b"/a b", b""])), headers, True)
        elif kind == "response":
            frame = ResponseHead(1, data.draw(st.sampled_from([200, 99, 204])), b"OK", headers, True)
        else:
            frame = Data(1, data.draw(st.binary(max_size=8)), True)
        message = encode(frame)
    except ValueError:
        return
    how = data.draw(st.sampled_from(["as is", "cut", "extended", "changed"]))
    if how == "cut":
        message = message[: data.draw(st.integers(0, len(message)))]
    elif how == "extended":
        message += data.draw(st.binary(min_size=1, max_size=3))
    elif how == "changed":
        i = data.draw(st.integers(0, len(message) - 1))
        message = message[:i] + bytes([data.draw(st.integers(0, 255))]) + message[i + 1 :]
    assume(message[:1] != bytes([FrameType.BATCH]))  # (a BATCH message, read as one)
    make = _edge_waiting if kind != "request" else lambda: Session("agent", Settings(), Settings())
    assert _outcome(make(), message, True) == _outcome(make(), message, False)


def common_action(action: str, me: _Peer, other: _Peer, sid: int, k: int, size: int) -> None:
    """A legal call of any stream's (data, end, reset, ack, go_away), or delivery."""
    session = me.session
    if action == "data":
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


def drain_and_check(edge: _Peer, agent: _Peer, s: Settings) -> None:
    """
    Drain everything, acknowledging all, until quiet: neither side saw a
    protocol error and all credit came home (no leak in the session windows).
    """
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
    assert edge.session._recv_window + edge.session._session_pending == s.session_window
    assert agent.session._recv_window + agent.session._session_pending == s.session_window
