"""
Byte streams in netbore.protocol (issue 11, deliverable 1): the BYTES_OPEN
frame, the C{byte_streams} hello setting, raw and upgraded streams carrying
bytes both ways under the credit windows, half-close, reset, and old peers
(never sent a byte stream; their frames and hellos unchanged).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    OPEN_RAW,
    OPEN_UPGRADE,
    BytesOpen,
    BytesOpened,
    ByteStreamsNotSupported,
    Data,
    DataReceived,
    End,
    ErrorCode,
    FlowControlError,
    GoAway,
    Hello,
    ProtocolError,
    RequestHead,
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
    decode_hello,
    encode,
    encode_bytes_open,
    encode_hello,
)

from .test_protocol_fuzz import _Peer, common_action, drain_and_check
from .test_protocol_session import GET, feed, frames_of, pump

ON = Settings(byte_streams=True)
UPGRADE = (b"GET", b"/chat", [(b"Host", b"app.example"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")])


def make_pair(edge: Settings = ON, agent: Settings = ON) -> tuple[Session, Session]:
    return Session("edge", edge, agent), Session("agent", agent, edge)


def data_of(events: list[Any], stream_id: int) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived) and e.stream_id == stream_id)


def raw_pair(**changes: Any) -> tuple[Session, Session, int]:
    s = Settings(byte_streams=True, **changes)
    edge, agent = make_pair(s, s)
    sid = edge.open_byte_stream([(b"peer", b"192.0.2.7:51514")])
    assert pump(edge, agent) == [BytesOpened(sid, False, b"", b"", [(b"peer", b"192.0.2.7:51514")])]
    return edge, agent, sid


def upgraded_pair() -> tuple[Session, Session, int]:
    edge, agent = make_pair()
    sid = edge.open_upgrade(*UPGRADE)
    assert pump(edge, agent) == [BytesOpened(sid, True, *UPGRADE)]
    agent.send_response_head(sid, 101, b"Switching Protocols", [(b"Upgrade", b"websocket")])
    switched = ResponseReceived(sid, 101, b"Switching Protocols", [(b"Upgrade", b"websocket")], False)
    assert pump(agent, edge) == [switched]
    return edge, agent, sid


# --------------------------------------------------------------------------
# The hello setting


def test_byte_streams_is_off_by_default_and_left_out_of_hellos_while_off() -> None:
    assert Settings().byte_streams is False
    text = encode_hello(Hello(1, "agent", Settings(), agent_id="a"))
    # Byte for byte the hello of the code before byte streams.
    assert text == (
        '{"type":"hello","version":1,"role":"agent","settings":{"stream_window":2097152,'
        '"session_window":16777216,"max_frame_payload":65536,"batch":true},"agent_id":"a"}'
    )
    assert decode_hello(text).settings.byte_streams is False


def test_byte_streams_is_announced_and_read_back() -> None:
    hello = Hello(1, "edge", Settings(byte_streams=True))
    text = encode_hello(hello)
    assert json.loads(text)["settings"]["byte_streams"] is True
    assert decode_hello(text) == hello


@pytest.mark.parametrize("value", ["1", '"true"', "null", '"yes"', "[]"])
def test_byte_streams_must_be_true_or_false(value: str) -> None:
    text = f'{{"type": "hello", "version": 1, "role": "agent", "settings": {{"byte_streams": {value}}}}}'
    with pytest.raises(ProtocolError, match="byte_streams"):
        decode_hello(text)


def test_a_peer_window_clamp_keeps_byte_streams() -> None:
    from netbore.protocol import clamp_peer

    peer = Settings(stream_window=2**31 - 1, byte_streams=True)
    assert clamp_peer(Settings(), peer).byte_streams is True


# --------------------------------------------------------------------------
# Old peers: never sent a byte stream; old frames unchanged

OLD_FRAMES = [
    (
        RequestHead(7, b"GET", b"/a?b", [(b"Host", b"x.example")], True),
        "010100000007000347455400042f613f6200010004486f73740009782e6578616d706c65",
    ),
    (
        ResponseHead(7, 101, b"Switching Protocols", [(b"Upgrade", b"websocket")]),
        "02000000000700650013537769746368696e672050726f746f636f6c7300010007557067726164650009776562736f636b6574",
    ),
    (Data(7, b"\x00\x01bytes", True), "03010000000700016279746573"),
    (End(7), "040000000007"),
    (Reset(7, ErrorCode.ORIGIN_UNREACHABLE, b"gone"), "05000000000700000008676f6e65"),
    (WindowUpdate(0, 65536), "06000000000000010000"),
    (GoAway(7, ErrorCode.NO_ERROR, b"bye"), "0700000000000000000700000000627965"),
]


@pytest.mark.parametrize(("frame", "wire"), OLD_FRAMES)
def test_old_frames_are_byte_identical(frame: Any, wire: str) -> None:
    # (the bytes are those the code before byte streams encodes)
    assert encode(frame).hex() == wire
    assert decode(bytes.fromhex(wire)) == frame


@pytest.mark.parametrize("opener", ["open_byte_stream", "open_upgrade"])
def test_no_byte_stream_is_opened_towards_a_peer_that_did_not_announce_it(opener: str) -> None:
    old = Settings()  # an agent from before byte streams
    edge, agent = make_pair(edge=ON, agent=old)
    args: tuple[Any, ...] = UPGRADE if opener == "open_upgrade" else ()
    with pytest.raises(ByteStreamsNotSupported, match="byte_streams"):
        getattr(edge, opener)(*args)
    assert isinstance(ByteStreamsNotSupported("x"), StreamError)
    # Nothing was queued, no stream id was used, the session goes on.
    assert edge.data_to_send() == [] and edge.open_streams == 0
    assert edge.send_request_head(*GET, end_stream=True) == 1


def test_an_old_peer_hello_means_no_byte_streams() -> None:
    # The hello of an agent from before byte streams (no such key).
    hello = decode_hello('{"type": "hello", "version": 1, "role": "agent", "settings": {"batch": true}}')
    edge = Session("edge", ON, hello.settings)
    with pytest.raises(ByteStreamsNotSupported):
        edge.open_byte_stream()


def test_a_side_that_did_not_announce_byte_streams_refuses_bytes_open() -> None:
    agent = Session("agent", Settings(), ON)
    with pytest.raises(ProtocolError, match="byte_streams") as info:
        feed(agent, BytesOpen(1, OPEN_RAW, []))
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    assert agent.closed


def test_the_edge_never_receives_bytes_open() -> None:
    edge = Session("edge", ON, ON)
    with pytest.raises(ProtocolError, match="edge cannot receive BYTES_OPEN"):
        feed(edge, BytesOpen(1, OPEN_RAW, []))


def test_only_the_edge_opens_byte_streams() -> None:
    _, agent = make_pair()
    with pytest.raises(StreamError, match="only the edge"):
        agent.open_byte_stream()
    with pytest.raises(StreamError, match="only the edge"):
        agent.open_upgrade(*UPGRADE)


# --------------------------------------------------------------------------
# The frame


def test_worked_examples() -> None:
    raw = encode_bytes_open(3, OPEN_RAW, [(b"peer", b"192.0.2.7:51514")])
    assert raw.hex(" ") == (
        "09 00 00 00 00 03 00 00 01 00 04 70 65 65 72 00 0f 31 39 32 2e 30 2e 32 2e 37 3a 35 31 35 31 34"
    )
    assert decode(raw) == BytesOpen(3, OPEN_RAW, [(b"peer", b"192.0.2.7:51514")])
    up = encode_bytes_open(4, OPEN_UPGRADE, [(b"Upgrade", b"websocket")], b"GET", b"/ws")
    assert up.hex(" ") == (
        "09 00 00 00 00 04 01 00 03 47 45 54 00 03 2f 77 73 00 01"
        " 00 07 55 70 67 72 61 64 65 00 09 77 65 62 73 6f 63 6b 65 74"
    )
    assert decode(up) == BytesOpen(4, OPEN_UPGRADE, [(b"Upgrade", b"websocket")], b"GET", b"/ws")
    assert encode(decode(up)) == up
    # An upgrade's payload after the mode byte is a REQUEST_HEAD's.
    assert up[7:] == encode(RequestHead(4, b"GET", b"/ws", [(b"Upgrade", b"websocket")]))[6:]


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (BytesOpen(1, 2, []), "unknown BYTES_OPEN mode"),
        (BytesOpen(1, OPEN_RAW, [], b"GET", b""), "no method or target"),
        (BytesOpen(1, OPEN_UPGRADE, [], b"", b"/"), "invalid method"),
        (BytesOpen(1, OPEN_UPGRADE, [], b"GET", b"/ x"), "invalid request target"),
        (BytesOpen(0, OPEN_RAW, []), "stream id"),
        (BytesOpen(1, OPEN_RAW, [(b"bad name", b"v")]), "invalid header name"),
        (BytesOpen(1, OPEN_RAW, [(b"n", b"a\r\nb")]), "invalid value"),
        (BytesOpen(1, OPEN_RAW, [(b"n", b"v" * 70000)]), "longer than 65535"),
        (BytesOpen(1, OPEN_RAW, [(b"n", b"v" * 60000)] * 5), "larger than 262144"),
        (BytesOpen(1, OPEN_UPGRADE, [(b"n", b"v" * 60000)] * 5, b"GET", b"/"), "larger than 262144"),
    ],
)
def test_unencodable_bytes_open(frame: BytesOpen, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        encode(frame)


def _open(flags: int = 0, stream_id: int = 1) -> bytes:
    return bytes([9, flags]) + stream_id.to_bytes(4, "big")


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (_open(), "truncated BYTES_OPEN"),
        (_open(flags=1) + b"\x00\x00\x00", "flags 0x01"),
        (_open(flags=2) + b"\x00\x00\x00", "flags 0x02"),
        (_open(stream_id=0) + b"\x00\x00\x00", "on stream 0"),
        (_open() + b"\x02\x00\x00", "unknown mode 2"),
        (_open() + b"\x00", "truncated"),
        (_open() + b"\x00\x00", "truncated"),
        (_open() + b"\x00\x00\x00\xff", "trailing bytes"),
        (_open() + b"\x00\x00\x01\x00\x01", "truncated"),
        (_open() + b"\x00\x00\x01\x00\x01n\x00\x05ab", "truncated field"),
        (_open() + b"\x00\x00\x01\x00\x00\x00\x00", "invalid header name"),
        (_open() + b"\x01\x00\x00\x00\x01/\x00\x00", "invalid method"),
        (_open() + b"\x01\x00\x03GET\x00\x00\x00\x00", "invalid request target"),
        (_open() + b"\x01\x00\x03G T\x00\x01/\x00\x00", "invalid method"),
        (_open() + b"\x01\x00\x03GET\x00\x01/", "truncated"),
        (_open() + b"\x01\x00\x03GET\x00\x01/\x00\x00!", "trailing bytes"),
    ],
)
def test_malformed_bytes_open_is_a_protocol_error(message: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error) as info:
        decode(message)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    agent = Session("agent", ON, ON)
    with pytest.raises(ProtocolError):
        agent.receive(message)
    assert agent.closed


def test_a_bytes_open_larger_than_a_head_is_too_large() -> None:
    big = encode_bytes_open(1, OPEN_RAW, [(b"x", b"v" * 60000)] * 4)
    big += b"\x00" * (256 * 1024 + 7 - len(big))
    with pytest.raises(ProtocolError) as info:
        decode(big)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


names = st.binary(min_size=1, max_size=12).filter(lambda b: not any(c in b for c in b"\x00\t\n\r :"))
values = st.binary(max_size=30).filter(lambda b: not any(c in b for c in b"\x00\n\r"))
headers = st.lists(st.tuples(names, values), max_size=5)
bytes_opens = st.one_of(
    st.builds(BytesOpen, st.integers(1, 2**32 - 1), st.just(OPEN_RAW), headers),
    st.builds(
        BytesOpen,
        st.integers(1, 2**32 - 1),
        st.just(OPEN_UPGRADE),
        headers,
        names,
        st.binary(min_size=1, max_size=20).filter(lambda b: not any(c in b for c in b"\x00\t\n\r ")),
    ),
)


@given(bytes_opens)
@settings(max_examples=300)
def test_bytes_open_round_trip(frame: BytesOpen) -> None:
    assert decode(encode(frame)) == frame


@given(st.binary(max_size=60))
@settings(max_examples=500)
def test_arbitrary_bytes_open_payloads_raise_only_protocol_error(payload: bytes) -> None:
    try:
        frame = decode(_open() + payload)
    except ProtocolError:
        return
    assert encode(frame) == _open() + payload


# --------------------------------------------------------------------------
# Raw byte streams


def test_bytes_flow_both_ways_at_once() -> None:
    edge, agent, sid = raw_pair()
    edge.send_data(sid, b"\x00client hello\xff")
    agent.send_data(sid, b"server banner\r\n")
    assert pump(edge, agent) == [DataReceived(sid, b"\x00client hello\xff", False)]
    assert pump(agent, edge) == [DataReceived(sid, b"server banner\r\n", False)]
    assert edge.is_open(sid) and agent.is_open(sid)


def test_a_raw_stream_has_no_heads() -> None:
    edge, agent, sid = raw_pair()
    with pytest.raises(StreamError):
        agent.send_response_head(sid, 200, b"OK", [])
    with pytest.raises(ProtocolError):
        feed(edge, ResponseHead(sid, 200, b"OK", []))


def test_byte_streams_are_windowed_per_stream() -> None:
    edge, agent, sid = raw_pair(stream_window=4096, session_window=1 << 20, max_frame_payload=1024)
    assert edge.send_window(sid) == 4096
    assert edge.send_some(sid, b"x" * 10000) == 4096
    with pytest.raises(FlowControlError):
        edge.send_data(sid, b"y")
    events = pump(edge, agent)
    assert len(data_of(events, sid)) == 4096
    assert all(len(e.data) <= 1024 for e in events)
    # The stream's credit comes back only as the agent consumes the bytes.
    agent.acknowledge(sid, 1000)
    assert pump(agent, edge) == []
    agent.acknowledge(sid, 3096)
    assert pump(agent, edge) == [WindowOpened(sid)]
    assert edge.send_window(sid) == 4096


def test_a_stalled_byte_stream_holds_only_its_own_window() -> None:
    s = Settings(stream_window=4096, session_window=8192, byte_streams=True)
    edge, agent = make_pair(s, s)
    stalled = [edge.open_byte_stream() for _ in range(4)]
    other = edge.open_byte_stream()
    pump(edge, agent)
    for sid in stalled:
        # (the agent's local connection never reads: nothing acknowledged)
        assert edge.send_some(sid, b"s" * 10000) == 4096
        pump(edge, agent)
        pump(agent, edge)
    received = 0
    for _ in range(10):
        assert edge.send_some(other, b"o" * 4096) > 0
        got = len(data_of(pump(edge, agent), other))
        agent.acknowledge(other, got)
        received += got
        pump(agent, edge)
    assert received == 10 * 4096
    # ... and the other direction of the stalled streams is not stalled.
    agent.send_data(stalled[0], b"still talking")
    assert data_of(pump(agent, edge), stalled[0]) == b"still talking"


@pytest.mark.parametrize("first", ["edge", "agent"])
@pytest.mark.parametrize("how", ["send_end", "end_stream"])
def test_half_close_in_each_direction_then_the_other(first: str, how: str) -> None:
    edge, agent, sid = raw_pair()
    sides = {"edge": (edge, agent), "agent": (agent, edge)}
    closer, other = sides[first]
    if how == "send_end":
        closer.send_data(sid, b"last words")
        closer.send_end(sid)
        assert pump(closer, other) == [DataReceived(sid, b"last words", False), StreamEnded(sid)]
    else:
        closer.send_data(sid, b"last words", end_stream=True)
        assert pump(closer, other) == [DataReceived(sid, b"last words", True)]
    with pytest.raises(StreamClosedError):
        closer.send_data(sid, b"more")
    assert closer.send_window(sid) == 0
    # The other direction goes on: the closer still receives.
    for i in range(3):
        other.send_data(sid, b"reply %d" % i)
        events = pump(other, closer)
        assert events == [DataReceived(sid, b"reply %d" % i, False)]
        closer.acknowledge(sid, len(events[0].data))
    pump(closer, other)
    assert closer.is_open(sid) and other.is_open(sid)
    other.send_end(sid)
    assert pump(other, closer) == [StreamEnded(sid)]
    assert not closer.is_open(sid) and not other.is_open(sid)


def test_data_after_the_peer_half_closed_is_stream_closed() -> None:
    edge, agent, sid = raw_pair()
    edge.send_end(sid)
    pump(edge, agent)
    with pytest.raises(ProtocolError) as info:
        feed(agent, Data(sid, b"x"))
    assert info.value.code == ErrorCode.STREAM_CLOSED


@pytest.mark.parametrize("resetter", ["edge", "agent"])
def test_reset_aborts_both_ways(resetter: str) -> None:
    edge, agent, sid = raw_pair()
    side, other = (edge, agent) if resetter == "edge" else (agent, edge)
    other.send_data(sid, b"in flight")  # crosses the reset
    side.reset_stream(sid, ErrorCode.CANCEL, b"viewer went away")
    assert pump(side, other) == [StreamReset(sid, ErrorCode.CANCEL, b"viewer went away")]
    assert pump(other, side) == []  # (late DATA ignored, credited to the session)
    assert not side.is_open(sid) and not other.is_open(sid)
    with pytest.raises(StreamClosedError):
        other.send_data(sid, b"x")


def test_byte_streams_and_request_streams_share_a_session() -> None:
    edge, agent = make_pair()
    a = edge.send_request_head(*GET, end_stream=True)
    b = edge.open_byte_stream()
    c = edge.send_request_head(*GET, end_stream=True)
    assert (a, b, c) == (1, 2, 3)
    events = pump(edge, agent)
    assert [type(e).__name__ for e in events] == ["RequestReceived", "BytesOpened", "RequestReceived"]


def test_bytes_open_ids_must_grow() -> None:
    agent = Session("agent", ON, ON)
    feed(agent, BytesOpen(5, OPEN_RAW, []))
    with pytest.raises(ProtocolError, match="not above"):
        feed(agent, BytesOpen(5, OPEN_RAW, []))


def test_going_away() -> None:
    edge, agent, sid = raw_pair()
    agent.go_away()
    pump(agent, edge)
    with pytest.raises(StreamClosedError, match="going away"):
        edge.open_byte_stream()
    # An agent that went away ignores a BYTES_OPEN that crossed its GOAWAY.
    assert feed(agent, BytesOpen(sid + 1, OPEN_RAW, [])) == []
    assert feed(agent, Data(sid + 1, b"late")) == []
    # The stream already open goes on to its end.
    edge.send_data(sid, b"still", end_stream=True)
    assert pump(edge, agent) == [DataReceived(sid, b"still", True)]


# --------------------------------------------------------------------------
# Upgrades


def test_an_upgrade_answered_101_carries_bytes_both_ways() -> None:
    edge, agent, sid = upgraded_pair()
    edge.send_data(sid, b"\x81\x05hello")
    agent.send_data(sid, b"\x81\x05world")
    assert pump(edge, agent) == [DataReceived(sid, b"\x81\x05hello", False)]
    assert pump(agent, edge) == [DataReceived(sid, b"\x81\x05world", False)]
    agent.send_end(sid)
    assert pump(agent, edge) == [StreamEnded(sid)]
    edge.send_data(sid, b"\x88\x00", end_stream=True)
    assert pump(edge, agent) == [DataReceived(sid, b"\x88\x00", True)]
    assert not edge.is_open(sid) and not agent.is_open(sid)


def test_nothing_is_sent_on_an_upgrade_before_the_101() -> None:
    edge, agent = make_pair()
    sid = edge.open_upgrade(*UPGRADE)
    pump(edge, agent)
    with pytest.raises(StreamClosedError):
        edge.send_data(sid, b"early")
    assert edge.send_window(sid) == 0
    # Informational heads before the 101 stay informational.
    agent.send_response_head(sid, 100, b"Continue", [])
    assert pump(agent, edge) == [ResponseReceived(sid, 100, b"Continue", [], False)]
    with pytest.raises(StreamClosedError):
        edge.send_data(sid, b"early")
    # A forged early DATA breaks the protocol: the request has no body.
    with pytest.raises(ProtocolError) as info:
        feed(agent, Data(sid, b"early"))
    assert info.value.code == ErrorCode.STREAM_CLOSED


def test_an_upgrade_answered_otherwise_is_an_ordinary_exchange() -> None:
    edge, agent = make_pair()
    sid = edge.open_upgrade(*UPGRADE)
    pump(edge, agent)
    agent.send_response_head(sid, 403, b"Forbidden", [(b"content-length", b"6")])
    agent.send_data(sid, b"go away", end_stream=True)
    assert pump(agent, edge) == [
        ResponseReceived(sid, 403, b"Forbidden", [(b"content-length", b"6")], False),
        DataReceived(sid, b"go away", True),
    ]
    assert not edge.is_open(sid) and not agent.is_open(sid)
    # A 101 after a final head is a second final head.
    edge2, agent2 = make_pair()
    sid2 = edge2.open_upgrade(*UPGRADE)
    pump(edge2, agent2)
    agent2.send_response_head(sid2, 200, b"OK", [])
    pump(agent2, edge2)
    with pytest.raises(StreamError, match="already sent"):
        agent2.send_response_head(sid2, 101, b"Switching Protocols", [])
    with pytest.raises(ProtocolError, match="second final"):
        feed(edge2, ResponseHead(sid2, 101, b"Switching Protocols", []))


def test_a_101_cannot_end_the_stream() -> None:
    edge, agent = make_pair()
    sid = edge.open_upgrade(*UPGRADE)
    pump(edge, agent)
    with pytest.raises(StreamError, match="informational"):
        agent.send_response_head(sid, 101, b"Switching Protocols", [], end_stream=True)


def test_a_101_on_a_request_stream_is_still_informational() -> None:
    # Unchanged behaviour for streams opened with REQUEST_HEAD.
    edge, agent = make_pair()
    sid = edge.send_request_head(*GET, end_stream=True)
    pump(edge, agent)
    agent.send_response_head(sid, 101, b"Switching Protocols", [])
    assert pump(agent, edge) == [ResponseReceived(sid, 101, b"Switching Protocols", [], False)]
    with pytest.raises(StreamError):
        agent.send_data(sid, b"x")
    with pytest.raises(StreamClosedError):
        edge.send_data(sid, b"x")


def test_upgraded_streams_are_windowed_and_reset_like_any() -> None:
    edge, agent, sid = upgraded_pair()
    window = edge.send_window(sid)
    assert window == ON.stream_window
    assert agent.send_some(sid, b"z" * (window + 10)) == window
    assert agent.send_window(sid) == 0
    agent.reset_stream(sid, ErrorCode.ORIGIN_RESET)
    events = pump(agent, edge)
    assert events[-1] == StreamReset(sid, ErrorCode.ORIGIN_RESET, b"")


def test_unanswered_upgrades_are_not_remembered_for_ever() -> None:
    edge, agent = make_pair()
    for _ in range(500):
        sid = edge.open_upgrade(*UPGRADE)
        pump(edge, agent)
        edge.reset_stream(sid)
        pump(edge, agent)
    assert len(edge._upgrading) <= 64 + 1
    assert len(agent._upgrading) <= 64 + 1


def test_frames_in_frames_out() -> None:
    # The opening as the agent sees it on the wire.
    edge, _ = make_pair()
    edge.open_byte_stream([(b"peer", b"[2001:db8::1]:443")])
    edge.open_upgrade(*UPGRADE)
    assert frames_of(edge) == [
        BytesOpen(1, OPEN_RAW, [(b"peer", b"[2001:db8::1]:443")]),
        BytesOpen(2, OPEN_UPGRADE, UPGRADE[2], UPGRADE[0], UPGRADE[1]),
    ]


# --------------------------------------------------------------------------
# Random but well-behaved peers mixing byte streams and requests

byte_actions = st.lists(
    st.tuples(
        st.sampled_from(["raw", "upgrade", "request", "answer", "data", "end", "reset", "ack", "go_away", "deliver"]),
        st.booleans(),  # which side
        st.integers(0, 7),  # which stream / how many messages
        st.integers(0, 5000),  # how many bytes, or which answer
    ),
    max_size=80,
)


@given(byte_actions)
@settings(max_examples=400, deadline=None)
def test_well_behaved_peers_with_byte_streams_never_break_the_protocol(script: list[Any]) -> None:
    """
    Whatever legal calls two sessions make on byte streams, upgrades and
    requests, in whatever order their messages cross, neither ever sees a
    protocol error, and every byte's session credit comes home.
    """
    s = Settings(stream_window=3000, session_window=7000, max_frame_payload=1024, byte_streams=True)
    edge, agent = _Peer(Session("edge", s, s)), _Peer(Session("agent", s, s))
    for action, on_edge, k, size in script:
        me, other = (edge, agent) if on_edge else (agent, edge)
        sid = k + 1
        try:
            if action == "raw":
                edge.session.open_byte_stream([(b"peer", b"192.0.2.1:1")])
            elif action == "upgrade":
                edge.session.open_upgrade(*UPGRADE)
            elif action == "request":
                edge.session.send_request_head(b"POST", b"/", [], end_stream=size < 500)
            elif action == "answer":
                status = [101, 101, 100, 403, 200][size % 5]
                agent.session.send_response_head(sid, status, b"", [], end_stream=status >= 200 and size < 500)
            else:
                common_action(action, me, other, sid, k, size)
        except StreamError:
            pass  # a refused call: legal, and nothing was queued
    drain_and_check(edge, agent, s)
