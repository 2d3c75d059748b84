"""
C{python -m netbore.demo}: start an edge, an agent and the sample origin on
loopback, print the public URL and a curl line, and keep them running until
interrupted (or, with C{--check}, fetch the URL once and stop).  With
C{--tls}, the edge serves HTTPS with a throwaway CA's certificate and the
agent verifies it (C{--ca-cert}).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import NoReturn

from . import tls

__all__ = ["main"]


def _twistd() -> list[str]:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing is listening on 127.0.0.1:{port}")


def _terminated(signum: int, frame: object) -> NoReturn:
    # SIGTERM stops the demo as Ctrl-C does: its processes with it.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netbore.demo", description=__doc__)
    parser.add_argument(
        "--port", type=int, default=None, help="edge port (default 8080, or 8443 with --tls; 0 = any free one)"
    )
    parser.add_argument("--name", default="demo", help="tunnel name to ask for")
    parser.add_argument("--dir", default=None, help="where to keep keys and the agent state (default: a temp dir)")
    parser.add_argument("--check", action="store_true", help="fetch the public URL once, print it and stop")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS, with a throwaway CA and certificate")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)

    workdir = args.dir or tempfile.mkdtemp(prefix="netbore-demo-")
    os.makedirs(workdir, exist_ok=True)
    if args.port is None:
        args.port = 8443 if args.tls else 8080
    edge_port = args.port or _free_port()
    origin_port = _free_port()
    state_file = os.path.join(workdir, "agent-state.json")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen[bytes]] = []

    def start(cmd: list[str], log: str) -> None:
        out = open(os.path.join(workdir, log), "wb")
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env))

    domain, listen, scheme, agent_tls, ca = "localhost", f"tcp:{edge_port}:interface=127.0.0.1", "http", [], ""
    if args.tls:
        ca, pem = tls.make_pki(os.path.join(workdir, "pki"))
        domain, listen, scheme, agent_tls = tls.DOMAIN, tls.listen(edge_port, pem), "https", ["--ca-cert", ca]

    try:
        start([sys.executable, "-m", "netbore.demo.origin", str(origin_port)], "origin.log")
        start(
            _twistd()
            + [
                "-n",
                "--pidfile=",
                "--logfile=-",
                "netbore-edge",
                "--listen",
                listen,
                "--domain",
                domain,
                "--data-dir",
                os.path.join(workdir, "edge-data"),
                "--allow-anonymous",
            ],
            "edge.log",
        )
        deadline = time.monotonic() + 30
        _wait_port(origin_port, deadline)
        _wait_port(edge_port, deadline)
        start(
            _twistd()
            + [
                "-n",
                "--pidfile=",
                "--logfile=-",
                "netbore-agent",
                "--control-url",
                f"{scheme}://127.0.0.1:{edge_port}",
                *agent_tls,
                "--origin",
                f"http://127.0.0.1:{origin_port}",
                "--name",
                args.name,
                "--state-file",
                state_file,
            ],
            "agent.log",
        )
        url = None
        while time.monotonic() < deadline and url is None:
            for p in procs:
                if p.poll() is not None:
                    raise SystemExit(f"a demo process exited early; see the logs in {workdir}")
            try:
                with open(state_file) as f:
                    state = json.load(f)
                if state.get("state") == "ready":
                    url = state["public_url"]
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        if url is None:
            raise SystemExit(f"the tunnel did not come up in 30 s; see the logs in {workdir}")
        host = url.split("://", 1)[1].split("/", 1)[0]
        print(f"netbore demo: origin http://127.0.0.1:{origin_port} is public at {url}")
        cacert = f"--cacert {shlex.quote(ca)} " if args.tls else ""
        print(f"try:  curl {cacert}{url}/echo")
        print(f"  or: curl {cacert}--connect-to {host}:127.0.0.1:{edge_port} {url}/echo")
        print(f"logs and state in {workdir}")
        sys.stdout.flush()
        if args.check and args.tls:
            status, body = tls.fetch(host, edge_port, ca)
            print(f"GET {url}/ -> {status} (certificate verified): {body.decode(errors='replace').strip()}")
            return 0 if status == 200 else 1
        if args.check:
            request = urllib.request.Request(f"http://127.0.0.1:{edge_port}/", headers={"Host": host})
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
            print(f"GET {url}/ -> {response.status}: {body.decode(errors='replace').strip()}")
            return 0 if response.status == 200 else 1
        print("press Ctrl-C to stop")
        sys.stdout.flush()
        while True:
            signal.pause()
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
