"""
One listening endpoint of the edge as a service that fails loudly.
"""

from __future__ import annotations

import sys

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger

__all__ = ["Listener"]

log = Logger()


class Listener(StreamServerEndpointService):
    """
    One C{--listen} (or C{--redirect-listen}, or C{--metrics}) endpoint of
    C{program}.  A port that cannot
    be bound stops the daemon at start-up with one clear line (and exit
    status 1), so that systemd and the operator see why.
    """

    def __init__(
        self,
        description: str,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        program: str = "netbore-edge",
    ) -> None:
        super().__init__(endpoint, factory)
        self.description = description
        self.program = program
        self._raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            message = f"{self.program}: cannot listen on {self.description}: {e.socketError}"
            log.critical(message)
            sys.stderr.write(message + "\n")
            raise SystemExit(1) from None
