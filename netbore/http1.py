"""
A sans-IO HTTP/1.1 response parser (RFC 9112): bytes in, events out.

No Twisted, no sockets.  L{ResponseParser.feed} takes whatever the
connection read and returns the events it completes, in order:

  - one L{ResponseHead} (interim 1xx responses are consumed silently);
  - body bytes, as C{bytes}, as they arrive (a read that is all body comes
    out as the same object, not a copy);
  - L{END} once the body is complete.

L{ResponseParser.feed_eof} is called when the connection closes: it ends a
body delimited by the close, and raises L{ParseError} for a response cut
short.  Anything malformed raises L{ParseError} and nothing else.
"""

from __future__ import annotations

import re
from typing import Final, Union

__all__ = [
    "END",
    "EndOfResponse",
    "Event",
    "ParseError",
    "ResponseHead",
    "ResponseParser",
]

#: Limits on what an origin may send before the body.
MAX_HEAD = 64 * 1024
MAX_HEADERS = 256
MAX_LINE = 4096  # a chunk-size line, with its extensions

_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([^\x00\r\n]*))?")
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\x00\r\n]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00\r\n]*)?")
_DIGITS = re.compile(rb"[0-9]{1,18}")


class ParseError(Exception):
    """
    The origin's response is not HTTP/1.1 this parser accepts.
    """


class ResponseHead:
    """
    The final response head.

    @ivar headers: every field line, in order, name and value as sent (value
        without surrounding whitespace).
    @ivar keep_alive: the connection may carry another request once this
        response's body is complete (HTTP/1.1 without C{Connection: close},
        or HTTP/1.0 with C{Connection: keep-alive}, and a body with its own
        end).
    @ivar connection: the lower-cased tokens of every C{Connection} field.
    @ivar length: the body's length from C{Content-Length}; C{0} for a
        response without a body; L{None} when chunked or read until close.
    @ivar chunked: the body is chunked.
    """

    __slots__ = ("status", "reason", "headers", "keep_alive", "connection", "length", "chunked")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        connection: frozenset[bytes],
        length: int | None,
        chunked: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.connection = connection
        self.length = length
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r} {self.headers!r}>"


