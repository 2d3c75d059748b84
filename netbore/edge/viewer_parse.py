"""
HTTP/1.1 requests from viewers, sans-IO: bytes in, events out.

L{RequestParser} turns the bytes of one viewer connection into a request
head (L{RequestHead}), pieces of its body (C{bytes}) and L{END_OF_MESSAGE},
one request at a time: after a message's end it returns L{PAUSED} until
L{RequestParser.start_next} says the response is done, so pipelined requests
are served one after the other and their bytes wait in the buffer.

The edge is the first hop a viewer's bytes meet, and it re-frames the body
into tunnel frames, so the parser is strict wherever two readings of the
same bytes could differ (request smuggling) and refuses rather than guesses:

  - the head is read in one go, split on the first CRLF CRLF, and may be at
    most 64 KiB (431 beyond);
  - every line ends with CRLF: a bare LF is refused (400), not tolerated --
    clients that matter send CRLF, and tolerating LF is where front ends and
    back ends have disagreed before;
  - obs-fold (a field line starting with white space), white space before a
    field's colon, control characters in a value: 400;
  - more than one C{Host}, or none in HTTP/1.1: 400;
  - C{Content-Length} must be digits only; repeated, it must repeat the same
    number; with C{Transfer-Encoding} as well: 400;
  - C{Transfer-Encoding} must be exactly C{chunked} (other codings: 501; a
    final coding other than chunked, or any in HTTP/1.0: 400);
  - chunk sizes are 1-16 hex digits, then optionally C{;} extensions (white
    space allowed only before C{;}); each chunk ends with CRLF; anything else
    is 400.  Trailer fields are checked like header fields and dropped (the
    tunnel protocol has no trailers);
  - HTTP versions other than 1.x: 505.

Up to a few empty lines before a request line are skipped (RFC 9112 §2.2:
some clients send CRLF after a POST body).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "END_OF_MESSAGE",
    "MAX_HEAD",
    "NEED_DATA",
    "PAUSED",
    "ParseError",
    "RequestHead",
    "RequestParser",
]

#: The most bytes a request head (request line and header section) or a
#: trailer section may take.
MAX_HEAD: Final = 64 * 1024

#: The longest chunk-size line (size and extensions) accepted.
MAX_CHUNK_LINE: Final = 4096


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: No event until more bytes are fed.
NEED_DATA: Final = _Sentinel("NEED_DATA")
#: The current request's body is complete.
END_OF_MESSAGE: Final = _Sentinel("END_OF_MESSAGE")
#: A message is complete and its response not done yet (see start_next).
PAUSED: Final = _Sentinel("PAUSED")

class ParseError(Exception):
    """
    The bytes are not a request the edge accepts; C{status} is the status
    to answer with (400, 431, 501, 505) before closing the connection.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestHead:
    """
    A parsed request head.  Field names are lower-cased; values, order and
    repetitions are as sent.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "host",
        "length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "connection",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[tuple[bytes, bytes]],
        host: bytes | None,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        connection: frozenset[bytes],
    ) -> None:
        self.method = method
        self.target = target
        #: C{b"HTTP/1.1"} or C{b"HTTP/1.0"} (later 1.x minors read as 1.1).
        self.version = version
        self.headers = headers
        self.host = host
        #: Body length; 0 when there is no body; L{None} when chunked.
        self.length = length
        self.chunked = chunked
        #: The viewer allows another request on this connection.
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        #: The field names listed in C{Connection} (lower-cased).
        self.connection = connection

    def header(self, name: bytes) -> bytes | None:
        """
        The first value of the field C{name} (lower-case), or L{None}.
        """
        for n, v in self.headers:
            if n == name:
                return v
        return None


_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
_VALUE = rb"(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?"
_FIELD_LINE = rb"(" + _TCHAR + rb"+):[ \t]*(" + _VALUE + rb")[ \t]*\r\n"

_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# A whole field section (each line ending CRLF), validated in one call, then
# its fields taken in one more.
_FIELD_SECTION = re.compile(rb"(?:" + _TCHAR + rb"+:[ \t]*" + _VALUE + rb"[ \t]*\r\n)*")
_FIELDS = re.compile(_FIELD_LINE)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?")
_LEADING_CRLF = re.compile(rb"(?:\r\n){0,8}")

_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"})

# Parser states.
_HEAD = 0
_LENGTH = 1
_CHUNK_SIZE_LINE = 2
_CHUNK_DATA = 3
_CHUNK_END = 4
_TRAILER = 5
_END = 6
_DONE = 7
_ERROR = 8


def _split_list(values: list[bytes]) -> list[bytes]:
    """
    The lower-cased, non-empty elements of comma-separated field values.
    """
    return [item for v in values for item in (p.strip(b" \t").lower() for p in v.split(b",")) if item]


def parse_head(head: bytes) -> RequestHead:
    """
    Parse a request head: the request line and field lines, each ending
    with CRLF (the empty line that ends the head not included).

    @raise ParseError: it is not a head the edge accepts.
    """
    eol = head.find(b"\r\n")
    if eol < 0:
        raise ParseError(400, "no request line")
    line = _REQUEST_LINE.fullmatch(head, 0, eol)
    if line is None:
        raise ParseError(400, "malformed request line")
    method, target, major, minor = line.groups()
    if major != b"1":
        raise ParseError(505, "HTTP version not supported")
    http10 = minor == b"0"
    start = eol + 2
    if _FIELD_SECTION.fullmatch(head, start) is None:
        raise ParseError(400, "malformed header field")
    headers = [(name.lower(), value) for name, value in _FIELDS.findall(head, start)]

    host: bytes | None = None
    hosts = 0
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    expect: list[bytes] = []
    for name, value in headers:
        if name in _FRAMING:
            if name == b"host":
                hosts += 1
                host = value
            elif name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings.append(value)
            elif name == b"connection":
                connection.append(value)
            else:
                expect.append(value)
    if hosts > 1:
        raise ParseError(400, "more than one Host")
    if host is None and not http10:
        raise ParseError(400, "no Host in an HTTP/1.1 request")

    length: int | None = 0
    chunked = False
    if codings:
        if http10:
            raise ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise ParseError(400, "both Content-Length and Transfer-Encoding")
        te = _split_list(codings)
        if te != [b"chunked"]:
            if te and te[-1] == b"chunked" and b"chunked" not in te[:-1]:
                raise ParseError(501, "transfer coding not implemented")
            raise ParseError(400, "Transfer-Encoding must end with chunked, once")
        chunked = True
        length = None
    elif lengths:
        numbers = {p.strip(b" \t") for v in lengths for p in v.split(b",")}
        if len(numbers) != 1:
            raise ParseError(400, "conflicting Content-Length")
        (number,) = numbers
        if not number.isdigit() or len(number) > 18:
            raise ParseError(400, "invalid Content-Length")
        length = int(number)

    tokens = frozenset(_split_list(connection)) if connection else frozenset()
    if http10:
        keep_alive = b"keep-alive" in tokens and b"close" not in tokens
    else:
        keep_alive = b"close" not in tokens
    expect_continue = not http10 and bool(expect) and _split_list(expect) == [b"100-continue"]
    return RequestHead(
        method,
        target,
        b"HTTP/1.0" if http10 else b"HTTP/1.1",
        headers,
        host,
        length,
        chunked,
        keep_alive,
        expect_continue,
        tokens,
    )


class RequestParser:
    """
    The requests of one connection, sans-IO.

    L{feed} bytes as they arrive; call L{next_event} until it returns
    L{NEED_DATA} or L{PAUSED}.  Events: a L{RequestHead}, then C{bytes}
    pieces of the (de-chunked) body, then L{END_OF_MESSAGE}.  After that,
    L{PAUSED} until L{start_next}.  A L{ParseError} leaves the parser
    failed: every later call raises it again.
    """

    __slots__ = ("_buf", "_state", "_remaining", "_trailer", "_error", "_last_head")

    def __init__(self) -> None:
        self._buf = b""
        self._state = _HEAD
        self._remaining = 0
        self._trailer = 0
        self._error: ParseError | None = None
        # The raw bytes of the last head (for handing the connection over).
        self._last_head = b""

    def feed(self, data: bytes) -> None:
        if self._buf:
            self._buf += data
        else:
            self._buf = data

    @property
    def buffered(self) -> int:
        """
        Bytes received and not yet returned as events.
        """
        return len(self._buf)

    @property
    def in_head(self) -> bool:
        """
        Waiting for (the rest of) a request head.
        """
        return self._state == _HEAD

    def start_next(self) -> None:
        """
        The response to the last request is done: parse the next one.
        """
        if self._state == _DONE:
            self._state = _HEAD

    def take_raw(self) -> bytes:
        """
        The last head's bytes as received and everything buffered after it
        (for another parser to read from there); the parser is spent.
        """
        raw = self._last_head + self._buf
        self._buf = b""
        self._last_head = b""
        self._state = _ERROR
        self._error = ParseError(400, "connection handed over")
        return raw

    def _fail(self, status: int, message: str) -> ParseError:
        self._state = _ERROR
        self._error = ParseError(status, message)
        return self._error

    def next_event(self) -> "RequestHead | bytes | _Sentinel":
        while True:
            state = self._state
            buf = self._buf
            if state == _LENGTH or state == _CHUNK_DATA:
                if not buf:
                    return NEED_DATA
                n = self._remaining
                if len(buf) <= n:
                    self._buf = b""
                    piece = buf
                else:
                    piece = buf[:n]
                    self._buf = buf[n:]
                n -= len(piece)
                self._remaining = n
                if not n:
                    self._state = _END if state == _LENGTH else _CHUNK_END
                return piece
            if state == _HEAD:
                return self._head(buf)
            if state == _END:
                self._state = _DONE
                return END_OF_MESSAGE
            if state == _DONE:
                return PAUSED
            if state == _CHUNK_SIZE_LINE:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > MAX_CHUNK_LINE or b"\n" in buf:
                        raise self._fail(400, "invalid chunk size line")
                    return NEED_DATA
                m = _CHUNK_SIZE.fullmatch(buf, 0, eol)
                if m is None:
                    raise self._fail(400, "invalid chunk size")
                self._buf = buf[eol + 2 :]
                size = int(m.group(1), 16)
                if size:
                    self._remaining = size
                    self._state = _CHUNK_DATA
                else:
                    self._trailer = 0
                    self._state = _TRAILER
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    if buf and buf != b"\r":
                        raise self._fail(400, "chunk data not followed by CRLF")
                    return NEED_DATA
                if buf[:2] != b"\r\n":
                    raise self._fail(400, "chunk data not followed by CRLF")
                self._buf = buf[2:]
                self._state = _CHUNK_SIZE_LINE
            elif state == _TRAILER:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if self._trailer + len(buf) > MAX_HEAD or b"\n" in buf:
                        raise self._fail(400, "invalid trailer section")
                    return NEED_DATA
                self._trailer += eol + 2
                if self._trailer > MAX_HEAD:
                    raise self._fail(400, "trailer section too large")
                if eol and _FIELD_SECTION.fullmatch(buf, 0, eol + 2) is None:
                    raise self._fail(400, "malformed trailer field")
                self._buf = buf[eol + 2 :]
                if not eol:
                    self._state = _END
            else:
                assert self._error is not None
                raise self._error

    def _head(self, buf: bytes) -> "RequestHead | _Sentinel":
        if buf[:2] == b"\r\n":
            skip = _LEADING_CRLF.match(buf).end()  # type: ignore[union-attr]
            if buf[skip : skip + 2] == b"\r\n":
                raise self._fail(400, "too many empty lines before the request")
            buf = self._buf = buf[skip:]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) >= MAX_HEAD:
                raise self._fail(431, "request head too large")
            if b"\n\n" in buf or b"\n\r\n" in buf:
                raise self._fail(400, "bare LF in the request head")
            return NEED_DATA
        if end + 4 > MAX_HEAD:
            raise self._fail(431, "request head too large")
        head = buf[: end + 2]
        try:
            parsed = parse_head(head)
        except ParseError as e:
            self._state = _ERROR
            self._error = e
            raise
        self._last_head = buf[: end + 4]
        self._buf = buf[end + 4 :]
        if parsed.chunked:
            self._state = _CHUNK_SIZE_LINE
        elif parsed.length:
            self._remaining = parsed.length
            self._state = _LENGTH
        else:
            self._state = _END
        return parsed
