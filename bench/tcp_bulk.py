"""
The TCP bulk test of issue 11: a 100 MiB upload (client to server) and a
100 MiB download (server to client) through a netbore TCP tunnel, OpenSSH
C{-L} and OpenSSH C{-R} forwarding, and straight to the server (the
reference), in the same run.

The server is its own process (C{python -m bench.tcp_bulk PORT FILE}), one
command per connection:

- C{PING\\n}: answers C{PONG\\n} (the probe run before every transfer);
- C{DOWN <n>\\n}: sends the first C{n} bytes of C{FILE} (C{sendfile}), then
  shuts down its side;
- C{UP <n>\\n} then C{n} bytes: answers C{OK\\n} as soon as it holds the
  C{n}-th byte, then the SHA-256 of what it got (hex) and a newline.

The client times from before its first byte is sent to the last byte
received (download) or to the C{OK} (upload); it checks the length (not one
byte more or less) and the SHA-256 after the clock stops, so a short or
altered transfer is a failure, never a fast figure.
"""

from __future__ import annotations

import hashlib
import math
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import Target, TransferResult, connect
from bench.origins import REPO, Env
from bench.peers import Direct, Netbore, Peer, SshRemote, start_paths
from bench.procs import Proc, Sampler, free_port, wait_port
from bench.report import TCP_TESTS, Results, medians, render_tcp

__all__ = ["PATHS", "NetboreTcp", "SshLocal", "TcpBulk", "download", "probe", "serve", "start_server", "upload"]

MiB = 1024 * 1024
LINE_MAX = 64
CHUNK = 1 << 20


# ------------------------------------------------------------------ server


def _line(conn: socket.socket) -> tuple[bytes, bytes]:
    """The command line, and the bytes that came after it."""
    buf = b""
    while b"\n" not in buf:
        if len(buf) > LINE_MAX:
            raise ValueError("command line too long")
        chunk = conn.recv(LINE_MAX)
        if not chunk:
            raise ConnectionError("closed before a command")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest


def _finish(conn: socket.socket) -> None:
    """Shut down our side and wait for the client's end, so nothing is cut."""
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(CHUNK):
        pass


def _down(conn: socket.socket, source: Path, n: int) -> None:
    with source.open("rb") as f:
        if n > source.stat().st_size:
            raise ValueError(f"DOWN {n}: the file has {source.stat().st_size} bytes")
        conn.sendfile(f, 0, n)


