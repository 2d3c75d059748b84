"""
L{TunnelWebSocket}: what the edge's and the agent's autobahn protocols
share around the sans-IO L{netbore.protocol.Session}.

  - The hello exchange: the peer's hello (text, the first message) is
    checked for its role and starts the L{Session}; the role's part
    (authentication, attaching, reporting) plugs in through
    L{TunnelWebSocket.opened} and L{TunnelWebSocket.hello_received}.  A
    peer silent past C{openHandshakeTimeout} is failed.
  - Dispatch: each event the session returns goes to its handler through a
    table (event class -> handler, L{TunnelWebSocket.handle}).  An exception in
    a handler is logged with its Failure and resets that event's stream
    only (L{ErrorCode.INTERNAL_ERROR}); the session and its other streams
    go on.
  - Credit: DATA for a stream that is gone still returns its bytes'
    credit (L{TunnelWebSocket.credit_back}); a session window
    update wakes the streams waiting on it (a L{WindowOpened} each).
  - Backpressure, both ways: a push producer registered with the
    WebSocket's transport pauses the streams feeding it when its buffer is
    full (L{TunnelWebSocket.pause_streams}), and resumes them when it
    drains; streams opened meanwhile start paused.  The other way, each
    stream's window toward its consumer bounds what the tunnel delivers.
  - Closing: close reasons cut to 123 UTF-8 bytes on a character boundary
    (L{close_reason}); protocol errors send a GOAWAY, then close with
    C{4000 + code}; C{onConnect} failures are logged with their Failure.
  - Writes go through the process's L{WriteBatch}
    (L{netbore.websocket.batched}): the frames queued while one read is
    handled leave in one C{send()} at its end.

This module holds the hot path, one message in and its frames out, in one
place (every call between modules is a cost on each request, see
C{bench/trace.py}); the rest is L{netbore.websocket.lifecycle}.

Reaching into autobahn: C{sendData} reads autobahn internals (C{send_queue},
C{logOctets}, C{trafficStats}, C{state}) only if autobahn's own
C{sendData} reads what it did when this was written
(L{netbore.websocket.options.send_data_known}, checked once at import),
else autobahn writes as usual.  Likewise C{_onMessageEnd} skips autobahn's
per-message observer Deferred (and its two hops to C{onMessage}), and
C{dataReceived} autobahn's per-read debug line, only once
L{netbore.websocket.install_fast_paths} has checked they may.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from random import getrandbits as _getrandbits
from typing import Any, TypeVar, cast

from autobahn.websocket.xormasker import create_xor_masker

from ..protocol import DataReceived, Event, ProtocolError, WindowOpened
from ..writes import send_now
from .batched import OPEN
from .lifecycle import StreamT, TunnelFactory, TunnelLifecycle, TunnelStream
from .options import send_data_known, send_message_known

__all__ = ["TunnelFactory", "TunnelStream", "TunnelWebSocket"]

E = TypeVar("E", bound=Event)

#: Checked once, at import (nothing is changed).
_BATCHED_SEND = send_data_known()
#: Checked once, at import: may the adapter frame its binary messages
#: itself (see L{TunnelWebSocket.own_frames})?
_SEND_MESSAGE = send_message_known()

_PACK_HEAD = struct.Struct("!BB").pack
_PACK_HEAD_16 = struct.Struct("!BBH").pack
_PACK_HEAD_64 = struct.Struct("!BBQ").pack
_UNPACK_16 = struct.Struct("!H").unpack_from
_UNPACK_64 = struct.Struct("!Q").unpack_from
#: Payloads up to this size are masked with one integer XOR; beyond it
#: autobahn's masker (NVX, SIMD) is faster.
_INT_MASK_MAX = 2048


class TunnelWebSocket(TunnelLifecycle[StreamT]):
    """
    Mixin for an autobahn Twisted WebSocket protocol (first among the
    bases) carrying a tunnel session.  A role subclass sets L{role} and
    L{peer_role}, registers its event handlers with L{handle} and implements
    the hooks of L{TunnelLifecycle}.
    """

    # autobahn's, as this mixin uses them.
    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    trackedTimings: Any
    onMessageEnd: Callable[[], None]
    _dataReceived: Callable[[bytes], None]

    #: This connection frames its binary messages itself (L{flush_frames}):
    #: autobahn's own code for them is the one this was written after
    #: (L{send_message_known}), and none of what that code does beyond
    #: framing and counting is in use (frame or octet logging, timings,
    #: compression, fragmentation).  Decided when the connection opens.
    own_frames = False
    #: Frames are masked (a client's, as RFC 6455 requires).
    mask_frames = False
    #: This connection may read its simple binary frames itself
    #: (L{_read_frames}, once L{read_frames} is installed): none of what
    #: autobahn's reading does beyond checking, unmasking and counting is
    #: in use.  Decided when the connection opens.
    own_reads = False
    #: The mask bit the peer's frames carry (a client's are masked).
    peer_mask = 0
    #: The reads holding the front of a binary frame not ended in its read (a bulk
    #: transfer's rarely are), their size and the frame's: joined once it is in.
    partial: list[bytes] | None = None
    partial_size = 0
    partial_need = 0

    # autobahn's, as the framing uses them.
    logFrames: bool
    maxMessagePayloadSize: int
    autoFragmentSize: int
    applyMask: bool
    maskClientFrames: bool
    maskServerFrames: bool
    maxFramePayloadSize: int
    requireMaskedClientFrames: bool
    acceptMaskedServerFrames: bool
    websocket_version: int
    data: bytes
    current_frame: Any
    inside_message: bool
    autoPingTimeoutCall: Any
    autoPingRestartOnAnyTraffic: bool
    _cancelAutoPingTimeoutCall: Callable[[], None]
    _perMessageCompress: Any

    def __init__(self) -> None:
        super().__init__()
        self.handle(WindowOpened, self._on_window)

    def onOpen(self) -> None:
        is_server = self.factory.isServer
        self.mask_frames = bool(self.maskServerFrames if is_server else self.maskClientFrames)
        self.own_frames = bool(
            _BATCHED_SEND
            and _SEND_MESSAGE
            and not self.logFrames
            and not self.logOctets
            and not self.trackedTimings
            and self._perMessageCompress is None
            and not self.autoFragmentSize
            and (self.applyMask or not self.mask_frames)
        )
        self.peer_mask = 0x80 if is_server else 0
        self.own_reads = bool(
            not self.logFrames
            and not self.logOctets
            and not self.trackedTimings
            and self._perMessageCompress is None
            and self.websocket_version != 0
            and self.applyMask
            and (self.requireMaskedClientFrames if is_server else not self.acceptMaskedServerFrames)
        )
        super().onOpen()

    def handle(self, kind: type[E], handler: Callable[[E], None]) -> None:
        """
        Handle the session's events of class C{kind} with C{handler}.
        """
        # (the table only ever hands a handler events of its own class)
        self._handlers[kind] = cast(Callable[[Event], None], handler)

    # -- reads ---------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        self.heard = True
        writes = self.writes
        writes.hold()
        # Every frame this read causes is flushed at its end: asking for a
        # flush meanwhile costs nothing (callers check flush_pending).
        self.reading = self.flush_pending = True
        try:
            if self.read_frames and self.own_reads:
                self._read_frames(data)
            elif self.skip_read_debug:
                # autobahn's, without its debug line (and its formatting).
                self._dataReceived(data)
            else:
                super().dataReceived(data)  # type: ignore[misc]
        finally:
            self.reading = False
            try:
                if self.flush_pending:
                    # Every frame this read caused, in as few messages as
                    # the session packs them into.
                    self.flush_frames()
            finally:
                writes.release()

    def _read_frames(self, data: bytes) -> None:
        """
        Read the complete, unfragmented binary frames at the front of
        C{data} as autobahn would (its checks, unmasking, counts, and the
        reset of a pending ping timeout), and hand each payload to
        L{onMessage}; keep a binary frame that does not end in C{data} for
        the next read (L{partial}); hand the rest (a control frame, text, a
        fragment, anything autobahn would refuse) to autobahn.
        """
        parts = self.partial
        if parts is not None:
            parts.append(data)
            self.partial_size += len(data)
            if self.partial_size < self.partial_need:
                return
            data = b"".join(parts)
            self.partial = None
        size = len(data)
        offset = 0
        incomplete = False
        if (
            self.state == OPEN
            and not self.data
            and self.current_frame is None
            and not self.inside_message
            and not self.failedByMe
        ):
            peer_mask = self.peer_mask
            max_frame = self.maxFramePayloadSize
            max_message = self.maxMessagePayloadSize
            stats = self.trafficStats
            while size - offset >= 2:
                b1 = data[offset + 1]
                if data[offset] != 0x82 or b1 & 0x80 != peer_mask:
                    break
                n = b1 & 0x7F
                i = offset + 2
                if n == 126:
                    if size - i < 2:
                        break
                    (n,) = _UNPACK_16(data, i)
                    i += 2
                    if n < 126:
                        break
                elif n == 127:
                    if size - i < 8:
                        break
                    (n,) = _UNPACK_64(data, i)
                    i += 8
                    if n < 0x10000 or n > 0x7FFFFFFFFFFFFFFF:
                        break
                if 0 < max_frame < n or 0 < max_message < n:
                    break
                if peer_mask:
                    mask = data[i : i + 4]
                    i += 4
                end = i + n
                if end > size:
                    incomplete = True
                    break
                payload = data[i:end]
                if peer_mask and n:
                    if n <= _INT_MASK_MAX:
                        repeated = mask * ((n + 3) >> 2)
                        payload = (int.from_bytes(payload, "little") ^ int.from_bytes(repeated[:n], "little")).to_bytes(
                            n, "little"
                        )
                    else:
                        payload = create_xor_masker(mask, n).process(payload)
                stats.incomingOctetsWireLevel += end - offset
                stats.incomingWebSocketFrames += 1
                stats.incomingOctetsWebSocketLevel += n
                stats.incomingOctetsAppLevel += n
                stats.incomingWebSocketMessages += 1
                offset = end
                if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                    self._cancelAutoPingTimeoutCall()
                self.onMessage(payload, True)
                if self.state != OPEN:
                    break
        if offset < size:
            rest = data[offset:] if offset else data
            if incomplete:  # (its header checked: the rest comes with the next reads)
                self.partial, self.partial_size, self.partial_need = [rest], len(rest), end - offset
            else:
                self._dataReceived(rest)

    def _onMessageEnd(self) -> None:
        if not self.skip_message_observers:
            self.onMessageEnd()
            return
        # autobahn's onMessageEnd, without firing the "message" observers
        # through a Deferred per message (nobody observes), without joining
        # a message that came in one piece, and without its two hops to
        # onMessage.
        if not self.failedByMe:
            data = self.message_data
            payload = data[0] if len(data) == 1 else b"".join(data)
            if self.trackedTimings:
                self.trackedTimings.track("onMessage")
            self.onMessage(payload, self.message_is_binary)
        self.message_data = None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        session = self.session
        if session is None:
            if not self.closed:
                self._on_hello(payload, isBinary)
            return
        if not isBinary:
            self.fail(ProtocolError("text message after the hello"))
            return
        try:
            events = session.receive(payload)
        except ProtocolError as e:
            # (the session has queued a GOAWAY carrying it)
            self.fail(e, queued=True)
            return
        except Exception:
            self.internal_error("receiving a message")
            return
        handlers = self._handlers
        self.dispatching = True
        try:
            for event in events:
                try:
                    handlers[type(event)](event)
                except Exception:
                    self._event_failed(event)
        finally:
            self.dispatching = False
        if not self.flush_pending:
            self.flush()
        if self.watch_events:
            self.events_handled()

    def credit_back(self, event: DataReceived) -> None:
        """
        DATA for a stream that is gone: nobody reads it, so its bytes'
        stream credit goes straight back (the session's went back as they
        were delivered).
        """
        session = self.session
        if session is not None and event.data:
            self.call(session.acknowledge, event.stream_id, len(event.data))

    def _on_window(self, event: WindowOpened) -> None:
        stream_id = event.stream_id
        if stream_id == 0:
            self.broadcast_window()
            return
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.window_opened()

    # -- writes ------------------------------------------------------------------

    def flush(self) -> None:
        """
        Send what is queued: when the input event being handled is done (all
        its frames in as few messages as the session packs them into), else
        now.  Asked again before then, it costs nothing (a caller on the hot
        path may check L{flush_pending} itself and not call at all).
        """
        if self.flush_pending:
            return
        if self.reading:
            # This connection's own read: flushed at its end.
            self.flush_pending = True
            return
        writes = self.writes
        if writes.holds:
            self.flush_pending = True
            writes.defer(self._flush_later)
        else:
            self.flush_frames()

    def flush_frames(self) -> None:
        """
        Send every frame the session has queued, now (if still open).
        """
        self.flush_pending = False
        session = self.session
        if session is None or not session.outbox or self.state != OPEN:
            return
        messages = session.data_to_send()
        if self.send_queue or not self.own_frames:
            for message in messages:
                self.sendMessage(message, isBinary=True)
            return
        # autobahn's sendMessage and sendFrame for an unfragmented,
        # uncompressed binary message, inline (see own_frames): the frames
        # go to the batch without two calls into autobahn and back each.
        limit = self.maxMessagePayloadSize
        mask_frames = self.mask_frames
        parts: list[bytes] = []
        app = wire = 0
        for message in messages:
            n = len(message)
            if 0 < limit < n:
                self.sendMessage(message, isBinary=True)  # (raises, as autobahn does)
                continue
            if mask_frames:
                mask = _getrandbits(32).to_bytes(4, "big")
                if n <= 125:
                    head = _PACK_HEAD(0x82, 0x80 | n) + mask
                elif n <= 0xFFFF:
                    head = _PACK_HEAD_16(0x82, 0xFE, n) + mask
                else:
                    head = _PACK_HEAD_64(0x82, 0xFF, n) + mask
                if n <= _INT_MASK_MAX:
                    repeated = mask * ((n + 3) >> 2)
                    message = (int.from_bytes(message, "little") ^ int.from_bytes(repeated[:n], "little")).to_bytes(
                        n, "little"
                    )
                else:
                    message = create_xor_masker(mask, n).process(message)
            elif n <= 125:
                head = _PACK_HEAD(0x82, n)
            elif n <= 0xFFFF:
                head = _PACK_HEAD_16(0x82, 0x7E, n)
            else:
                head = _PACK_HEAD_64(0x82, 0x7F, n)
            parts.append(head)
            parts.append(message)
            app += n
            wire += len(head) + n
        stats = self.trafficStats
        count = len(messages)
        stats.outgoingWebSocketMessages += count
        stats.outgoingWebSocketFrames += count
        stats.outgoingOctetsAppLevel += app
        stats.outgoingOctetsWebSocketLevel += app
        stats.outgoingOctetsWireLevel += wire
        writes = self.writes
        if writes.holds:
            writes.held[self.transport].extend(parts)
        else:
            send_now(self.transport, b"".join(parts))

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or not _BATCHED_SEND or self.send_queue or self.logOctets:
            # autobahn's own paced writes, or an autobahn this was not
            # written for: its way.
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        writes = self.writes
        if writes.holds:
            writes.held[self.transport].append(data)
        else:
            send_now(self.transport, data)
        if self.state == OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
