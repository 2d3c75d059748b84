"""
Differential tests of L{netbore.http1} against two independent HTTP/1.1
parsers used as oracles (test-only: h11, pure Python; httptools, llhttp).

Hypothesis builds requests and responses with odd white space, repeated and
conflicting C{Content-Length}, C{Transfer-Encoding} variants, chunk
extensions and trailers, obs-fold, bare LF and bare CR, then mutates them
byte by byte; netbore reads each one split at random points (and byte by
byte), the oracles read it whole.  The property, for the first message on
the wire:

  - netbore reads the same however the bytes are split;
  - where netbore accepts it, every oracle that accepts it reads the same
    method or status, target, fields (names case-folded, values without
    surrounding white space) and body, and h11 consumes as many bytes;
  - where netbore accepts and an oracle refuses, the case is one of the
    documented L{_EXCUSED} ones; else the test fails.  netbore refusing
    what an oracle accepts is always fine.

The quick profile (the default, CI) takes a few seconds.  The long one runs
each test for half of C{NETBORE_DIFF_MINUTES} minutes, e.g.
C{NETBORE_DIFF_MINUTES=10 pytest tests/test_http1_differential.py -s}, and
prints how many examples it tried.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import h11
import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netbore.http1 import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    ParseError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)

#: A message as read: (method or status, target, fields, body, bytes used).
Message = tuple[Any, bytes, tuple[tuple[bytes, bytes], ...], bytes, int | None]

MINUTES = float(os.environ.get("NETBORE_DIFF_MINUTES", "0") or 0)
QUICK = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
LONG = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
EXAMPLES = {"requests": 0, "responses": 0}

# -- generating messages -----------------------------------------------------------

_EOL = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n"])
_WS = st.sampled_from([b"", b"", b" ", b"  ", b"\t", b" \t", b"\x0b", b"\x0c"])
_NAMES = st.sampled_from(
    [b"Host", b"host", b"Content-Length", b"content-length", b"Transfer-Encoding", b"Connection", b"Expect"]
    + [b"X-A", b"Accept", b"Cookie", b"Set-Cookie", b"X-\x00", b"X A", b"", b"X:Y", b"\xff", b"Te", b"Upgrade"]
)
_VALUES = st.sampled_from(
    [
        b"a",
        b"app.localhost",
        b"0",
        b"5",
        b"05",
        b"5, 5",
        b"5,5",
        b"+5",
        b"-1",
        b" 5",
        b"0x5",
        b"1 0",
        b"99999999999999999999",
    ]
    + [b"chunked", b"Chunked", b"chunked, chunked", b"gzip, chunked", b"chunked, gzip", b"identity", b"xchunked"]
    + [b"close", b"keep-alive", b"Keep-Alive, X-A", b"100-continue", b"a b", b"a\tb", b"a\x00b", b"a\x7fb"]
    + [b"a\x01b", b"\x80\xff", b"", b"a,b", b'"q"', b"a\rb"]
)
_CHUNK_EXT = st.sampled_from([b"", b"", b";a=1", b" ;a", b";", b'; a="x"', b" ", b"\t", b";\x00"])


@st.composite
def _body(draw: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """
    Framing fields and the body bytes that follow the head.
    """
    data = draw(st.binary(max_size=40))
    kind = draw(st.sampled_from(["none", "length", "chunked", "length", "chunked", "odd"]))
    if kind == "none":
        return [], b""
    if kind == "length":
        return [(b"Content-Length", b"%d" % len(data))], data
    if kind == "odd":
        return draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=2)), data
    eol = draw(_EOL)
    out = b""
    rest = data
    while rest:
        n = draw(st.integers(1, len(rest)))
        size = draw(st.sampled_from([b"%x" % n, b"%X" % n, b"%02x" % n, b" %x" % n]))
        out += size + draw(_CHUNK_EXT) + draw(_EOL) + rest[:n] + draw(_EOL)
        rest = rest[n:]
    out += b"0" + draw(_CHUNK_EXT) + eol
    out += b"".join(
        n + b":" + draw(_WS) + v + draw(_EOL) for n, v in draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=2))
    )
    return [
        (b"Transfer-Encoding", draw(st.sampled_from([b"chunked", b"chunked", b"Chunked", b"gzip, chunked"])))
    ], out + eol


def _fields(draw: Any, framing: list[tuple[bytes, bytes]], host: bool) -> bytes:
    fields = draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=4))
    if host:
        fields.insert(0, (b"Host", b"app.localhost"))
    fields[draw(st.integers(0, len(fields))) : 0] = framing
    out = b""
    for name, value in fields:
        out += name + draw(st.sampled_from([b":", b":", b" :"])) + draw(_WS) + value + draw(_WS) + draw(_EOL)
        if draw(st.integers(0, 15)) == 0:
            out += draw(st.sampled_from([b" folded", b"\tfolded", b" "])) + draw(_EOL)
    return out


def _mutate(draw: Any, wire: bytes) -> bytes:
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(wire)))
        piece = draw(
            st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b",", b";", b"0", b"a", b"\x00", b"\x7f"])
        )
        how = draw(st.sampled_from(["insert", "replace", "delete"]))
        if how == "insert":
            wire = wire[:at] + piece + wire[at:]
        elif how == "replace":
            wire = wire[:at] + piece + wire[at + 1 :]
        else:
            wire = wire[:at] + wire[at + 1 :]
    return wire


@st.composite
def requests(draw: Any) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"G(T", b"get"]))
    target = draw(
        st.sampled_from([b"/", b"/a?b=c", b"/%2F", b"*", b"http://x/", b"/a b", b"/\x7f", b"/~!$&'()*+,;=:@"])
    )
    version = draw(
        st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.10"])
    )
    framing, body = draw(_body())
    lead = draw(st.sampled_from([b""] * 8 + [b"\r\n", b"\n", b"\r\n\r\n"]))
    line = method + draw(st.sampled_from([b" "] * 6 + [b"  ", b"\t"])) + target + b" " + version + draw(_EOL)
    head = lead + line + _fields(draw, framing, host=draw(st.integers(0, 9)) > 0) + draw(_EOL)
    wire = head + body + draw(st.sampled_from([b"", b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n", b"0\r\n\r\n"]))
    return _mutate(draw, wire)


@st.composite
def responses(draw: Any) -> tuple[bytes, bool]:
    status = draw(
        st.sampled_from([b"200", b"200", b"201", b"204", b"304", b"100", b"103", b"404", b"999", b"20", b"2000"])
    )
    reason = draw(st.sampled_from([b" OK", b" OK", b"", b" ", b" Not Found", b" \xff", b" a\tb", b" a\x00"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2"]))
    framing, body = draw(_body())
    interim = draw(st.sampled_from([b""] * 5 + [b"HTTP/1.1 100 Continue\r\n\r\n"]))
    head = interim + version + b" " + status + reason + draw(_EOL) + _fields(draw, framing, host=False) + draw(_EOL)
    wire = head + body + draw(st.sampled_from([b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]))
    return _mutate(draw, wire), draw(st.integers(0, 5)) == 0


# -- reading them ------------------------------------------------------------------


class Refused(Exception):
    """
    A parser refused the message.
    """


def _netbore(parser: Any, pieces: list[bytes], eof: bool) -> Message | None:
    head: Any = None
    body = b""
    fed = 0
    for i, piece in enumerate(pieces + ([b""] if eof else [])):
        fed += len(piece)
        try:
            parser.feed(piece)
            if i == len(pieces):
                parser.feed_eof()
            while True:
                event = parser.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                if event is END_OF_MESSAGE:
                    return _message(head, body, fed - parser.buffered)
                if isinstance(event, (RequestHead, ResponseHead)):
                    head = event
                else:
                    body += event
        except ParseError as e:
            raise Refused(str(e)) from None
    return None


def _message(head: Any, body: bytes, used: int | None) -> Message:
    first = (head.method, head.target) if isinstance(head, RequestHead) else (head.status, b"")
    fields = tuple((n.lower(), v) for n, v in head.headers)
    return first[0], first[1], fields, body, used


def _h11(wire: bytes, role: Any, method: bytes, eof: bool) -> Message | None:
    conn = h11.Connection(role)
    if role is h11.CLIENT:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
        conn.send(h11.EndOfMessage())
    conn.receive_data(wire)
    if eof:
        conn.receive_data(b"")
    head: Any = None
    body = b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            raise Refused(str(e)) from None
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            return None
        if isinstance(event, (h11.Request, h11.Response)):
            head = event
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            first = (head.method, head.target) if isinstance(head, h11.Request) else (head.status_code, b"")
            fields = tuple((n, v) for n, v in head.headers.raw_items())
            used = len(wire) - len(conn.trailing_data[0]) if not eof else None
            return first[0], first[1], tuple((n.lower(), v) for n, v in fields), body, used


class _Recorder:
    def __init__(self, request: bool) -> None:
        self.parser: Any = httptools.HttpRequestParser(self) if request else httptools.HttpResponseParser(self)
        self.request = request
        self.messages: list[Message] = []
        self.on_message_begin()

    def on_message_begin(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.first: Any = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.first is None:  # trailers are not compared: netbore drops them
            self.fields.append((name.lower(), value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        self.first = self.parser.get_method() if self.request else self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.request or self.first >= 200:  # interim responses are dropped
            self.messages.append((self.first, self.url, tuple(self.fields), self.body, None))


def _httptools(wire: bytes, request: bool) -> Message | None:
    recorder = _Recorder(request)
    try:
        recorder.parser.feed_data(wire)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as e:
        if not recorder.messages:
            raise Refused(str(e)) from None
    return recorder.messages[0] if recorder.messages else None


# -- the property ----------------------------------------------------------------------

_STANDARD_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"}

#: Cases where netbore accepts what an oracle refuses, and why that is right.
_EXCUSED: dict[str, Callable[[bytes, Any], bool]] = {
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
    # a request line (some clients send CRLF after a POST body); h11 takes
    # one for an empty request.
    "h11: empty lines before the request line": lambda wire, m: wire.startswith(b"\r\n"),
    # RFC 9112 §7.1.1 allows BWS around a chunk extension's ";" and "="
    # (and the old parser took it); llhttp does not, h11 not before ";".
    # Safe to accept: the edge re-frames the body, no chunk line goes on.
    "any: white space in chunk extensions": lambda wire, m: _chunk_ws(wire),
    # Methods are tokens (RFC 9110 §9.1); llhttp knows a fixed list.
    "httptools: extension method": lambda wire, m: m[0] not in _STANDARD_METHODS,
    # A later HTTP/1.x minor is read as 1.1 (RFC 9110 §2.5); the oracles
    # refuse it.
    "any: HTTP/1.x minor above 1": lambda wire, m: _minor_above_1(wire),
    # An HTAB in Transfer-Encoding's OWS (RFC 9110 §5.5); llhttp refuses
    # it.  The value read is exactly "chunked", and the edge re-frames.
    "httptools: HTAB around Transfer-Encoding's value": lambda wire, m: (
        re.search(rb"(?i)\ntransfer-encoding[ \t]*:[^\n]*\t", wire) is not None
    ),
}


def _minor_above_1(wire: bytes) -> bool:
    """
    Does a start line say HTTP/1.x with x above 1?
    """
    return re.search(rb"(?:^|\n)[^\n]*HTTP/1\.[2-9]", wire) is not None


def _chunk_ws(wire: bytes) -> bool:
    """
    Does a chunk-size line have white space in its extensions (BWS)?
    """
    return any(b" " in line or b"\t" in line for line in re.findall(rb"\n[0-9A-Fa-f]+[ \t]*;[^\n]*", wire))


#: Responses: the agent reads origins as leniently as RFC 9112 lets a
#: recipient (ORIGIN policy), where llhttp (strict) or h11 refuse.
_EXCUSED_RESPONSES: dict[str, Callable[[bytes, Any], bool]] = {
    # RFC 9112 §2.2: a recipient MAY take a bare LF as a line end (h11
    # does in heads, not in chunked framing).
    "any: bare LF line end": lambda wire, m: b"\n" in wire.replace(b"\r\n", b""),
    # RFC 9112 §5.2: a proxy may replace an obs-fold in a response by SP.
    "httptools: obs-fold": lambda wire, m: re.search(rb"\n[ \t]", wire) is not None,
    # RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length; the
    # connection is then not reused (ResponseHead.keep_alive is false).
    "any: Transfer-Encoding with Content-Length": lambda wire, m: (
        {b"transfer-encoding", b"content-length"} <= {n for n, _ in m[2]}
    ),
    # BWS after a chunk size (origins send it; the old parser took it).
    "httptools: white space after a chunk size": lambda wire, m: re.search(rb"\n[0-9A-Fa-f]+[ \t]", wire) is not None,
    "any: white space in chunk extensions": lambda wire, m: _chunk_ws(wire),
    "any: HTTP/1.x minor above 1": lambda wire, m: _minor_above_1(wire),
    # RFC 9110 §15.2: a client reads the final response after any interim
    # one; llhttp stops at an interim response that closes (Connection:
    # close, or HTTP/1.0).
    "httptools: Connection: close on an interim response": lambda wire, m: _interim_close(wire),
}


def _interim_close(wire: bytes) -> bool:
    """
    Does the wire start with an interim response that says (or, as
    HTTP/1.0, means) the connection closes?
    """
    head = wire.split(b"\n\r\n", 1)[0].lower()
    return re.match(rb"http/1\.[0-9] 1[0-9][0-9]", head) is not None and (b"close" in head or head[5:8] == b"1.0")


def _check(
    wire: bytes,
    pieces_list: list[list[bytes]],
    make: Callable[[], Any],
    oracles: dict[str, Callable[[], Message | None]],
    excused: dict[str, Callable[[bytes, Any], bool]],
    eof: bool = False,
) -> None:
    results: list[Message | str | None] = []
    for pieces in pieces_list:
        try:
            results.append(_netbore(make(), pieces, eof=eof))
        except Refused:
            results.append("refused")
    assert all(r == results[0] for r in results), (wire, results)
    ours = results[0]
    if ours is None or ours == "refused":
        return
    assert not isinstance(ours, str)
    for name, oracle in oracles.items():
        try:
            theirs = oracle()
        except Refused as e:
            why = [k for k, ok in excused.items() if k.split(":")[0] in (name, "any", k) and ok(wire, ours)]
            assert why, f"netbore accepts what {name} refuses ({e}): {wire!r} -> {ours!r}"
            continue
        if theirs is None:
            continue  # the oracle wants more bytes or saw an interim response only
        used = ours[4] if theirs[4] is not None else None
        assert (theirs[0], theirs[1], _unfold(theirs[2]), theirs[3], theirs[4]) == (
            ours[0],
            ours[1],
            _unfold(ours[2]),
            ours[3],
            used,
        ), (name, wire)


def _unfold(fields: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """
    C{fields} with runs of white space in values made one SP (RFC 9112
    §5.2 has obs-fold, OWS CRLF RWS, replaced by one SP; h11 keeps the OWS
    before the CRLF), and C{Transfer-Encoding} lower-cased (h11 rewrites it).
    """
    return tuple((n, re.sub(rb"[ \t]+", b" ", v.lower() if n == b"transfer-encoding" else v)) for n, v in fields)


def _splits(draw: Any, wire: bytes) -> list[list[bytes]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    pieces = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)], strict=True)]
    return [[wire], pieces, [wire[i : i + 1] for i in range(len(wire))]]


def _request_case(wire: bytes, data: Any) -> None:
    EXAMPLES["requests"] += 1
    _check(
        wire,
        _splits(data.draw, wire),
        RequestParser,
        {
            "h11": lambda: _h11(wire, h11.SERVER, b"", eof=False),
            "httptools": lambda: _httptools(wire, request=True),
        },
        _EXCUSED,
    )


def _response_case(case: tuple[bytes, bool], data: Any) -> None:
    EXAMPLES["responses"] += 1
    wire, head_request = case
    method = b"HEAD" if head_request else b"GET"
    oracles: dict[str, Callable[[], Message | None]] = {"h11": lambda: _h11(wire, h11.CLIENT, method, eof=True)}
    if not head_request:  # httptools cannot be told the request was a HEAD
        oracles["httptools"] = lambda: _httptools(wire, request=False)
    pieces = _splits(data.draw, wire)
    _check(wire, pieces, lambda: ResponseParser(head_request), oracles, _EXCUSED_RESPONSES, eof=True)


def _run(case: Callable[..., None], strategy: Any, key: str) -> None:
    if not MINUTES:
        QUICK(given(strategy, st.data())(case))()
        return
    end = time.monotonic() + MINUTES * 30
    while time.monotonic() < end:
        LONG(given(strategy, st.data())(case))()
    print(f"\n{key}: {EXAMPLES[key]} examples in {MINUTES / 2:g} minutes")


def test_requests_against_h11_and_httptools() -> None:
    _run(_request_case, requests(), "requests")


def test_responses_against_h11_and_httptools() -> None:
    _run(_response_case, responses(), "responses")


@pytest.mark.parametrize(
    "wire",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX:  b c \t\r\n\r\n",
    ],
)
def test_known_requests_agree(wire: bytes) -> None:
    # The harness itself: all three read these, and read them the same.
    ours = _netbore(RequestParser(), [wire], eof=False)
    assert ours is not None
    assert _h11(wire, h11.SERVER, b"", eof=False) == ours
    theirs = _httptools(wire, request=True)
    assert theirs is not None and theirs[:4] == ours[:4]
