"""
L{netbore.http1.RequestParser} under the L{netbore.http1.VIEWER} policy, the
sans-IO request parser of the edge's viewer connections: framing,
strictness where two readings could differ (smuggling), and properties
(arbitrary bytes only ever raise its own error; a request split anywhere
parses the same).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.http1 import (
    END_OF_MESSAGE,
    MAX_HEAD,
    NEED_DATA,
    PAUSED,
    ParseError,
    RequestHead,
    RequestParser,
)


def events(*chunks: bytes, parser: RequestParser | None = None) -> list[Any]:
    """
    Feed C{chunks} one by one and collect the events; bodies joined, each
    request's events as (head, body, ended), L{PAUSED} answered at once.
    """
    p = parser or RequestParser()
    out: list[Any] = []
    body = b""
    head: RequestHead | None = None
    for chunk in chunks:
        p.feed(chunk)
        while True:
            event = p.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                p.start_next()
                continue
            if isinstance(event, RequestHead):
                head = event
                body = b""
            elif isinstance(event, bytes):
                body += event
            else:
                assert event is END_OF_MESSAGE
                assert head is not None
                out.append((head.method, head.target, head.version, head.headers, body))
                head = None
    return out


def refused(data: bytes) -> int:
    with pytest.raises(ParseError) as e:
        events(data)
    return e.value.status


def one(data: bytes) -> RequestHead:
    p = RequestParser()
    p.feed(data)
    head = p.next_event()
    assert isinstance(head, RequestHead)
    return head


# -- heads ------------------------------------------------------------------------


def test_head_fields_lower_cased_in_order_with_repeats() -> None:
    head = one(
        b"GET /a%2Fb?x=1 HTTP/1.1\r\nHost: App.localhost:8080\r\nX-A:  one two \r\n"
        b"Cookie: a=1\r\nx-a: \r\nCookie: b=2\r\n\r\n"
    )
    assert (head.method, head.target, head.version) == (b"GET", b"/a%2Fb?x=1", b"HTTP/1.1")
    assert head.headers == [
        (b"host", b"App.localhost:8080"),
        (b"x-a", b"one two"),
        (b"cookie", b"a=1"),
        (b"x-a", b""),
        (b"cookie", b"b=2"),
    ]
    assert head.host == b"App.localhost:8080"
    assert head.length == 0 and not head.chunked and head.keep_alive


@pytest.mark.parametrize(
    "version, connection, keep_alive",
    [
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Connection: X-Foo, Close\r\n", False),
        (b"1.0", b"", False),
        (b"1.0", b"Connection: keep-alive\r\n", True),
    ],
)
def test_keep_alive(version: bytes, connection: bytes, keep_alive: bool) -> None:
    head = one(b"GET / HTTP/" + version + b"\r\nHost: a\r\n" + connection + b"\r\n")
    assert head.keep_alive is keep_alive


def test_connection_tokens_and_expect() -> None:
    head = one(
        b"PUT / HTTP/1.1\r\nHost: a\r\nConnection: X-Hop , keep-alive\r\n"
        b"Expect: 100-Continue\r\nContent-Length: 3\r\n\r\n"
    )
    assert head.connection == frozenset({b"x-hop", b"keep-alive"})
    assert head.expect_continue
    assert one(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expect_continue is False


def test_empty_lines_before_the_request_are_skipped() -> None:
    assert events(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")[0][:2] == (b"GET", b"/")
    assert refused(b"\r\n" * 20 + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") == 400


def test_later_http_1_minor_reads_as_1_1() -> None:
    assert one(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n").version == b"HTTP/1.1"


@pytest.mark.parametrize(
    "data, status",
    [
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
        (b"GET /\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET :/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # no request-target form
        (b"GET a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET ** HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET h:ttp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET h0ttp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # a scheme other than http(s)
        (b"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # authority-form
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host in 1.1
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # space before the colon
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-\x00: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: empty name\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),  # bare LF: refused, not waited for
        (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n", 400),
    ],
)
def test_malformed_heads(data: bytes, status: int) -> None:
    assert refused(data) == status


@pytest.mark.parametrize(
    "host",
    [
        b"victim.localhost:@evil.example",  # userinfo smuggled after the colon
        b"victim.localhost:80@evil.example",
        b"a.localhost:0",
        b"a.localhost:65536",
        b"a.localhost:99999",
        b"a.localhost:123456",
        b"a.localhost:",
        b"a.localhost:8o",
        b"a.localhost/x",
        b"a.localhost?x",
        b"a.localhost#x",
        b"a b",
        b"[::1",
    ],
)
def test_host_must_be_a_host_and_a_port_of_1_to_65535(host: bytes) -> None:
    assert refused(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n") == 400


@pytest.mark.parametrize(
    "host",
    [b"a.localhost", b"a.localhost:1", b"a.localhost:65535", b"A.LocalHost.:8080", b"[::1]:80", b"127.0.0.1", b""],
)
def test_valid_hosts_are_read(host: bytes) -> None:
    assert one(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").host == host


def test_head_size_limit() -> None:
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    fits = b"GET / HTTP/1.1\r\nHost: a\r\n" + filler * 60 + b"\r\n"
    assert len(fits) < MAX_HEAD
    assert events(fits)[0][0] == b"GET"
    big = b"GET / HTTP/1.1\r\nHost: a\r\n" + filler * 70 + b"\r\n"
    assert refused(big) == 431
    # Refused as soon as 64 KiB arrived without the end of the head.
    p = RequestParser()
    p.feed(big[:MAX_HEAD])
    with pytest.raises(ParseError) as e:
        p.next_event()
    assert e.value.status == 431


# -- bodies and smuggling ----------------------------------------------------------------


def test_content_length_body_then_the_next_request() -> None:
    out = events(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [(m, t, b) for m, t, _, _, b in out] == [(b"POST", b"/a", b"hello"), (b"GET", b"/b", b"")]


def test_pipelined_requests_wait_for_start_next() -> None:
    p = RequestParser()
    p.feed(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(p.next_event(), RequestHead)
    assert p.next_event() is END_OF_MESSAGE
    assert p.next_event() is PAUSED
    assert p.buffered == 28
    p.start_next()
    second = p.next_event()
    assert isinstance(second, RequestHead) and second.target == b"/2"


def test_chunked_body_with_extensions_and_trailers() -> None:
    out = events(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n006 ; x\r\n world\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert out[0][4] == b"hello world"
    assert out[1][1] == b"/next"


@pytest.mark.parametrize(
    "data, status",
    [
        # Both framings: ambiguous, the classic smuggling vector.
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nab", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nX: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 400),
    ],
)
def test_ambiguous_framing_is_refused(data: bytes, status: int) -> None:
    assert refused(data) == status


def test_repeated_equal_content_length_is_refused() -> None:
    # One Content-Length rule for both roles (grammar.content_length): a
    # repeat or a list is refused even when its members agree.
    assert refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc") == 400
    assert refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc") == 400
    assert events(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")[0][4] == b"abc"


_CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "body",
    [
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"g\r\n",
        b"\r\nhello\r\n",
        b"11111111111111111\r\n",  # 17 hex digits
        b"5\r\nhelloXX0\r\n\r\n",  # chunk data not followed by CRLF
        b"5\r\nhello\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
        b"0\r\nX: 1\r\n folded\r\n\r\n",  # obs-fold in the trailers
        b"0\r\nbad trailer\r\n\r\n",
        b"0\r\nContent-Length: 5\r\n\r\n",  # framing fields never in trailers
        b"0\r\ntransfer-encoding: chunked\r\n\r\n",
    ],
)
def test_bad_chunks_are_refused(body: bytes) -> None:
    assert refused(_CHUNKED + body) == 400


def test_long_chunk_size_line_is_refused_before_its_end() -> None:
    assert refused(_CHUNKED + b"5;" + b"x" * 5000) == 400


def test_error_is_sticky() -> None:
    p = RequestParser()
    p.feed(b"BAD\r\n\r\n")
    for _ in range(2):
        with pytest.raises(ParseError):
            p.next_event()


def test_take_raw_returns_the_head_as_received_and_the_rest() -> None:
    p = RequestParser()
    data = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET"
    p.feed(data)
    assert isinstance(p.next_event(), RequestHead)
    assert p.take_raw() == data


# -- properties ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_raise_only_parse_errors(chunks: list[bytes]) -> None:
    try:
        events(*chunks)
    except ParseError as e:
        assert e.status in (400, 431, 501, 505)


_token = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10).map(str.encode)
_value = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ;=/,", max_size=20).map(lambda s: s.strip().encode())


@st.composite
def requests(draw: Any) -> tuple[bytes, list[tuple[bytes, bytes, bytes]]]:
    """
    A few valid requests on one connection (Content-Length, chunked or no
    body) and what each should parse to: (method, target, body).
    """
    data = b""
    expected = []
    for _ in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]))
        target = b"/" + draw(st.text("abc%2F?=&", max_size=12)).encode()
        fields = draw(
            st.lists(
                st.tuples(_token, _value).filter(
                    lambda f: f[0] not in (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect")
                ),
                max_size=4,
            )
        )
        body = draw(st.binary(max_size=60))
        framing = draw(st.sampled_from(["length", "chunked", "none"]))
        head = [b"%s %s HTTP/1.1" % (method, target), b"Host: app.localhost"]
        head += [n + b": " + v for n, v in fields]
        if framing == "none":
            body = b""
            payload = b""
        elif framing == "length":
            head.append(b"Content-Length: %d" % len(body))
            payload = body
        else:
            head.append(b"Transfer-Encoding: chunked")
            cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
            pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)], strict=True) if body[a:b]]
            payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        data += b"\r\n".join(head) + b"\r\n\r\n" + payload
        expected.append((method, target, body))
    return data, expected


@settings(max_examples=60, deadline=None)
@given(requests())
def test_a_request_split_at_every_byte_parses_the_same(case: tuple[bytes, list[tuple[bytes, bytes, bytes]]]) -> None:
    data, expected = case
    whole = events(data)
    assert [(m, t, b) for m, t, _, _, b in whole] == expected
    for i in range(len(data) + 1):
        assert events(data[:i], data[i:]) == whole
    assert events(*[data[i : i + 1] for i in range(len(data))]) == whole


# -- receive: one call per read --------------------------------------------------------


def test_receive_returns_one_message_s_events_and_holds_the_next() -> None:
    p = RequestParser()
    second = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    events = p.receive(b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok" + second)
    assert [type(e) for e in events] == [RequestHead, bytes, type(END_OF_MESSAGE)]
    assert events[1] == b"ok" and p.held == len(second)
    assert p.receive(b"") == [] and p.held == len(second)
    assert p.start_next() == len(second)
    (head, end) = p.receive(b"")
    assert isinstance(head, RequestHead) and head.target == b"/2" and end is END_OF_MESSAGE
    assert p.held == 0


def test_receive_ends_with_the_error_after_the_events_before_it() -> None:
    p = RequestParser()
    events = p.receive(_CHUNKED + b"3\r\nabc\r\nzz\r\n")
    assert isinstance(events[0], RequestHead) and events[1] == b"abc"
    assert isinstance(events[2], ParseError) and events[2].status == 400
    (again,) = p.receive(b"more")
    assert again is events[2]
