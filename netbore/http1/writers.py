"""
What both roles write: request and response heads in one C{bytes} each,
and chunk framing.

Chunked bodies are written as three pieces (L{chunk_head}, the data,
L{CHUNK_END}) so the data is never copied into a larger buffer; the write
batch joins them into one C{send()}.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

from .grammar import Header

__all__ = ["CHUNK_END", "LAST_CHUNK", "chunk_head", "reason_phrase", "request_head", "response_head"]

#: Reason phrases by status (the stdlib's table: Twisted's lacks 431).
_REASONS: Final = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}

#: What follows each chunk's data.
CHUNK_END: Final = b"\r\n"
#: The last chunk and the empty trailer section: the end of a chunked body.
LAST_CHUNK: Final = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    """
    The reason phrase of C{status}; C{Unknown} for one no RFC names.
    """
    return _REASONS.get(status, b"Unknown")


def chunk_head(size: int) -> bytes:
    """
    The chunk-size line of a chunk of C{size} (> 0) bytes.
    """
    return b"%X\r\n" % size


def response_head(
    status: int, reason: bytes, headers: Iterable[Header], chunked: bool, connection: bytes | None
) -> bytes:
    """
    An HTTP/1.1 response head: the status line, C{headers} as given, then
    C{Transfer-Encoding: chunked} when C{chunked} and C{Connection:
    <connection>} when given, and the empty line.
    """
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    parts += [name + b": " + value + b"\r\n" for name, value in headers]
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if connection is not None:
        parts.append(b"Connection: " + connection + b"\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


def request_head(method: bytes, target: bytes, headers: Iterable[Header], chunked: bool = False) -> bytes:
    """
    An HTTP/1.1 request head: the request line, C{headers} as given, then
    C{Transfer-Encoding: chunked} when C{chunked}, and the empty line.
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
