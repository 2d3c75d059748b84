"""
Tests for L{netbore.http1.ResponseParser} under the L{netbore.http1.ORIGIN}
policy: the agent reading its origin's responses.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbore.http1 import END_OF_MESSAGE as END
from netbore.http1 import NEED_DATA, PAUSED, Event, ParseError, ResponseHead, ResponseParser


def feed(parser: ResponseParser, data: bytes) -> list[Event]:
    """
    Feed C{data} and take the events it completes.
    """
    parser.feed(data)
    return drain(parser)


def drain(parser: ResponseParser) -> list[Event]:
    events: list[Event] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)


def feed_eof(parser: ResponseParser) -> list[Event]:
    parser.feed_eof()
    return drain(parser)


def parse(
    data: bytes, head_request: bool = False, eof: bool = False
) -> tuple[ResponseHead | None, bytes, bool, ResponseParser]:
    """
    Feed C{data} in one piece; the head, the body and whether it ended.
    """
    parser = ResponseParser(head_request)
    events = feed(parser, data)
    if eof:
        events += feed_eof(parser)
    heads = [e for e in events if isinstance(e, ResponseHead)]
    body = b"".join(e for e in events if isinstance(e, bytes))
    return (heads[0] if heads else None), body, events[-1:] == [END], parser


def test_content_length_response() -> None:
    head, body, ended, parser = parse(
        b"HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nX-A:  spaced \t\r\nSet-Cookie: b=2\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    assert head is not None
    assert (head.status, head.reason, head.length, head.chunked) == (201, b"Created", 5, False)
    assert head.headers == [
        (b"Set-Cookie", b"a=1"),
        (b"X-A", b"spaced"),
        (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"5"),
    ]
    assert body == b"hello" and ended and parser.reusable


def test_body_read_whole_is_not_copied() -> None:
    parser = ResponseParser()
    feed(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    data = b"0123456789"
    events = feed(parser, data)
    assert events[0] is data and events[1] is END


def test_chunked_response_with_extensions_and_trailers() -> None:
    head, body, ended, parser = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1A \r\n" + b"z" * 26 + b"\r\n0\r\nTrailer: x\r\n\r\n"
    )
    assert head is not None and head.chunked and head.length is None
    assert body == b"hello" + b"z" * 26 and ended and parser.reusable


def test_read_until_close() -> None:
    parser = ResponseParser()
    events = feed(parser, b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert events[1:] == [b"some"]
    assert feed(parser, b" more") == [b" more"]
    assert feed_eof(parser) == [END]
    assert not parser.reusable


@pytest.mark.parametrize(
    "data, head_request",
    [
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", False),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    ],
)
def test_responses_without_body(data: bytes, head_request: bool) -> None:
    head, body, ended, parser = parse(data, head_request)
    assert head is not None and head.length == 0
    assert body == b"" and ended and parser.reusable


def test_interim_responses_are_skipped() -> None:
    head, body, ended, _ = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert head is not None and head.status == 200 and body == b"ok" and ended


@pytest.mark.parametrize(
    "data, reusable",
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, X-Hop\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra", False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", False),
    ],
)
def test_keep_alive(data: bytes, reusable: bool) -> None:
    _, _, ended, parser = parse(data)
    assert ended and parser.reusable is reusable


def test_connection_tokens() -> None:
    head, _, _, _ = parse(
        b"HTTP/1.1 200 OK\r\nConnection: X-A , keep-alive\r\nConnection: x-b\r\nContent-Length: 0\r\n\r\n"
    )
    assert head is not None and head.connection == frozenset({b"x-a", b"keep-alive", b"x-b"})


def test_bare_lf_and_obs_fold() -> None:
    head, body, ended, _ = parse(b"HTTP/1.1 200 OK\nX-Long: a\n  b\nContent-Length: 1\n\nx")
    assert head is not None and head.headers[0] == (b"X-Long", b"a b")
    assert body == b"x" and ended


@pytest.mark.parametrize("wire", [b"HTTP/1.1 200 a\tb \n\r\n\n", b"HTTP/1.1 204 No\nX: 1\n\r\n\n"])
def test_a_head_ended_by_lf_crlf_ends_there_whether_or_not_an_lf_lf_follows(wire: bytes) -> None:
    # The 10-minute differential run: read whole, the later "\n\n" was
    # taken for the head's end (and the head refused); byte by byte, the
    # earlier "\n\r\n" was.
    whole = parse(wire, head_request=True)[0]
    parser = ResponseParser(True)
    events = [e for byte in wire for e in feed(parser, bytes([byte]))]
    assert whole is not None and whole.status in (200, 204)
    heads = [(e.status, e.reason, e.headers) for e in events if isinstance(e, ResponseHead)]
    assert heads == [(whole.status, whole.reason, whole.headers)]


def test_repeated_equal_content_lengths_are_refused() -> None:
    # One Content-Length rule for both roles (grammar.content_length).
    for data in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    ):
        with pytest.raises(ParseError) as e:
            feed(ResponseParser(), data)
        assert e.value.status == 502


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        # HTTP/1.0 has no interim responses (the 10-minute differential run).
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 100 OK\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        # Codings other than chunked: the body would reach the viewer still
        # coded, without the (hop-by-hop) field that says so.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz",
        b" HTTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_malformed_responses_raise_parse_error(data: bytes) -> None:
    with pytest.raises(ParseError):
        feed(ResponseParser(), data)


def test_eof_before_the_end_is_an_error() -> None:
    parser = ResponseParser()
    feed(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc")
    with pytest.raises(ParseError):
        parser.feed_eof()
    with pytest.raises(ParseError):
        ResponseParser().feed_eof()


def test_head_too_large() -> None:
    parser = ResponseParser()
    with pytest.raises(ParseError):
        for _ in range(100):
            feed(parser, b"X-Filler: " + b"a" * 1000 + b"\r\n")


@given(st.lists(st.binary(max_size=200), max_size=8), st.booleans(), st.booleans())
def test_arbitrary_bytes_raise_only_parse_error(pieces: list[bytes], head_request: bool, eof: bool) -> None:
    parser = ResponseParser(head_request)
    try:
        for piece in pieces:
            feed(parser, piece)
        if eof:
            feed_eof(parser)
    except ParseError:
        pass


PREFIXES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n",
    ]
)


@given(PREFIXES, st.binary(max_size=300))
def test_plausible_responses_raise_only_parse_error(prefix: bytes, rest: bytes) -> None:
    parser = ResponseParser()
    try:
        feed(parser, prefix + rest)
        feed_eof(parser)
    except ParseError:
        pass


def chunked(chunks: list[bytes], ext: bool) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for c in chunks:
        out += b"%x%s\r\n%s\r\n" % (len(c), b";e=1" if ext else b"", c)
    return out + b"0\r\nT: 1\r\n\r\n"


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=5), st.booleans())
def test_chunked_split_at_every_boundary_parses_the_same(chunks: list[bytes], ext: bool) -> None:
    wire = chunked(chunks, ext)
    whole = feed(ResponseParser(), wire)
    assert b"".join(e for e in whole if isinstance(e, bytes)) == b"".join(chunks)
    assert whole[-1] is END
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1, 7):
            parser = ResponseParser()
            events = feed(parser, wire[:i]) + feed(parser, wire[i:j]) + feed(parser, wire[j:])
            heads = [e for e in events if isinstance(e, ResponseHead)]
            assert len(heads) == 1 and heads[0].headers == [(b"Transfer-Encoding", b"chunked")]
            assert b"".join(e for e in events if isinstance(e, bytes)) == b"".join(chunks)
            assert events[-1] is END and parser.reusable


@given(st.binary(max_size=100))
def test_byte_by_byte_equals_whole(body: bytes) -> None:
    wire = b"HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    parser = ResponseParser()
    events = []
    for i in range(len(wire)):
        events += feed(parser, wire[i : i + 1])
    assert b"".join(e for e in events if isinstance(e, bytes)) == body
    assert events[-1] is END and parser.reusable
