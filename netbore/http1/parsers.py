"""
The two parsers: L{RequestParser} (a server reading requests; the edge
reading viewers) and L{ResponseParser} (a client reading responses; the
agent reading its origin).  Each is a L{readers.MessageReader} with its
role's head reading on top.
"""

from __future__ import annotations

from .events import NEED_DATA, RequestHead, ResponseHead, Event, ParseError
from .grammar import LEADING_CRLF
from .head import ORIGIN, VIEWER, Policy, parse_request_head, parse_response_head
from .readers import MessageReader, State

__all__ = ["RequestParser", "ResponseParser"]

_HEAD = State.HEAD
_END = State.END
_DONE = State.DONE
_LENGTH = State.LENGTH
_CHUNK_SIZE = State.CHUNK_SIZE
_UNTIL_CLOSE = State.UNTIL_CLOSE


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
        i = buf.find(b"\r\n\r\n", pos) if self._scan == pos and not self.policy.bare_lf else -1
        if 0 <= i and i + 4 - pos <= self.policy.max_head:
            # A whole head in a fresh read: the common case.
            end = i + 2
            body = i + 4
        else:
            end, body = self._head_end()
            if end < 0:
                return NEED_DATA
        try:
            head = parse_request_head(buf, pos, end, self.policy)
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

    def start_next(self, head_request: bool = False) -> None:
        """
        The next request is sent (C{head_request}: it is a C{HEAD}): read
        its response.
        """
        if self._state is _DONE:
            self._state = _HEAD
        self.head_request = head_request

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
