"""
The agent's Prometheus metrics (C{--metrics}; see L{netbore.metrics} and
C{docs/operations.rst}, which lists every one).

L{OriginCounts} holds the tallies of the agent's origin, plain integers
that the code talking to the origin bumps (the request path: once per
response head, inline in L{netbore.agent.origin_connection}; failures off
that path through L{OriginCounts.failed}).  L{AgentMetrics} is the
collector: it turns them, and what the L{netbore.agent.service.AgentService}
holds (its state, the sessions it opened, the streams open now), into metric
families at scrape time.  The agent counts whether or not C{--metrics}
serves them.

Every label takes a value from a fixed tuple of this module (never one the
origin, the edge or a viewer chose), so every label set is bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from OpenSSL.SSL import Error as TLSError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.internet import error
from twisted.python.failure import Failure

from ..metrics import Latencies, new_registry
from .tls import CertificateRefused

if TYPE_CHECKING:
    from .service import AgentService

__all__ = ["AgentMetrics", "ORIGIN_ERRORS", "OriginCounts", "SESSION_STATES", "origin_error"]

#: The C{reason} values of C{netbore_agent_origin_errors_total}.
ORIGIN_ERRORS = (
    "refused",  # the connection was refused
    "timeout",  # connecting (or the connection) timed out
    "reset",  # the origin closed or reset the connection before the response was complete
    "tls",  # the TLS handshake with an https:// origin failed (its certificate refused, ...)
    "other",  # anything else: a name that does not resolve, a response that breaks HTTP, ...
)
#: The C{state} values of C{netbore_agent_session_state}: the agent's own,
#: those of its state file (L{netbore.agent.state.AgentState.state}).
SESSION_STATES = (
    "ready",  # a session is up: the tunnel is served
    "offline",  # no session: connecting, or waiting to reconnect
    "deleted",  # the edge deleted the tunnel: the agent will not re-create it
)
#: The C{status} values of C{netbore_agent_origin_requests_total}, by
#: C{status // 100} (a status above 599 counts as C{5xx}).
_STATUS = ("1xx", "2xx", "3xx", "4xx", "5xx")


def origin_error(failure: Failure) -> str:
    """
    The C{reason} (one of L{ORIGIN_ERRORS}) of C{failure}, why a
    connection to the origin could not be made or broke.
    """
    if failure.check(error.ConnectionRefusedError, ConnectionRefusedError):
        return "refused"
    if failure.check(error.TimeoutError, error.TCPTimedOutError, TimeoutError):
        return "timeout"
    if failure.check(TLSError, CertificateRefused):
        return "tls"
    if failure.check(error.ConnectionLost, error.ConnectionDone, error.ConnectionAborted, ConnectionError):
        return "reset"
    return "other"


class OriginCounts:
    """
    The tallies of the agent's origin (see the module's docstring).

    @ivar statuses: responses by C{status // 100} (indexes 1 to 9).
    @ivar unanswered: requests the origin gave no answer to (no response head).
    @ivar head_seconds: time from a request's head written to the origin to
        its response head read.
    @ivar errors: failed connections to the origin, by reason (each of
        L{ORIGIN_ERRORS}), whether or not a response head had come.
    """

    def __init__(self) -> None:
        self.statuses = [0] * 10
        self.unanswered = 0
        self.head_seconds = Latencies()
        self.errors = dict.fromkeys(ORIGIN_ERRORS, 0)

    def failed(self, reason: str, answered: bool = False) -> None:
        """
        A request's connection to the origin failed for C{reason}; its
        response head had come if C{answered} (then its request counted
        by its status already).
        """
        self.errors[reason] += 1
        if not answered:
            self.unanswered += 1


class AgentMetrics:
    """
    The agent's collector (see the module's docstring), and the registry
    C{--metrics} serves.
    """

    def __init__(self, agent: AgentService) -> None:
        self.agent = agent
        self.registry: CollectorRegistry = new_registry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        counts: OriginCounts = agent.forwarder.counts
        requests = CounterMetricFamily(
            "netbore_agent_origin_requests",
            "Requests forwarded to the origin, by status class of its answer (error: no answer).",
            labels=["status"],
        )
        statuses = counts.statuses
        for index, label in enumerate(_STATUS, 1):
            requests.add_metric([label], statuses[index] + (sum(statuses[6:]) if index == 5 else 0))
        requests.add_metric(["error"], counts.unanswered)
        yield requests
        yield counts.head_seconds.family(
            "netbore_agent_origin_response_seconds",
            "Seconds from a request's head sent to the origin to the origin's response head.",
        )
        errors = CounterMetricFamily(
            "netbore_agent_origin_errors", "Failed connections to the origin, by reason.", labels=["reason"]
        )
        for reason in ORIGIN_ERRORS:
            errors.add_metric([reason], counts.errors[reason])
        yield errors
        state = agent.state.state if agent.state.state in SESSION_STATES else "offline"
        states = GaugeMetricFamily(
            "netbore_agent_session_state", "The state of the agent's session (1: the one it is in).", labels=["state"]
        )
        for name in SESSION_STATES:
            states.add_metric([name], 1 if name == state else 0)
        yield states
        yield CounterMetricFamily(
            "netbore_agent_reconnects",
            "Sessions opened after the first (reconnections after a loss).",
            value=max(0, agent.sessions_opened - 1),
        )
        protocol = agent.protocol
        yield GaugeMetricFamily(
            "netbore_agent_streams",
            "Tunnel streams open now (requests, WebSockets, TCP connections).",
            value=len(protocol.streams) if protocol is not None else 0,
        )
