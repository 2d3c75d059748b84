"""
Load and transfers against one HTTP endpoint on 127.0.0.1: C{wrk} (or a
built-in asyncio generator with the same outputs), 100 MiB downloads and
uploads with SHA-256 checks, and time to first byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Target",
    "LoadResult",
    "TransferResult",
    "run_load",
    "download",
    "upload",
    "ttfb",
    "parse_wrk",
    "healthy",
    "connect",
]


@dataclass(frozen=True)
class Target:
    """
    Where a path is reached: a loopback port and the Host header to send;
    over TLS when C{cafile} is given (the CA the server's certificate is
    verified against, by the Host's name, which is also the SNI).
    """

    port: int
    host: str
    cafile: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.cafile else "http"

    def tls(self) -> ssl.SSLContext | None:
        """The client context of a TLS target (verifying the name), else None."""
        return ssl.create_default_context(cafile=self.cafile) if self.cafile else None

    @property
    def server_name(self) -> str:
        return self.host.rsplit(":", 1)[0] if self.host.count(":") == 1 else self.host


@dataclass
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    bytes_read: int = 0
    tool: str = "wrk"
    error_detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TransferResult:
    bytes: int
    seconds: float
    mb_s: float
    sha_ok: bool
    ttfb_ms: float = 0.0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------- wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
_SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _size(text: str) -> int:
    m = re.fullmatch(r"([\d.]+)([KMGT]?B)", text)
    return int(float(m.group(1)) * _SIZES[m.group(2)]) if m else 0


def parse_wrk(out: str) -> LoadResult:
    """The figures of one C{wrk --latency} run."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+[KMGT]?B) read", out)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{out}")
    requests = int(m.group(1))
    seconds = _ms(m.group(2) + m.group(3)) / 1e3
    bytes_read = _size(m.group(4))
    lat = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    detail = (sock.group(0) if sock and errors else "") + (f" {non2xx.group(0)}" if non2xx else "")
    if requests == 0:  # wrk counts no error when nothing ever answered
        errors, detail = max(errors, 1), (detail + " no response at all").strip()
    return LoadResult(
        requests=requests,
        seconds=seconds,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=_ms(lat["50"]) if "50" in lat else float("nan"),
        p99_ms=_ms(lat["99"]) if "99" in lat else float("nan"),
        errors=errors,
        bytes_read=bytes_read,
        error_detail=detail,
    )


