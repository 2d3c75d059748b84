"""
Health checks on the control host, for load balancers and orchestrators:
C{GET /healthz} (the process answers) and C{GET /readyz} (listening, keys
loaded and not draining; 503 with the reason otherwise).

Both are cheap and unauthenticated, and count against no rate limit:
they read a few flags and write a small JSON body with
C{Cache-Control: no-store}.  They are routes of the control API's Klein
app (L{add_routes}), so they are served only for the edge's own names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from klein import Klein
from twisted.web.server import Request

from .apierrors import json_response

__all__ = ["Readiness", "add_routes"]


class _Running(Protocol):
    running: Any


class _Draining(Protocol):
    draining: bool


class Readiness:
    """
    Whether the edge should be sent traffic.

    @ivar listeners: the C{--listen} services; all must be running.
    @ivar keys_loaded: the signing keys (or JWT secret) are loaded; an edge
        that cannot load them does not start, so this is true once built.
    """

    def __init__(self, router: _Draining, edge: _Running, listeners: Iterable[_Running] = ()) -> None:
        self.router = router
        self.edge = edge
        self.listeners = list(listeners)
        self.keys_loaded = True

    def reason(self) -> str | None:
        """
        Why the edge is not ready (C{"draining"}, C{"not_listening"},
        C{"keys_not_loaded"}), or L{None} when it is.
        """
        if self.router.draining:
            return "draining"
        if not self.keys_loaded:
            return "keys_not_loaded"
        if not self.edge.running or not all(listener.running for listener in self.listeners):
            return "not_listening"
        return None


_MESSAGES = {
    "draining": "the edge is shutting down and draining its connections",
    "keys_not_loaded": "the edge's signing keys are not loaded",
    "not_listening": "the edge is not listening yet",
}


def _healthz(self: Any, request: Request) -> bytes:
    return json_response(request, 200, {"status": "ok"}, no_store=True)


def _readyz(self: Any, request: Request) -> bytes:
    readiness: Readiness | None = getattr(self, "readiness", None)
    reason = "not_listening" if readiness is None else readiness.reason()
    if reason is None:
        return json_response(request, 200, {"status": "ok"}, no_store=True)
    body = {"status": "unavailable", "reason": reason, "message": _MESSAGES[reason]}
    return json_response(request, 503, body, no_store=True)


def add_routes(app: Klein) -> None:
    """
    Serve C{GET /healthz} and C{GET /readyz} from C{app}, a class-bound
    Klein app whose instances carry a C{readiness} (a L{Readiness}).
    """
    app.route("/healthz", methods=["GET"])(_healthz)
    app.route("/readyz", methods=["GET"])(_readyz)
