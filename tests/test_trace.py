"""
Tests for C{bench/trace.py}: the module crossings of one steady-state
C{GET /13} through the in-memory tunnel (issue 9's "at most half of 128").
"""

from __future__ import annotations

from pathlib import Path

from bench.trace import Trace, is_netbore, render, trace_request

#: Issue 9: one steady-state GET crossed modules 128 times before the
#: restructure (122 as this trace measures that code, at bc91e30).
BEFORE = 128

#: Issue 13: what observing each request adds to it, the request log's one
#: call (netbore.edge.requestlog) and its clock reads (head read, response
#: head written, done).
OBSERVED = 4


def test_the_driver_is_not_part_of_the_tunnel() -> None:
    assert is_netbore("netbore") and is_netbore("netbore.edge.viewer")
    assert not is_netbore("netbore.testing") and not is_netbore("netbore.testing._memory")
    assert not is_netbore("netboredom") and not is_netbore("twisted.test.iosim")


def test_the_totals_count_each_kind_of_crossing() -> None:
    trace = Trace(
        ["netbore.edge.viewer", "netbore.writes"],
        {
            ("twisted.test.iosim", "netbore.edge.viewer"): 2,
            ("netbore.edge.viewer", "netbore.writes"): 3,
            ("netbore.writes", "twisted.test.iosim"): 1,
        },
    )
    assert (trace.crossings, trace.internal, trace.plumbing) == (6, 3, 4)
    assert trace.per_module() == {"netbore.edge.viewer": 5, "netbore.writes": 4}
    assert "module crossings:             6" in render(trace, 2)
    assert trace.as_json()["pairs"][0] == {"caller": "netbore.edge.viewer", "callee": "netbore.writes", "count": 3}


def test_one_steady_state_get_is_traced(tmp_path: Path) -> None:
    trace = trace_request(str(tmp_path))
    # Both daemons' code ran, and only netbore's own modules are listed.
    assert any(m.startswith("netbore.edge.") for m in trace.modules)
    assert any(m.startswith("netbore.agent.") for m in trace.modules)
    assert all(is_netbore(m) for m in trace.modules)
    assert 0 < trace.internal < trace.crossings
    assert all(is_netbore(a) or is_netbore(b) for a, b in trace.pairs)


def test_one_get_crosses_modules_at_most_half_as_often_as_before(tmp_path: Path) -> None:
    trace = trace_request(str(tmp_path))
    assert trace.crossings <= BEFORE // 2 + OBSERVED, render(trace, 20)
