"""
Byte streams, sans-IO: a stream that carries raw bytes both ways (a TCP
connection, or an HTTP/1.1 connection after C{101 Switching Protocols})
under the same per-stream and per-session credit windows as a body.

The wire form (C{docs/protocol.rst}, "Byte streams"): the edge opens one
with a C{BYTES_OPEN} frame (type 9), only towards a peer whose hello
announced C{"byte_streams": true}.  Two modes:

  - L{OPEN_RAW}: bytes flow both ways at once; the frame carries metadata
    (a header block, e.g. C{peer}) instead of a request.
  - L{OPEN_UPGRADE}: the frame carries an HTTP request head without a body.
    The agent answers it with C{RESPONSE_HEAD}s as on any stream: C{101}
    turns the stream into a byte stream both ways; another final status is
    an ordinary response to a request that has ended.

From then on C{DATA} carries the bytes, C{END} (or C{END_STREAM} on a
C{DATA}) closes the sender's direction (a half-close: the other direction
goes on) and C{RESET} aborts both.  Nothing else differs from a request
stream, so the session's own states do the work: a byte stream is a
stream whose two "heads" count as sent and received.

L{ByteStreams} is a base class of L{netbore.protocol.session.Session},
not used alone, as L{netbore.protocol._encode.Sending} is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._encode import _ENCODERS, _check_stream_id, _header_block, encode_request_head
from ._events import BytesOpened
from ._frames import (
    HEADER,
    HEADER_SIZE,
    MAX_HEAD_PAYLOAD,
    OPEN_RAW,
    OPEN_UPGRADE,
    BytesOpen,
    FrameType,
    Headers,
)
from ._streams import IGNORE, StreamState
from .errors import ByteStreamsNotSupported, ProtocolError, StreamError
from .handshake import Settings

if TYPE_CHECKING:
    from ._receive import Event

__all__ = ["OPEN_RAW", "OPEN_UPGRADE", "ByteStreams", "BytesOpen", "BytesOpened", "encode_bytes_open"]


def encode_bytes_open(stream_id: int, mode: int, headers: Headers, method: bytes = b"", target: bytes = b"") -> bytes:
    """
    Encode one C{BYTES_OPEN} frame: the mode byte, then (L{OPEN_UPGRADE})
    the payload of a C{REQUEST_HEAD} (method, target, header block) or
    (L{OPEN_RAW}) a header block of metadata.

    @raise ValueError: as L{netbore.protocol.encode}; also an unknown mode,
        or a method or target given to a raw open.
    """
    if mode == OPEN_UPGRADE:
        payload = encode_request_head(stream_id, method, target, headers)[HEADER_SIZE:]
    elif mode != OPEN_RAW:
        raise ValueError(f"unknown BYTES_OPEN mode {mode!r}")
    elif method or target:
        raise ValueError("a raw BYTES_OPEN has no method or target")
    else:
        _check_stream_id(stream_id)
        parts: list[bytes] = []
        _header_block(headers, parts)
        payload = b"".join(parts)
    if len(payload) + 1 > MAX_HEAD_PAYLOAD:
        raise ValueError(f"head larger than {MAX_HEAD_PAYLOAD} bytes")
    return HEADER.pack(FrameType.BYTES_OPEN, 0, stream_id) + bytes([mode]) + payload


def _encode_bytes_open(frame: BytesOpen) -> bytes:
    return encode_bytes_open(frame.stream_id, frame.mode, frame.headers, frame.method, frame.target)


# encode() dispatches by a dict of frame class -> encoder; this frame's
# encoder lives here, beside the rest of the byte-stream code (_encode is
# at its size limit), and enters the table when this module is imported,
# which the package itself does: the entry is there before any frame can
# be encoded (test_protocol_bytestreams checks encode() knows it).
_ENCODERS[BytesOpen] = _encode_bytes_open


class ByteStreams:
    """
    Opening byte streams (edge), receiving their opening (agent), and the
    switch of an upgrade stream to bytes on C{101}.

    The states, per stream, in the session's own terms (L{StreamState}):

      - raw open: both heads count as sent and received; both directions
        open.
      - upgrade, before the answer: the edge's direction has ended (the
        request has no body) and the response head is awaited; the stream
        id is in C{_upgrading}.
      - upgrade answered C{101} (sent by the agent, received by the edge):
        both heads done, both directions open again: a byte stream.
      - upgrade answered otherwise: an ordinary exchange.

    Half-close and reset are the session's C{send_end} / C{END}, and
    C{reset_stream} / C{RESET}.
    """

    # Set up by Session.__init__.
    local: Settings
    peer: Settings
    outbox: list[bytes]
    _edge: bool
    _streams: dict[int, StreamState]
    _closed: OrderedDict[int, bool]
    _highest: int
    _upgrading: set[int]
    _go_away_sent: bool
    _go_away_received: bool
    _error: ProtocolError | None

    if TYPE_CHECKING:

        def _remember(self, stream_id: int, ignore: bool) -> None: ...

        def _next_stream_id(self) -> int: ...

    def open_byte_stream(self, metadata: Iterable[tuple[bytes, bytes]] = ()) -> int:
        """
        (edge) Open the next stream as a raw byte stream (for a TCP
        connection): bytes may be sent on it at once, under its windows.

        @param metadata: header-like pairs for the agent's logs, e.g.
            C{[(b"peer", b"192.0.2.7:51514")]}; names and values follow the
            rules of header names and values.
        @return: the new stream id.
        @raise ByteStreamsNotSupported: the peer did not announce
            C{byte_streams}; nothing was sent.
        @raise StreamClosedError: as L{Session.send_request_head}.
        @raise StreamError: called on the agent, or metadata that cannot be
            encoded.
        """
        return self._open(OPEN_RAW, b"", b"", metadata)

    def open_upgrade(self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
        """
        (edge) Open the next stream with an HTTP request that asks to switch
        protocols (C{Upgrade}), without a body.  A C{ResponseReceived} with
        status C{101} on it means the stream is now a byte stream both ways;
        any other final status is an ordinary response (and the request has
        ended).  No DATA may be sent on it before the C{101}.

        @return: the new stream id.
        @raise ByteStreamsNotSupported: the peer did not announce
            C{byte_streams}; nothing was sent (answer the viewer as if the
            origin had refused the upgrade, or with an error page).
        @raise StreamClosedError: as L{Session.send_request_head}.
        @raise StreamError: called on the agent, or a value that cannot be
            encoded.
        """
        return self._open(OPEN_UPGRADE, method, target, headers)

    def _open(self, mode: int, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
        if self._edge and not self.peer.byte_streams:
            raise ByteStreamsNotSupported("the peer did not announce byte_streams: it cannot take a byte stream")
        stream_id = self._next_stream_id()
        try:
            message = encode_bytes_open(stream_id, mode, list(headers), method, target)
        except ValueError as e:
            raise StreamError(str(e)) from None
        upgrade = mode == OPEN_UPGRADE
        self._highest = stream_id
        stream = StreamState()
        stream.send_window = self.peer.stream_window
        stream.recv_window = self.local.stream_window
        stream.unacked = stream.pending = 0
        stream.local_head = True
        stream.local_closed = upgrade  # (an upgrade request has no body)
        stream.remote_head = not upgrade
        stream.remote_closed = False
        self._streams[stream_id] = stream
        if upgrade:
            self._awaiting_upgrade(stream_id)
        self.outbox.append(message)
        return stream_id

    def _awaiting_upgrade(self, stream_id: int) -> None:
        """
        Note an upgrade not answered (edge) or accepted (agent) yet.  An
        upgrade answered otherwise, or whose stream went, stays until there
        are many: then the ones whose stream is gone are dropped.
        """
        upgrading = self._upgrading
        upgrading.add(stream_id)
        if len(upgrading) > 2 * len(self._streams) + 64:
            upgrading.intersection_update(self._streams)

    def _accept_upgrade(self, stream_id: int, stream: StreamState) -> None:
        """
        (agent) C{send_response_head} just sent C{101} on upgrade stream
        C{stream_id}: it carries bytes both ways from now on.  (The edge's
        side of the switch is in C{Receiving._on_response_head}.)
        """
        self._upgrading.discard(stream_id)
        stream.local_head = True
        stream.remote_closed = False

    def _on_bytes_open(self, frame: BytesOpen) -> list[Event]:
        if self._edge:
            raise ProtocolError("the edge cannot receive BYTES_OPEN")
        if not self.local.byte_streams:
            raise ProtocolError("BYTES_OPEN frame, but this side did not announce byte_streams")
        stream_id = frame.stream_id
        if stream_id <= self._highest:
            raise ProtocolError(f"BYTES_OPEN on stream {stream_id}, not above the last one ({self._highest})")
        self._highest = stream_id
        if self._go_away_sent:
            # Refused, as a REQUEST_HEAD would be: the edge learns it from our GOAWAY.
            self._remember(stream_id, IGNORE)
            return []
        upgrade = frame.mode == OPEN_UPGRADE
        stream = StreamState()
        stream.send_window = self.peer.stream_window
        stream.recv_window = self.local.stream_window
        stream.unacked = stream.pending = 0
        stream.local_head = not upgrade
        stream.local_closed = False
        stream.remote_head = True
        stream.remote_closed = upgrade  # (an upgrade request has no body)
        self._streams[stream_id] = stream
        if upgrade:
            self._awaiting_upgrade(stream_id)
        return [BytesOpened(stream_id, upgrade, frame.method, frame.target, frame.headers)]
