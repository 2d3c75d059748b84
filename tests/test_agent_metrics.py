"""
Issue 13: the agent's Prometheus metrics (L{netbore.agent.metrics}): what
the origin connections, upgrades and TCP streams count, the collector's
families read back with C{prometheus_client}'s own parser, the session's
state and reconnections, and the C{--metrics} option.  No sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from OpenSSL.SSL import Error as TLSError
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError, DNSLookupError, TimeoutError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from netbore.agent.config import load_config_file
from netbore.agent.forwarder import OriginForwarder
from netbore.agent.metrics import ORIGIN_ERRORS, SESSION_STATES, AgentMetrics, OriginCounts, origin_error
from netbore.agent.origin import OriginPool
from netbore.agent.service import AgentService
from netbore.agent.tap import Options, makeService
from netbore.agent.tcp import TcpStream
from netbore.agent.tls import CertificateRefused
from netbore.agent.upgrade import UpgradeStream
from netbore.metrics import LATENCY_BUCKETS
from netbore.protocol.errors import ErrorCode

from .test_agent_forwarder import FakeOrigin, RecordingSink
from .test_agent_service import World, created, make

__all__ = ["make"]  # the fixture, imported for pytest

ORIGIN = "http://127.0.0.1:3000"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: AgentMetrics) -> Samples:
    """The registry's exposition, parsed back: value by (sample name, labels)."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def agent_family(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def status(samples: Samples) -> dict[str, float]:
    found = agent_family(samples, "netbore_agent_origin_requests_total")
    return {dict(labels)["status"]: value for labels, value in found.items()}


def errors(samples: Samples) -> dict[str, float]:
    found = agent_family(samples, "netbore_agent_origin_errors_total")
    return {dict(labels)["reason"]: value for labels, value in found.items()}


def forwarder() -> tuple[OriginForwarder, FakeOrigin, MemoryReactorClock]:
    clock = MemoryReactorClock()
    fake = FakeOrigin()
    return OriginForwarder(clock, ORIGIN, pool=OriginPool(fake, clock)), fake, clock


def get(fwd: OriginForwarder, sink: RecordingSink, stream_id: int, method: bytes = b"GET") -> None:
    fwd.forward(sink, stream_id, method, b"/", [(b"Host", b"app.localhost")], True)


