"""
The frame codec of netbore.protocol.
"""

from __future__ import annotations

import struct

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    FLAG_END_STREAM,
    MAX_HEAD_PAYLOAD,
    Data,
    End,
    ErrorCode,
    FrameType,
    GoAway,
    ProtocolError,
    RequestHead,
    Reset,
    ResponseHead,
    WindowUpdate,
    decode,
    encode,
    max_message_size,
    websocket_close_code,
)
from netbore.protocol.frames import HEADER, MAX_MESSAGE, encode_data

# --------------------------------------------------------------------------
# Strategies

stream_ids = st.integers(min_value=1, max_value=2**32 - 1)
codes = st.one_of(st.sampled_from(ErrorCode), st.integers(0, 2**32 - 1))
messages = st.binary(max_size=MAX_MESSAGE)


def _without(forbidden: bytes, min_size: int = 0, max_size: int = 300) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size).filter(lambda b: not any(c in forbidden for c in b))


tokens = _without(b"\x00\t\n\r :", min_size=1, max_size=20)
targets = _without(b"\x00\t\n\r ", min_size=1)
texts = _without(b"\x00\n\r")
headers = st.lists(st.tuples(tokens, texts), max_size=20)

request_heads = st.builds(RequestHead, stream_ids, tokens, targets, headers, st.booleans())
response_heads = st.builds(ResponseHead, stream_ids, st.integers(100, 999), texts, headers, st.booleans())
datas = st.builds(
    Data,
    stream_ids,
    st.one_of(st.binary(max_size=2000), st.just(b""), st.just(b"x" * 70000)),
    st.booleans(),
)
ends = st.builds(End, stream_ids)
resets = st.builds(Reset, stream_ids, codes, messages)
window_updates = st.builds(WindowUpdate, st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
go_aways = st.builds(GoAway, st.integers(0, 2**32 - 1), codes, messages)
frames = st.one_of(request_heads, response_heads, datas, ends, resets, window_updates, go_aways)


# --------------------------------------------------------------------------
# Round trips


@given(frames)
@settings(max_examples=500)
def test_round_trip(frame: object) -> None:
    message = encode(frame)  # type: ignore[arg-type]
    assert isinstance(message, bytes)
    assert decode(message) == frame


@given(st.tuples(request_heads, response_heads, datas, ends, resets, window_updates, go_aways))
def test_round_trip_each_type(one_of_each: tuple[object, ...]) -> None:
    # Every example has one frame of every type (one_of above may favour some).
    for frame in one_of_each:
        assert decode(encode(frame)) == frame  # type: ignore[arg-type]


def test_header_layout() -> None:
    message = encode(Data(0x01020304, b"hello", end_stream=True))
    assert message == b"\x03\x01\x01\x02\x03\x04hello"
    assert HEADER.format == "!BBI"


def test_request_head_layout() -> None:
    frame = RequestHead(7, b"GET", b"/a?b", [(b"Host", b"x.example"), (b"a", b"")], True)
    assert encode(frame) == (
        b"\x01\x01\x00\x00\x00\x07\x00\x03GET\x00\x04/a?b\x00\x02\x00\x04Host\x00\x09x.example\x00\x01a\x00\x00"
    )


def test_response_head_layout() -> None:
    frame = ResponseHead(1, 404, b"Not Found", [(b"set-cookie", b"a=1")], False)
    assert encode(frame) == (b"\x02\x00\x00\x00\x00\x01\x01\x94\x00\x09Not Found\x00\x01\x00\x0aset-cookie\x00\x03a=1")


def test_control_frame_layouts() -> None:
    assert encode(End(2)) == b"\x04\x00\x00\x00\x00\x02"
    assert encode(Reset(2, ErrorCode.CANCEL, b"bye")) == (b"\x05\x00\x00\x00\x00\x02\x00\x00\x00\x07bye")
    assert encode(WindowUpdate(0, 65536)) == b"\x06\x00\x00\x00\x00\x00\x00\x01\x00\x00"
    assert encode(GoAway(9, ErrorCode.NO_ERROR)) == (b"\x07\x00\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x00")


def test_repeated_headers_keep_order_and_case() -> None:
    hs = [(b"Set-Cookie", b"a=1"), (b"X", b"y"), (b"set-cookie", b"b=2")]
    frame = decode(encode(ResponseHead(3, 200, b"OK", hs, False)))
    assert isinstance(frame, ResponseHead)
    assert frame.headers == hs


def test_encode_data_memoryview() -> None:
    payload = bytes(range(256)) * 4
    view = memoryview(payload)[10:20]
    assert encode_data(5, view) == HEADER.pack(3, 0, 5) + payload[10:20]


def test_unknown_codes_are_kept() -> None:
    frame = decode(encode(Reset(1, 12345)))
    assert isinstance(frame, Reset)
    assert frame.code == 12345
    frame = decode(encode(Reset(1, 4)))
    assert isinstance(frame, Reset)
    assert frame.code is ErrorCode.STREAM_CLOSED


def test_frames_are_frozen() -> None:
    frame = End(1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        frame.stream_id = 2  # type: ignore[misc]


# --------------------------------------------------------------------------
# Encoding refuses what the wire cannot carry


@pytest.mark.parametrize(
    "frame",
    [
        Data(0, b"x"),
        End(0),
        Reset(0, 1),
        RequestHead(0, b"GET", b"/", []),
        ResponseHead(0, 200, b"OK", []),
        Data(2**32, b""),
        ResponseHead(1, 99, b"", []),
        ResponseHead(1, 1000, b"", []),
        WindowUpdate(1, 0),
        WindowUpdate(1, 2**31),
        RequestHead(1, b"", b"/", []),
        RequestHead(1, b"G ET", b"/", []),
        RequestHead(1, b"GET", b"", []),
        RequestHead(1, b"GET", b"/a b", []),
        RequestHead(1, b"GET", b"/", [(b"", b"v")]),
        RequestHead(1, b"GET", b"/", [(b"a:b", b"v")]),
        RequestHead(1, b"GET", b"/", [(b"a", b"v\r\nx: y")]),
        RequestHead(1, b"GET", b"/" + b"a" * 70000, []),
        RequestHead(1, b"GET", b"/", [(b"a", b"v" * 60000)] * 5),
        ResponseHead(1, 200, b"O\nK", []),
        Reset(1, 2**32),
        Reset(1, 1, b"x" * (MAX_MESSAGE + 1)),
        GoAway(-1, 0),
    ],
)
def test_encode_refuses(frame: object) -> None:
    with pytest.raises(ValueError):
        encode(frame)  # type: ignore[arg-type]


def test_encode_refuses_non_frames() -> None:
    with pytest.raises(TypeError):
        encode("hello")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Decoding refuses anything else, with ProtocolError only


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_decode_arbitrary_bytes(message: bytes) -> None:
    try:
        frame = decode(message)
    except ProtocolError as e:
        assert isinstance(e.code, ErrorCode)
    else:
        assert decode(encode(frame)) == frame


@given(st.sampled_from(FrameType), st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=64))
@settings(max_examples=2000)
def test_decode_arbitrary_payloads(ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
    # Random payloads behind a valid header reach every decoder.
    try:
        decode(HEADER.pack(ftype, flags, stream_id) + payload)
    except ProtocolError:
        pass


@given(frames, st.data())
def test_decode_mutated_frames(frame: object, data: st.DataObject) -> None:
    message = bytearray(encode(frame))  # type: ignore[arg-type]
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(message)))
        del message[cut:]
    else:
        index = data.draw(st.integers(0, len(message) - 1))
        message[index] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(message))
    except ProtocolError:
        pass


