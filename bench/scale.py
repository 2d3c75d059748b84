"""
netbore scale test: one process opens N agent sessions against one edge.

    python bench/scale.py                      # N = 1,000 then 10,000
    python bench/scale.py -n 1000 --json s.json

It starts a real ``twistd -n netbore-edge --allow-anonymous`` on loopback,
creates N tunnels through the control API (``POST /tunnels/create``), opens
one WebSocket per tunnel speaking the real protocol (subprotocol
``netbore.v1``, bearer token, hello, then binary frames encoded with
L{netbore.protocol.frames}), and answers every stream itself with a tiny
fixed response.  It reports:

- the edge's resident memory (VmRSS) per idle tunnel: the growth from a
  warmed-up edge to one holding N connected tunnels, divided by N;
- the time to register them all (creates, then WebSocket + hellos);
- the latency (p50, p99) and rate of viewer requests to random tunnels while
  all N are connected.

Everything is bounded in time (``--timeout``) and the edge is stopped by
its pid at the end.  The open-file limit is raised to its hard limit for
this process and the edge (N sockets each, plus viewers).  See
bench/README.rst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.scale_clients import BODY, FakeAgent, Http  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vm_rss(pid: int) -> int:
    """Resident memory of C{pid} in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def raise_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def create_tunnels(port: int, n: int, concurrency: int) -> list[dict[str, Any]]:
    created: list[dict[str, Any]] = []
    todo = iter(range(n))

    async def worker() -> None:
        http = await Http.open(port)
        try:
            for _ in todo:
                status, body = await http.request("POST", "/tunnels/create", f"127.0.0.1:{port}", b"{}")
                if status != 201:
                    raise RuntimeError(f"create answered {status}: {body[:200]!r}")
                created.append(json.loads(body))
        finally:
            http.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return created


async def connect_agents(port: int, tunnels: list[dict[str, Any]], concurrency: int) -> list[FakeAgent]:
    loop = asyncio.get_running_loop()
    agents: list[FakeAgent] = []
    todo = iter(tunnels)

    async def worker() -> None:
        for t in todo:
            path = "/" + t["candidates"][0]["edge_url"].split("://", 1)[1].split("/", 1)[1]
            ready: asyncio.Future[Any] = loop.create_future()
            agent = FakeAgent(f"127.0.0.1:{port}", path, t["ephemeral_token"], t["tunnel_id"], ready)
            await loop.create_connection(lambda: agent, "127.0.0.1", port)  # noqa: B023 (called before the await returns)
            await ready
            agents.append(agent)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return agents


async def viewer_load(port: int, hosts: list[str], connections: int, requests: int) -> dict[str, Any]:
    """C{requests} GETs in all, each to a random tunnel, on C{connections} keep-alive connections."""
    latencies: list[float] = []
    errors = 0
    per = requests // connections

    async def worker() -> None:
        nonlocal errors
        http = await Http.open(port)
        try:
            for _ in range(per):
                host = random.choice(hosts)
                t0 = time.perf_counter()
                status, body = await http.request("GET", "/", host)
                latencies.append(time.perf_counter() - t0)
                if status != 200 or body != BODY:
                    errors += 1
        finally:
            http.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.perf_counter() - t0
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else float("nan")

    return {
        "requests": len(latencies),
        "connections": connections,
        "errors": errors,
        "req_s": len(latencies) / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1e3 if latencies else float("nan"),
    }


# ---------------------------------------------------------------- the edge


#: With --tracemalloc the edge runs under this: SIGUSR1 writes a snapshot.
_TRACED = """
import os, signal, tracemalloc
tracemalloc.start(%d)
def dump(*_):
    tracemalloc.take_snapshot().dump("edge.tracemalloc.tmp")
    os.rename("edge.tracemalloc.tmp", "edge.tracemalloc")
signal.signal(signal.SIGUSR1, dump)
from twisted.scripts.twistd import run
run()
"""


class Edge:
    def __init__(self, workdir: Path, extra: list[str], traced: int = 0) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.snapshots = 0
        boot = ["-c", _TRACED % traced] if traced else ["-c", "from twisted.scripts.twistd import run; run()"]
        cmd = [
            sys.executable,
            *boot,
            "-n",
            "--pidfile=",
            "--logfile=-",
            "netbore-edge",
            "--listen",
            f"tcp:{self.port}:interface=127.0.0.1:backlog=4096",
            "--domain",
            "localhost",
            "--data-dir",
            str(workdir / "edge-data"),
            "--allow-anonymous",
            # Every agent and viewer comes from 127.0.0.1: no caps here
            # (the total stays cut to the descriptor limit).
            "--max-connections",
            "1000000",
            "--max-connections-per-ip",
            "1000000",
            # ... and every tunnel is created anonymously from it: no quotas.
            "--max-tunnels-per-address",
            "1000000",
            "--creates-per-minute",
            "1000000",
            *extra,
        ]
        self.log = open(workdir / "edge.log", "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir, env=dict(os.environ, PYTHONPATH=str(REPO))
        )

    async def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the edge exited with {self.proc.returncode}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the edge did not listen in time")

    def rss(self) -> int:
        return vm_rss(self.proc.pid)

    async def snapshot(self) -> Any:
        """(--tracemalloc) A tracemalloc snapshot of the edge now."""
        import signal
        import tracemalloc

        # The traced edge writes it in its working directory, renamed into
        # place once complete.
        self.snapshots += 1
        path = self.workdir / "edge.tracemalloc"
        self.proc.send_signal(signal.SIGUSR1)
        for _ in range(1200):
            await asyncio.sleep(0.1)
            if path.exists():
                break
        snap = tracemalloc.Snapshot.load(str(path))
        path.unlink()
        return snap

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def settle(edge: Edge, seconds: float = 1.0) -> int:
    """The edge's RSS once it has stopped moving (or after a few seconds)."""
    last = edge.rss()
    for _ in range(int(seconds * 10)):
        await asyncio.sleep(0.1)
    for _ in range(20):
        await asyncio.sleep(0.25)
        now = edge.rss()
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


