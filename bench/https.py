"""
The HTTPS row of issue 12: viewers reach the origin through the netbore
edge on an C{ssl:} listener, and through an nginx TLS-terminating proxy with
the same certificate, beside the origin reached directly over plain HTTP
(the reference), in the same run.

The certificates are made in-process with L{netbore.certs.build}: a
throwaway CA and a server certificate for L{DOMAIN}, C{*.DOMAIN} and
127.0.0.1 (EC P-256). Every TLS client verifies the certificate against
that CA by the tunnel's name, which is also the SNI; C{wrk} does not verify
(it has no option to) but speaks the same TLS.

Measured on each path: 13 B GETs at c=50 (req/s, p50, p99, CPU per
request of the proxy's processes) and a 100 MiB download (MB/s, SHA-256
checked).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Target, download
from bench.origins import Origin
from bench.peers import Direct, Netbore, NginxProxy, Peer, start_paths
from bench.procs import Sampler, usage_of
from bench.report import Ref, Row, _k, _mb, _ms, _n, medians, render_table
from netbore.certs.build import make_ca, make_server, new_key
from netbore.certs.files import cert_pem, key_pem

__all__ = ["DOMAIN", "PATHS", "Certs", "NetboreTls", "NginxTls", "https_rows", "make_certs", "render_https", "run"]

MiB = 1024 * 1024

#: the edge's tunnel domain over TLS (a wildcard under a single label such
#: as C{localhost} is refused by TLS clients' name checks)
DOMAIN = "netbore.test"
#: the tunnel's name, so its host is C{bench.DOMAIN}
TUNNEL = "bench"


@dataclass(frozen=True)
class Certs:
    """The PEM files of one run: the CA, and the server's key and certificate."""

    ca: Path
    key: Path
    cert: Path


def make_certs(directory: Path, now: datetime.datetime | None = None) -> Certs:
    """A throwaway CA and a server certificate for L{DOMAIN}, its wildcard and 127.0.0.1, written 0600."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = new_key(), new_key()
    ca = make_ca(ca_key, now, days=2)
    cert = make_server(ca, ca_key, key, now, DOMAIN, ["127.0.0.1"], days=2)
    directory.mkdir(parents=True, exist_ok=True)
    certs = Certs(directory / "ca.pem", directory / "server.key", directory / "server.pem")
    for path, data in ((certs.ca, cert_pem(ca)), (certs.key, key_pem(key)), (certs.cert, cert_pem(cert))):
        path.touch(mode=0o600)
        path.write_bytes(data)
    return certs


def tls_host(port: int) -> str:
    """The Host (and, without the port, the SNI) a viewer sends for the tunnel on C{port}."""
    return f"{TUNNEL}.{DOMAIN}:{port}"


class NetboreTls(Netbore):
    """The netbore edge on an C{ssl:} listener; the agent reaches it over https with C{--ca-cert}."""

    name = "netbore-tls"
    label = "netbore TLS"
    domain = DOMAIN
    certs: Certs  # set by L{run} before the path starts

    def listen(self, port: int) -> str:
        return f"ssl:{port}:interface=127.0.0.1:privateKey={self.certs.key}:certKey={self.certs.cert}"

    def control_url(self, port: int) -> str:
        return f"https://127.0.0.1:{port}"

    def agent_args(self, origin_port: int) -> list[str]:
        return [*super().agent_args(origin_port), "--ca-cert", str(self.certs.ca)]

    def target(self, public_url: str, edge_port: int) -> Target:
        return Target(edge_port, tls_host(edge_port), str(self.certs.ca))


class NginxTls(NginxProxy):
    """The nginx proxy terminating TLS with the same certificate (TLS 1.2 and 1.3, as the edge)."""

    name = "nginx-tls"
    label = "nginx TLS"
    certs: Certs

    def listen(self, port: int) -> str:
        return (
            f"listen 127.0.0.1:{port} ssl backlog=4096;\n"
            f"    ssl_certificate {self.certs.cert};\n"
            f"    ssl_certificate_key {self.certs.key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3;\n"
            "    ssl_session_cache shared:TLS:1m;"
        )

    def target(self, port: int) -> Target:
        return Target(port, tls_host(port), str(self.certs.ca))


#: C{--only}'s plain path names -> their TLS twins here
TLS_OF = {"netbore": "netbore-tls", "nginx-proxy": "nginx-tls"}

#: the HTTPS run's paths, in table order: direct (plain HTTP) first
PATHS: list[type[Peer]] = [Direct, NetboreTls, NginxTls]


def https_rows() -> list[Row]:
    return [
        Row("13 B c=50: req/s", "small_c50", "rps", _k),
        Row("13 B c=50: p50 ms", "small_c50", "p50_ms", _ms, "down"),
        Row("13 B c=50: p99 ms", "small_c50", "p99_ms", _ms, "down"),
        Row("CPU per request, c=50: µs", "small_c50", "cpu_us_per_req", _n, "down"),
        Row("100 MiB download: MB/s", "download_100m", "mb_s", _mb),
        Row("errors (all loads)", "totals", "errors", _n, ""),
        Row("failed tests", "totals", "failures", _n, ""),
        Row("restarts (path stopped answering)", "totals", "restarts", _n, ""),
        Row("SHA-256 checks passed", "totals", "sha_ok", lambda v: "yes" if v else "NO", ""),
    ]


def render_https(med: dict[str, dict[str, dict[str, Any]]], labels: dict[str, str]) -> str:
    """One column per path; ×direct after each TLS path (but CPU), netbore's ×nginx TLS."""
    refs = [
        Ref("×direct", "direct", lambda row: bool(row.sense) and row.key != "cpu_us_per_req"),
        Ref("×nginx TLS", "nginx-tls", only=("netbore-tls",)),
    ]
    return render_table(med, labels, https_rows(), refs)