def _code(message: bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode(message)
    return info.value.code


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x03\x00\x00\x00\x00",  # short header
        HEADER.pack(0, 0, 1),  # unknown type
        HEADER.pack(8, 0, 1),
        HEADER.pack(255, 0, 1),
        HEADER.pack(3, 0, 0) + b"x",  # DATA on stream 0
        HEADER.pack(4, 0, 0),  # END on stream 0
        HEADER.pack(5, 0, 0) + b"\x00\x00\x00\x00",  # RESET on stream 0
        HEADER.pack(1, 0, 0) + encode(RequestHead(1, b"GET", b"/", []))[6:],
        HEADER.pack(7, 0, 1) + b"\x00" * 8,  # GOAWAY not on stream 0
        HEADER.pack(3, 2, 1) + b"x",  # undefined flag
        HEADER.pack(4, 1, 1),  # END_STREAM on END
        HEADER.pack(6, 1, 1) + b"\x00\x00\x00\x01",
        HEADER.pack(4, 0, 1) + b"x",  # END with payload
        HEADER.pack(6, 0, 1) + b"\x00\x00\x00\x00",  # increment 0
        HEADER.pack(6, 0, 1) + b"\x80\x00\x00\x00",  # increment 2^31
        HEADER.pack(6, 0, 1) + b"\x00\x00\x01",  # short
        HEADER.pack(6, 0, 1) + b"\x00\x00\x00\x01\x00",  # trailing
        HEADER.pack(5, 0, 1) + b"\x00\x00",  # short RESET
        HEADER.pack(7, 0, 0) + b"\x00\x00\x00\x00",  # short GOAWAY
        encode(RequestHead(1, b"GET", b"/", [(b"a", b"b")])) + b"\x00",  # trailing
        encode(RequestHead(1, b"GET", b"/", [(b"a", b"b")]))[:-1],  # truncated
        HEADER.pack(1, 0, 1) + b"\x00\x00\x00\x01/\x00\x00",  # empty method
        HEADER.pack(1, 0, 1) + b"\x00\x03GET\x00\x00\x00\x00",  # empty target
        HEADER.pack(1, 0, 1) + b"\x00\x03GET\x00\x01/\x00\x01\x00\x00\x00\x00",  # empty name
        HEADER.pack(1, 0, 1) + b"\x00\x03GET\x00\x01/\x00\x01\x00\x01a\x00\x02\r\n",
        HEADER.pack(1, 0, 1) + b"\x00\x03G\nT\x00\x01/\x00\x00",
        HEADER.pack(2, 0, 1) + b"\x00\x63\x00\x00\x00\x00",  # status 99
        HEADER.pack(2, 0, 1) + b"\x03\xe8\x00\x00\x00\x00",  # status 1000
        HEADER.pack(2, 0, 1) + b"\x00\xc8\x00\x02\r\n\x00\x00",  # bad reason
        HEADER.pack(2, 0, 1) + b"\x00",  # truncated status
    ],
)
def test_decode_refuses(message: bytes) -> None:
    assert _code(message) == ErrorCode.PROTOCOL_ERROR


