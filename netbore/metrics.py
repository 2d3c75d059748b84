"""
Prometheus metrics, shared by the edge and the agent: the listener of
C{--metrics} (its own port, on the daemon's reactor) serving a
C{prometheus_client} registry in its text exposition format, and the small
pieces both daemons count with.

Counting on the request path is plain integer arithmetic read at scrape
time by a collector (L{Latencies} for a histogram; C{prometheus_client}'s
own C{Counter} and C{Histogram} take a lock per update and cost a call
each, which on every request of a tunnel is measurable, see
C{bench/run.py}).  Everything counted off that path (resets, refusals,
handshake failures) uses C{prometheus_client}'s metric objects as they are.

No label takes an unbounded value (a tunnel name, a path, an address)
unless the operator asks for per-tunnel labels.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from twisted.application.service import IService
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ._types import Reactor
from .edge.listener import Listener

__all__ = [
    "LATENCY_BUCKETS",
    "METHODS",
    "Latencies",
    "MetricsPage",
    "method_label",
    "metrics_service",
    "new_registry",
    "status_label",
]

#: The methods that get a label of their own; any other is C{other}.
METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"})

#: Seconds: the bounds of the latency histograms (a tunnel adds a
#: millisecond or so; origins take from that to many seconds).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


def method_label(method: bytes) -> str:
    """The C{method} label of a request method: itself if common, else C{other}."""
    return method.decode("ascii") if method in METHODS else "other"


def status_label(status: int) -> str:
    """The C{status} label of a response status: its class (C{2xx}), C{none} for 0."""
    return f"{status // 100}xx" if 99 < status < 600 else "none"


class Latencies:
    """
    A histogram counted with plain integers (see the module's docstring),
    exported as a C{prometheus_client} L{HistogramMetricFamily}.

    @ivar counts: observations per bucket, not cumulative (the last: above
        every bound).
    """

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """The cumulative buckets, as exposition wants them (C{le}, count)."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds, self.counts):  # noqa: B905 (one fewer bound than counts)
            total += count
            out.append((repr(float(bound)), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        return HistogramMetricFamily(name, documentation, buckets=self.buckets(), sum_value=self.sum)


def new_registry() -> CollectorRegistry:
    """
    A registry of one daemon, holding the process's own metrics (CPU,
    memory, descriptors, garbage collection, Python version) beside the
    daemon's.
    """
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsPage(Resource):
    """
    C{GET /metrics}: C{registry} in the Prometheus text format, rendered on
    the reactor's thread (the counters it reads are the reactor's).
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return generate_latest(self.registry)

    render_HEAD = render_GET


class _Index(Resource):
    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"netbore metrics: see /metrics\n"


class _QuietSite(Site):
    """A Site that writes no access log line per scrape."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


def metrics_service(
    description: str, registry: CollectorRegistry, reactor: Reactor, program: str = "netbore-edge"
) -> IService:
    """
    The service that listens on the Twisted endpoint C{description} (as
    C{--metrics} gives it, e.g. C{tcp:9108:interface=127.0.0.1}) and
    serves C{registry} at C{/metrics}; a port that cannot be bound stops
    C{program} at start-up with one clear line (L{Listener}).  A bad
    C{description} raises L{ValueError}.
    """
    root = _Index()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"", root)
    endpoint = serverFromString(cast(Any, reactor), description)
    return Listener(description, endpoint, _QuietSite(root), program)
