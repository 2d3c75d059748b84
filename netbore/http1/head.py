"""
Head parsing with an explicit strictness L{Policy}: L{VIEWER} for what the
edge reads from viewers (strict wherever two readings of the same bytes
could differ), L{ORIGIN} for what the agent reads from origins (as lenient
as RFC 9112 lets a recipient be: bare LF line ends, obs-fold).

Both policies share one field grammar (L{grammar}): the fast path checks a
whole CRLF field section with one regex call and takes its fields with one
more; only a head that fails it, under a lenient policy, is read line by
line.  Heads are matched where they lie in the receive buffer (C{buf}
between C{start} and C{end}), never copied out first.
"""

from __future__ import annotations

import re
from typing import Final

from .events import ParseError, RequestHead, ResponseHead
from .framing import Framing, keep_alive, request_body, response_body
from .grammar import (
    CHUNK_EXT,
    CHUNK_SIZE,
    FIELD_LINE,
    FIELD_SECTION,
    FIELDS,
    REQUEST_LINE,
    STATUS_LINE,
    Header,
    split_list,
)

__all__ = ["ORIGIN", "VIEWER", "Policy", "parse_fields", "parse_request_head", "parse_response_head"]

Buffer = bytes | bytearray

#: The most bytes a head (start line and field section) or a trailer
#: section may take.
MAX_HEAD: Final = 64 * 1024
#: The longest chunk-size line (size and extensions).
MAX_LINE: Final = 4096


class Policy:
    """
    How strict reading a message is.

    @ivar bare_lf: a lone LF ends a line as CRLF does (RFC 9112 §2.2 lets a
        recipient accept it); else a bare LF is refused.
    @ivar obs_fold: a field line starting with white space continues the
        previous one (replaced by one SP, RFC 9112 §5.2); else refused.
    @ivar max_head: the most bytes a head or a trailer section may take.
    @ivar max_fields: the most field lines in a head.
    @ivar max_line: the longest chunk-size line.
    @ivar error: the status of a L{ParseError} for a malformed message.
    @ivar chunk_size: the grammar of a chunk-size line (without line end).
    """

    __slots__ = ("bare_lf", "obs_fold", "max_head", "max_fields", "max_line", "error", "chunk_size")

    def __init__(
        self,
        *,
        bare_lf: bool,
        obs_fold: bool,
        error: int,
        chunk_size: re.Pattern[bytes],
        max_head: int = MAX_HEAD,
        max_fields: int = MAX_HEAD,
        max_line: int = MAX_LINE,
    ) -> None:
        self.bare_lf = bare_lf
        self.obs_fold = obs_fold
        self.error = error
        self.chunk_size = chunk_size
        self.max_head = max_head
        self.max_fields = max_fields
        self.max_line = max_line


#: The edge reading viewers: CRLF only, no obs-fold, no white space after a
#: chunk size except before C{;}; errors are 400s.
VIEWER: Final = Policy(bare_lf=False, obs_fold=False, error=400, chunk_size=CHUNK_SIZE)

#: The agent reading its origin: bare LF and obs-fold accepted, white space
#: after a chunk size tolerated, at most 256 fields; errors are 502s.
ORIGIN: Final = Policy(
    bare_lf=True,
    obs_fold=True,
    error=502,
    chunk_size=re.compile(rb"([0-9A-Fa-f]{1,16})" + CHUNK_EXT + rb"[ \t]*"),
    max_fields=256,
)


def _first_line(buf: Buffer, start: int, end: int, policy: Policy) -> tuple[int, int]:
    """
    Where the start line ends (its last byte before the line end) and where
    the field section begins.
    """
    nl = buf.find(b"\n", start, end)
    if nl < 0:
        raise ParseError(policy.error, "no start line")
    if nl > start and buf[nl - 1] == 13:
        return nl - 1, nl + 1
    if not policy.bare_lf:
        raise ParseError(policy.error, "bare LF in the head")
    return nl, nl + 1


def parse_fields(buf: Buffer, start: int, end: int, policy: Policy) -> list[Header]:
    """
    The field lines of C{buf[start:end]} (each with its line end), names
    and values as sent, values without surrounding white space.

    @raise ParseError: a malformed line, or one the policy does not allow.
    """
    if FIELD_SECTION.fullmatch(buf, start, end) is not None:
        headers: list[Header] = FIELDS.findall(buf, start, end)
    elif not (policy.bare_lf or policy.obs_fold):
        raise ParseError(policy.error, "malformed header field")
    else:
        headers = []
        for raw in bytes(buf[start:end]).split(b"\n")[:-1]:
            if raw.endswith(b"\r"):
                line = raw[:-1]
            elif policy.bare_lf:
                line = raw
            else:
                raise ParseError(policy.error, "bare LF in the head")
            if line[:1] in (b" ", b"\t"):
                if not policy.obs_fold or not headers:
                    raise ParseError(policy.error, "obs-fold")
                name, value = headers[-1]
                more = FIELD_LINE.fullmatch(b"x:" + line)
                if more is None:
                    raise ParseError(policy.error, "malformed header field")
                more_value = more.group(2)
                headers[-1] = (name, value + b" " + more_value if value and more_value else value or more_value)
                continue
            field = FIELD_LINE.fullmatch(line)
            if field is None:
                raise ParseError(policy.error, "malformed header field")
            headers.append((field.group(1), field.group(2)))
    if len(headers) > policy.max_fields:
        raise ParseError(policy.error, "too many header fields")
    return headers


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
    if eol >= 0 and buf.find(b"\n", start, eol) < 0:
        fields = eol + 2
    else:
        eol, fields = _first_line(buf, start, end, policy)
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
    eol, fields = _first_line(buf, start, end, policy)
    line = STATUS_LINE.fullmatch(buf, start, eol)
    if line is None or line.group(1) != b"1":
        raise ParseError(policy.error, "bad status line")
    status = int(line.group(3))
    if status < 100:
        raise ParseError(policy.error, "bad status code")
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
    tokens = frozenset(split_list(connection)) if connection else frozenset()
    framing, length, reusable = response_body(
        status, head_request, codings, lengths, keep_alive(line.group(2) == b"0", tokens)
    )
    return ResponseHead(
        status,
        line.group(4) or b"",
        headers,
        reusable,
        tokens,
        length if framing is Framing.LENGTH else (0 if framing is Framing.NONE else None),
        framing is Framing.CHUNKED,
    )
