"""
The receive buffer and the body readers both parsers share: content-length,
chunked (with trailers read and dropped: the tunnel has none; framing
fields there are refused) and until-close, under the strictness of a
L{head.Policy}.

Reading is linear in the bytes received however they are split: consumed
bytes are skipped by an offset, not sliced off; a partial head or line is
kept in one C{bytearray} that later reads are appended to; and every search
for a line end or the end of a head starts where the last one stopped.  A
read that is all body, while nothing else is buffered, comes out as the
same object.
"""

from __future__ import annotations

from enum import IntEnum

from .events import END_OF_MESSAGE, NEED_DATA, PAUSED, Event, ParseError
from .grammar import FIELD_LINE
from .head import Buffer, Policy

__all__ = ["MessageReader", "State"]


class State(IntEnum):
    """
    Where a L{MessageReader} is in the current message.
    """

    HEAD = 0
    LENGTH = 1
    CHUNK_SIZE = 2
    CHUNK_DATA = 3
    CHUNK_END = 4
    TRAILER = 5
    UNTIL_CLOSE = 6
    #: The body is complete; L{END_OF_MESSAGE} is next.
    END = 7
    #: L{END_OF_MESSAGE} returned; L{PAUSED} until C{start_next}.
    DONE = 8
    ERROR = 9


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})

_HEAD = State.HEAD
_LENGTH = State.LENGTH
_CHUNK_SIZE = State.CHUNK_SIZE
_CHUNK_DATA = State.CHUNK_DATA
_CHUNK_END = State.CHUNK_END
_TRAILER = State.TRAILER
_UNTIL_CLOSE = State.UNTIL_CLOSE
_END = State.END
_DONE = State.DONE