class _Buffers:
    """
    One buffer as large as the file, its pages touched once at start-up, so
    that page faults of a fresh 100 MiB buffer do not count in a transfer.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.spare: bytearray | None = bytearray(b"\x00") * size  # the repeat writes every page
        self.lock = threading.Lock()

    def take(self, n: int) -> bytearray:
        if n > self.size:
            raise ValueError(f"UP {n}: at most {self.size} bytes")
        with self.lock:
            spare, self.spare = self.spare, None
        return spare if spare is not None else bytearray(n)  # a second upload at once: a fresh one

    def give(self, buf: bytearray) -> None:
        if len(buf) == self.size:
            self.spare = buf


def _up(conn: socket.socket, n: int, rest: bytes, buffers: _Buffers) -> None:
    buf = buffers.take(n)
    try:
        view = memoryview(buf)[:n]
        got = min(len(rest), n)
        view[:got] = rest[:got]
        while got < n:
            k = conn.recv_into(view[got:])
            if not k:
                raise ConnectionError(f"UP {n}: closed after {got} bytes")
            got += k
        conn.sendall(b"OK\n")
        conn.sendall(hashlib.sha256(view).hexdigest().encode() + b"\n")
    finally:
        buffers.give(buf)


def _handle(conn: socket.socket, source: Path, buffers: _Buffers) -> None:
    with conn:
        conn.settimeout(300)
        try:
            line, rest = _line(conn)
            verb, _, arg = line.partition(b" ")
            if verb == b"PING":
                conn.sendall(b"PONG\n")
            elif verb == b"DOWN":
                _down(conn, source, int(arg))
            elif verb == b"UP":
                _up(conn, int(arg), rest, buffers)
            else:
                conn.sendall(b"ERR unknown command\n")
            _finish(conn)
        except (OSError, ValueError) as e:  # a probe of the port, a client gone: next connection
            print(f"tcp-server: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def serve(listener: socket.socket, source: Path) -> None:
    """Serve on C{listener}, a thread per connection, until it is shut down."""
    buffers = _Buffers(source.stat().st_size)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_handle, args=(conn, source, buffers), daemon=True).start()


def start_server(env: Env, source: Path) -> tuple[Proc, int]:
    """The server as a process of the run (pinned with the other servers)."""
    port = free_port()
    proc = env.start(
        "tcp-server", [sys.executable, "-m", "bench.tcp_bulk", str(port), str(source)], env={"PYTHONPATH": str(REPO)}
    )
    wait_port(port, 10, proc.alive)
    return proc, port


# ------------------------------------------------------------------ client


def _until_eof(sock: socket.socket, limit: int) -> bytes:
    buf = b""
    while chunk := sock.recv(limit + 1 - len(buf)):
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError(f"more than {limit} bytes where at most {limit} were due")
    return buf


def probe(target: Target, timeout: float = 5) -> None:
    """C{PING} through the path must answer C{PONG} within C{timeout} seconds."""
    sock = connect(target, timeout)
    try:
        sock.sendall(b"PING\n")
        answer = _until_eof(sock, 16)
    finally:
        sock.close()
    if answer != b"PONG\n":
        raise ConnectionError(f"PING answered {answer!r}")


def download(target: Target, size: int, sha: str, timeout: float) -> TransferResult:
    """C{size} bytes from the server; MB/s (10^6 bytes) from the request to the last byte."""
    sock = connect(target, timeout)
    try:
        data = bytearray(b"\x00") * size  # every page written now, not faulted in during the transfer
        view = memoryview(data)
        got = 0
        t0 = time.perf_counter()
        sock.sendall(b"DOWN %d\n" % size)
        while got < size:
            k = sock.recv_into(view[got:])
            if not k:
                raise ConnectionError(f"connection closed after {got} of {size} bytes")
            got += k
        seconds = time.perf_counter() - t0
        _until_eof(sock, 0)
    finally:
        sock.close()
    ok = hashlib.sha256(data).hexdigest() == sha
    return TransferResult(size, seconds, size / seconds / 1e6, ok)


def upload(target: Target, payload: bytes, size: int, sha: str, timeout: float) -> TransferResult:
    """The first C{size} bytes of C{payload} to the server; MB/s from the first byte to its C{OK}."""
    sock = connect(target, timeout)
    try:
        t0 = time.perf_counter()
        sock.sendall(b"UP %d\n" % size)
        sock.sendall(memoryview(payload)[:size])
        answer = b""
        while b"\n" not in answer:
            chunk = sock.recv(128)
            if not chunk:
                raise ConnectionError(f"connection closed before the server's OK ({answer!r})")
            answer += chunk
        seconds = time.perf_counter() - t0
        answer += _until_eof(sock, 128)
    finally:
        sock.close()
    ok = answer == b"OK\n" + sha.encode() + b"\n"
    return TransferResult(size, seconds, size / seconds / 1e6, ok)


# ------------------------------------------------------------------- paths


class NetboreTcp(Netbore):
    """A netbore TCP tunnel: the edge with a port range, the agent with C{--tcp}."""

    ports = 4

    def edge_args(self) -> list[str]:
        first = free_range(self.ports)
        return ["--tcp-ports", f"{first}-{first + self.ports - 1}", "--tcp-interface", "127.0.0.1"]

    def agent_args(self, origin_port: int) -> list[str]:
        return ["--tcp", f"127.0.0.1:{origin_port}"]

    def target(self, public_url: str, edge_port: int) -> Target:
        scheme, _, rest = public_url.partition("://")
        if scheme != "tcp":
            raise RuntimeError(f"a TCP tunnel's public_url is {public_url!r}")
        port = int(rest.rsplit(":", 1)[1])
        return Target(port, f"127.0.0.1:{port}")


class SshLocal(SshRemote):
    """OpenSSH local forwarding (C{ssh -L}): the ssh client listens, sshd dials."""

    name = "ssh-L"
    label = "OpenSSH -L"
    forward = "-L"


def free_range(n: int, tries: int = 50) -> int:
    """The first of C{n} consecutive ports free on 127.0.0.1 now."""
    for _ in range(tries):
        first = free_port()
        if first + n > 65536:
            continue
        try:
            for port in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1 in {tries} tries")


#: the TCP bulk test's paths, in table order; direct (straight to the server) first
PATHS: list[type[Peer]] = [Direct, NetboreTcp, SshLocal, SshRemote]


# ------------------------------------------------------------------- bench


@dataclass
class TcpBulk:
    """Upload and download through every path, paths interleaved in each round."""

    env: Env
    payload: bytes
    size: int
    timeout: float
    server_port: int = 0
    targets: dict[str, Target] = field(default_factory=dict)
    results: Results = field(default_factory=dict)
    sha: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.sha = hashlib.sha256(memoryview(self.payload)[: self.size]).hexdigest()

    def record(self, peer: Peer, test: str, values: dict[str, Any]) -> None:
        self.results.setdefault(peer.name, {}).setdefault(test, []).append(values)

    def ready(self, peer: Peer, before: str) -> Target:
        """The path's target, after restarting it if it does not answer C{PING}."""
        try:
            probe(self.targets[peer.name])
        except (OSError, ValueError) as e:
            print(f"    !! {peer.label} did not answer PING before {before} ({e}): restarting it")
            self.record(peer, "restarts", {"before": before})
            peer.stop()
            self.targets[peer.name] = peer.start(self.env, self.server_port)
        return self.targets[peer.name]

    def transfer(self, peer: Peer, test: str) -> None:
        try:
            target = self.ready(peer, test)
            with Sampler(peer.pids) as s:
                if test == "tcp_upload":
                    r = upload(target, self.payload, self.size, self.sha, self.timeout)
                else:
                    r = download(target, self.size, self.sha, self.timeout)
            values = r.as_dict() | ({"cpu_s": s.cpu, "rss_peak_mb": s.peak / 1e6} if peer.tunnel else {})
            print(f"    {TCP_TESTS[test]:<24} {r.mb_s:>8,.0f} MB/s  sha256 {'ok' if r.sha_ok else 'MISMATCH'}")
        except Exception as e:  # a failed transfer is a result, not the end of the run
            values = {"mb_s": float("nan"), "sha_ok": False, "error": f"{type(e).__name__}: {e}"}
            print(f"    {TCP_TESTS[test]:<24} FAILED: {values['error']}")
        self.record(peer, test, values)

    def run(self, paths: list[tuple[Peer, Target]], rounds: int) -> dict[str, Any]:
        self.targets = {p.name: t for p, t in paths}
        for n in range(rounds):
            for peer, _ in paths:
                print(f"TCP bulk round {n + 1}/{rounds}: {peer.label}")
                for test in TCP_TESTS:
                    self.transfer(peer, test)
        for peer, _ in paths:
            runs = [r for test in TCP_TESTS for r in self.results.get(peer.name, {}).get(test, [])]
            totals = {
                "failures": sum(1 for r in runs if r.get("error")),
                "restarts": len(self.results.get(peer.name, {}).get("restarts", [])),
                "sha_ok": all(r.get("sha_ok", False) for r in runs),
            }
            self.record(peer, "totals", totals)
        med = medians(self.results)
        labels = {p.name: p.label for p, _ in paths}
        size = f"{self.size / MiB:g} MiB"
        return {
            "size": self.size,
            "rounds": self.results,
            "medians": med,
            "table": render_tcp(med, labels, size),
            "verdict": verdict(med),
        }


