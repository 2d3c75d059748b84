"""
The two parsers: L{RequestParser} (a server reading requests; the edge
reading viewers) and L{ResponseParser} (a client reading responses; the
agent reading its origin).  Each is a L{readers.MessageReader} with its
role's head reading on top (L{parse_request_head},
L{parse_response_head}), under a L{head.Policy}.
"""

from __future__ import annotations

from .events import NEED_DATA, Event, ParseError, RequestHead, ResponseHead
from .framing import Framing, keep_alive, request_body, response_body
from .grammar import FIELD_SECTION, FIELDS, HOST, LEADING_CRLF, REQUEST_LINE, STATUS_LINE, Header, split_list
from .head import ORIGIN, VIEWER, Buffer, Policy, first_line, parse_fields
from .readers import MessageReader, State

__all__ = ["RequestParser", "ResponseParser", "parse_request_head", "parse_response_head"]

_HEAD = State.HEAD
_END = State.END
_DONE = State.DONE
_LENGTH = State.LENGTH
_CHUNK_SIZE = State.CHUNK_SIZE
_UNTIL_CLOSE = State.UNTIL_CLOSE


_NO_TOKENS: frozenset[bytes] = frozenset()
_REQUEST_FRAMING = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"expect"})


def parse_request_head(buf: Buffer, start: int, end: int, policy: Policy) -> RequestHead:
    """
    Parse the request head in C{buf[start:end]}: the request line and field
    lines, each with its line end (the empty line that ends the head not
    included).  Field names are lower-cased.

    @raise ParseError: it is not a head the policy accepts: a malformed
        line (400), an HTTP version other than 1.x (505), more than one
        C{Host} or none in HTTP/1.1 (400), ambiguous or unsupported body
        framing (see L{framing.request_body}).
    """
    eol = buf.find(b"\r\n", start, end)
    if eol >= 0 and not policy.bare_lf:
        fields = eol + 2  # a bare LF before it fails the match below
    else:
        eol, fields = first_line(buf, start, end, policy)
    line = REQUEST_LINE.fullmatch(buf, start, eol)
    if line is None:
        raise ParseError(400, "malformed request line")
    method, target, major, minor = line.groups()
    if major != b"1":
        raise ParseError(505, "HTTP version not supported")
    http10 = minor == b"0"
    if FIELD_SECTION.fullmatch(buf, fields, end) is not None:
        # The common case, in two regex calls.
        headers = [(name.lower(), value) for name, value in FIELDS.findall(buf, fields, end)]
        if len(headers) > policy.max_fields:
            raise ParseError(policy.error, "too many header fields")
    else:
        headers = [(name.lower(), value) for name, value in parse_fields(buf, fields, end, policy)]

    host: bytes | None = None
    hosts = 0
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    expect: list[bytes] = []
    for name, value in headers:
        if name in _REQUEST_FRAMING:
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
    if host is not None:
        valid = HOST.fullmatch(host)
        # A port is digits, 1 to 65535: "victim:@evil.example" must not
        # reach an origin (or a link built from it).
        if valid is None or (valid[1] is not None and not 0 < int(valid[1]) < 65536):
            raise ParseError(400, "bad Host")
    length = request_body(http10, codings, lengths) if codings or lengths else 0
    if connection:
        tokens = frozenset(split_list(connection))
        alive = keep_alive(http10, tokens)
    else:
        tokens = _NO_TOKENS
        alive = not http10
    return RequestHead(
        method,
        target,
        b"HTTP/1.0" if http10 else b"HTTP/1.1",
        headers,
        host,
        length,
        length is None,
        alive,
        not http10 and bool(expect) and split_list(expect) == [b"100-continue"],
        tokens,
    )


def parse_response_head(buf: Buffer, start: int, end: int, head_request: bool, policy: Policy) -> ResponseHead:
    """
    Parse the response head in C{buf[start:end]} (as L{parse_request_head}),
    for a request that was a C{HEAD} when C{head_request}.  Field names
    are kept as sent.

    @raise ParseError: a malformed status line or field, a version other
        than 1.x, a status below 100, a bad C{Content-Length}.
    """
    eol = buf.find(b"\r\n", start, end)
    if eol >= 0 and buf.find(b"\n", start, eol) < 0:
        fields = eol + 2
    else:
        eol, fields = first_line(buf, start, end, policy)
    line = STATUS_LINE.fullmatch(buf, start, eol)
    if line is None or line.group(1) != b"1":
        raise ParseError(policy.error, "bad status line")
    status = int(line.group(3))
    if status < 100:
        raise ParseError(policy.error, "bad status code")
    if status < 200 and line.group(2) == b"0":
        # HTTP/1.0 has no interim responses (RFC 9110 §15.2); llhttp reads
        # one as a complete message, so refuse rather than disagree.
        raise ParseError(policy.error, "interim response in HTTP/1.0")
    if FIELD_SECTION.fullmatch(buf, fields, end) is not None:
        headers: list[Header] = FIELDS.findall(buf, fields, end)
        if len(headers) > policy.max_fields:
            raise ParseError(policy.error, "too many header fields")
    else:
        headers = parse_fields(buf, fields, end, policy)
    connection: list[bytes] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"connection":
            connection.append(value)
        elif lower == b"content-length":
            lengths.append(value)
        elif lower == b"transfer-encoding":
            codings.append(value)
    http10 = line.group(2) == b"0"
    if connection:
        tokens = frozenset(split_list(connection))
        alive = keep_alive(http10, tokens)
    else:
        tokens = _NO_TOKENS
        alive = not http10
    framing, length, reusable = response_body(status, head_request, codings, lengths, alive)
    return ResponseHead(
        status,
        line.group(4) or b"",
        headers,
        reusable,
        tokens,
        length if framing is Framing.LENGTH else (0 if framing is Framing.NONE else None),
        framing is Framing.CHUNKED,
    )


