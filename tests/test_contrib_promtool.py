"""
Issue 13 (operator kit), checked by Prometheus's own C{promtool} where it
is installed (Debian's C{prometheus} package; C{PROMTOOL} names another
binary); skipped otherwise.  The scrape config and the rule file pass
C{promtool check}; every dashboard query parses as PromQL; and each alert's
expression, evaluated by C{promtool test rules} on made-up series, selects
exactly the cases it is written for (a burst of 5xx, not a quiet or idle
edge; a flapping agent, not a steady one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_contrib import ALERTS, SCRAPE, dashboard_exprs, load_alerts, load_dashboard

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")

EDGE = {"job": "netbore-edge"}
AGENT = {"job": "netbore-agent"}

Series = tuple[str, dict[str, str], str]


def counter(per_second: float, steps: int = 12) -> str:
    """A counter's values growing C{per_second}, a sample a minute."""
    return f"0+{per_second * 60:g}x{steps}"


def _requests(instance: str, ok: float, failed: float) -> list[Series]:
    """An edge's viewer requests: C{ok} 2xx and C{failed} 5xx a second."""
    name = "netbore_edge_viewer_requests_total"
    labels = {**EDGE, "instance": instance, "method": "GET"}
    return [(name, {**labels, "status": "2xx"}, counter(ok)), (name, {**labels, "status": "5xx"}, counter(failed))]


def _reasons(name: str, instance: str, job: dict[str, str], **rates: float) -> list[Series]:
    return [(name, {**job, "instance": instance, "reason": reason}, counter(rate)) for reason, rate in rates.items()]


def _origin(instance: str, ok: float, errors: float) -> list[Series]:
    name = "netbore_agent_origin_requests_total"
    labels = {**AGENT, "instance": instance}
    return [(name, {**labels, "status": "2xx"}, counter(ok)), (name, {**labels, "status": "error"}, counter(errors))]


def _latency(instance: str, buckets: dict[str, float]) -> list[Series]:
    """An origin latency histogram: C{buckets} (le: requests a second, cumulative)."""
    name = "netbore_agent_origin_response_seconds_bucket"
    return [(name, {**AGENT, "instance": instance, "le": le}, counter(rate)) for le, rate in buckets.items()]


