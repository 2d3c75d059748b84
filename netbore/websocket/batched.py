"""
L{BatchedWebSocket}: an autobahn Twisted WebSocket protocol whose writes
go through the process's L{WriteBatch} (its factory's C{writes}): every
frame queued while one read is handled leaves in one C{send()} at the end
of it, and straight away (see L{netbore.writes}).

Overriding autobahn's C{sendData} means reading autobahn internals
(C{send_queue}, C{logOctets}, C{trafficStats}, C{state}); that is done only
if autobahn's own C{sendData} reads what it did when this was written
(L{netbore.websocket.options.send_data_known}, checked once at import),
else autobahn writes as usual.  Likewise C{onMessageEnd} skips autobahn's
per-message observer Deferred, and C{dataReceived} autobahn's per-read
debug line, only once L{netbore.websocket.install_fast_paths} has checked
they may.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from ..writes import WriteBatch
from .options import send_data_known

__all__ = ["OPEN", "BatchedWebSocket", "TransportProducer"]

OPEN = WebSocketProtocol.STATE_OPEN

#: Checked once, at import (nothing is changed).
_BATCHED_SEND = send_data_known()


class _Paused(Protocol):
    def transport_paused(self) -> None: ...

    def transport_resumed(self) -> None: ...


@implementer(IPushProducer)
class TransportProducer:
    """
    Registered with the WebSocket's transport: its write buffer being full
    pauses what feeds it, its draining resumes them.
    """

    __slots__ = ("_ws",)

    def __init__(self, ws: _Paused) -> None:
        self._ws = ws

    def pauseProducing(self) -> None:
        self._ws.transport_paused()

    def resumeProducing(self) -> None:
        self._ws.transport_resumed()

    def stopProducing(self) -> None:
        # The connection is going; onClose fails the streams.
        pass


class BatchedWebSocket:
    """
    Mixin for an autobahn Twisted WebSocket protocol (before autobahn's
    classes among the bases).  Its factory has a C{writes} L{WriteBatch}.
    """

    #: Set by L{netbore.websocket.install_fast_paths}.
    skip_message_observers: ClassVar[bool] = False
    #: Set by L{netbore.websocket.install_fast_paths}.
    skip_read_debug: ClassVar[bool] = False

    writes: WriteBatch
    #: A flush is deferred to the end of the batch (L{flush}).
    flush_pending: bool
    #: What a deferred flush calls (one bound method: no allocation each);
    #: it clears L{flush_pending}.
    _flush_later: Callable[[], None]

    # autobahn's, as this mixin uses them.
    factory: Any
    transport: Any
    state: int
    send_queue: Any
    logOctets: bool
    trafficStats: Any
    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    trackedTimings: Any
    _onMessage: Callable[[bytes, bool], None]
    _dataReceived: Callable[[bytes], None]

    def connectionMade(self) -> None:
        self.writes = self.factory.writes
        super().connectionMade()  # type: ignore[misc]

    def flush_frames(self) -> None:
        """
        Send what is queued now.
        """
        raise NotImplementedError

    def flush(self) -> None:
        """
        Send what is queued: when the input event being handled is done (all
        its frames in as few messages as the session packs them into), else
        now.  Asked again before then, it costs nothing (a caller on the hot
        path may check L{flush_pending} itself and not call at all).
        """
        if self.flush_pending:
            return
        if self.writes.later(self._flush_later):
            self.flush_pending = True
        else:
            self.flush_frames()

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames queued before the close go before it.
        self.writes.run_now(self._flush_later)
        super().sendClose(code, reason)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        writes = self.writes
        writes.hold()
        try:
            if self.skip_read_debug:
                # autobahn's, without its debug line (and its formatting).
                self._dataReceived(data)
            else:
                super().dataReceived(data)  # type: ignore[misc]
        finally:
            writes.release()

    def onMessageEnd(self) -> None:
        if not self.skip_message_observers:
            super().onMessageEnd()  # type: ignore[misc]
            return
        # autobahn's, without firing the "message" observers through a
        # Deferred per message (nobody observes), and without joining a
        # message that came in one piece.
        if not self.failedByMe:
            data = self.message_data
            payload = data[0] if len(data) == 1 else b"".join(data)
            if self.trackedTimings:
                self.trackedTimings.track("onMessage")
            self._onMessage(payload, self.message_is_binary)
        self.message_data = None

    def _closeConnection(self, abort: bool = False) -> None:
        # A refused handshake's answer or a close frame may still be held.
        if not abort and self.transport is not None:
            self.writes.flush(self.transport)
        super()._closeConnection(abort)  # type: ignore[misc]

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or not _BATCHED_SEND or self.send_queue or self.logOctets:
            # autobahn's own paced writes, or an autobahn this was not
            # written for: its way.
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        self.writes.write(self.transport, data)
        if self.state == OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