def answer(status: int, body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


# -- the collector ------------------------------------------------------------------


def test_every_family_with_every_label_value_is_exported_at_zero(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    samples = scrape(w.service.metrics)
    assert status(samples) == {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "error": 0}
    assert errors(samples) == dict.fromkeys(["refused", "timeout", "reset", "tls", "other"], 0)
    assert samples["netbore_agent_origin_response_seconds_count", ()] == 0
    assert samples["netbore_agent_origin_response_seconds_sum", ()] == 0
    buckets = agent_family(samples, "netbore_agent_origin_response_seconds_bucket")
    assert sorted(float(dict(labels)["le"]) for labels in buckets) == [*LATENCY_BUCKETS, float("inf")]
    states = agent_family(samples, "netbore_agent_session_state")
    assert {dict(labels)["state"]: value for labels, value in states.items()} == {
        "ready": 0,
        "offline": 1,  # never started: no session
        "deleted": 0,
    }
    assert samples["netbore_agent_reconnects_total", ()] == 0
    assert samples["netbore_agent_streams", ()] == 0
    # The process's own, beside the agent's.
    assert any(name.startswith("process_") for name, _ in samples)
    agents = {name for name, _ in samples if name.startswith("netbore_agent_")}
    assert agents == {
        "netbore_agent_origin_requests_total",
        "netbore_agent_origin_response_seconds_bucket",
        "netbore_agent_origin_response_seconds_count",
        "netbore_agent_origin_response_seconds_sum",
        "netbore_agent_origin_errors_total",
        "netbore_agent_session_state",
        "netbore_agent_reconnects_total",
        "netbore_agent_streams",
    }


def test_labels_take_only_fixed_values() -> None:
    """
    Whatever the origin answers (odd statuses included) and however it
    fails, a label is one of the module's fixed values.
    """
    counts = OriginCounts()
    for code in (100, 101, 200, 204, 301, 404, 499, 500, 503, 599, 600, 999):
        counts.statuses[code // 100] += 1
    for failure in (ConnectionRefusedError(), TimeoutError(), DNSLookupError("x"), ValueError("?"), TLSError()):
        counts.failed(origin_error(Failure(failure)))

    class Agent:
        forwarder = OriginForwarder(MemoryReactorClock(), ORIGIN, pool=OriginPool(FakeOrigin(), MemoryReactorClock()))
        state = type("S", (), {"state": "something-new"})()
        sessions_opened = 0
        protocol = None

    Agent.forwarder.counts = counts
    samples = scrape(AgentMetrics(Agent()))  # type: ignore[arg-type]
    for (name, labels), _ in samples.items():
        if name.startswith("netbore_agent_"):
            for label, value in labels:
                allowed = {
                    "status": {"1xx", "2xx", "3xx", "4xx", "5xx", "error"},
                    "reason": set(ORIGIN_ERRORS),
                    "state": set(SESSION_STATES),
                    "le": {repr(float(b)) for b in LATENCY_BUCKETS} | {"+Inf"},
                }[label]
                assert value in allowed, (name, label, value)
    # 600 and 999 are not a class of their own: counted with 5xx.
    assert status(samples) == {"1xx": 2, "2xx": 2, "3xx": 1, "4xx": 2, "5xx": 5, "error": 5}
    assert errors(samples) == {"refused": 1, "timeout": 1, "reset": 0, "tls": 1, "other": 2}
    states = agent_family(samples, "netbore_agent_session_state")
    assert {dict(labels)["state"]: value for labels, value in states.items()}["offline"] == 1


@pytest.mark.parametrize(
    "exc, reason",
    [
        (ConnectionRefusedError(), "refused"),
        (TimeoutError(), "timeout"),
        (ConnectionLost(), "reset"),
        (ConnectionDone(), "reset"),
        (ConnectionResetError(), "reset"),
        (TLSError([("SSL routines", "", "certificate verify failed")]), "tls"),
        (CertificateRefused("expired"), "tls"),
        (DNSLookupError("nope"), "other"),
    ],
)
def test_failures_have_their_reason(exc: Exception, reason: str) -> None:
    assert origin_error(Failure(exc)) == reason


# -- counting where the agent talks to its origin -----------------------------------------


def test_answers_are_counted_by_status_class_with_their_latency() -> None:
    fwd, origin, clock = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    clock.advance(0.02)
    first = origin.accept()  # the head goes out when connected
    clock.advance(0.003)
    first.respond(answer(200))
    # The next two reuse the connection: their heads go out at once.
    get(fwd, sink, 3)
    clock.advance(0.2)
    first.respond(answer(404))
    get(fwd, sink, 5)
    first.respond(answer(503))
    counts = fwd.counts
    assert counts.statuses[1:6] == [0, 1, 0, 1, 1]
    assert counts.unanswered == 0 and not any(counts.errors.values())
    latencies = counts.head_seconds
    assert sum(latencies.counts) == 3
    assert latencies.sum == pytest.approx(0.003 + 0.2 + 0.0)
    assert latencies.counts[LATENCY_BUCKETS.index(0.0025) + 1] == 1  # 0.003 s: in (0.0025, 0.005]
    assert latencies.counts[LATENCY_BUCKETS.index(0.1) + 1] == 1  # 0.2 s: in (0.1, 0.25]
    assert latencies.counts[0] == 1  # no time at all
    # The idle time of the reused connection starts at the answer read.
    assert fwd.pool.idle == 1


def test_a_head_before_a_streamed_body_is_counted_once() -> None:
    fwd, origin, clock = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    attempt = origin.accept()
    attempt.respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    clock.advance(5)
    attempt.respond(b"2\r\nok\r\n")
    attempt.respond(b"0\r\n\r\n")
    assert fwd.counts.statuses[2] == 1 and sum(fwd.counts.head_seconds.counts) == 1
    assert fwd.counts.head_seconds.sum == 0
    assert fwd.pool.idle == 1


@pytest.mark.parametrize(
    "exc, reason",
    [(ConnectionRefusedError(), "refused"), (TimeoutError(), "timeout"), (DNSLookupError("x"), "other")],
)
def test_a_connection_that_cannot_be_made_is_an_unanswered_request(exc: Exception, reason: str) -> None:
    fwd, origin, _ = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    origin.attempts[0].refuse(exc)
    assert sink.resets[0][1] == ErrorCode.ORIGIN_UNREACHABLE
    assert fwd.counts.unanswered == 1
    assert fwd.counts.errors == {**dict.fromkeys(ORIGIN_ERRORS, 0), reason: 1}
    assert sum(fwd.counts.statuses) == 0 and sum(fwd.counts.head_seconds.counts) == 0


def test_a_connection_lost_before_the_head_is_unanswered_after_it_is_not() -> None:
    fwd, origin, _ = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    origin.accept().close(ConnectionLost())
    get(fwd, sink, 3)
    cut = origin.accept()
    cut.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    cut.close(ConnectionLost())
    counts = fwd.counts
    assert counts.errors["reset"] == 2
    assert counts.unanswered == 1  # the first only: the second was answered 200
    assert counts.statuses[2] == 1


def test_a_tls_failure_and_a_broken_response_have_their_reasons() -> None:
    fwd, origin, _ = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    origin.accept().close(CertificateRefused("the origin's certificate expired"))
    get(fwd, sink, 3)
    origin.accept().respond(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    assert fwd.counts.errors == {"refused": 0, "timeout": 0, "reset": 0, "tls": 1, "other": 1}
    assert fwd.counts.unanswered == 2


def test_a_retried_request_is_counted_once() -> None:
    fwd, origin, _ = forwarder()
    sink = RecordingSink()
    get(fwd, sink, 1)
    first = origin.accept()
    first.respond(answer(200))
    get(fwd, sink, 3)
    first.close(ConnectionLost())  # a stale keep-alive connection: sent again
    origin.accept().respond(answer(200))
    assert fwd.counts.statuses[2] == 2
    assert fwd.counts.unanswered == 0 and not any(fwd.counts.errors.values())


def test_a_request_the_viewer_gave_up_is_not_an_origin_error() -> None:
    fwd, origin, _ = forwarder()
    sink = RecordingSink()
    stream = fwd.forward(sink, 1, b"GET", b"/", [(b"Host", b"h")], True)
    origin.accept()
    stream.reset_received(ErrorCode.CANCEL)
    assert fwd.counts.unanswered == 0 and not any(fwd.counts.errors.values())


class UpgradeSink(RecordingSink):
    def __init__(self) -> None:
        super().__init__()
        self.writes = _Writes()


class _Writes:
    def write(self, transport: Any, data: bytes) -> None:
        transport.write(data)

    def flush(self, transport: Any) -> None:
        pass


def test_an_upgrade_answered_101_is_a_1xx_with_its_latency() -> None:
    clock = MemoryReactorClock()
    counts = OriginCounts()
    stream = UpgradeStream(UpgradeSink(), 1, b"GET /ws HTTP/1.1\r\n\r\n", counts, clock.seconds)  # type: ignore[arg-type]
    stream.makeConnection(StringTransport())
    clock.advance(0.04)
    stream.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert counts.statuses[1] == 1
    assert counts.head_seconds.sum == pytest.approx(0.04)
    refused = UpgradeStream(UpgradeSink(), 3, b"GET /ws HTTP/1.1\r\n\r\n", counts, clock.seconds)  # type: ignore[arg-type]
    refused._unreachable(Failure(ConnectionRefusedError()))
    assert (counts.unanswered, counts.errors["refused"]) == (1, 1)


def test_a_tcp_service_that_refuses_is_an_error_not_a_request() -> None:
    counts = OriginCounts()
    stream = TcpStream(UpgradeSink(), 1, "127.0.0.1:5432", counts)  # type: ignore[arg-type]
    stream._unreachable(Failure(ConnectionRefusedError()))
    assert counts.errors["refused"] == 1
    assert counts.unanswered == 0 and sum(counts.statuses) == 0


# -- the session ---------------------------------------------------------------------


def session_state(metrics: AgentMetrics) -> dict[str, float]:
    states = agent_family(scrape(metrics), "netbore_agent_session_state")
    return {dict(labels)["state"]: value for labels, value in states.items()}


def ready(w: World) -> None:
    """The last session comes up (its protocol has the streams table a real one has)."""
    w.connect.last.protocol.streams = {}  # type: ignore[attr-defined]
    w.connect.last.ready()


def test_session_state_reconnects_and_streams(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"), created("x", "t1", serial=1))
    metrics = w.service.metrics
    w.service.startService()
    assert session_state(metrics) == {"ready": 0, "offline": 1, "deleted": 0}
    ready(w)
    assert session_state(metrics) == {"ready": 1, "offline": 0, "deleted": 0}
    w.connect.last.protocol.streams = {1: object(), 3: object()}  # type: ignore[attr-defined]
    samples = scrape(metrics)
    assert (samples["netbore_agent_streams", ()], samples["netbore_agent_reconnects_total", ()]) == (2, 0)
    w.connect.last.close()  # the session is lost: back after the backoff
    assert session_state(metrics) == {"ready": 0, "offline": 1, "deleted": 0}
    assert scrape(metrics)["netbore_agent_streams", ()] == 0
    w.clock.advance(1)
    ready(w)
    assert session_state(metrics) == {"ready": 1, "offline": 0, "deleted": 0}
    assert scrape(metrics)["netbore_agent_reconnects_total", ()] == 1
    w.connect.last.close()
    w.clock.advance(2)
    ready(w)
    assert scrape(metrics)["netbore_agent_reconnects_total", ()] == 2


def test_a_deleted_tunnel_is_the_deleted_state(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.service.startService()
    ready(w)
    w.service._tunnel_deleted("deleted by its owner")
    assert session_state(w.service.metrics) == {"ready": 0, "offline": 0, "deleted": 1}


# -- the option ------------------------------------------------------------------------


def test_metrics_is_off_by_default() -> None:
    options = Options()
    options.parseOptions(["--origin", ORIGIN])
    assert options.agent_config.metrics is None
    agent = makeService(options, reactor=MemoryReactorClock())
    assert list(agent) == []  # type: ignore[call-overload]


def test_metrics_listens_on_its_endpoint_with_the_agent(tmp_path: Path) -> None:
    options = Options()
    options.parseOptions(["--origin", ORIGIN, "--metrics", "tcp:9109:interface=127.0.0.1"])
    reactor = MemoryReactorClock()
    agent = makeService(options, reactor=reactor)
    assert isinstance(agent, AgentService)
    listener = agent.getServiceNamed("metrics")
    assert isinstance(listener, StreamServerEndpointService)
    assert reactor.tcpServers == []
    agent.startService()
    try:
        ((port, factory, _, interface),) = reactor.tcpServers
        assert (port, interface) == (9109, "127.0.0.1")
        resource = factory.resource.getChildWithDefault(b"metrics", None)
        assert resource.registry is agent.metrics.registry
    finally:
        agent.stopService()


def test_the_config_file_takes_metrics(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"origin: {ORIGIN}\nmetrics: tcp:9109:interface=127.0.0.1\n")
    assert load_config_file(str(config))["metrics"] == "tcp:9109:interface=127.0.0.1"
    options = Options()
    options.parseOptions(["--config", str(config)])
    assert options.agent_config.metrics == "tcp:9109:interface=127.0.0.1"


@pytest.mark.parametrize("description", ["nonsense:1", "tcp:notaport", "tcp"])
def test_a_bad_metrics_endpoint_stops_with_one_line_naming_the_option(
    description: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = Options()
    options.parseOptions(["--origin", ORIGIN, "--metrics", description])
    with pytest.raises(SystemExit) as stopped:
        makeService(options, reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"netbore-agent: bad --metrics {description!r}: ") and err.count("\n") == 1
