"""
The one clock type and the one reactor type that netbore's code is given.

Time and the reactor are injected (DESIGN.md): library code takes a
C{clock: Clock} or C{reactor: Reactor} and never imports the global reactor.

Both are structural (L{typing.Protocol}), so C{twisted.internet.task.Clock},
C{MemoryReactorClock} and the real reactor all fit without casts.  Both are
also declared (for mypy-zope) to provide the Twisted interfaces whose members
they name, C{IReactorTime} and C{IReactorTCP}, so that a L{Clock} or a
L{Reactor} can be handed on to Twisted's own APIs (C{deferLater},
C{Deferred.addTimeout}, C{LoopingCall.clock}) that are typed with those
interfaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from zope.interface import implementer

__all__ = ["Clock", "Reactor"]


@implementer(IReactorTime)
class Clock(Protocol):
    """
    What a timer needs: the time, and calls later (C{IReactorTime}).
    """

    def seconds(self) -> float: ...

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> IDelayedCall: ...

    def getDelayedCalls(self) -> Sequence[IDelayedCall]: ...


@implementer(IReactorTime, IReactorTCP)
class Reactor(Clock, Protocol):
    """
    A reactor as netbore uses it: a L{Clock} that also connects and listens
    over TCP (C{IReactorTCP}) and runs calls once it is running.
    """

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = ..., bindAddress: Any = ...) -> Any: ...

    def listenTCP(self, port: int, factory: Any, backlog: int = ..., interface: str = ...) -> Any: ...

    def callWhenRunning(self, callable: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...