def verdict(med: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Issue 11: the tunnel's MB/s is at least OpenSSH's (the faster of -L and -R), both ways."""
    lines = []
    ssh = [p for p in ("ssh-L", "ssh-R") if p in med]
    for test, what in TCP_TESTS.items():
        ours = med.get("netbore", {}).get(test, {}).get("mb_s", math.nan)
        theirs = [v for p in ssh if (v := med[p].get(test, {}).get("mb_s", math.nan)) == v]  # NaN: failed
        if math.isnan(ours) or not theirs:
            why = "netbore has no figure" if math.isnan(ours) else "no OpenSSH path has a figure"
            lines.append(f"{what}: not measured ({why})")
            continue
        best = max(theirs)
        met = "met" if ours >= best else "NOT met"
        lines.append(f"{what}: netbore {ours:,.0f} MB/s = {ours / best:.2f}× OpenSSH's best ({best:,.0f}): {met}")
    return lines


def run(env: Env, payload: bytes, size: int, rounds: int, timeout: float, only: list[str] | None) -> dict[str, Any]:
    """Start the server and the paths, run the rounds, print and return the figures."""
    server, port = start_server(env, env.files["/100m"])
    print(f"\nTCP bulk server on 127.0.0.1:{port}; {size / MiB:g} MiB each way per transfer")
    paths = start_paths(env, port, only, PATHS, probe, scheme="tcp")
    bench = TcpBulk(env, payload, size, timeout, port)
    out = bench.run(paths, rounds)
    for peer, _ in paths:
        peer.stop()
    server.stop()
    print(f"\nTCP bulk: medians of {rounds} interleaved round(s), {size / MiB:g} MiB each way\n")
    print(out["table"])
    print("\nrequirement (issue 11): the tunnel's MB/s is at least OpenSSH's, both ways")
    for line in out["verdict"]:
        print(f"  {line}")
    return out


if __name__ == "__main__":
    serve(socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=128), Path(sys.argv[2]))
