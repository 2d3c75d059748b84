"""
Child processes for the benchmark: started on loopback, optionally pinned to
a set of cores, measured through C{/proc}, and stopped by their own pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Proc",
    "ProcessGroup",
    "Sampler",
    "Usage",
    "free_port",
    "wait_port",
    "descendants",
    "usage_of",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the usual bind-to-0 trick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until something accepts on 127.0.0.1:C{port}."""
    deadline = time.monotonic() + timeout
    while not listening(port):
        if not alive():
            raise RuntimeError(f"process exited before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.05)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may contain spaces
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> set[int]:
    """C{pid} and all its living descendants (by C{/proc/*/stat} ppid)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo.extend(parents.get(p, []))
    return found


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system) and resident bytes of a set of processes."""

    cpu: dict[int, float]
    rss: int

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu.values())

    def cpu_since(self, before: Usage) -> float:
        """CPU spent since C{before}; processes born in between count whole."""
        return sum(t - before.cpu.get(pid, 0.0) for pid, t in self.cpu.items())


def usage_of(pids: Iterable[int]) -> Usage:
    cpu: dict[int, float] = {}
    rss = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # fields[11], [12] = utime, stime (stat fields 14, 15); [21] = rss pages (field 24)
        cpu[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss += int(fields[21]) * PAGE
    return Usage(cpu, rss)


class Sampler:
    """CPU and peak RSS of a set of processes around one load."""

    def __init__(self, pids: Callable[[], set[int]], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.before: Usage | None = None
        self.cpu = 0.0

    def __enter__(self) -> Sampler:
        self.before = usage_of(self.pids())
        self.peak = self.before.rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, usage_of(self.pids()).rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None and self.before is not None
        self._thread.join()
        after = usage_of(self.pids() | set(self.before.cpu))
        self.peak = max(self.peak, after.rss)
        self.cpu = after.cpu_since(self.before)


def _pinner(cores: set[int] | None) -> Callable[[], None] | None:
    if not cores:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cores)

    return pin


class Proc:
    """One child process, its output in a log file, stopped by its pid."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cores: set[int] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log
        self._log = open(log, "ab")
        self.popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})),
            cwd=str(cwd or log.parent),
            preexec_fn=_pinner(cores),
            start_new_session=True,  # Ctrl-C in the terminal reaches only us; we stop it
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after C{timeout}; only this pid."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()


class ProcessGroup:
    """Every process a run started, stopped in reverse order at the end."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, *args: object, **kw: object) -> Proc:
        proc = Proc(*args, **kw)  # type: ignore[arg-type]
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as e:  # keep stopping the others
                print(f"  could not stop {proc.name} (pid {proc.pid}): {e}")
        self.procs.clear()
