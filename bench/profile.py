"""
py-spy around a running process: record collapsed stacks, then rank
functions by their own samples (and by samples with them on the stack).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["record", "top"]


def record(spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start C{py-spy record} on C{pid} for C{seconds}; collapsed stacks to C{out}."""
    cmd = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py:123)"
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1]}" if where else name


def top(collapsed: Path, count: int) -> list[dict[str, Any]]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    samples = 0
    try:
        lines = collapsed.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f]
        k = int(n)
        samples += k
        if frames:
            own[frames[-1]] += k
            if len(frames) > 1:
                callers.setdefault(frames[-1], Counter())[frames[-2]] += k
        for f in set(frames):
            total[f] += k
    if not samples:
        return []
    return [
        {
            "function": f,
            "self_pct": 100 * n / samples,
            "total_pct": 100 * total[f] / samples,
            "caller": callers[f].most_common(1)[0][0] if f in callers else "",
        }
        for f, n in own.most_common(count)
    ]