def totals(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    runs = [r for rs in results.values() for r in rs]
    return {
        "errors": sum(r.get("errors", 0) for r in runs),
        "failures": len(results.get("failures", [])),
        "restarts": len(results.get("restarts", [])),
        "sha_ok": all(r.get("sha_ok", True) for r in runs),
    }


def run(
    make_bench: Callable[[Origin, dict[str, Target]], Any],
    origin: Origin,
    only: list[str] | None,
    check: Callable[[Target], None],
) -> dict[str, Any]:
    """
    The HTTPS tests on direct, netbore TLS and nginx TLS (those in C{only},
    and direct) to a fresh C{origin}, checked once by C{check}; C{make_bench}
    gives the L{bench.run.Bench} (its plan, run environment and files) that
    measures and records, with its steps replaced by L{steps}.
    """
    bench = make_bench(origin, {})
    bench.steps = lambda peer: steps(bench, peer)  # the same Bench, with the HTTPS tests only
    env, rounds = bench.env, bench.plan.rounds
    certs = make_certs(env.tmp / "tls")
    NetboreTls.certs = NginxTls.certs = certs
    origin_port = origin.start(env)
    print(f"\nHTTPS (issue 12): origin {origin.name} on 127.0.0.1:{origin_port}; certificates in {certs.ca.parent}")
    only = [TLS_OF.get(name, name) for name in only] if only else None
    paths = start_paths(env, origin_port, only, PATHS, check)
    bench.targets.update({p.name: t for p, t in paths})
    for n in range(rounds):
        for peer, _ in paths:
            print(f"HTTPS round {n + 1}/{rounds}: {peer.label}")
            bench.round(peer)
    for peer, _ in paths:
        bench.record(peer, "totals", totals(bench.results[peer.name]))
        bench.record(peer, "after", {"rss_mb": usage_of(peer.pids()).rss / 1e6} if peer.tunnel else {})
        peer.stop()
    if origin.proc:
        origin.proc.stop()
    med = medians(bench.results)
    labels = {p.name: p.label for p, _ in paths}
    table = render_https(med, labels)
    print(f"\nHTTPS: medians of {rounds} round(s); direct is plain HTTP to the origin\n")
    print(table)
    return {"paths": labels, "medians": med, "rounds": bench.results, "table": table}


def steps(bench: Any, peer: Peer) -> list[tuple[str, Callable[[Target], None]]]:
    """What one HTTPS round runs on C{peer}: 13 B GETs at c=50 and one 100 MiB download."""

    def get(t: Target) -> None:
        with Sampler(peer.pids) as s:
            r = download(t, "/100m", bench.sha["/100m"], bench.plan.big, bench.plan.transfer_timeout)
        values = r.as_dict() | ({"cpu_s": s.cpu, "rss_peak_mb": s.peak / 1e6} if peer.tunnel else {})
        bench.record(peer, "download_100m", values)
        print(f"    download_100m {r.mb_s:>8,.0f} MB/s  sha256 {'ok' if r.sha_ok else 'MISMATCH'}")

    return [("13 B c=50", lambda t: bench.small(peer, t, 50)), ("100 MiB download", get)]
