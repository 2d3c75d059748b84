"""
TCP tunnels on the edge: every connection accepted on a tunnel's public
port becomes a raw byte stream (L{netbore.protocol.Session.open_byte_stream})
to one of the tunnel's agents, which dials its local address.

(Being built for issue 11: for now a connection is closed at once.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Factory, Protocol

if TYPE_CHECKING:
    from .router import TunnelRouter

__all__ = ["tcp_factory"]


class _Refuse(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


def tcp_factory(router: TunnelRouter, port: int) -> Factory[Any]:
    """The factory of the connections to the tunnel holding public C{port}."""
    factory: Factory[Any] = Factory()
    factory.protocol = _Refuse
    factory.noisy = False
    return factory
