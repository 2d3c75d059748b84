"""
Issue 10 item 7: reading is linear in the bytes received, however they are
split.  A 64 KiB request head sent one byte per segment cost the edge
about 5 s of CPU when each read copied and re-scanned everything buffered
so far; now each read costs the same whether 100 bytes or 60 KiB of the
head are already in.

One read costs a function call or several whatever the parser does, so
64 Ki one-byte reads can never cost as little as one 64 KiB read (a few
microseconds each: about a hundred times the one read).  What the tests
measure is what made the edge quadratic: the cost of a read must not grow
with what is buffered.  A head of 16 times the size, sent byte by byte,
must cost about 16 times as much (at most L{BOUND} times that), where
copying and re-scanning the buffer on each read makes it cost 16 times
more again, as L{test_the_measure_catches_a_reader_that_rescans} shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from netbore.http1 import ParseError, RequestHead, RequestParser, ResponseHead, ResponseParser
from netbore.http1.readers import MessageReader

from .test_edge_exchange import HOST, Harness

KiB = 1024
SMALL = 4 * KiB
LARGE = 64 * KiB
#: Byte by byte, a head 16 times larger may cost at most this many times 16
#: times the smaller one (linear: about 1; re-scanning: about 10 or more).
BOUND = 3.0
REPEAT = 3


def _fields(size: int, width: int = 80) -> bytes:
    line = b"X-Filler-%04d: " + b"v" * width + b"\r\n"
    n = (size - 200) // len(line % 0)
    return b"".join(line % i for i in range(n))


def request_head(size: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\n" + _fields(size) + b"\r\n"


def response_head(size: int) -> bytes:
    # (at most 256 fields from an origin)
    return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + _fields(size, 400) + b"\r\n"


def trailers(size: int) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: " + HOST + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + _fields(size) + b"\r\n"
    )


def _viewer(message: bytes) -> None:
    h = Harness()
    send = h.channel.dataReceived
    for i in range(len(message)):
        send(message[i : i + 1])
    assert len(h.session.heads) == 1
    assert h.output() == b""  # no error page


def _request_parser(message: bytes) -> None:
    p = RequestParser()
    receive = p.receive
    events = []
    for i in range(len(message)):
        events += receive(message[i : i + 1])
    assert events[0].__class__ is RequestHead and not any(e.__class__ is ParseError for e in events)


def _response_parser(message: bytes) -> None:
    p = ResponseParser()
    receive = p.receive
    events = []
    for i in range(len(message)):
        events += receive(message[i : i + 1])
    assert events[0].__class__ is ResponseHead


def _cost(read: Callable[[bytes], None], message: bytes, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        read(message)
        best = min(best, time.process_time() - start)
    return best


def _ratio(
    read: Callable[[bytes], None],
    build: Callable[[int], bytes],
    small: int = SMALL,
    large: int = LARGE,
    repeat: int = REPEAT,
) -> float:
    """
    What a byte read costs in a message of C{large} bytes, over what it
    costs in one of C{small} bytes, sent byte by byte.
    """
    short, long = build(small), build(large)
    assert len(long) > 15 * len(short)
    read(short)  # warm
    return (_cost(read, long, repeat) / len(long)) / (_cost(read, short, repeat) / len(short))


CASES = {
    "a viewer's request head, at the edge": (_viewer, request_head),
    "a viewer's trailer section, at the edge": (_viewer, trailers),
    "a request head, sans-IO": (_request_parser, request_head),
    "an origin's response head, sans-IO (lenient policy)": (_response_parser, response_head),
}


@pytest.mark.parametrize("case", list(CASES))
def test_byte_by_byte_reading_is_linear(case: str) -> None:
    read, build = CASES[case]
    ratio = _ratio(read, build)
    assert ratio < BOUND, f"{case}: a byte costs {ratio:.1f} times as much in a 64 KiB message as in a 4 KiB one"


@contextmanager
def _rescanning() -> Iterator[None]:
    """
    The reader as it was: each read copies the buffered bytes into a new
    buffer and the next search starts from the beginning again.
    """
    feed = MessageReader.feed

    def rescanning_feed(self: MessageReader, data: bytes) -> None:
        buf = self._buf  # type: ignore[attr-defined]
        self._buf = bytes(buf[self._pos :]) + data  # type: ignore[attr-defined]
        self._pos = self._scan = 0  # type: ignore[attr-defined]

    def receive(self: MessageReader, data: bytes) -> list[object]:
        if data:
            rescanning_feed(self, data)
        return original_receive(self, b"")

    original_receive = MessageReader.receive
    MessageReader.feed = rescanning_feed  # type: ignore[method-assign]
    MessageReader.receive = receive  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        MessageReader.feed = feed  # type: ignore[method-assign]
        MessageReader.receive = original_receive  # type: ignore[method-assign]


def test_the_measure_catches_a_reader_that_rescans() -> None:
    # (smaller, as it is slow: 32 KiB already cost a second or so)
    with _rescanning():
        ratio = _ratio(_request_parser, request_head, 2 * KiB, 32 * KiB, 1)
    assert ratio > BOUND
