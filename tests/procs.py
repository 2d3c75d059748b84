"""
Real processes for the integration tests: twistd edges and agents and the
sample origin, on loopback, each stopped by its own process id.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Proc", "free_port", "start_origin", "start_edge", "start_agent", "request", "wait_for"]

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", "--logfile=-"]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Proc:
    """
    One child process with its log file.
    """

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log
        self._log = open(log, "ab")
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(log.parent)
        )
        self.pid = self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 15) -> int:
        """
        SIGTERM, then SIGKILL after C{timeout}; returns the exit status.
        """
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)


class Origin(Proc):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        super().__init__(
            "origin", [sys.executable, "-m", "netbore.demo.origin", str(self.port)], tmp / f"origin-{self.port}.log"
        )
        wait_for(lambda: _listening(self.port) or not self.alive(), 15, "the origin to listen")
        assert self.alive(), self.log()
        self.url = f"http://127.0.0.1:{self.port}"


class Edge(Proc):
    def __init__(
        self,
        tmp: Path,
        *args: str,
        port: int | None = None,
        data_dir: Path | None = None,
        domain: str = "localhost",
        listen: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.domain = domain
        self.data_dir = data_dir or (tmp / "edge-data")
        cmd = TWISTD + [
            "netbore-edge",
            "--listen",
            listen or f"tcp:{self.port}:interface=127.0.0.1",
            "--domain",
            domain,
            "--data-dir",
            str(self.data_dir),
            *args,
        ]
        super().__init__("edge", cmd, tmp / f"edge-{self.port}.log")
        wait_for(lambda: _listening(self.port) or not self.alive(), 20, "the edge to listen")
        assert self.alive(), self.log()
        self.url = f"http://127.0.0.1:{self.port}"


class Agent(Proc):
    def __init__(
        self,
        tmp: Path,
        edge: Edge,
        origin_url: str,
        *args: str,
        state_file: Path | None = None,
        wait: bool = True,
        control_url: str | None = None,
        tcp: str | None = None,
    ) -> None:
        self.state_file = state_file or (tmp / f"agent-{free_port()}.json")
        cmd = TWISTD + [
            "netbore-agent",
            "--control-url",
            control_url or edge.url,
            *(["--origin", origin_url] if tcp is None else ["--tcp", tcp]),
            "--state-file",
            str(self.state_file),
            *args,
        ]
        super().__init__("agent", cmd, tmp / f"{self.state_file.stem}.log")
        if wait:
            self.wait_ready()

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 20) -> dict[str, Any]:
        def ready() -> Any:
            if not self.alive():
                raise AssertionError(f"agent exited:\n{self.log()}")
            state = self.state()
            return state if state.get("state") == "ready" else None

        return dict(wait_for(ready, timeout, "the agent's tunnel to be ready"))

    @property
    def host(self) -> str:
        url = self.state()["public_url"]
        return str(url.split("://", 1)[1].split("/", 1)[0])


def start_origin(tmp: Path) -> Origin:
    return Origin(tmp)


def start_edge(tmp: Path, *args: str, **kw: Any) -> Edge:
    return Edge(tmp, *args, **kw)


def start_agent(tmp: Path, edge: Edge, origin_url: str, *args: str, **kw: Any) -> Agent:
    return Agent(tmp, edge, origin_url, *args, **kw)


def request(
    port: int,
    method: str,
    target: str,
    *,
    host: str,
    body: bytes | Iterator[bytes] | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    timeout: float = 30,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """
    One real HTTP/1.1 request with http.client; (status, headers, body).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for name, value in items:
            conn.putheader(name, value)
        if isinstance(body, bytes):
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        elif body is not None:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for chunk in body:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        else:
            conn.endheaders()
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheaders(), data
    finally:
        conn.close()


def call(edge: Edge, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """
    One control API call to C{edge} (JSON in and out, C{token} as Bearer):
    (status, decoded body).
    """
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    status, _, content = request(edge.port, method, path, host=f"127.0.0.1:{edge.port}", body=data, headers=headers)
    return status, json.loads(content) if content else {}
