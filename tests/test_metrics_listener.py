"""
Tests for L{netbore.metrics.metrics_service}: the C{--metrics} listener of
both daemons.
"""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry, Histogram
from twisted.internet import reactor

from netbore.metrics import Latencies, metrics_service


@pytest.mark.integration
def test_a_port_in_use_stops_the_daemon_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        service = metrics_service(f"tcp:{port}:interface=127.0.0.1", CollectorRegistry(), reactor, "netbore-agent")
        with pytest.raises(SystemExit) as exited:
            service.privilegedStartService()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"netbore-agent: cannot listen on tcp:{port}:interface=127.0.0.1:")
    assert "Traceback" not in err


def test_a_bad_description_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        metrics_service("nonsense:1", CollectorRegistry(), reactor)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.001, 0), (0.0011, 1), (60.0, 14), (61.0, 15)],
)
def test_latencies_count_as_prometheus_buckets_do(seconds: float, bucket: int) -> None:
    """An observation equal to a bound is in that bound's bucket (C{le}: less or equal)."""
    latencies = Latencies()
    latencies.observe(seconds)
    assert latencies.counts.index(1) == bucket
    cumulative = dict(latencies.buckets())
    assert cumulative["+Inf"] == 1
    # Against prometheus_client's own Histogram with the same bounds.
    registry = CollectorRegistry()
    theirs = Histogram("h", "h", buckets=latencies.bounds, registry=registry)
    theirs.observe(seconds)
    for sample in next(iter(registry.collect())).samples:
        if sample.name == "h_bucket":
            le = sample.labels["le"]
            assert cumulative[le if le == "+Inf" else repr(float(le))] == sample.value
