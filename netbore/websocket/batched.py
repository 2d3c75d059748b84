"""
L{BatchedWebSocket}: the base of an autobahn Twisted WebSocket protocol
whose writes go through the process's L{WriteBatch} (its factory's
C{writes}): every frame queued while one read is handled leaves in one
C{send()} at the end of it, and straight away (see L{netbore.writes}).
This module holds what runs once per connection (taking the batch,
flushing before a close); the per-message part (C{dataReceived},
C{sendData}, C{flush}) is L{netbore.websocket.adapter.TunnelWebSocket}.

L{TransportProducer} is the push producer registered with the WebSocket's
transport.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from ..writes import WriteBatch

__all__ = ["OPEN", "BatchedWebSocket", "TransportProducer"]

OPEN = WebSocketProtocol.STATE_OPEN


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
    #: Set by L{netbore.websocket.install_fast_paths}: simple binary frames
    #: are read without autobahn (see L{netbore.websocket.adapter}).
    read_frames: ClassVar[bool] = False

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

    def connectionMade(self) -> None:
        self.writes = self.factory.writes
        # TCP_NODELAY, which autobahn means to set from its tcpNoDelay option
        # but does not: it reads the option before copying it from the
        # factory, and its bare except hides the AttributeError.  Without
        # it a side's second small frame (a WINDOW_UPDATE) waits for the
        # ACK of its first, which the peer delays 40 ms: an upload stalled.
        with contextlib.suppress(AttributeError, OSError):
            self.transport.setTcpNoDelay(True)
        super().connectionMade()  # type: ignore[misc]

    def flush_frames(self) -> None:
        """
        Send what is queued now.
        """
        raise NotImplementedError

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames queued before the close go before it.
        if self.flush_pending:
            self.flush_frames()
        super().sendClose(code, reason)  # type: ignore[misc]

    def _closeConnection(self, abort: bool = False) -> None:
        # A refused handshake's answer or a close frame may still be held.
        if not abort and self.transport is not None:
            self.writes.flush(self.transport)
        super()._closeConnection(abort)  # type: ignore[misc]