class RequestParser(MessageReader):
    """
    The requests of one connection, one at a time: a L{RequestHead}, then
    C{bytes} pieces of the (de-chunked) body, then L{END_OF_MESSAGE}; then
    L{PAUSED} until L{start_next} says the response is done, so pipelined
    requests wait in the buffer.

    Up to 8 empty lines before a request line are skipped (RFC 9112 §2.2:
    some clients send CRLF after a POST body).
    """

    __slots__ = ("_head_start",)

    def __init__(self, policy: Policy = VIEWER) -> None:
        super().__init__(policy)
        self._head_start = 0

    def take_raw(self) -> bytes:
        """
        The last head's bytes as received and everything buffered after it
        (for another parser to read from there); call it right after
        L{next_event} returned that head.  The parser is spent.
        """
        raw = bytes(self._buf[self._head_start :])
        self._buf = b""
        self._pos = self._scan = 0
        self._fail("connection handed over")
        return raw

    def take_rest(self) -> bytes:
        """
        The bytes buffered after the last message (a connection switching
        protocols after it: they are the new protocol's).  The parser is spent.
        """
        rest = bytes(self._buf[self._pos :])
        self._buf = b""
        self._pos = self._scan = 0
        self._fail("connection switched protocols")
        return rest

    def _head(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        if buf.startswith(b"\r\n", pos):
            skip = LEADING_CRLF.match(buf, pos).end()  # type: ignore[union-attr]
            if buf.startswith(b"\r\n", skip):
                raise self._fail("too many empty lines before the request")
            self._pos = pos = skip
            if self._scan < pos:
                self._scan = pos
        policy = self.policy
        i = buf.find(b"\r\n\r\n", pos) if self._scan == pos and not policy.bare_lf else -1
        if 0 <= i and i + 4 - pos <= policy.max_head:
            # A whole head in a fresh read: the common case.
            end = i + 2
            body = i + 4
        else:
            end, body = self._head_end()
            if end < 0:
                return NEED_DATA
        try:
            head = parse_request_head(buf, pos, end, policy)
        except ParseError as e:
            self._state = State.ERROR
            self._error = e
            raise
        self._head_start = pos
        self._pos = self._scan = body
        if head.chunked:
            self._state = _CHUNK_SIZE
        elif head.length:
            self._remaining = head.length
            self._state = _LENGTH
        else:
            self._state = _END
        return head


class ResponseParser(MessageReader):
    """
    The responses of one client connection: interim (1xx) responses are
    read and dropped, then the final L{ResponseHead}, C{bytes} pieces of its
    body, L{END_OF_MESSAGE}; then L{PAUSED} until L{start_next} (bytes
    buffered then came unasked: the connection cannot be reused).

    @ivar head: the last final response head read.
    """

    __slots__ = ("head_request", "head")

    def __init__(self, head_request: bool = False, policy: Policy = ORIGIN) -> None:
        super().__init__(policy)
        #: The request this response answers was a C{HEAD}.
        self.head_request = head_request
        self.head: ResponseHead | None = None

    def start_next(self, head_request: bool = False) -> int:
        """
        The next request is sent (C{head_request}: it is a C{HEAD}): read
        its response.  Returns the bytes already buffered.
        """
        if self._state is _DONE:
            self._state = _HEAD
        self.head_request = head_request
        return len(self._buf) - self._pos

    @property
    def reusable(self) -> bool:
        """
        The response has ended cleanly, nothing came after it, and its head
        lets the connection carry another request.
        """
        head = self.head
        return self._state is _DONE and self._pos >= len(self._buf) and head is not None and head.keep_alive

    def feed_eof(self) -> None:
        """
        The connection closed: a body read until the close ends (after the
        events of what was fed).

        @raise ParseError: the response was not complete.
        """
        state = self._state
        if state is _UNTIL_CLOSE:
            self._state = _END
        elif state is not _END and state is not _DONE:
            raise self._fail("connection closed before the response was complete")

    def _head(self) -> Event | None:
        end, body = self._head_end()
        if end < 0:
            return NEED_DATA
        try:
            head = parse_response_head(self._buf, self._pos, end, self.head_request, self.policy)
        except ParseError as e:
            self._state = State.ERROR
            self._error = e
            raise
        self._pos = self._scan = body
        status = head.status
        if status < 200:
            if status == 101:
                raise self._fail("unexpected 101 Switching Protocols")
            return None  # interim: the final response follows
        self.head = head
        if head.chunked:
            self._state = _CHUNK_SIZE
        elif head.length:
            self._remaining = head.length
            self._state = _LENGTH
        elif head.length is None:
            self._state = _UNTIL_CLOSE
        else:
            self._state = _END
        return head
