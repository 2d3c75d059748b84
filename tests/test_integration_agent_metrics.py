"""
Issue 13 (agent metrics): a real C{twistd} agent with C{--metrics}, after
known traffic through a real edge to a real origin, shows exactly that
traffic on its C{/metrics} page, read back with C{prometheus_client}'s
parser: n answers 200 and m answered 404 by the origin, k requests while
the origin is down (502 at the edge, refused connections to the origin),
the session ready; after the edge is killed and started again, one
reconnection.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .procs import Agent, Edge, Origin, Proc, free_port, request, wait_for

pytestmark = pytest.mark.integration

N, M, K = 5, 3, 2


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (sample, labels), value in samples.items() if sample == name}


def test_the_agents_scrape_shows_its_origin_requests_errors_and_reconnects(tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        origin = Origin(tmp_path)
        procs.append(origin)
        data_dir = tmp_path / "edge-data"
        edge = Edge(tmp_path, "--allow-anonymous", data_dir=data_dir)
        procs.append(edge)
        metrics_port = free_port()
        agent = Agent(
            tmp_path,
            edge,
            origin.url,
            "--name",
            "counted",
            "--metrics",
            f"tcp:{metrics_port}:interface=127.0.0.1",
            "--backoff-base",
            "0.2",
            "--backoff-cap",
            "1",
        )
        procs.append(agent)
        host = f"counted.localhost:{edge.port}"

        for _ in range(N):
            status, _, body = request(edge.port, "GET", "/bytes/1000", host=host)
            assert (status, len(body)) == (200, 1000)
        for _ in range(M):
            assert request(edge.port, "GET", "/status/404", host=host)[0] == 404
        origin.stop()
        for _ in range(K):
            assert request(edge.port, "GET", "/bytes/10", host=host)[0] == 502

        samples = scrape(metrics_port)
        assert by(samples, "netbore_agent_origin_requests_total", "status") == {
            "1xx": 0,
            "2xx": N,
            "3xx": 0,
            "4xx": M,
            "5xx": 0,
            "error": K,
        }
        assert samples["netbore_agent_origin_response_seconds_count", ()] == N + M
        assert samples["netbore_agent_origin_response_seconds_bucket", (("le", "+Inf"),)] == N + M
        assert 0 < samples["netbore_agent_origin_response_seconds_sum", ()] < 10
        assert by(samples, "netbore_agent_origin_errors_total", "reason") == {
            "refused": K,
            "timeout": 0,
            "reset": 0,
            "tls": 0,
            "other": 0,
        }
        assert by(samples, "netbore_agent_session_state", "state") == {"ready": 1, "offline": 0, "deleted": 0}
        assert samples["netbore_agent_reconnects_total", ()] == 0
        assert samples["netbore_agent_streams", ()] == 0
        assert any(name.startswith("process_") for name, _ in samples)

        edge.kill()
        edge = Edge(tmp_path, "--allow-anonymous", port=edge.port, data_dir=data_dir)
        procs.append(edge)

        def reconnected() -> bool:
            samples = scrape(metrics_port)
            return (
                samples["netbore_agent_reconnects_total", ()] == 1
                and samples["netbore_agent_session_state", (("state", "ready"),)] == 1
            )

        wait_for(reconnected, 20, "the agent's reconnection in its metrics")
        agent.wait_ready(5)
        assert "Traceback" not in agent.log()
    finally:
        for proc in reversed(procs):
            proc.stop(timeout=5)
