"""
Medians of the rounds, ratios, and the table (an RST "simple table", so the
same text goes to the terminal and to C{docs/performance.rst}).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Ref", "Row", "rows_for", "medians", "render", "render_table"]

Results = dict[str, dict[str, list[dict[str, Any]]]]  # peer -> test -> rounds


def medians(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    """peer -> test -> metric -> median over the rounds (numbers), or all-true (bools)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for peer, tests in results.items():
        for test, rounds in tests.items():
            merged: dict[str, Any] = {}
            for key in rounds[0]:
                values = [r[key] for r in rounds if key in r]
                if all(isinstance(v, bool) for v in values):
                    merged[key] = all(values)
                elif all(isinstance(v, (int, float)) for v in values):
                    finite = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
                    merged[key] = statistics.median(finite) if finite else float("nan")
                else:
                    merged[key] = values[-1]
            merged["rounds"] = len(rounds)
            out.setdefault(peer, {})[test] = merged
    return out


@dataclass(frozen=True)
class Row:
    label: str
    test: str
    key: str
    fmt: Callable[[float], str]
    #: "up": more is better (ratio value/direct); "down": less is better; "" no ratio to direct
    sense: str = "up"
    #: computed by a function of (peer's metrics, direct's metrics) instead of a key
    derive: Callable[[dict[str, Any], dict[str, Any]], float] | None = None


def _k(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:,.0f}"


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _n(v: float) -> str:
    return f"{v:,.0f}"


def _mb(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def rows_for(conns: list[int]) -> list[Row]:
    rows: list[Row] = []
    for c in conns:
        rows.append(Row(f"13 B c={c}: req/s", f"small_c{c}", "rps", _k))
        rows.append(Row(f"13 B c={c}: p50 ms", f"small_c{c}", "p50_ms", _ms, "down"))
        rows.append(Row(f"13 B c={c}: p99 ms", f"small_c{c}", "p99_ms", _ms, "down"))
    rows.append(
        Row(
            "13 B c=1: p50 added over direct, ms",
            "small_c1",
            "p50_ms",
            _ms,
            "",
            derive=lambda m, d: m["small_c1"]["p50_ms"] - d["small_c1"]["p50_ms"],
        )
    )
    rows += [
        Row("1 MiB GETs c=10: MB/s", "get1m_c10", "mb_s", _mb),
        Row("100 MiB download: MB/s", "download_100m", "mb_s", _mb),
        Row("100 MiB upload: MB/s", "upload_100m", "mb_s", _mb),
        Row("time to first byte, new conn.: ms", "ttfb", "ms", _ms, "down"),
        Row("tunnel CPU per request, c=50: µs", f"small_c{50 if 50 in conns else conns[-1]}", "cpu_us_per_req", _n, ""),
        Row(f"tunnel RSS peak under c={conns[-1]}: MB", f"small_c{conns[-1]}", "rss_peak_mb", _mb, ""),
        Row("tunnel RSS after the sweep: MB", "after", "rss_mb", _mb, ""),
        Row("errors (all loads)", "totals", "errors", _n, ""),
        Row("failed tests", "totals", "failures", _n, ""),
        Row("restarts (path stopped answering)", "totals", "restarts", _n, ""),
        Row("SHA-256 checks passed", "totals", "sha_ok", lambda v: "yes" if v else "NO", ""),
    ]
    return rows


def _value(row: Row, metrics: dict[str, Any], direct: dict[str, Any]) -> float | None:
    try:
        if row.derive is not None:
            return row.derive(metrics, direct)
        value: float | None = metrics[row.test][row.key]
        return value
    except (KeyError, TypeError):
        return None


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or not base or isinstance(value, bool) or math.isnan(value) or math.isnan(base):
        return ""
    return f"{value / base:.2f}"


def _table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    return "\n".join([rule, line(header), rule, *(line(r) for r in body), rule])


@dataclass(frozen=True)
class Ref:
    """A ratio column: value / C{peer}'s value, after the columns of the paths it applies to."""

    title: str
    peer: str
    #: whether the ratio is shown on a row (default: rows with a sense)
    applies: Callable[[Row], bool] = lambda row: bool(row.sense)
    #: the paths that get this column (default: every path but direct and C{peer})
    only: tuple[str, ...] = ()

    def columns(self, peer: str, med: dict[str, Any]) -> bool:
        return self.peer in med and peer not in ("direct", self.peer) and (not self.only or peer in self.only)


def render_table(
    med: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str], rows: list[Row], refs: list[Ref]
) -> str:
    """One column per path (in C{med}'s order), each followed by its ratio columns (C{refs})."""
    peers = list(med)
    direct = med.get("direct", {})
    header = ["metric"]
    for p in peers:
        header.append(labels[p])
        header += [ref.title for ref in refs if ref.columns(p, med)]
    body = []
    for row in rows:
        cells = [row.label]
        for p in peers:
            v = None if (p == "direct" and row.derive) else _value(row, med[p], direct)
            cells.append("" if v is None else row.fmt(v))
            for ref in refs:
                if ref.columns(p, med):
                    cells.append(_ratio(v, _value(row, med[ref.peer], direct)) if ref.applies(row) else "")
        body.append(cells)
    return _table(header, body)


def _nginx_ratio(row: Row) -> bool:
    return (bool(row.sense) or row.test in ("small_c50", "after") or row.key.startswith("rss")) and row.test != "totals"


def render(med: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str], conns: list[int]) -> str:
    """
    One column per path; after each tunnel's column its ratio to direct
    (C{×direct}) and, when the nginx proxy ran, to it (C{×nginx}). Ratios are
    value / reference for every row (so for latency, lower is better).
    """
    return render_table(
        med, labels, rows_for(conns), [Ref("×direct", "direct"), Ref("×nginx", "nginx-proxy", _nginx_ratio)]
    )


#: the TCP bulk test's transfers (issue 11): test name -> what it moves
TCP_TESTS = {"tcp_upload": "upload, client→server", "tcp_download": "download, server→client"}


def _s(v: float) -> str:
    return f"{v:.2f}"


def tcp_rows(size: str) -> list[Row]:
    rows = [Row(f"TCP {size} {what}: MB/s", test, "mb_s", _mb) for test, what in TCP_TESTS.items()]
    rows += [Row(f"tunnel CPU, {test[4:]}: s", test, "cpu_s", _s, "down") for test in TCP_TESTS]
    rows += [Row(f"tunnel RSS peak, {test[4:]}: MB", test, "rss_peak_mb", _mb, "") for test in TCP_TESTS]
    rows += [
        Row("failed transfers", "totals", "failures", _n, ""),
        Row("restarts (path stopped answering)", "totals", "restarts", _n, ""),
        Row("SHA-256 checks passed", "totals", "sha_ok", lambda v: "yes" if v else "NO", ""),
    ]
    return rows


def render_tcp(med: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str], size: str) -> str:
    """
    The TCP bulk table: one column per path, ×direct after each tunnel's
    MB/s, and netbore's ratios to OpenSSH C{-L} and C{-R} (MB/s and CPU).
    """
    refs = [Ref("×direct", "direct", lambda row: row.key == "mb_s")]
    refs += [Ref(f"×ssh {flag}", f"ssh{flag}", only=("netbore",)) for flag in ("-L", "-R")]
    return render_table(med, labels, tcp_rows(size), refs)
