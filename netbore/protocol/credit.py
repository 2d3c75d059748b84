"""
The credit pump of one stream direction, sans-IO: both ends of a tunnel
stream hold bytes under a window and must give every byte's credit back
exactly once.

  - L{SendQueue}, the sending side: bytes that arrived from a source (a
    viewer's upload, an origin's response) while the window toward their
    destination was shut wait here, in order, and are taken out as room
    appears; the queue says when to pause its source (the first byte it
    holds) and when to resume it (the last byte it held went).  Its
    C{size} is what the stream buffers in that direction.
  - L{ReceiveCredit}, the receiving side: bytes that came in over the
    tunnel and are not yet acknowledged, because they are not yet handed
    on or because their consumer is paused.  Each call returns how many
    bytes to acknowledge now; whatever the order of receive, deliver, pause
    and close, the sum of what it returns is the sum received (once
    closed, every byte is acknowledged as it arrives: a leak here would
    shrink the stream's window for good).

Both are plain objects the stream's owner calls (no callbacks, no
allocation per call beyond a split chunk's view): the caller sends, writes
and acknowledges, so this module needs no I/O and no clock.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ReceiveCredit", "SendQueue"]

Chunk = bytes | memoryview


class SendQueue:
    """
    Bytes waiting for room toward their destination, oldest first.

    @ivar size: bytes queued (read it; change it only through the methods).
    @ivar source_paused: the queue asked for its source to be paused and has
        not asked for it to be resumed yet.
    """

    __slots__ = ("_chunks", "size", "source_paused")

    def __init__(self) -> None:
        self._chunks: deque[Chunk] = deque()
        self.size = 0
        self.source_paused = False

    def push(self, data: Chunk) -> bool:
        """
        Queue C{data} behind what is queued.

        @return: C{True} when the source must be paused now (the first time
            the queue holds bytes since it last drained).
        """
        self._chunks.append(data)
        self.size += len(data)
        if self.source_paused:
            return False
        self.source_paused = True
        return True

    def pause_source(self) -> bool:
        """
        The source must stop although nothing may be queued (the way toward
        the destination is full for another reason, e.g. its connection's
        buffer); L{drained} resumes it as if the queue had held bytes.

        @return: C{True} when the source must be paused now (it was not).
        """
        if self.source_paused:
            return False
        self.source_paused = True
        return True

    def take(self, room: int = -1) -> Chunk:
        """
        Take up to C{room} bytes (all of the first chunk when C{room} is
        negative) off the front; the queue must not be empty.  A chunk
        split here comes out as a view, not a copy, and its rest stays
        first.
        """
        chunks = self._chunks
        chunk = chunks[0]
        if 0 <= room < len(chunk):
            view = memoryview(chunk)
            chunks[0] = view[room:]
            chunk = view[:room]
        else:
            chunks.popleft()
        self.size -= len(chunk)
        return chunk

    def peek(self) -> Chunk:
        """
        The first chunk, left queued (for a sender that says afterwards how
        much of it it took: L{advance}).
        """
        return self._chunks[0]

    def advance(self, n: int) -> None:
        """
        C{n} bytes of the first chunk (all of it, or the front part) were
        sent.
        """
        chunks = self._chunks
        chunk = chunks[0]
        if n >= len(chunk):
            chunks.popleft()
            self.size -= len(chunk)
        elif n > 0:
            chunks[0] = memoryview(chunk)[n:]
            self.size -= n

    def drained(self) -> bool:
        """
        Is the queue empty with its source paused?  If so the source must
        be resumed now, and the queue counts it as resumed.
        """
        if self.size or not self.source_paused:
            return False
        self.source_paused = False
        return True

    def clear(self) -> int:
        """
        Drop everything queued (the stream is over in this direction).

        @return: the bytes dropped, for the caller to acknowledge.
        """
        dropped = self.size
        self._chunks.clear()
        self.size = 0
        return dropped


class ReceiveCredit:
    """
    Bytes received on a stream and not yet acknowledged.

    @ivar held: bytes received and not yet acknowledged.
    @ivar paused: the consumer paused: delivered bytes are held until
        L{resume}.
    @ivar closed: nobody consumes any more: every byte is acknowledged at
        once.
    """

    # Class defaults, no __init__: one is made per stream, and making it
    # then runs no Python code.
    held = 0
    paused = False
    closed = False

    def receive(self, n: int, delivered: bool = True) -> int:
        """
        C{n} bytes came in; C{delivered}: they have been handed to the
        consumer already (else they are kept by the caller until
        L{delivered}).

        @return: the bytes to acknowledge now.
        """
        held = self.held + n
        if self.closed or (delivered and not self.paused):
            self.held = 0
            return held
        self.held = held
        return 0

    def delivered(self) -> int:
        """
        The held bytes were handed to the consumer.

        @return: the bytes to acknowledge now (none while it is paused).
        """
        if self.paused and not self.closed:
            return 0
        held, self.held = self.held, 0
        return held

    def pause(self) -> None:
        """
        The consumer cannot take more: hold what is delivered from now on.
        """
        self.paused = True

    def resume(self, delivered: bool = True) -> int:
        """
        The consumer takes bytes again; C{delivered}: the held bytes have
        been handed to it (else they stay held until L{delivered}).

        @return: the bytes to acknowledge now.
        """
        self.paused = False
        if not delivered and not self.closed:
            return 0
        held, self.held = self.held, 0
        return held

    def close(self, n: int = 0) -> int:
        """
        Nobody will consume this stream's bytes any more (it ended, was
        reset or abandoned): what is held, and all that still arrives, is
        acknowledged at once.

        @param n: bytes that came in with the end (the last ones, delivered
            or not).
        @return: the bytes to acknowledge now.
        """
        self.closed = True
        held, self.held = self.held + n, 0
        return held