def test_decode_refuses_huge_head() -> None:
    message = HEADER.pack(1, 0, 1) + b"\x00" * (MAX_HEAD_PAYLOAD + 1)
    assert _code(message) == ErrorCode.FRAME_TOO_LARGE


def test_decode_accepts_bytearray_and_memoryview() -> None:
    message = encode(Data(1, b"abc"))
    assert decode(bytearray(message)) == Data(1, b"abc")
    assert decode(memoryview(message)) == Data(1, b"abc")
    frame = decode(memoryview(message))
    assert isinstance(frame, Data)
    assert type(frame.data) is bytes


def test_max_message_size() -> None:
    assert max_message_size(64 * 1024) == 6 + MAX_HEAD_PAYLOAD
    assert max_message_size(1024 * 1024) == 6 + 1024 * 1024


def test_error_codes() -> None:
    assert [int(c) for c in ErrorCode] == list(range(11))
    assert websocket_close_code(ErrorCode.NO_ERROR) == 1000
    assert websocket_close_code(ErrorCode.FLOW_CONTROL_ERROR) == 4003
    error = ProtocolError("bad", ErrorCode.FRAME_TOO_LARGE)
    assert error.code is ErrorCode.FRAME_TOO_LARGE
    assert error.message == "bad"
    assert "FRAME_TOO_LARGE" in str(error)
    assert ProtocolError("x").code is ErrorCode.PROTOCOL_ERROR


def test_end_stream_flag_value() -> None:
    assert FLAG_END_STREAM == 1
    assert [int(t) for t in FrameType] == list(range(1, 10))


def test_struct_is_big_endian() -> None:
    assert struct.calcsize(HEADER.format) == 6