async def one_run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(
        tempfile.mkdtemp(prefix="netbore-scale-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    )
    edge = Edge(workdir, args.edge_arg or [], args.tracemalloc)
    agents: list[FakeAgent] = []
    try:
        await edge.wait(30)
        # Warm up: a few tunnels with a request each, so the baseline
        # includes every module and code path a tunnel touches.
        warm = await create_tunnels(edge.port, 20, 4)
        agents += await connect_agents(edge.port, warm, 4)
        await viewer_load(edge.port, [t["public_hostname"] + f":{edge.port}" for t in warm], 4, 200)
        base = await settle(edge)
        snap0 = await edge.snapshot() if args.tracemalloc else None
        t0 = time.perf_counter()
        tunnels = await create_tunnels(edge.port, n, args.concurrency)
        t1 = time.perf_counter()
        rss_created = await settle(edge, 0.5)
        t2 = time.perf_counter()
        agents += await connect_agents(edge.port, tunnels, args.concurrency)
        t3 = time.perf_counter()
        rss = await settle(edge)
        if snap0 is not None:
            snap1 = await edge.snapshot()
            print(f"  tracemalloc: Python allocations per tunnel, by line (top {args.top}):")
            stats = snap1.compare_to(snap0, "lineno")
            total = sum(st.size_diff for st in stats)
            print(f"    {total / n / 1024:8.2f} KiB in all")
            for st in stats[: args.top]:
                frame = st.traceback[0]
                print(
                    f"    {st.size_diff / n:8.0f} B {st.count_diff / n:6.1f} blocks  "
                    f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
                )
        hosts = [t["public_hostname"] + f":{edge.port}" for t in tunnels]
        load = await viewer_load(edge.port, hosts, args.viewers, args.requests)
        rss_after = edge.rss()
        answered = sum(a.answered for a in agents)
        alive = sum(not a.closed for a in agents)
        return {
            "n": n,
            "create_s": t1 - t0,
            "creates_per_s": n / (t1 - t0),
            "connect_s": t3 - t2,
            "connects_per_s": n / (t3 - t2),
            "register_s": (t1 - t0) + (t3 - t2),
            "edge_rss_base_mb": base / 1e6,
            "edge_rss_mb": rss / 1e6,
            "edge_rss_after_load_mb": rss_after / 1e6,
            "kib_per_tunnel_created": (rss_created - base) / n / 1024,
            "kib_per_tunnel": (rss - base) / n / 1024,
            "latency": load,
            "answered": answered,
            "sessions_alive": alive,
        }
    finally:
        for a in agents:
            if a.transport is not None:
                a.transport.abort()
        edge.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-n", type=int, nargs="+", default=[1000, 10000], help="tunnel counts, one run each (default 1000 10000)"
    )
    p.add_argument("--concurrency", type=int, default=64, help="creates / connects in flight (default 64)")
    p.add_argument("--viewers", type=int, default=10, help="viewer connections for the latency load (default 10)")
    p.add_argument("--requests", type=int, default=5000, help="requests to random tunnels (default 5000)")
    p.add_argument("--timeout", type=float, default=600, help="seconds for each run at most (default 600)")
    p.add_argument("--edge-arg", action="append", help="an extra netbore-edge option (repeatable)")
    p.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="run the edge under tracemalloc (FRAMES deep) and print where its per-tunnel memory goes"
        " (slows the edge; RSS figures then include tracemalloc's own overhead)",
    )
    p.add_argument("--top", type=int, default=25, help="lines shown with --tracemalloc (default 25)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_nofile(2 * max(args.n) + 1000)
    if limit < max(args.n) + 200:
        print(f"open-file limit {limit} is too low for {max(args.n)} tunnels")
        return 1
    results = []
    for n in args.n:
        print(f"N = {n:,}: creating, connecting, then {args.requests} requests to random tunnels ...", flush=True)
        try:
            r = asyncio.run(asyncio.wait_for(one_run(n, args), args.timeout))
        except (asyncio.TimeoutError, TimeoutError):
            print(f"  timed out after {args.timeout:.0f} s")
            results.append({"n": n, "error": "timeout"})
            continue
        lat = r["latency"]
        print(
            f"  registered in {r['register_s']:.1f} s (creates {r['create_s']:.1f} s = {r['creates_per_s']:,.0f}/s,"
            f" WebSocket + hello {r['connect_s']:.1f} s = {r['connects_per_s']:,.0f}/s)"
        )
        print(
            f"  edge RSS {r['edge_rss_base_mb']:.1f} MB warm -> {r['edge_rss_mb']:.1f} MB with {n:,} idle tunnels:"
            f" {r['kib_per_tunnel']:.1f} KiB per tunnel ({r['kib_per_tunnel_created']:.1f} KiB created, not connected)"
        )
        print(
            f"  {lat['requests']} requests to random tunnels on {lat['connections']} connections:"
            f" {lat['req_s']:,.0f} req/s, p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms,"
            f" max {lat['max_ms']:.1f} ms, errors {lat['errors']};"
            f" sessions alive {r['sessions_alive']:,}/{n + 20:,}; edge RSS after {r['edge_rss_after_load_mb']:.1f} MB"
        )
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "nofile": limit}, indent=1))
        print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