#: Per alert: input series (name, labels, values in promtool's notation,
#: one sample a minute) and the label sets its expression selects 10
#: minutes in (its C{for} aside).
SCENARIOS: dict[str, tuple[list[Series], list[dict[str, str]]]] = {
    "NetboreDown": (
        [
            ("up", {**EDGE, "instance": "down"}, "1 1 0x10"),
            ("up", {**AGENT, "instance": "up"}, "1x12"),
            ("up", {"job": "other", "instance": "x"}, "0x12"),
        ],
        [{**EDGE, "instance": "down"}],
    ),
    "NetboreEdgeHigh5xxRatio": (
        # 10% of 10/s; 1% of 10/s; all of 0.05/s; no traffic (no division by zero).
        [*_requests("bad", 9, 1), *_requests("fine", 9.9, 0.1), *_requests("few", 0, 0.05), *_requests("none", 0, 0)],
        [{**EDGE, "instance": "bad"}],
    ),
    "NetboreEdgeNoAgentSessions": (
        [
            ("netbore_edge_tunnels", {**EDGE, "instance": "cut", "state": "DOWN"}, "3x12"),
            ("netbore_edge_tunnels", {**EDGE, "instance": "cut", "state": "ACTIVE"}, "0x12"),
            ("netbore_edge_agent_sessions", {**EDGE, "instance": "cut"}, "0x12"),
            ("netbore_edge_tunnels", {**EDGE, "instance": "fine", "state": "ACTIVE"}, "2x12"),
            ("netbore_edge_agent_sessions", {**EDGE, "instance": "fine"}, "2x12"),
            ("netbore_edge_tunnels", {**EDGE, "instance": "empty", "state": "ACTIVE"}, "0x12"),
            ("netbore_edge_agent_sessions", {**EDGE, "instance": "empty"}, "0x12"),
        ],
        [{**EDGE, "instance": "cut"}],
    ),
    "NetboreEdgeStreamResets": (
        _reasons("netbore_edge_stream_resets_total", "e", EDGE, agent_reset=2, viewer_gone=50, timed_out=0.1),
        [{**EDGE, "instance": "e", "reason": "agent_reset"}],
    ),
    "NetboreEdgeHandshakeFailures": (
        _reasons("netbore_edge_agent_handshake_failures_total", "e", EDGE, bad_token=0.5, protocol=5, no_token=0.1),
        [{**EDGE, "instance": "e", "reason": "bad_token"}],
    ),
    "NetboreEdgeRefusing": (
        _reasons("netbore_edge_refused_total", "e", EDGE, connection_limit=2, draining=5, rate_limited=0.5),
        [{**EDGE, "instance": "e", "reason": "connection_limit"}],
    ),
    "NetboreAgentFlapping": (
        [
            ("netbore_agent_reconnects_total", {**AGENT, "instance": "flaps"}, "0 1 2 3 4 5 5x6"),
            ("netbore_agent_reconnects_total", {**AGENT, "instance": "steady"}, "7 8 8x10"),
        ],
        [{**AGENT, "instance": "flaps"}],
    ),
    "NetboreAgentOffline": (
        [
            *[
                ("netbore_agent_session_state", {**AGENT, "instance": "out", "state": state}, f"{v}x12")
                for state, v in (("ready", 0), ("offline", 1), ("deleted", 0))
            ],
            *[
                ("netbore_agent_session_state", {**AGENT, "instance": "in", "state": state}, f"{v}x12")
                for state, v in (("ready", 1), ("offline", 0), ("deleted", 0))
            ],
        ],
        [{**AGENT, "instance": "out", "state": "offline"}],
    ),
    "NetboreOriginErrors": (
        [*_origin("down", 1, 1), *_origin("fine", 10, 0.1), *_origin("idle", 0, 0)],
        [{**AGENT, "instance": "down"}],
    ),
    "NetboreOriginSlow": (
        [
            *_latency("slow", {"1.0": 0.5, "5.0": 0.8, "10.0": 1, "+Inf": 1}),
            *_latency("fast", {"0.1": 9, "1.0": 10, "5.0": 10, "+Inf": 10}),
        ],
        [{**AGENT, "instance": "slow"}],
    ),
}


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_promtool_checks_config_and_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", str(SCRAPE)).stdout
    assert "SUCCESS: 10 rules found" in promtool("check", "rules", str(ALERTS)).stdout


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Each query, Grafana's variables given values, as a recording rule."""
    rules = []
    for index, (where, expr) in enumerate(dashboard_exprs(load_dashboard())):
        expr = expr.replace("$__rate_interval", "1m").replace("$edge", ".*").replace("$agent", ".*")
        assert "$" not in expr, where
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    assert len(rules) >= 18
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", str(path))


def test_alert_expressions_select_their_cases(tmp_path: Path) -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in load_alerts()}
    assert set(exprs) == set(SCENARIOS)
    tests: list[dict[str, Any]] = []
    for alert, (series, expected) in SCENARIOS.items():
        tests.append(
            {
                "interval": "1m",
                "input_series": [
                    {"series": name + _labels(labels), "values": values} for name, labels, values in series
                ],
                "promql_expr_test": [
                    {
                        # "* 0": the values are the alert's business (thresholds
                        # aside); the labels say which series it selects.
                        "expr": f"0 * ({exprs[alert]})",
                        "eval_time": "10m",
                        "exp_samples": [{"labels": _labels(labels), "value": 0} for labels in expected],
                    }
                ],
            }
        )
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "evaluation_interval": "1m", "tests": tests}))
    promtool("test", "rules", str(path))