class MessageReader:
    """
    The messages of one connection, sans-IO: L{feed} bytes as they arrive,
    call L{next_event} until it returns L{NEED_DATA} or L{PAUSED}.

    Subclasses read the head (L{_head}) and set the body's state.  A
    L{ParseError} leaves the reader failed: every later call raises it
    again.
    """

    __slots__ = ("policy", "held", "_buf", "_pos", "_scan", "_state", "_remaining", "_trailer", "_error")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        #: Bytes of later messages buffered when L{receive} last stopped
        #: at the end of a message (0 otherwise).
        self.held = 0
        # Unread bytes are _buf[_pos:]; searches resume at _scan.
        self._buf: Buffer = b""
        self._pos = 0
        self._scan = 0
        self._state = _HEAD
        self._remaining = 0
        self._trailer = 0
        self._error: ParseError | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def buffered(self) -> int:
        """
        Bytes received and not yet returned as events.
        """
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """
        The next bytes read.
        """
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data
            self._pos = self._scan = 0
        elif buf.__class__ is bytearray:
            if pos:
                # Cheap: a bytearray drops its front by moving its start.
                del buf[:pos]
                self._scan -= pos
                self._pos = 0
            buf += data
        else:
            grown = bytearray(buf[pos:] if pos else buf)
            grown += data
            self._buf = grown
            self._scan -= pos
            self._pos = 0

    def start_next(self) -> int:
        """
        The current message is dealt with: read the next one.  Returns the
        bytes buffered for it (call L{receive} with no bytes to read them).
        """
        if self._state is _DONE:
            self._state = _HEAD
        return len(self._buf) - self._pos

    def receive(self, data: bytes) -> list[Event]:
        """
        Feed C{data} (may be empty) and return the events it completes, in
        order, up to the end of a message (L{PAUSED} and L{NEED_DATA} are
        not returned; see L{held}).  A L{ParseError} is not raised but
        ends the list: the events before it still count.

        One call per read, where L{next_event} takes one per event.
        """
        if data:
            if self._pos >= len(self._buf):
                self._buf = data  # as feed does, without the call
                self._pos = self._scan = 0
            else:
                self.feed(data)
        events: list[Event] = []
        next_event = self.next_event
        try:
            while True:
                event = next_event()
                if event is NEED_DATA:
                    self.held = 0
                    return events
                if event is PAUSED:
                    self.held = len(self._buf) - self._pos
                    return events
                events.append(event)
                if self._state is _END:
                    # The message is complete: end it here, two calls fewer.
                    self._state = _DONE
                    events.append(END_OF_MESSAGE)
                    self.held = len(self._buf) - self._pos
                    return events
        except ParseError as e:
            events.append(e)
            return events

    def _fail(self, message: str, status: int = 0) -> ParseError:
        self._state = State.ERROR
        error = self._error = ParseError(status or self.policy.error, message)
        return error

    def _head(self) -> Event | None:
        """
        Read a head, if it is all here: its event, L{NEED_DATA}, or L{None}
        when something was consumed and reading goes on.
        """
        raise NotImplementedError

    def _head_end(self) -> tuple[int, int]:
        """
        Where the head that starts at C{_pos} ends: the end of its last
        field line (with its line end) and the start of the body; (-1, -1)
        when it is not all here.

        @raise ParseError: 431 for a head over the policy's limit; 400 for
            a head ended by bare LFs when the policy refuses them.
        """
        buf = self._buf
        pos = self._pos
        scan = self._scan - 3
        start = scan if scan > pos else pos
        policy = self.policy
        i = buf.find(b"\r\n\r\n", start)
        if policy.bare_lf:
            limit = i + 3 if i >= 0 else len(buf)
            j = buf.find(b"\n\n", start, limit)
            if j >= 0:
                i, end, body = j, j + 1, j + 2
                limit = j
            else:
                end, body = i + 2, i + 4
            # A "\n\r\n" that starts before the "\n\n" ends first (as in
            # "...\n\r\n\n"): the search may run two bytes past it.
            k = buf.find(b"\n\r\n", start, limit + 2)
            if k >= 0 and (k < i or i < 0):
                i, end, body = k, k + 1, k + 3
        else:
            end, body = i + 2, i + 4
            if i < 0 and (buf.find(b"\n\n", start) >= 0 or buf.find(b"\n\r\n", start) >= 0):
                raise self._fail("bare LF in the head")
        if i < 0:
            self._scan = len(buf)
            if len(buf) - pos >= policy.max_head:
                raise self._fail("head too large", 431 if policy.error == 400 else 0)
            return -1, -1
        if body - pos > policy.max_head:
            raise self._fail("head too large", 431 if policy.error == 400 else 0)
        return end, body

    def next_event(self) -> Event:
        """
        The next event, L{NEED_DATA} or L{PAUSED}.

        @raise ParseError: the bytes are not a message the policy accepts.
        """
        while True:
            state = self._state
            if state is _HEAD:
                event = self._head()
                if event is not None:
                    return event
                continue
            if state is _END:
                self._state = _DONE
                return END_OF_MESSAGE
            if state is _DONE:
                return PAUSED
            if state is _LENGTH or state is _CHUNK_DATA or state is _UNTIL_CLOSE:
                buf = self._buf
                pos = self._pos
                avail = len(buf) - pos
                if avail <= 0:
                    return NEED_DATA
                n = self._remaining
                if avail <= n or state is _UNTIL_CLOSE:
                    n = avail
                    # The buffer stays (RequestParser.take_raw may want it)
                    # until the next feed replaces it.
                    self._pos = self._scan = len(buf)
                    piece = buf if not pos and buf.__class__ is bytes else bytes(buf[pos:])
                else:
                    self._pos = self._scan = pos + n
                    piece = bytes(buf[pos : pos + n])
                if state is not _UNTIL_CLOSE:
                    n = self._remaining - n
                    self._remaining = n
                    if not n:
                        self._state = _END if state is _LENGTH else _CHUNK_END
                return piece
            if state is _CHUNK_SIZE or state is _TRAILER or state is _CHUNK_END:
                if not self._chunk_line(state):
                    return NEED_DATA
            else:
                assert self._error is not None
                raise self._error

    def _chunk_line(self, state: State) -> bool:
        """
        Read one line of chunked framing (a chunk size, the end of a chunk's
        data, a trailer field or the empty line after them); C{False} if
        it is not all here yet.
        """
        buf = self._buf
        pos = self._pos
        policy = self.policy
        if state is _CHUNK_END and pos < len(buf) and buf[pos] != 13 and not (policy.bare_lf and buf[pos] == 10):
            raise self._fail("chunk data not followed by CRLF")
        nl = buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(buf)
            if state is _TRAILER:
                if self._trailer + len(buf) - pos > policy.max_head:
                    raise self._fail("trailer section too large")
            elif len(buf) - pos > policy.max_line:
                raise self._fail("chunk size line too long")
            return False
        if nl > pos and buf[nl - 1] == 13:
            end = nl - 1
        elif policy.bare_lf:
            end = nl
        else:
            raise self._fail("bare LF in chunked framing")
        self._pos = self._scan = nl + 1
        if state is _CHUNK_SIZE:
            if end - pos > policy.max_line:
                raise self._fail("chunk size line too long")
            m = policy.chunk_size.fullmatch(buf, pos, end)
            if m is None:
                raise self._fail("invalid chunk size")
            size = int(m.group(1), 16)
            if size:
                self._remaining = size
                self._state = _CHUNK_DATA
            else:
                self._trailer = 0
                self._state = _TRAILER
        elif state is _CHUNK_END:
            if end != pos:
                raise self._fail("chunk data not followed by CRLF")
            self._state = _CHUNK_SIZE
        else:
            self._trailer += nl + 1 - pos
            if self._trailer > policy.max_head:
                raise self._fail("trailer section too large")
            if end == pos:
                self._state = _END
                return True
            field = FIELD_LINE.fullmatch(buf, pos, end)
            if field is None:
                raise self._fail("malformed trailer field")
            if field.group(1).lower() in _FRAMING:
                # RFC 9110 §6.5.1: never sent in trailers; a parser that
                # took it would read the next message differently.
                raise self._fail("framing field in the trailers")
        return True
