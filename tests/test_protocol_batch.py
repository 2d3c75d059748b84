"""
BATCH frames: the codec (encode_batch, decode_batch, batch) and a
Session's use of them.
"""

from __future__ import annotations

import struct

import pytest

from netbore.protocol import (
    Data,
    DataReceived,
    End,
    ErrorCode,
    Event,
    FrameType,
    ProtocolError,
    ResponseHead,
    ResponseReceived,
    Settings,
    WindowUpdate,
    decode,
    decode_batch,
    encode,
)
from netbore.protocol._batch import batch
from netbore.protocol.frames import BATCH_FRAME_MAX, BATCH_MAX, HEADER, HEADER_SIZE, encode_batch

from .test_protocol_session import GET, make_pair, pump

# --------------------------------------------------------------------------
# BATCH


def test_batch_round_trip() -> None:
    inner = [
        encode(ResponseHead(1, 200, b"OK", [(b"content-length", b"13")], False)),
        encode(Data(1, b"Hello, World!", True)),
        encode(WindowUpdate(0, 4096)),
    ]
    message = encode_batch(inner)
    assert message[:HEADER_SIZE] == HEADER.pack(FrameType.BATCH, 0, 0)
    assert decode_batch(message) == inner
    assert decode_batch(bytearray(message)) == inner


@pytest.mark.parametrize(
    "message, why",
    [
        (HEADER.pack(FrameType.BATCH, 0, 0), "empty"),
        (HEADER.pack(FrameType.BATCH, 1, 0) + struct.pack("!I", 6) + encode(End(1)), "flags"),
        (HEADER.pack(FrameType.BATCH, 0, 3) + struct.pack("!I", 6) + encode(End(1)), "stream 3"),
        (HEADER.pack(FrameType.BATCH, 0, 0) + struct.pack("!I", 7) + encode(End(1)), "truncated"),
        (HEADER.pack(FrameType.BATCH, 0, 0) + b"\0\0", "truncated"),
        (HEADER.pack(FrameType.BATCH, 0, 0) + struct.pack("!I", 2) + b"\1\0", "shorter than its header"),
        (
            HEADER.pack(FrameType.BATCH, 0, 0) + struct.pack("!I", 16) + encode_batch([encode(End(1))]),
            "inside a BATCH",
        ),
        (HEADER.pack(FrameType.BATCH, 0, 0)[:4], "shorter"),
    ],
)
def test_bad_batches_are_protocol_errors(message: bytes, why: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_batch(message)
    assert why in str(info.value)
    assert info.value.code is ErrorCode.PROTOCOL_ERROR


def test_batch_is_not_a_plain_frame() -> None:
    with pytest.raises(ProtocolError, match="unknown frame type 8"):
        decode(encode_batch([encode(End(1))]))


# --------------------------------------------------------------------------
# BATCH frames


def test_batch_packs_runs_of_small_frames() -> None:
    small = [encode(End(n)) for n in range(1, 4)]
    assert batch(small) == [encode_batch(small)]
    assert batch(small[:1]) == small[:1]  # a run of one goes as it is
    assert batch([]) == []


def test_batch_sends_large_frames_alone_in_order() -> None:
    small = encode(End(1))
    large = encode(Data(1, b"x" * (BATCH_FRAME_MAX + 1)))
    messages = batch([small, small, large, small])
    assert messages == [encode_batch([small, small]), large, small]


def test_batch_bounds_each_run() -> None:
    frame = encode(Data(1, b"x" * (BATCH_FRAME_MAX - HEADER_SIZE)))  # BATCH_FRAME_MAX bytes
    messages = batch([frame] * 10)
    # Three such frames (with their lengths) fill a BATCH: 3 + 3 + 3 + 1.
    assert [m[0] for m in messages] == [FrameType.BATCH] * 3 + [FrameType.DATA]
    assert [f for m in messages[:3] for f in decode_batch(m)] + messages[3:] == [frame] * 10
    assert all(len(m) - HEADER_SIZE <= BATCH_MAX for m in messages)


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
