"""
The edge's Prometheus metrics (C{--metrics}; see L{netbore.metrics} and
C{docs/operations.rst}, which lists every one).

L{EdgeMetrics} holds the tallies, plain integers that the code counting
them bumps (the request path: once per viewer request, in
L{netbore.edge.requestlog}); its collector turns them, and
what the registry and router hold (tunnels by state, agent sessions, open
byte streams), into metric families at scrape time.  The edge counts
whether or not C{--metrics} serves them.

Reasons are fixed strings of the code that counts (never a value a viewer
or an agent chose), so every label set is bounded; the tunnel name is a
label only with C{--metrics-per-tunnel}.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics import Latencies, new_registry
from .registry import TunnelState

if TYPE_CHECKING:
    from .registry import IRegistry
    from .router import TunnelRouter

__all__ = ["EdgeMetrics", "REFUSALS", "RESETS", "HANDSHAKE_FAILURES"]

#: The C{reason} values of C{netbore_edge_refused_total}.
REFUSALS = (
    "rate_limited",  # the control API's 429s (creates, auth failures)
    "too_many_streams",  # --max-byte-streams
    "connection_limit",  # --max-connections, --max-connections-per-ip
    "invalid_response",  # a response head from an agent that breaks the header rules
    "draining",  # a request while the edge drains
)
#: The C{reason} values of C{netbore_edge_stream_resets_total}.
RESETS = ("viewer_gone", "agent_reset", "timed_out", "send_timed_out", "idle_timed_out", "session_lost", "other")
#: The C{reason} values of C{netbore_edge_agent_handshake_failures_total}.
HANDSHAKE_FAILURES = (
    "no_token",
    "bad_token",
    "unknown_tunnel",
    "rate_limited",
    "certificate",
    "protocol",
    "too_many_sessions",
    "other",
)

_STATUS = {0: "none", 1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class EdgeMetrics:
    """
    The edge's tallies and their collector (see the module's docstring).

    @ivar requests: viewer requests answered, by (tunnel name or L{None},
        method, status // 100).
    @ivar received: request body bytes read from viewers, by tunnel name
        (L{None}: not per tunnel).
    @ivar sent: response body bytes written to viewers, likewise.
    @ivar head_seconds: time from a request's head read to its response's
        head written.
    @ivar refused, resets, handshake_failures: counts by reason.
    @ivar drains: times the edge started draining.
    """

    def __init__(self, router: TunnelRouter, registry: IRegistry, per_tunnel: bool = False) -> None:
        self.router = router
        self.tunnels = registry
        self.per_tunnel = per_tunnel
        self.requests: defaultdict[tuple[str | None, bytes, int], int] = defaultdict(int)
        self.received: defaultdict[str | None, int] = defaultdict(int)
        self.sent: defaultdict[str | None, int] = defaultdict(int)
        self.head_seconds = Latencies()
        self.refused: defaultdict[str, int] = defaultdict(int)
        self.resets: defaultdict[str, int] = defaultdict(int)
        self.handshake_failures: defaultdict[str, int] = defaultdict(int)
        self.drains = 0
        self.registry: CollectorRegistry = new_registry()
        self.registry.register(self)

    # -- the collector ----------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        by_tunnel = ["tunnel"] if self.per_tunnel else []
        tunnels = GaugeMetricFamily("netbore_edge_tunnels", "Tunnels the edge holds, by state.", labels=["state"])
        states = dict.fromkeys(TunnelState, 0)
        sessions = 0
        for held in self.tunnels.all():
            states[held.state] += 1
            sessions += len(held.sessions)
        for state, count in states.items():
            tunnels.add_metric([state.value], count)
        yield tunnels
        yield GaugeMetricFamily("netbore_edge_agent_sessions", "Agent sessions connected.", value=sessions)
        yield GaugeMetricFamily(
            "netbore_edge_byte_streams",
            "Byte streams open (WebSockets through tunnels, TCP tunnels' connections).",
            value=sum(self.router.byte_streams.values()),
        )
        requests = CounterMetricFamily(
            "netbore_edge_viewer_requests",
            "Viewer requests answered, by method and status class (none: closed before any answer).",
            labels=[*by_tunnel, "method", "status"],
        )
        for (tunnel, method, status), count in list(self.requests.items()):
            requests.add_metric([*([tunnel or ""] if by_tunnel else []), method.decode(), _STATUS[status]], count)
        yield requests
        for name, tally, what in (
            ("netbore_edge_viewer_received_bytes", self.received, "Request body bytes read from viewers."),
            ("netbore_edge_viewer_sent_bytes", self.sent, "Response body bytes written to viewers."),
        ):
            family = CounterMetricFamily(name, what, labels=by_tunnel)
            if not tally and not by_tunnel:
                family.add_metric([], 0)
            for tunnel, count in list(tally.items()):
                family.add_metric([tunnel or ""] if by_tunnel else [], count)
            yield family
        yield self.head_seconds.family(
            "netbore_edge_response_head_seconds", "Seconds from a viewer request's head to its response's head."
        )
        refused = dict.fromkeys(REFUSALS, 0)
        refused.update(self.refused)
        refused["invalid_response"] += self.router.refused_heads
        refused["too_many_streams"] += self.router.byte_streams_refused
        yield _by_reason("netbore_edge_refused", "Requests and streams refused, by reason.", refused)
        resets = {**dict.fromkeys(RESETS, 0), **self.resets}
        yield _by_reason("netbore_edge_stream_resets", "Tunnel streams reset, by reason.", resets)
        yield _by_reason(
            "netbore_edge_agent_handshake_failures",
            "Agent WebSocket handshakes refused, by reason.",
            {**dict.fromkeys(HANDSHAKE_FAILURES, 0), **self.handshake_failures},
        )
        yield CounterMetricFamily("netbore_edge_drains", "Times the edge started draining.", value=self.drains)


def _by_reason(name: str, documentation: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["reason"])
    for reason, count in counts.items():
        family.add_metric([reason], count)
    return family
