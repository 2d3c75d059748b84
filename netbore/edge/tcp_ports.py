"""
The public ports of TCP tunnels: the range the edge may hand out
(C{--tcp-ports}) and a listener on each port from its allocation until its
release (issue 11).

A port is allocated when a TCP tunnel is created (the first port of the
range that no live tunnel holds and that this process can bind: a port
another process holds is skipped, never handed out), listened on at
C{--tcp-interface} with the factory L{netbore.edge.tcp.tcp_factory} makes
for it, and released when the registry forgets the tunnel (deleted, or
its hold lapsed: L{netbore.edge.registry.InMemoryRegistry.on_forget}).
Every listener stops when the service stops.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from .._types import Reactor
from .registry import IRegistry, Tunnel

__all__ = ["PortRange", "PortsExhausted", "TcpPorts", "parse_port_range"]

log = Logger()


class PortsExhausted(Exception):
    """
    Every port of the range is held by a live tunnel or bound by someone
    else.
    """


@attrs.frozen
class PortRange:
    """
    The ports C{first} to C{last}, both included.
    """

    first: int
    last: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.first, self.last + 1))

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_port_range(text: str, option: str = "tcp-ports") -> PortRange:
    """
    C{"20000-20999"} or C{"20000"} as a L{PortRange}.

    @raise ValueError: naming C{--option}, for anything else (ports are
        1-65535, the first no greater than the last).
    """
    first_text, dash, last_text = text.strip().partition("-")
    try:
        if not (first_text.strip().isdigit() and (not dash or last_text.strip().isdigit())):
            raise ValueError
        first = int(first_text)
        last = int(last_text) if dash else first
    except ValueError:
        raise ValueError(
            f"--{option} must be a port or a range of ports A-B (e.g. 20000-20999), not {text!r}"
        ) from None
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        raise ValueError(f"--{option}: ports are 1-65535, not {text!r}")
    if first > last:
        raise ValueError(f"--{option}: the range {text!r} is empty (its first port is above its last)")
    return PortRange(first, last)


class TcpPorts(service.Service):
    """
    The TCP tunnels' ports of one edge, and their listeners.

    @param factory: C{factory(port)} is the protocol factory of the
        connections accepted on C{port} (L{netbore.edge.tcp.tcp_factory}).
    """

    def __init__(
        self,
        ports: PortRange,
        interface: str,
        registry: IRegistry,
        reactor: Reactor,
        factory: Callable[[int], Any],
    ) -> None:
        self.ports = ports
        self.interface = interface
        self.registry = registry
        self.reactor = reactor
        self.factory = factory
        #: port -> its listening port (C{IListeningPort}).
        self._listeners: dict[int, Any] = {}
        on_forget = getattr(registry, "on_forget", None)
        if on_forget is not None:
            on_forget.append(self.forgotten)

    def listening(self) -> list[int]:
        """
        The ports listened on now, in order.
        """
        return sorted(self._listeners)

    def _free(self, port: int) -> bool:
        # The lookup also forgets a lapsed holder (which releases the port).
        return port in self.ports and self.registry.by_port(port) is None and port not in self._listeners

    def _listen(self, port: int) -> bool:
        try:
            listener = self.reactor.listenTCP(port, self.factory(port), interface=self.interface)
        except CannotListenError as e:
            why = getattr(e.socketError, "errno", None)
            if why != errno.EADDRINUSE:
                log.warn(
                    "cannot listen on TCP port {port} ({interface}): {error}; skipped",
                    port=port,
                    interface=self.interface,
                    error=e.socketError,
                    event="tcp_port_unusable",
                )
            return False
        self._listeners[port] = listener
        return True

    def allocate(self, preferred: int | None = None) -> int:
        """
        Listen on a free port of the range and return it: C{preferred}
        first (the port a recreate token names), else the first free one.

        @raise PortsExhausted: no port of the range is free and bindable.
        """
        if preferred is not None:
            if self._free(preferred) and self._listen(preferred):
                return preferred
            log.info(
                "TCP port {port} is not available again; allocating another",
                port=preferred,
                event="tcp_port_moved",
            )
        for port in self.ports:
            if port != preferred and self._free(port) and self._listen(port):
                return port
        raise PortsExhausted(f"every port of the TCP port range {self.ports} is in use")

    def release(self, port: int) -> Deferred[Any] | None:
        """
        Stop listening on C{port} (connections to it are refused from the
        next turn of the reactor on); what C{stopListening} returned.
        """
        listener = self._listeners.pop(port, None)
        if listener is None:
            return None
        result: Deferred[Any] | None = listener.stopListening()
        return result

    def forgotten(self, tunnel: Tunnel) -> None:
        """
        The registry forgot C{tunnel}: its port is free again.
        """
        if tunnel.tcp_port is not None:
            self.release(tunnel.tcp_port)

    def stopService(self) -> Deferred[Any]:
        """
        Stop every listener (the edge is shutting down).
        """
        super().stopService()
        stopped = [d for d in (self.release(port) for port in list(self._listeners)) if d is not None]
        return DeferredList(stopped)