class EndOfResponse:
    """
    The response body is complete.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END: Final = EndOfResponse()

Event = Union[ResponseHead, bytes, EndOfResponse]

# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


def _find_head_end(buf: bytes | bytearray, start: int) -> tuple[int, int]:
    """
    Where the head in C{buf} ends: (end of its last line, start of the
    body), or (-1, -1).  A bare LF ends a line as well as CRLF does.
    """
    i = buf.find(b"\r\n\r\n", start)
    limit = i + 3 if i >= 0 else len(buf)
    j = buf.find(b"\n\n", start, limit)
    k = buf.find(b"\n\r\n", start, limit)
    best = -1
    skip = 0
    for pos, n in ((i, 4), (j, 2), (k, 3)):
        if pos >= 0 and (best < 0 or pos < best):
            best, skip = pos, n
    if best < 0:
        return -1, -1
    return best, best + skip


def _parse_head(block: bytes, head_request: bool) -> ResponseHead:
    """
    Parse the status line and field lines of one response head.
    """
    lines = block.split(b"\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
    if match is None:
        raise ParseError("bad status line")
    minor, code, reason = match.groups()
    status = int(code)
    if status < 100:
        raise ParseError("bad status code")
    headers: list[tuple[bytes, bytes]] = []
    if len(lines) > MAX_HEADERS + 1:
        raise ParseError("too many header fields")
    connection: set[bytes] = set()
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 §5.2): a recipient replaces it with SP.
            if not headers:
                raise ParseError("folded line before any field")
            name, value = headers[-1]
            more = line.strip(b" \t")
            if b"\r" in more or b"\x00" in more:
                raise ParseError("bad field value")
            headers[-1] = (name, value + b" " + more if value else more)
            continue
        field = _FIELD_LINE.fullmatch(line)
        if field is None:
            raise ParseError("bad field line")
        name, value = field.groups()
        headers.append((name, value))
    for name, value in headers:
        # Checked after folding, so a folded value counts whole.
        lower = name.lower()
        if lower == b"connection":
            connection.update(t.strip(b" \t").lower() for t in value.split(b","))
        elif lower == b"content-length":
            lengths.extend(v.strip(b" \t") for v in value.split(b","))
        elif lower == b"transfer-encoding":
            codings.extend(v.strip(b" \t").lower() for v in value.split(b","))
    connection.discard(b"")
    if minor == b"0":
        keep_alive = b"keep-alive" in connection
    else:
        keep_alive = b"close" not in connection
    length: int | None = None
    chunked = False
    if head_request or status in (204, 304) or status < 200:
        length = 0
    elif codings:
        # RFC 9112 §6.3: Transfer-Encoding wins over Content-Length, and a
        # message with both is not to be trusted for reuse.
        if codings[-1] == b"chunked":
            chunked = True
        else:
            keep_alive = False
        if lengths:
            keep_alive = False
    elif lengths:
        if any(_DIGITS.fullmatch(v) is None for v in lengths) or len(set(lengths)) != 1:
            raise ParseError("bad content-length")
        length = int(lengths[0])
    else:
        keep_alive = False
    return ResponseHead(
        status,
        reason or b"",
        headers,
        keep_alive,
        frozenset(connection),
        length,
        chunked,
    )


class ResponseParser:
    """
    Parses one response (for a request with method C{method}) from the
    bytes of a connection.

    @ivar complete: the response has ended.
    @ivar extra: bytes arrived after the end of the response (the
        connection cannot be reused).
    """

    def __init__(self, head_request: bool = False) -> None:
        self._head_request = head_request
        self._state = _HEAD
        self._buf = bytearray()
        self._remaining = 0
        self._trailer_bytes = 0
        self.head: ResponseHead | None = None
        self.extra = False

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    @property
    def reusable(self) -> bool:
        """
        The response has ended cleanly and the connection may carry another.
        """
        head = self.head
        return self._state == _DONE and not self.extra and head is not None and head.keep_alive

    def feed(self, data: bytes) -> list[Event]:
        """
        Parse C{data}, the next bytes read.

        @raise ParseError: the response is malformed.
        """
        events: list[Event] = []
        pos = 0
        size = len(data)
        while pos < size:
            state = self._state
            if state == _LENGTH:
                n = min(self._remaining, size - pos)
                events.append(data if n == size else data[pos : pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _DONE
                    events.append(END)
            elif state == _UNTIL_CLOSE:
                events.append(data if pos == 0 else data[pos:])
                pos = size
            elif state == _CHUNK_DATA:
                n = min(self._remaining, size - pos)
                events.append(data if n == size else data[pos : pos + n])
                pos += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _HEAD:
                pos = self._feed_head(data, pos, events)
            elif state == _DONE:
                self.extra = True
                break
            else:
                line, pos = self._line(data, pos)
                if line is not None:
                    self._on_line(line, events)
        return events

    def feed_eof(self) -> list[Event]:
        """
        The connection closed.

        @raise ParseError: the response was not complete.
        """
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return [END]
        if self._state == _DONE:
            return []
        raise ParseError("connection closed before the response was complete")

    # -- internals ------------------------------------------------------------

    def _feed_head(self, data: bytes, pos: int, events: list[Event]) -> int:
        buf = self._buf
        if not buf and pos == 0:
            source: bytes | bytearray = data
            start = 0
        else:
            already = len(buf)
            buf += data[pos:] if pos else data
            source = buf
            start = max(0, already - 3)
            # Index in data of the buffer's byte 0.
            pos -= already
        end, body = _find_head_end(source, start)
        if end < 0:
            if source is data:
                buf += data
            if len(buf) > MAX_HEAD:
                raise ParseError("response head too large")
            return len(data)
        if end > MAX_HEAD:
            raise ParseError("response head too large")
        block = bytes(source[:end])
        consumed = body if source is data else body + pos
        self._buf = bytearray()
        head = _parse_head(block, self._head_request)
        if head.status < 200:
            if head.status == 101:
                raise ParseError("unexpected 101 Switching Protocols")
            # Interim response: the final one follows.
            return consumed
        self.head = head
        events.append(head)
        if head.length == 0:
            self._state = _DONE
            events.append(END)
        elif head.length is not None:
            self._state = _LENGTH
            self._remaining = head.length
        elif head.chunked:
            self._state = _CHUNK_SIZE_LINE
        else:
            self._state = _UNTIL_CLOSE
        return consumed

    def _line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """
        The next complete line (without its line end) from the buffer and
        C{data}, and where C{data} continues; (None, end of data) when the
        line is not complete yet.
        """
        nl = data.find(b"\n", pos)
        buf = self._buf
        if nl < 0:
            buf += data[pos:]
            if len(buf) > MAX_LINE:
                raise ParseError("line too long")
            return None, len(data)
        if buf:
            buf += data[pos:nl]
            line = bytes(buf)
            self._buf = bytearray()
        else:
            line = data[pos:nl]
        if len(line) > MAX_LINE:
            raise ParseError("line too long")
        if line.endswith(b"\r"):
            line = line[:-1]
        return line, nl + 1

    def _on_line(self, line: bytes, events: list[Event]) -> None:
        state = self._state
        if state == _CHUNK_SIZE_LINE:
            match = _CHUNK_SIZE.fullmatch(line)
            if match is None:
                raise ParseError("bad chunk size")
            n = int(match.group(1), 16)
            if n:
                self._state = _CHUNK_DATA
                self._remaining = n
            else:
                self._state = _TRAILERS
        elif state == _CHUNK_CRLF:
            if line:
                raise ParseError("chunk data longer than its size")
            self._state = _CHUNK_SIZE_LINE
        else:  # _TRAILERS: read and dropped
            if not line:
                self._state = _DONE
                events.append(END)
                return
            self._trailer_bytes += len(line)
            if self._trailer_bytes > MAX_HEAD or _FIELD_LINE.fullmatch(line) is None:
                raise ParseError("bad trailer section")