def _wrk(target: Target, path: str, connections: int, duration: float, threads: int) -> LoadResult:
    cmd = [
        "wrk",
        "--latency",
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-H",
        f"Host: {target.host}",
        f"{target.scheme}://127.0.0.1:{target.port}{path}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


# ------------------------------------------------------- built-in generator


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read one Content-Length response; (status, body length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if not m:
        raise ValueError("response without Content-Length")
    length = int(m.group(1))
    await reader.readexactly(length)
    return status, length


async def _worker(target: Target, request: bytes, stop_at: float, latencies: list[float], counts: list[int]) -> None:
    try:
        tls = target.tls()
        server = target.server_name if tls else None
        reader, writer = await asyncio.open_connection("127.0.0.1", target.port, ssl=tls, server_hostname=server)
    except OSError:
        counts[1] += 1
        return
    try:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            status, length = await asyncio.wait_for(_read_response(reader), 10)
            latencies.append((time.perf_counter() - t0) * 1e3)
            counts[0] += 1
            counts[2] += length
            if not 200 <= status < 400:
                counts[1] += 1
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
        counts[1] += 1
    finally:
        writer.close()


async def _builtin_async(target: Target, path: str, connections: int, duration: float) -> LoadResult:
    request = f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode()
    latencies: list[float] = []
    counts = [0, 0, 0]  # requests, errors, body bytes
    start = time.monotonic()
    await asyncio.gather(*(_worker(target, request, start + duration, latencies, counts) for _ in range(connections)))
    seconds = time.monotonic() - start
    latencies.sort()
    return LoadResult(
        requests=counts[0],
        seconds=seconds,
        rps=counts[0] / seconds,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        errors=counts[1],
        bytes_read=counts[2],
        tool="builtin",
    )


def run_load(target: Target, path: str, connections: int, duration: float, threads: int = 1) -> LoadResult:
    """C{connections} keep-alive connections requesting C{path} for C{duration} s."""
    if shutil.which("wrk"):
        return _wrk(target, path, connections, duration, threads)
    return asyncio.run(_builtin_async(target, path, connections, duration))


# ----------------------------------------------------------- bulk transfers


class _Deadline(socket.socket):
    """A socket whose every call is bounded by one overall deadline."""

    deadline = 0.0

    def _left(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("transfer deadline passed")
        self.settimeout(left)

    def recv(self, n: int, *a: Any) -> bytes:
        self._left()
        return super().recv(n, *a)

    def recv_into(self, buf: Any, *a: Any) -> int:
        self._left()
        return super().recv_into(buf, *a)

    def sendall(self, data: Any, *a: Any) -> None:
        self._left()
        super().sendall(data, *a)


def connect(target: Target, timeout: float) -> socket.socket:
    """A connection whose whole use must end within C{timeout} seconds."""
    sock = _Deadline(socket.AF_INET, socket.SOCK_STREAM)
    sock.deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", target.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = target.tls()
    if tls is None:
        return sock
    # TLS: each call is bounded by the time left at the handshake (not re-armed per call)
    return tls.wrap_socket(sock, server_hostname=target.server_name)


def healthy(target: Target, timeout: float = 5) -> bool:
    """Whether one GET /13 answers 200 within C{timeout} seconds."""
    try:
        sock = connect(target, timeout)
        try:
            sock.sendall(f"GET /13 HTTP/1.1\r\nHost: {target.host}\r\nConnection: close\r\n\r\n".encode())
            status, headers, body = _read_head(sock)
            while len(body) < int(headers.get("content-length", "0")):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return status == 200 and body == b"Hello, World!"
        finally:
            sock.close()
    except (OSError, ValueError):
        return False


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read a response head; (status, headers lower-cased, bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before the response head ({len(buf)} bytes)")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, rest


def _recv_exact(sock: socket.socket, into: memoryview) -> None:
    got = 0
    while got < len(into):
        n = sock.recv_into(into[got:])
        if not n:
            raise ConnectionError(f"connection closed after {got} of {len(into)} body bytes")
        got += n


def _read_chunked(sock: socket.socket, rest: bytes) -> bytes:
    """A whole chunked body (for peers that re-chunk); slower, rarely used."""
    buf, out = bytearray(rest), bytearray()
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(1 << 20)
        line, _, tail = bytes(buf).partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        buf = bytearray(tail)
        while len(buf) < size + 2:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed inside a chunk")
            buf += chunk
        if size == 0:
            return bytes(out)
        out += buf[:size]
        del buf[: size + 2]


def download(target: Target, path: str, expected_sha: str, expected_len: int, timeout: float) -> TransferResult:
    """GET C{path} into memory; MB/s (10^6 bytes) from request sent to last byte."""
    sock = connect(target, timeout)
    try:
        body = bytearray(expected_len)
        t0 = time.perf_counter()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\n\r\n".encode())
        status, headers, rest = _read_head(sock)
        t_first = time.perf_counter()
        if status != 200:
            raise ConnectionError(f"status {status}")
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length != expected_len:
                raise ConnectionError(f"Content-Length {length}, expected {expected_len}")
            view = memoryview(body)
            view[: len(rest)] = rest
            _recv_exact(sock, view[len(rest) :])
            data: bytes | bytearray = body
        else:
            data = _read_chunked(sock, rest)
        seconds = time.perf_counter() - t0
    finally:
        sock.close()
    ok = len(data) == expected_len and hashlib.sha256(data).hexdigest() == expected_sha
    return TransferResult(len(data), seconds, len(data) / seconds / 1e6, ok, (t_first - t0) * 1e3)


def upload(target: Target, path: str, payload: bytes, check: Any, timeout: float) -> TransferResult:
    """
    POST C{payload} with C{Content-Length}; MB/s from first byte sent to the
    response. C{check(status, body)} returns whether the origin saw the right
    bytes (it compares a SHA-256).
    """
    sock = connect(target, timeout)
    try:
        t0 = time.perf_counter()
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {target.host}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
        )
        sock.sendall(payload)
        status, headers, rest = _read_head(sock)
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        seconds = time.perf_counter() - t0
    finally:
        sock.close()
    ok = bool(check(status, rest[:length]))
    return TransferResult(len(payload), seconds, len(payload) / seconds / 1e6, ok)


def ttfb(target: Target, path: str, count: int, timeout: float) -> float:
    """Median ms from connect to the first response byte, fresh connection each time."""
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        sock = connect(target, timeout)
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {target.host}\r\nConnection: close\r\n\r\n".encode())
            if not sock.recv(1):
                raise ConnectionError("closed before the first byte")
            samples.append((time.perf_counter() - t0) * 1e3)
            while sock.recv(65536):  # let the server close first
                pass
        finally:
            sock.close()
    samples.sort()
    return samples[len(samples) // 2]
