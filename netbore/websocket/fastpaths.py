"""
autobahn's per-message costs that the tunnel does not need, removed by an
explicit call (never as an import side effect): L{install_fast_paths}, from
each daemon's C{makeService}.

Two things, each behind a capability check with a plain fallback (autobahn
as it is), each checked against autobahn's newest release by the C{newest}
tox environment:

  - autobahn formats the arguments of its debug log calls whether or not
    debug logging is on (C{hltype}/C{hlval}: qualified names, colours
    through click): 8-12 calls per relayed request, about a tenth of the
    agent's CPU at one connection.  autobahn has no switch for it (its
    calls are C{self.log.debug("...", func=hltype(...))}: the arguments
    are evaluated before the logger can decide).  The two names are
    rebound, in autobahn's WebSocket modules only, to return their
    argument unchanged; a debug log then shows plain values.  Check: each
    module's name is still autobahn's C{autobahn.util} function.
  - autobahn's C{onMessageEnd} fires its C{"message"} observers through a
    Deferred per message (txaio) after delivering it; the tunnel observes
    nothing.  L{TunnelWebSocket} then delivers each message itself, from
    C{_onMessageEnd} straight to C{onMessage}.  Check: autobahn's
    C{onMessageEnd} reads exactly the names it did when this was written
    (it delivers, then fires), so nothing else it might have learnt to do
    is skipped; and its Twisted adapter's C{_onMessageEnd} and
    C{_onMessage} only pass on to C{onMessageEnd} and C{onMessage}.
  - autobahn's Twisted C{dataReceived} logs a debug line per read, with
    three formatted arguments, then hands the bytes to C{_dataReceived};
    L{TunnelWebSocket} then calls C{_dataReceived} itself.  Check: that
    C{dataReceived} reads exactly those names.
  - autobahn reads each frame through a dozen methods (C{processData},
    C{onFrameBegin} ... C{onMessageEnd}); L{TunnelWebSocket} reads the
    complete, unfragmented, uncompressed binary frames of a read itself,
    with autobahn's checks, counts and ping-timeout reset, and hands
    anything else (control frames, text, fragments, a partial frame, a
    frame autobahn would refuse) to autobahn.  Check: the names those
    methods read are the ones they read when this was written (a digest
    of them, L{read_path_known}).
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import autobahn.twisted.websocket as _twisted_websocket
import autobahn.util as _util
import autobahn.websocket.protocol as _websocket_protocol
from autobahn.twisted.websocket import WebSocketAdapterProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger

from .batched import BatchedWebSocket

__all__ = [
    "FastPaths",
    "read_path_known",
    "data_received_known",
    "install_fast_paths",
    "on_message_end_known",
    "remove_fast_paths",
]

log = Logger()

_FORMATTERS = ("hltype", "hlval")
_MODULES = (_websocket_protocol, _twisted_websocket)

#: The names autobahn's C{onMessageEnd} reads (autobahn 24.4 to 26.x).
_ON_MESSAGE_END_NAMES = frozenset(
    {
        "failedByMe",
        "message_data",
        "message_is_binary",
        "trackedTimings",
        "track",
        "_onMessage",
        "join",
        "fire",
        "txaio",
        "add_callbacks",
    }
)


#: The names autobahn's Twisted C{dataReceived} reads (autobahn 24.4 to 26.x).
_DATA_RECEIVED_NAMES = frozenset({"_dataReceived", "dataReceived", "debug", "hltype", "hlval", "len", "log", "peer"})


@attrs.frozen
class FastPaths:
    """
    What L{install_fast_paths} installed.

    @ivar plain_debug_arguments: autobahn's debug-argument formatters are
        rebound to return their argument.
    @ivar no_message_observers: L{TunnelWebSocket} delivers messages
        without autobahn's per-message observer Deferred.
    @ivar own_frame_reads: L{TunnelWebSocket} reads simple binary frames
        itself.
    @ivar no_read_debug_line: L{TunnelWebSocket} reads without autobahn's
        per-read debug line.
    """

    plain_debug_arguments: bool
    no_message_observers: bool
    no_read_debug_line: bool
    own_frame_reads: bool = False


def _plain(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def on_message_end_known() -> bool:
    """
    Does autobahn's C{onMessageEnd} do exactly what L{TunnelWebSocket}
    replaces it with, plus firing the observers?
    """
    code = getattr(WebSocketProtocol.onMessageEnd, "__code__", None)
    return (
        code is not None
        and frozenset(code.co_names) == _ON_MESSAGE_END_NAMES
        and _code_names(WebSocketAdapterProtocol._onMessageEnd) == ("onMessageEnd",)
        and _code_names(WebSocketAdapterProtocol._onMessage) == ("onMessage",)
    )


def _code_names(function: object) -> tuple[str, ...] | None:
    code = getattr(function, "__code__", None)
    return tuple(code.co_names) if code is not None else None


def data_received_known() -> bool:
    """
    Does autobahn's Twisted C{dataReceived} only log a debug line and hand
    the bytes to C{_dataReceived}?
    """
    code = getattr(WebSocketAdapterProtocol.dataReceived, "__code__", None)
    return code is not None and frozenset(code.co_names) == _DATA_RECEIVED_NAMES


#: sha256 of the names autobahn's frame-reading methods read (autobahn 26.x).
_READ_PATH_DIGEST = "79f57b6a89d2c6aaaddbf367ba7431f06f7e74daca60b50d15c38583f3e5b521"


def read_path_known() -> bool:
    """
    Do autobahn's methods that read a frame read exactly what they did when
    L{TunnelWebSocket}'s own reading of simple binary frames was written
    after them?
    """
    protocol, adapter = WebSocketProtocol, WebSocketAdapterProtocol
    functions = [
        protocol._dataReceived,
        protocol.consumeData,
        protocol.processData,
        protocol.onFrameBegin,
        protocol.onFrameData,
        protocol.onFrameEnd,
        protocol.onMessageBegin,
        protocol.onMessageFrameBegin,
        protocol.onMessageFrameData,
        protocol.onMessageFrameEnd,
        protocol.onMessageFrame,
        adapter._onMessageBegin,
        adapter._onMessageFrameBegin,
        adapter._onMessageFrameData,
        adapter._onMessageFrameEnd,
        adapter._onMessageFrame,
    ]
    try:
        text = "|".join(f.__qualname__ + ":" + ",".join(sorted(f.__code__.co_names)) for f in functions)
    except AttributeError:
        return False
    return hashlib.sha256(text.encode()).hexdigest() == _READ_PATH_DIGEST


def _rebind_formatters() -> bool:
    done = True
    for module in _MODULES:
        for name in _FORMATTERS:
            current = getattr(module, name, None)
            if current is _plain:
                continue
            if current is not None and current is getattr(_util, name, None):
                setattr(module, name, _plain)
            else:
                done = False
    return done


def install_fast_paths() -> FastPaths:
    """
    Remove autobahn's per-message costs the tunnel does not need, where the
    installed autobahn is the one they were measured on; where it is not,
    leave autobahn as it is (and log it).  Idempotent.  Call it once per
    process from C{makeService}; tests call it explicitly.
    """
    installed = FastPaths(
        plain_debug_arguments=_rebind_formatters(),
        no_message_observers=on_message_end_known(),
        no_read_debug_line=data_received_known(),
        own_frame_reads=read_path_known(),
    )
    BatchedWebSocket.skip_message_observers = installed.no_message_observers
    BatchedWebSocket.skip_read_debug = installed.no_read_debug_line
    # (reading frames itself also skips the message observers and the debug line)
    BatchedWebSocket.read_frames = (
        installed.own_frame_reads and installed.no_message_observers and installed.no_read_debug_line
    )
    if not all(attrs.astuple(installed)):
        log.info(
            "autobahn fast paths not all installed ({installed}): autobahn changed; see netbore.websocket.fastpaths",
            installed=installed,
        )
    return installed


def remove_fast_paths() -> None:
    """
    Undo L{install_fast_paths} (for tests).
    """
    for module in _MODULES:
        for name in _FORMATTERS:
            if getattr(module, name, None) is _plain:
                setattr(module, name, getattr(_util, name))
    BatchedWebSocket.skip_message_observers = False
    BatchedWebSocket.skip_read_debug = False
    BatchedWebSocket.read_frames = False
