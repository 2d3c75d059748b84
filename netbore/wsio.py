"""
What both ends' autobahn protocols share on the hot path.

- L{BatchedWebSocket}: a WebSocket whose writes go through
  L{netbore.writes.BATCH}: every frame queued while one read is handled
  leaves in one C{send()} at the end of it, and straight away (no extra
  reactor turn; see L{netbore.writes}).
- autobahn's C{onMessageEnd} fires its "message" observers through a
  Deferred per message; nothing here observes them, so it is skipped.
- autobahn formats the arguments of its debug log calls whether or not
  debug logging is on (C{hltype}/C{hlval}: qualified names, colours through
  click): 8-12 calls per relayed request, about a tenth of the agent's CPU
  at one connection.  Importing this module rebinds them, in autobahn's
  WebSocket modules only, to return their argument unchanged; a debug log
  then shows plain values.
"""

from __future__ import annotations

from typing import Any

import autobahn.twisted.websocket as _tx
import autobahn.websocket.protocol as _proto
from autobahn.websocket.protocol import WebSocketProtocol

from .writes import BATCH

__all__ = ["BatchedWebSocket"]


def _plain(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


for _module in (_proto, _tx):
    for _name in ("hltype", "hlval"):
        if hasattr(_module, _name):
            setattr(_module, _name, _plain)

_OPEN = WebSocketProtocol.STATE_OPEN


class BatchedWebSocket:
    """
    Mixin for an autobahn Twisted WebSocket protocol (put it first among
    the bases).
    """

    transport: Any
    state: int
    send_queue: Any
    logOctets: bool
    trafficStats: Any
    failedByMe: bool
    message_data: Any
    message_is_binary: bool
    trackedTimings: Any
    _onMessage: Any

    def flush_frames(self) -> None:
        """
        Send the tunnel session's queued frames now.
        """
        raise NotImplementedError

    def flush(self) -> None:
        """
        Send the tunnel session's queued frames: when the input event being
        handled is done (all its frames in as few messages as the session
        packs them into), else now.
        """
        if not BATCH.later(self._flush_if_open):
            self.flush_frames()

    def _flush_if_open(self) -> None:
        # (deferred: the connection may have gone in the meantime)
        if self.state == _OPEN:
            self.flush_frames()

    def sendClose(self, code: int | None = None, reason: str | None = None) -> None:
        # Frames queued before the close go before it.
        BATCH.run_now(self._flush_if_open)
        super().sendClose(code, reason)  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        BATCH.hold()
        try:
            super().dataReceived(data)  # type: ignore[misc]
        finally:
            BATCH.release()

    def onMessageEnd(self) -> None:
        # autobahn's also fires the "message" observers through a Deferred
        # per message (txaio); nobody observes here, and the payload of a
        # message that came in one piece needs no join.
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
            BATCH.flush(self.transport)
        super()._closeConnection(abort)  # type: ignore[misc]

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets:
            # autobahn's own paced writes: its way.
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        BATCH.write(self.transport, data)
        if self.state == _OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
