"""
The events a L{netbore.protocol.session.Session} reports that its receiving
half (L{netbore.protocol._receive}, which holds the events of an exchange:
heads, DATA, END) does not build: a stream reset, a window opened, a
go-away, a byte stream opened.  Import them from L{netbore.protocol.session}
or L{netbore.protocol}.
"""

from __future__ import annotations

import attrs

__all__ = ["BytesOpened", "GoAwayReceived", "StreamReset", "WindowOpened"]

HeaderList = list[tuple[bytes, bytes]]


@attrs.frozen
class StreamReset:
    """
    The peer reset C{stream_id} (or, on the edge, a go-away refused it with
    L{ErrorCode.REFUSED_STREAM}): the stream is closed both ways.
    C{code} is an L{ErrorCode}, or a plain L{int} this side does not know.
    """

    stream_id: int
    code: int
    message: bytes


@attrs.frozen
class WindowOpened:
    """
    A WINDOW_UPDATE grew the send window of C{stream_id}, or of the session
    while C{stream_id} waited on it (L{Session.send_window}): resume its sender.
    """

    stream_id: int


@attrs.frozen
class GoAwayReceived:
    """
    The peer is going away: no new stream may be opened on this session;
    streams up to C{last_stream_id} go on to their end.
    """

    last_stream_id: int
    code: int
    message: bytes


@attrs.frozen
class BytesOpened:
    """
    (agent) The edge opened C{stream_id} as a byte stream (a C{BYTES_OPEN}
    frame; see L{netbore.protocol.bytestreams}).

    C{upgrade} false (a raw open, e.g. a TCP connection): bytes flow both
    ways at once; C{headers} are metadata such as C{(b"peer", b"192.0.2.7:51514")},
    C{method} and C{target} are empty.

    C{upgrade} true: an HTTP request without a body (C{method}, C{target},
    C{headers}) asking to switch protocols.  Answer it with
    L{Session.send_response_head}: C{101} makes the stream a byte stream both
    ways; any other final status is an ordinary response (the request has
    ended).
    """

    stream_id: int
    upgrade: bool
    method: bytes
    target: bytes
    headers: HeaderList
