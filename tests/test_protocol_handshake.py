"""
The handshake messages of netbore.protocol: Hello and Settings.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    Hello,
    ProtocolError,
    Settings,
    UnsupportedVersion,
    decode_hello,
    encode_hello,
)

# --------------------------------------------------------------------------
# Handshake


optional_text = st.one_of(st.none(), st.text(max_size=40))
settings_strategy = st.builds(
    Settings,
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.integers(1024, 16 * 1024 * 1024),
    st.booleans(),
)
hellos = st.builds(
    Hello,
    st.just(PROTOCOL_VERSION),
    st.sampled_from(["agent", "edge"]),
    settings_strategy,
    optional_text,
    optional_text,
    optional_text,
    optional_text,
)


@given(hellos)
def test_hello_round_trip(hello: Hello) -> None:
    text = encode_hello(hello)
    assert isinstance(text, str)
    assert decode_hello(text) == hello
    assert decode_hello(text.encode("utf-8")) == hello


def test_hello_example() -> None:
    hello = Hello(1, "agent", Settings(), agent_id="a1", tunnel_id="t1")
    assert json.loads(encode_hello(hello)) == {
        "type": "hello",
        "version": 1,
        "role": "agent",
        "settings": {
            "stream_window": 2097152,
            "session_window": 16777216,
            "max_frame_payload": 65536,
            "batch": True,
        },
        "agent_id": "a1",
        "tunnel_id": "t1",
    }
    assert SUBPROTOCOL == "netbore.v1"


def test_hello_defaults_and_unknown_keys() -> None:
    hello = decode_hello(
        '{"type": "hello", "version": 1, "role": "edge", "future": [1],'
        ' "settings": {"stream_window": 1000, "later": true}, "public_url": "https://a.b"}'
    )
    # No "batch": a peer from before BATCH frames; never send it one.
    assert hello == Hello(1, "edge", Settings(stream_window=1000, batch=False), public_url="https://a.b")


def test_hello_expected_role() -> None:
    text = encode_hello(Hello(1, "agent", Settings()))
    assert decode_hello(text, expected_role="agent").role == "agent"
    with pytest.raises(ProtocolError):
        decode_hello(text, expected_role="edge")


def test_hello_unsupported_version() -> None:
    with pytest.raises(UnsupportedVersion) as info:
        decode_hello('{"type": "hello", "version": 2, "role": "agent", "settings": {}}')
    assert isinstance(info.value, ProtocolError)
    assert info.value.supported == (1,)
    assert "supported versions: 1" in info.value.message


def _hello(**changes: object) -> str:
    obj: dict[str, object] = {
        "type": "hello",
        "version": 1,
        "role": "agent",
        "settings": {},
    }
    obj.update(changes)
    return json.dumps(obj)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[1, 2]",
        '"hello"',
        "[" * 100000 + "]" * 100000,
        "{" * 5,
        _hello(type="goodbye"),
        _hello(type=None),
        _hello(version="1"),
        _hello(version=True),
        _hello(version=1.0),
        _hello(role="viewer"),
        _hello(role=None),
        _hello(settings=[]),
        _hello(settings={"stream_window": 0}),
        _hello(settings={"stream_window": 2**31}),
        _hello(settings={"session_window": "big"}),
        _hello(settings={"session_window": True}),
        _hello(settings={"max_frame_payload": 1023}),
        _hello(settings={"max_frame_payload": 16 * 1024 * 1024 + 1}),
        _hello(settings={"max_frame_payload": 2048.0}),
        _hello(settings={"batch": 1}),
        _hello(agent_id=5),
        _hello(tunnel_id=["x"]),
        _hello(public_url={}),
        _hello(session_id=False),
        _hello(agent_id="x" * 70000),
    ],
)
def test_hello_refused(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_hello(text)


def test_hello_refuses_bad_utf8() -> None:
    with pytest.raises(ProtocolError):
        decode_hello(b'{"type": "\xff"}')


@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
@settings(max_examples=1000)
def test_decode_hello_arbitrary(text: str | bytes) -> None:
    try:
        decode_hello(text)
    except ProtocolError:
        pass


@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "version",
                        "role",
                        "settings",
                        "stream_window",
                        "session_window",
                        "max_frame_payload",
                        "agent_id",
                        "x",
                    ]
                ),
                children,
                max_size=5,
            ),
        ),
        max_leaves=20,
    )
)
def test_decode_hello_arbitrary_json(obj: object) -> None:
    try:
        decode_hello(json.dumps(obj))
    except ProtocolError:
        pass


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        Settings(stream_window=0)
    with pytest.raises(ValueError):
        Settings(max_frame_payload=100)
    with pytest.raises(ValueError):
        Hello(1, "viewer", Settings())
