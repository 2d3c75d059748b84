"""
The one clock type and the one reactor type that netbore's code is given.

Time and the reactor are injected (DESIGN.md): library code takes a
C{clock: Clock} or C{reactor: Reactor} and never imports the global reactor.
Both are structural (L{typing.Protocol}), so C{twisted.internet.task.Clock},
C{MemoryReactorClock} and the real reactor all fit without casts.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.internet.interfaces import IDelayedCall

__all__ = ["Clock", "Reactor"]


class Clock(Protocol):
    """
    What a timer needs: the time, and calls later (C{IReactorTime}'s part
    that netbore uses).
    """

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall: ...


class Reactor(Clock, Protocol):
    """
    A reactor as netbore uses it: a L{Clock} that also connects and listens
    over TCP and SSL and runs calls from its thread.
    """

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = ..., bindAddress: Any = ...) -> Any: ...

    def callWhenRunning(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...
