"""
netbore benchmark: direct vs through netbore vs the peers of issue 5, on
loopback, in one bounded run.

    python bench/run.py [--quick] [--json out.json] [--install] [--profile]

See bench/README.rst for what is measured and how.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import https as https_bench  # noqa: E402
from bench import peers as peers_mod  # noqa: E402
from bench import tcp_bulk  # noqa: E402
from bench.load import Target, download, healthy, run_load, ttfb, upload  # noqa: E402
from bench.origins import TOOLS, BuiltinOrigin, Env, NginxOrigin, Origin, which  # noqa: E402
from bench.peers import PEERS, Peer, start_paths  # noqa: E402
from bench.procs import ProcessGroup, Sampler, usage_of  # noqa: E402
from bench.report import medians, render  # noqa: E402

MiB = 1024 * 1024


@dataclass
class Plan:
    """How much to run: bounded in time and count."""

    conns: list[int]
    duration: float
    rounds: int
    ttfb_count: int
    transfer_timeout: float = 60.0
    big: int = 100 * MiB


QUICK = Plan(conns=[1, 50], duration=2, rounds=1, ttfb_count=20, transfer_timeout=15)
FULL = Plan(conns=[1, 10, 50, 200], duration=2, rounds=3, ttfb_count=30, transfer_timeout=20)


# ------------------------------------------------------------- measurement


def _tunnel_fields(peer: Peer, sampler: Sampler, requests: int) -> dict[str, Any]:
    if not peer.tunnel:
        return {}
    return {
        "cpu_s": sampler.cpu,
        "cpu_us_per_req": sampler.cpu / requests * 1e6 if requests else float("nan"),
        "rss_peak_mb": sampler.peak / 1e6,
    }


@dataclass
class Bench:
    plan: Plan
    env: Env
    origin: Origin
    payload: bytes
    sha: dict[str, str]
    load_cores: set[int] | None
    targets: dict[str, Target]
    results: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    def record(self, peer: Peer, test: str, values: dict[str, Any]) -> None:
        self.results.setdefault(peer.name, {}).setdefault(test, []).append(values)

    def small(self, peer: Peer, target: Target, c: int) -> None:
        with Sampler(peer.pids) as s:
            r = run_load(target, "/13", c, self.plan.duration, threads=len(self.load_cores or {0, 1}))
        values = r.as_dict() | _tunnel_fields(peer, s, r.requests)
        self.record(peer, f"small_c{c}", values)
        print(
            f"    13 B c={c:<3} {r.rps:>10,.0f} req/s  p50 {r.p50_ms:7.3f} ms  p99 {r.p99_ms:7.3f} ms"
            f"  errors {r.errors}" + (f"  cpu {values['cpu_us_per_req']:.0f} µs/req" if peer.tunnel else "")
        )

    def get1m(self, peer: Peer, target: Target) -> None:
        with Sampler(peer.pids) as s:
            r = run_load(target, "/1m", 10, self.plan.duration, threads=len(self.load_cores or {0, 1}))
        mb_s = r.requests * MiB / r.seconds / 1e6 if r.seconds else 0.0
        self.record(peer, "get1m_c10", r.as_dict() | {"mb_s": mb_s} | _tunnel_fields(peer, s, r.requests))
        print(f"    1 MiB c=10 {mb_s:>10,.0f} MB/s  errors {r.errors}")

    def transfers(self, peer: Peer, target: Target) -> None:
        timeout = self.plan.transfer_timeout
        for test, run in (
            ("download_100m", lambda: download(target, "/100m", self.sha["/100m"], self.plan.big, timeout)),
            (
                "upload_100m",
                lambda: upload(
                    target,
                    "/upload",
                    self.payload,
                    lambda st, body: self.origin.upload_ok(st, body, self.sha["/100m"]),
                    timeout,
                ),
            ),
        ):
            try:
                with Sampler(peer.pids) as s:
                    r = run()
                values = r.as_dict() | ({"cpu_s": s.cpu, "rss_peak_mb": s.peak / 1e6} if peer.tunnel else {})
                print(f"    {test:<13} {r.mb_s:>8,.0f} MB/s  sha256 {'ok' if r.sha_ok else 'MISMATCH'}")
            except Exception as e:  # a failed transfer is a result, not the end of the run
                values = {"mb_s": float("nan"), "sha_ok": False, "error": f"{type(e).__name__}: {e}"}
                print(f"    {test:<13} FAILED: {values['error']}")
            self.record(peer, test, values)

    def first_byte(self, peer: Peer, target: Target) -> None:
        ms = ttfb(target, "/13", self.plan.ttfb_count, 5)
        self.record(peer, "ttfb", {"ms": ms})
        print(f"    ttfb       {ms:8.3f} ms (median of {self.plan.ttfb_count} new connections)")

    def steps(self, peer: Peer) -> list[tuple[str, Callable[[Target], None]]]:
        def small(c: int) -> Callable[[Target], None]:
            return lambda t: self.small(peer, t, c)

        steps: list[tuple[str, Callable[[Target], None]]] = [(f"13 B c={c}", small(c)) for c in self.plan.conns]
        steps += [
            ("1 MiB c=10", lambda t: self.get1m(peer, t)),
            ("100 MiB transfers", lambda t: self.transfers(peer, t)),
            ("ttfb", lambda t: self.first_byte(peer, t)),
        ]
        return steps

    def round(self, peer: Peer) -> None:
        """Every test once on C{peer}; a path that stops answering is noted and restarted."""
        previous = "start"
        for name, step in self.steps(peer):
            if not healthy(self.targets[peer.name]):
                self.restart(peer, previous)
            try:
                step(self.targets[peer.name])
            except Exception as e:
                print(f"    {name} FAILED: {type(e).__name__}: {e}")
                self.record(peer, "failures", {"test": name, "error": f"{type(e).__name__}: {e}"})
            previous = name
        if not healthy(self.targets[peer.name]):
            self.restart(peer, previous)

    def restart(self, peer: Peer, after: str) -> None:
        print(f"    !! {peer.label} stopped answering GET /13 after '{after}': restarting it")
        self.record(peer, "restarts", {"after": after})
        peer.stop()
        self.targets[peer.name] = peer.start(self.env, self.origin.port)


# ------------------------------------------------------------------- setup


def check_tools(install: bool) -> None:
    missing = sorted({TOOLS[t] for t in ("wrk", "nginx", "sshd") if not which(t)})
    if missing and install:
        print(f"installing {' '.join(missing)} with apt-get")
        subprocess.run(["apt-get", "update"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", *missing], check=False, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        )
    for tool, why in (
        ("wrk", "using the built-in asyncio load generator (slower: small-response figures are capped by it)"),
        ("nginx", "origin = built-in bench/origin.py; nginx proxy peer skipped"),
        ("sshd", "OpenSSH -R peer skipped"),
    ):
        if not which(tool):
            print(f"missing {tool} (Debian package {TOOLS[tool]}): {why}; `python bench/run.py --install` installs it")


def pin_cores() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load cores): core 0 / core 1 when two are available."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        print(f"only {len(cores)} core available: no pinning")
        return None, None
    server, load = {cores[0]}, {cores[1]}
    os.sched_setaffinity(0, load)  # this process and wrk (its child) on the load core
    print(f"pinning: origin and tunnel processes on core {cores[0]}, load generator on core {cores[1]}")
    return server, load


def make_files(directory: Path, big: int) -> tuple[dict[str, Path], dict[str, str], bytes]:
    payload = os.urandom(big)
    small = payload[:MiB]
    files = {"/1m": directory / "1m", "/100m": directory / "100m"}
    files["/1m"].write_bytes(small)
    files["/100m"].write_bytes(payload)
    sha = {"/1m": hashlib.sha256(small).hexdigest(), "/100m": hashlib.sha256(payload).hexdigest()}
    return files, sha, payload


def pick_origin(choice: str) -> Origin:
    if choice == "builtin" or (choice == "auto" and NginxOrigin().missing()):
        return BuiltinOrigin()
    return NginxOrigin()


def sanity(target: Target) -> None:
    """One GET /13 through the path must answer the 13 bytes."""
    r = run_load(target, "/13", 1, 1)
    if r.errors or not r.requests:
        raise RuntimeError(f"GET /13 failed ({r.errors} errors, {r.requests} requests) {r.error_detail}")


# ----------------------------------------------------------------- profile


def profile(
    bench: Bench, paths: list[tuple[Peer, Target]], seconds: float, out: Path, conns: int = 50
) -> dict[str, Any]:
    """py-spy on the edge and the agent under wrk c=C{conns}; top functions by own time."""
    from bench.profile import record, top  # noqa: PLC0415

    spy = which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    netbore = next((p for p, _ in paths if p.name == "netbore"), None)
    if netbore is None or not Path(spy).exists():
        print("profile skipped: needs the netbore path and py-spy (pip install py-spy)")
        return {}
    target = dict((p.name, t) for p, t in paths)["netbore"]
    roles = netbore.roles()  # type: ignore[attr-defined]
    spies = {role: record(spy, pid, seconds, out / f"{role}.collapsed") for role, pid in roles.items()}
    time.sleep(0.5)
    run_load(target, "/13", conns, seconds, threads=1)
    found = {}
    for role, proc in spies.items():
        proc.wait(seconds + 30)
        found[role] = top(out / f"{role}.collapsed", 15)
        print(f"\n  profile of the {role} (py-spy, {seconds:.0f} s under wrk c={conns}), top by own samples:")
        for entry in found[role]:
            caller = f"  <- {entry['caller']}" if entry["caller"] else ""
            print(f"    {entry['self_pct']:5.1f}% self {entry['total_pct']:5.1f}% total  {entry['function']}{caller}")
    return found


# -------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for tool, arg in (("wrk", "--version"), ("nginx", "-v"), ("ssh", "-V")):
        if which(tool):
            done = subprocess.run([which(tool) or tool, arg], capture_output=True, text=True)
            versions[tool] = (
                (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""
            )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "tools": versions,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="c=1 and 50 only, one round (about a minute)")
    p.add_argument("--json", type=Path, help="write every figure (all rounds and medians) to this file")
    p.add_argument("--install", action="store_true", help="apt-get install -y wrk nginx openssh-server when missing")
    p.add_argument(
        "--origin", choices=["auto", "nginx", "builtin"], default="auto", help="default: nginx when installed"
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="PEER",
        help="paths besides direct: netbore nginx-proxy ssh-R; for the TCP bulk test netbore ssh-L ssh-R",
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds (medians are reported); default 3, quick 1")
    p.add_argument("--duration", type=float, help="seconds per wrk load (default 2)")
    p.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="after the sweep, py-spy the edge and agent under wrk for this long",
    )
    p.add_argument(
        "--profile-conns", type=int, default=50, metavar="C", help="wrk connections while profiling (default 50)"
    )
    p.add_argument(
        "--python",
        metavar="PATH",
        help="interpreter for the edge and the agent (default: this one), e.g. a PyPy venv's python",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument(
        "--tcp",
        choices=["on", "off", "only"],
        default="on",
        help="the TCP bulk test (netbore TCP tunnel vs OpenSSH -L/-R); only: skip the HTTP tests",
    )
    p.add_argument(
        "--https",
        choices=["on", "off", "only"],
        default="on",
        help="the HTTPS test (netbore and nginx terminating TLS, issue 12); only: no HTTP or TCP tests",
    )
    p.add_argument(
        "--tcp-size",
        type=int,
        default=100,
        choices=range(1, 101),
        metavar="MIB",
        help="MiB each way per TCP transfer (1-100, default 100)",
    )
    return p.parse_args(argv)


def http_sweep(
    args: argparse.Namespace,
    plan: Plan,
    env: Env,
    payload: bytes,
    sha: dict[str, str],
    load_cores: set[int] | None,
    started: float,
) -> dict[str, Any]:
    """The HTTP tests of issue 5 on every path; the figures for the JSON report."""
    origin = pick_origin(args.origin)
    origin_port = origin.start(env)
    print(f"origin: {origin.name} on 127.0.0.1:{origin_port}; work dir {env.tmp}")
    paths = start_paths(env, origin_port, args.only, PEERS, sanity)
    bench = Bench(plan, env, origin, payload, sha, load_cores, {p.name: t for p, t in paths})
    for n in range(plan.rounds):
        for peer, _ in paths:
            print(f"round {n + 1}/{plan.rounds}: {peer.label}")
            bench.round(peer)
    paths = [(p, bench.targets[p.name]) for p, _ in paths]
    for peer, _ in paths:
        u = usage_of(peer.pids())
        bench.record(peer, "after", {"rss_mb": u.rss / 1e6} if peer.tunnel else {})
        runs = [r for test, rs in bench.results[peer.name].items() for r in rs]
        bench.record(
            peer,
            "totals",
            {
                "errors": sum(r.get("errors", 0) for r in runs),
                "failures": len(bench.results[peer.name].get("failures", [])),
                "restarts": len(bench.results[peer.name].get("restarts", [])),
                "sha_ok": all(r.get("sha_ok", True) for r in runs),
            },
        )
    med = medians(bench.results)
    labels = {p.name: p.label for p, _ in paths}
    table = render(med, labels, plan.conns)
    elapsed = time.monotonic() - started
    print(
        f"\nmedians of {plan.rounds} interleaved round(s), {plan.duration:g} s per load, origin {origin.name},"
        f" load generator {'wrk' if which('wrk') else 'built-in'}; {elapsed:.0f} s in all\n"
    )
    print(table)
    profiled = profile(bench, paths, args.profile, env.tmp, args.profile_conns) if args.profile else {}
    for peer, _ in paths:  # the TCP bulk test runs on a quiet machine
        peer.stop()
    if origin.proc:
        origin.proc.stop()
    return {
        "origin": origin.name,
        "paths": labels,
        "medians": med,
        "rounds": bench.results,
        "table": table,
        "profile": profiled,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.python:
        peers_mod.TUNNEL_PYTHON = args.python
    plan = QUICK if args.quick else FULL
    plan = Plan(
        plan.conns, args.duration or plan.duration, args.rounds or plan.rounds, plan.ttfb_count, plan.transfer_timeout
    )
    started, modes = time.monotonic(), (args.tcp, args.https)
    check_tools(args.install)
    server_cores, load_cores = pin_cores()
    shm = Path("/dev/shm")
    tmp = Path(tempfile.mkdtemp(prefix="netbore-bench-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    group = ProcessGroup()
    try:
        files, sha, payload = make_files(tmp, plan.big)
        env = Env(tmp, group, server_cores, files)
        report = http_sweep(args, plan, env, payload, sha, load_cores, started) if "only" not in modes else {}
        if args.https != "off" and args.tcp != "only":
            bench_for = lambda o, t: Bench(plan, env, o, payload, sha, load_cores, t)  # noqa: E731
            report["https"] = https_bench.run(bench_for, pick_origin(args.origin), args.only, sanity)
        if args.tcp != "off" and args.https != "only":
            report["tcp_bulk"] = tcp_bulk.run(
                env, payload, args.tcp_size * MiB, plan.rounds, plan.transfer_timeout, args.only
            )
        elapsed = time.monotonic() - started
        print(f"\n{elapsed:.0f} s in all")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "plan": plan.__dict__,
                        "machine": machine(),
                        "pinning": {"server": sorted(server_cores or []), "load": sorted(load_cores or [])},
                        **report,
                        "elapsed_s": elapsed,
                        "tunnel_python": peers_mod.TUNNEL_PYTHON,
                    },
                    indent=1,
                    default=str,
                )
            )
            print(f"\nwrote {args.json}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 130
    finally:
        group.stop_all()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
