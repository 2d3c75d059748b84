"""
Issue 13 (operator kit): the files of C{contrib/} parse, have the shape
Prometheus and Grafana read, and name only metrics (and label values) that
the daemons export: the edge's taken from a real L{EdgeMetrics} registry,
the agent's from C{netbore.agent.metrics} (and, until that lands, from the
names the issue fixes for it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from twisted.internet.testing import MemoryReactorClock

from netbore.agent.tap import Options as AgentOptions
from netbore.agent.tap import makeService as make_agent
from netbore.edge.config import EdgeConfig
from netbore.edge.metrics import HANDSHAKE_FAILURES, REFUSALS, RESETS
from netbore.edge.registry import TunnelState
from netbore.edge.site import build_edge
from netbore.metrics import status_label

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
SCRAPE = CONTRIB / "prometheus" / "prometheus.yml"
ALERTS = CONTRIB / "prometheus" / "alerts.yml"
DASHBOARD = CONTRIB / "grafana" / "netbore-dashboard.json"

#: The agent's metrics as issue 13 fixes them (family name: type), written
#: before C{netbore.agent.metrics} landed; L{test_agent_names_are_exported}
#: holds that module to them.
AGENT_FAMILIES = {
    "netbore_agent_origin_requests": "counter",
    "netbore_agent_origin_response_seconds": "histogram",
    "netbore_agent_origin_errors": "counter",
    "netbore_agent_session_state": "gauge",
    "netbore_agent_reconnects": "counter",
    "netbore_agent_streams": "gauge",
}
#: Label values the issue fixes for the agent's metrics.
AGENT_LABELS = {
    ("netbore_agent_origin_requests_total", "status"): {"1xx", "2xx", "3xx", "4xx", "5xx", "error"},
    ("netbore_agent_origin_errors_total", "reason"): {"refused", "timeout", "reset", "tls", "other"},
    ("netbore_agent_session_state", "state"): {"ready", "offline", "deleted"},
}
#: Series Prometheus makes itself for every target.
SYNTHETIC = {"up"}

# -- reading PromQL ----------------------------------------------------------------

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
_KEYWORDS |= {"offset", "inf", "nan"}
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([^,]+?)\s*,\s*\w+\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """
    The metric names a PromQL expression reads: identifiers left once
    strings, label matchers, ranges, C{by}/C{on}/... label lists, Grafana
    variables and C{offset}s are taken out, that are not keywords and not
    followed by C{(} (a function or an aggregation).
    """
    text = re.sub(r"#[^\n]*", " ", _STRING.sub('""', expr))
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSE.sub(" ", text)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def label_matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(metric, label, operator, value) for each matcher of a named selector."""
    for metric, matchers in _SELECTOR.findall(expr):
        for label, op, value in _MATCHER.findall(matchers):
            yield metric, label, op, value


def series_names(registry: CollectorRegistry) -> set[str]:
    """
    The series names a scrape of C{registry} gives Prometheus: each
    family's by its type (C{_total} for a counter; C{_bucket}, C{_sum},
    C{_count} for a histogram; a gauge's own name), so that a labelled
    family with no sample yet counts too, and every sample's name.
    """
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def families_as_series(families: dict[str, str]) -> set[str]:
    """The series names of C{families} (name: type), as L{series_names}."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    return {name + suffix for name, kind in families.items() for suffix in suffixes[kind]}


# -- the files -----------------------------------------------------------------------


def load_alerts() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every panel target and query variable."""
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(query)
            assert match, f"variable {variable['name']}: {query!r} is not label_values(metric, label)"
            yield f"variable {variable['name']}", match.group(1)


def every_expr() -> list[tuple[str, str]]:
    alerts = [(f"alert {rule['alert']}", rule["expr"]) for rule in load_alerts()]
    return alerts + list(dashboard_exprs(load_dashboard()))


# -- what the daemons export ------------------------------------------------------------


@pytest.fixture(scope="module")
def edge_registry(tmp_path_factory: pytest.TempPathFactory) -> CollectorRegistry:
    """The registry of a real edge, as C{--metrics} serves it."""
    config = EdgeConfig(domain="tunnel.test", data_dir=str(tmp_path_factory.mktemp("data")))
    edge = build_edge(config, reactor=MemoryReactorClock())
    metrics = edge.site.router.metrics
    assert metrics is not None
    return metrics.registry


def agent_registry() -> CollectorRegistry:
    """
    The registry of a real agent, as its C{--metrics} serves it (skips
    until C{netbore.agent.metrics} exists).
    """
    pytest.importorskip("netbore.agent.metrics")
    options = AgentOptions()
    options.parseOptions(["--origin", "http://127.0.0.1:3000"])
    agent: Any = make_agent(options, reactor=MemoryReactorClock())
    registry: CollectorRegistry = agent.metrics.registry
    return registry


def edge_label_values(registry: CollectorRegistry) -> dict[tuple[str, str], set[str]]:
    """(series, label): the values the edge can give it."""
    values: dict[tuple[str, str], set[str]] = {
        ("netbore_edge_viewer_requests_total", "status"): {status_label(code) for code in (0, 100, 200, 300, 400, 500)},
        ("netbore_edge_refused_total", "reason"): set(REFUSALS),
        ("netbore_edge_stream_resets_total", "reason"): set(RESETS),
        ("netbore_edge_agent_handshake_failures_total", "reason"): set(HANDSHAKE_FAILURES),
        ("netbore_edge_tunnels", "state"): {state.value for state in TunnelState},
    }
    # Every value the real registry exports is one of these.
    for family in registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if (sample.name, label) in values:
                    assert value in values[sample.name, label]
    return values


def unknown_names(exprs: Iterable[tuple[str, str]], known: set[str]) -> list[str]:
    return sorted(f"{where}: {name}" for where, expr in exprs for name in metric_names(expr) - known)


def unknown_label_values(exprs: Iterable[tuple[str, str]], values: dict[tuple[str, str], set[str]]) -> list[str]:
    """Matcher values (or alternatives of a C{a|b} regex) not in C{values}."""
    out: list[str] = []
    for where, expr in exprs:
        for metric, label, op, value in label_matchers(expr):
            if (metric, label) not in values or "$" in value:
                continue
            asked = set(value.split("|")) if op in ("=~", "!~") else {value}
            out.extend(f"{where}: {metric}{{{label}={bad!r}}}" for bad in sorted(asked - values[metric, label]))
    return out


# -- the extractor itself ----------------------------------------------------------------


def test_metric_names_reads_promql() -> None:
    expr = """
        sum by (job, instance) (rate(netbore_edge_viewer_requests_total{status="5xx", x=~"a|b"}[5m])) # up
        / on (instance) group_left (job) (max_over_time(up{job="x"}[5m:1m] offset 1h) > 1e-9)
        and histogram_quantile(0.95, sum by (le) (rate(some_seconds_bucket{instance=~"$edge"}[$__rate_interval])))
        unless bool ${x} or netbore:recorded:rate5m
    """
    assert metric_names(expr) == {
        "netbore_edge_viewer_requests_total",
        "up",
        "some_seconds_bucket",
        "netbore:recorded:rate5m",
    }


def test_series_names_follow_types(edge_registry: CollectorRegistry) -> None:
    """
    A counter is C{<name>_total} and a histogram has no series of its bare
    name: the check refuses what Prometheus would never have stored.
    """
    names = series_names(edge_registry) | SYNTHETIC
    assert {"netbore_edge_viewer_requests_total", "netbore_edge_response_head_seconds_bucket", "up"} <= names
    assert {"netbore_edge_agent_sessions", "netbore_edge_refused_total", "process_cpu_seconds_total"} <= names
    wrong = [
        ("t", "rate(netbore_edge_viewer_requests[5m])"),
        ("t", "netbore_edge_response_head_seconds"),
        ("t", "netbore_edge_agent_sessions_total"),
        ("t", "netbore_edge_no_such_thing_total"),
    ]
    assert len(unknown_names(wrong, names)) == 4
    values = edge_label_values(edge_registry)
    bad = [("t", 'netbore_edge_stream_resets_total{reason=~"viewer_gone|viewer_left"}')]
    assert unknown_label_values(bad, values) == ["t: netbore_edge_stream_resets_total{reason='viewer_left'}"]


# -- the files' shapes ----------------------------------------------------------------


def test_scrape_config_scrapes_edge_and_agent() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    assert config["global"]["scrape_interval"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"netbore-edge", "netbore-agent"}
    assert jobs["netbore-edge"]["static_configs"][0]["targets"] == ["127.0.0.1:9108"]
    assert jobs["netbore-agent"]["static_configs"][0]["targets"] == ["127.0.0.1:9109"]
    assert all(job["metrics_path"] == "/metrics" for job in jobs.values())
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_rules_have_the_prometheus_shape() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    assert set(rules) == {"groups"}
    names = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule.get("alert")
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert re.fullmatch(r"\d+[smh]", rule["for"])
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    # The cases issue 13 names, each on the metric it is about.
    about = {rule["alert"]: metric_names(rule["expr"]) for rule in load_alerts()}
    assert about == {
        "NetboreDown": {"up"},
        "NetboreEdgeHigh5xxRatio": {"netbore_edge_viewer_requests_total"},
        "NetboreEdgeNoAgentSessions": {"netbore_edge_tunnels", "netbore_edge_agent_sessions"},
        "NetboreEdgeStreamResets": {"netbore_edge_stream_resets_total"},
        "NetboreEdgeHandshakeFailures": {"netbore_edge_agent_handshake_failures_total"},
        "NetboreEdgeRefusing": {"netbore_edge_refused_total"},
        "NetboreAgentFlapping": {"netbore_agent_reconnects_total"},
        "NetboreAgentOffline": {"netbore_agent_session_state"},
        "NetboreOriginErrors": {"netbore_agent_origin_requests_total"},
        "NetboreOriginSlow": {"netbore_agent_origin_response_seconds_bucket"},
    }


def test_dashboard_has_the_grafana_shape() -> None:
    dashboard = load_dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(dashboard_panels(dashboard))
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
    # Panels issue 13 asks for, by the metric each shows.
    shown = {name for _, expr in dashboard_exprs(dashboard) for name in metric_names(expr)}
    assert {
        "netbore_edge_viewer_requests_total",
        "netbore_edge_response_head_seconds_bucket",
        "netbore_edge_viewer_received_bytes_total",
        "netbore_edge_viewer_sent_bytes_total",
        "netbore_edge_tunnels",
        "netbore_edge_agent_sessions",
        "netbore_edge_stream_resets_total",
        "netbore_edge_refused_total",
        "netbore_agent_origin_response_seconds_bucket",
        "netbore_agent_origin_errors_total",
    } <= shown
    quantiles = [expr for _, expr in dashboard_exprs(dashboard) if "netbore_edge_response_head_seconds_bucket" in expr]
    assert [re.search(r"histogram_quantile\((0\.\d+)", expr).group(1) for expr in quantiles] == ["0.5", "0.95", "0.99"]  # type: ignore[union-attr]


# -- every name is one the daemons export ----------------------------------------------------


def test_edge_names_are_exported(edge_registry: CollectorRegistry) -> None:
    exprs = [(where, expr) for where, expr in every_expr() if "netbore_agent_" not in expr]
    known = series_names(edge_registry) | SYNTHETIC
    assert unknown_names(exprs, known) == []
    edge_exprs = [(where, expr) for where, expr in every_expr() if "netbore_edge_" in expr]
    assert len(edge_exprs) >= 15
    assert unknown_label_values(edge_exprs, edge_label_values(edge_registry)) == []


def test_agent_names_are_the_issues() -> None:
    """Every agent metric used is one issue 13 fixes (module or not)."""
    exprs = [(where, expr) for where, expr in every_expr() if "netbore_agent_" in expr]
    assert len(exprs) >= 8
    assert unknown_names(exprs, families_as_series(AGENT_FAMILIES) | SYNTHETIC) == []
    assert unknown_label_values(exprs, AGENT_LABELS) == []


def test_agent_names_are_exported() -> None:
    """The agent's real registry exports the names and labels of the issue."""
    registry = agent_registry()
    exported = series_names(registry)
    assert families_as_series(AGENT_FAMILIES) <= exported
    exprs = [(where, expr) for where, expr in every_expr() if "netbore_agent_" in expr]
    assert unknown_names(exprs, exported | SYNTHETIC) == []
    for family in registry.collect():
        for sample in family.samples:
            for label, value in sample.labels.items():
                if (sample.name, label) in AGENT_LABELS:
                    assert value in AGENT_LABELS[sample.name, label], (sample.name, label, value)


def test_docs_explain_every_alert() -> None:
    """Each alert has its entry in the operations page and in contrib's README."""
    operations = (CONTRIB.parent / "docs" / "operations.rst").read_text()
    section = operations[operations.index("\nDashboards and alerts\n") :]
    readme = (CONTRIB / "README.rst").read_text()
    for rule in load_alerts():
        assert f"\n``{rule['alert']}`` ({rule['labels']['severity']})\n" in section
        assert f"``{rule['alert']}``" in readme
    assert ".. literalinclude:: ../contrib/prometheus/prometheus.yml" in section
