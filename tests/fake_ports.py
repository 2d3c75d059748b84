"""
A memory reactor whose TCP listeners can be refused (a port "some other
process holds") and which knows which of its listeners are still open:
for the tests of the TCP tunnels' ports (issue 11).
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock


class FakeListener:
    def __init__(self, reactor: PortsReactor, port: int, factory: Any, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.factory = factory
        self.interface = interface
        self.stopped = False

    def stopListening(self) -> None:
        assert not self.stopped, f"port {self.port} stopped twice"
        self.stopped = True
        del self.reactor.open[self.port]


class PortsReactor(MemoryReactorClock):
    """
    C{listenTCP} fails with C{EADDRINUSE} on the ports in C{taken} (other
    processes' ports) and with the errno in C{refuse} on others; C{open}
    maps the ports listened on to their listeners.
    """

    def __init__(self) -> None:
        super().__init__()
        self.taken: set[int] = set()
        self.refuse: dict[int, int] = {}
        self.open: dict[int, FakeListener] = {}

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        code = errno.EADDRINUSE if port in self.taken or port in self.open else self.refuse.get(port)
        if code is not None:
            raise CannotListenError(interface, port, OSError(code, "refused by the test"))
        listener = FakeListener(self, port, factory, interface)
        self.open[port] = listener
        return listener
