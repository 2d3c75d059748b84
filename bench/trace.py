"""
Module crossings of one steady-state request, traced in memory.

    python bench/trace.py [--json] [--top N] [--harness DIR]

Builds a whole tunnel with L{netbore.testing.InMemoryTunnel} (edge, agent
session and origin on one memory reactor), sends one warm-up C{GET /13} on
a keep-alive viewer connection, then traces a second one with
C{sys.setprofile}: from the viewer's write to the last byte of the response,
with the agent's session and its origin connection warm.

Counted, for Python-level C{call} events (a generator resumed counts as a
call; C functions do not):

- B{modules}: the netbore modules whose code ran;
- B{crossings}: calls whose callee's module (C{frame.f_globals["__name__"]})
  differs from its caller's and at least one of the two is a netbore
  module -- this is the figure of issue 9 (128 before the restructure);
- B{internal crossings}: those where both are netbore modules.

C{netbore.testing} is the driver, not the tunnel: its modules count as
outside netbore.  C{--harness DIR} uses the C{testing} package in C{DIR} as
C{netbore.testing}, to trace an older checkout that has none
(C{PYTHONPATH=/old/checkout python bench/trace.py --harness /copy}).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from types import FrameType
from typing import Any

import attrs

__all__ = ["PLUMBING", "Trace", "is_netbore", "trace_request"]

#: Modules of write batching and flushing ("plumbing" in issue 9): before
#: the restructure C{writes} and C{wsio}, after it C{writes} and
#: C{websocket.batched}; a crossing touching one of them counts there.
PLUMBING = ("netbore.writes", "netbore.wsio", "netbore.websocket.batched")

#: Warm-up requests before the traced one (more change nothing: measured).
WARM = 1
_REQUEST = b"GET /13 HTTP/1.1\r\nHost: %s\r\nUser-Agent: netbore-trace\r\nAccept: */*\r\n\r\n"


def is_netbore(module: str) -> bool:
    """
    Is C{module} part of netbore's tunnel (not its test driver)?
    """
    if module == "netbore" or module.startswith("netbore."):
        return not (module == "netbore.testing" or module.startswith("netbore.testing."))
    return False


@attrs.frozen
class Trace:
    """
    What one traced request touched.

    @ivar modules: the netbore modules whose code ran, sorted.
    @ivar pairs: crossings per (caller module, callee module).
    """

    modules: list[str]
    pairs: dict[tuple[str, str], int]

    @property
    def crossings(self) -> int:
        return sum(self.pairs.values())

    @property
    def internal(self) -> int:
        """
        Crossings between two netbore modules.
        """
        return sum(n for (a, b), n in self.pairs.items() if is_netbore(a) and is_netbore(b))

    @property
    def plumbing(self) -> int:
        """
        Crossings into or out of the write batching and flush modules.
        """
        return sum(n for (a, b), n in self.pairs.items() if a.startswith(PLUMBING) or b.startswith(PLUMBING))

    def per_module(self) -> Counter[str]:
        """
        Crossings into or out of each netbore module (a crossing between
        two netbore modules counts for both).
        """
        touched: Counter[str] = Counter()
        for (a, b), n in self.pairs.items():
            for module in {a, b}:
                if is_netbore(module):
                    touched[module] += n
        return touched

    def as_json(self) -> dict[str, Any]:
        return {
            "modules": self.modules,
            "module_count": len(self.modules),
            "crossings": self.crossings,
            "internal_crossings": self.internal,
            "plumbing_crossings": self.plumbing,
            "per_module": dict(self.per_module().most_common()),
            "pairs": [
                {"caller": a, "callee": b, "count": n}
                for (a, b), n in sorted(self.pairs.items(), key=lambda item: (-item[1], item[0]))
            ],
        }


def _module(frame: FrameType | None) -> str:
    if frame is None:
        return "<none>"
    return str(frame.f_globals.get("__name__", "<unknown>"))


def _record(pairs: Counter[tuple[str, str]], modules: set[str]) -> Any:
    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        callee = _module(frame)
        caller = _module(frame.f_back)
        if is_netbore(callee):
            modules.add(callee)
        if callee != caller and (is_netbore(callee) or is_netbore(caller)):
            pairs[caller, callee] += 1

    return profile


def trace_request(data_dir: str, fast_paths: bool = True) -> Trace:
    """
    Build an in-memory tunnel (keys in C{data_dir}), warm it with one
    C{GET /13} and trace the next one on the same viewer connection.

    @param fast_paths: install autobahn's fast paths for the trace, as the
        daemons' C{makeService} does (and remove them after); code from
        before issue 9, which had no such call, is traced as it is.
    """
    try:
        from netbore.websocket import install_fast_paths, remove_fast_paths
    except ImportError:
        fast_paths = False
    if fast_paths:
        install_fast_paths()
    try:
        return _trace(data_dir)
    finally:
        if fast_paths:
            remove_fast_paths()


def _trace(data_dir: str) -> Trace:
    from netbore.testing import ORIGIN_PORT, InMemoryTunnel

    tunnel = InMemoryTunnel.build(data_dir)
    viewer = tunnel.viewer()
    request = _REQUEST % tunnel.host.encode("ascii")
    for _ in range(WARM):
        warm = tunnel.request(request, viewer)
        assert (warm.status, warm.body) == (200, b"Hello, World!"), warm
    pairs: Counter[tuple[str, str]] = Counter()
    modules: set[str] = set()
    sys.setprofile(_record(pairs, modules))
    try:
        viewer.send(request)
        tunnel.pump()
    finally:
        sys.setprofile(None)
    response = viewer.response()
    assert (response.status, response.body) == (200, b"Hello, World!"), response
    assert tunnel.network.accepted[ORIGIN_PORT] == 1, "the origin connection was not reused"
    tunnel.close()
    return Trace(sorted(modules), dict(pairs))


def render(trace: Trace, top: int) -> str:
    """
    The table of crossing pairs (the C{top} largest) and the totals.
    """
    rows = sorted(trace.pairs.items(), key=lambda item: (-item[1], item[0]))
    width = max([len(f"{a} -> {b}") for (a, b), _ in rows[:top]] + [20])
    lines = [f"{'caller -> callee':<{width}}  calls", f"{'-' * width}  -----"]
    for (a, b), n in rows[:top]:
        lines.append(f"{f'{a} -> {b}':<{width}}  {n:5d}")
    if len(rows) > top:
        lines.append(f"{f'... {len(rows) - top} more pairs':<{width}}  {sum(n for _, n in rows[top:]):5d}")
    total = trace.crossings
    share = 100 * trace.plumbing / total if total else 0.0
    lines += [
        "",
        f"netbore modules touched:      {len(trace.modules)}",
        f"module crossings:             {total}  (caller or callee in netbore; issue 9's figure)",
        f"  both sides netbore:         {trace.internal}",
        f"  batching/flush plumbing:    {trace.plumbing} ({share:.0f}%)",
        "",
        "crossings in or out of each module: "
        + ", ".join(f"{module} {n}" for module, n in trace.per_module().most_common()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the trace as JSON")
    parser.add_argument("--top", type=int, default=40, help="rows of the pair table (default 40)")
    parser.add_argument("--harness", metavar="DIR", help="a directory whose testing package is netbore.testing")
    parser.add_argument(
        "--no-fast-paths", action="store_true", help="trace without autobahn's fast paths (the daemons install them)"
    )
    args = parser.parse_args(argv)
    if args.harness:
        import netbore

        netbore.__path__.insert(0, args.harness)
    with tempfile.TemporaryDirectory(prefix="netbore-trace-") as data_dir:
        trace = trace_request(data_dir, fast_paths=not args.no_fast_paths)
    print(json.dumps(trace.as_json(), indent=2) if args.json else render(trace, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
