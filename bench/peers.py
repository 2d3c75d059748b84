"""
The paths from the load generator to the origin: direct, netbore, and the
peers of issue 5.  Each is a small class; to add a peer, subclass L{Peer}
and list it in L{PEERS}.  The origins and the run environment are in
L{bench.origins}.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.load import Target
from bench.origins import REPO, TOOLS, Env, start_nginx, which
from bench.procs import Proc, descendants, free_port, wait_port

__all__ = ["PEERS", "TUNNEL_PYTHON", "Direct", "Netbore", "NginxProxy", "Peer", "SshRemote", "start_paths"]


# -------------------------------------------------------------------- paths


class Peer:
    """One way from the load generator to the origin."""

    name = "peer"
    #: what the row is called in the table
    label = "peer"
    tunnel = True

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None."""
        return None

    def start(self, env: Env, origin_port: int) -> Target:
        raise NotImplementedError

    def pids(self) -> set[int]:
        """The tunnel's processes (and their children) now."""
        return set()

    def procs(self) -> list[Proc]:
        """The processes this peer started (stopped by L{stop})."""
        return []

    def stop(self) -> None:
        for proc in reversed(self.procs()):
            proc.stop()


class Direct(Peer):
    name = label = "direct"
    tunnel = False

    def start(self, env: Env, origin_port: int) -> Target:
        return Target(origin_port, f"127.0.0.1:{origin_port}")


#: The interpreter that runs the edge and the agent (C{--python}): the
#: bench's own unless told otherwise (e.g. PyPy, which lacks
#: C{os.sched_getaffinity} to run the bench itself).
TUNNEL_PYTHON = sys.executable


def twistd(*args: str) -> list[str]:
    """The real C{twistd -n} of L{TUNNEL_PYTHON}."""
    return [
        TUNNEL_PYTHON,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        "--logfile=-",
        *args,
    ]


class Netbore(Peer):
    name = label = "netbore"
    #: the edge's C{--domain}
    domain = "localhost"

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, env: Env, origin_port: int) -> Target:
        port = free_port()
        py_env = {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        edge = env.start(
            "netbore-edge",
            twistd(
                "netbore-edge",
                "--listen",
                self.listen(port),
                "--domain",
                self.domain,
                "--data-dir",
                str(env.tmp / f"edge-data-{port}"),
                "--allow-anonymous",
                *self.edge_args(),
            ),
            env=py_env,
        )
        self.started.append(edge)
        try:
            wait_port(port, 30, edge.alive)
        except RuntimeError as e:
            raise RuntimeError(f"netbore edge: {e}:\n{edge.log_tail()}") from None
        state = env.tmp / f"agent-state-{port}.json"
        agent = env.start(
            "netbore-agent",
            twistd(
                "netbore-agent",
                "--control-url",
                self.control_url(port),
                *self.agent_args(origin_port),
                "--state-file",
                str(state),
            ),
            env=py_env,
        )
        self.started.append(agent)
        return self.target(self._wait_ready(state, agent, 30), port)

    def listen(self, port: int) -> str:
        """The edge's C{--listen} endpoint on C{port}."""
        return f"tcp:{port}:interface=127.0.0.1"

    def control_url(self, port: int) -> str:
        """The agent's C{--control-url} for an edge on C{port}."""
        return f"http://127.0.0.1:{port}"

    def edge_args(self) -> list[str]:
        """Options added to the edge's command line."""
        return []

    def agent_args(self, origin_port: int) -> list[str]:
        """What the agent exposes: the origin on C{origin_port}."""
        return ["--origin", f"http://127.0.0.1:{origin_port}", "--name", "bench"]

    def target(self, public_url: str, edge_port: int) -> Target:
        """Where the load goes, given the tunnel's C{public_url}: the edge, with the tunnel's Host."""
        return Target(edge_port, public_url.split("://", 1)[1].split("/", 1)[0])

    @staticmethod
    def _wait_ready(state: Path, agent: Proc, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not agent.alive():
                raise RuntimeError(f"netbore agent exited:\n{agent.log_tail()}")
            try:
                data = json.loads(state.read_text())
                if data.get("state") == "ready":
                    return str(data["public_url"])
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"netbore tunnel not ready after {timeout} s:\n{agent.log_tail()}")

    def pids(self) -> set[int]:
        return {p.pid for p in self.started if p.alive()}

    def procs(self) -> list[Proc]:
        return self.started

    def stop(self) -> None:
        super().stop()
        self.started = []

    def roles(self) -> dict[str, int]:
        """edge/agent -> pid (for profilers)."""
        return {p.name.split("-", 1)[1]: p.pid for p in self.started}


class NginxProxy(Peer):
    """nginx as a one-hop reverse proxy with keep-alive upstream connections."""

    name = "nginx-proxy"
    label = "nginx proxy"

    def __init__(self) -> None:
        self.proc: Proc | None = None

    def missing(self) -> str | None:
        return None if which("nginx") else "nginx is not installed (Debian package: nginx)"

    def listen(self, port: int) -> str:
        """The C{server} block's C{listen} directive (and what goes with it)."""
        return f"listen 127.0.0.1:{port} backlog=4096;"

    def target(self, port: int) -> Target:
        return Target(port, f"127.0.0.1:{port}")

    def config(self, port: int, origin_port: int) -> str:
        """The C{http} block's body: the proxy on C{port} to the origin on C{origin_port}."""
        return f"""
  upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 256; }}
  server {{
    {self.listen(port)}
    client_max_body_size 0;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
    }}
  }}
"""

    def start(self, env: Env, origin_port: int) -> Target:
        port = free_port()
        self.proc = start_nginx(env, self.name, self.config(port, origin_port))
        wait_port(port, 10, self.proc.alive)
        return self.target(port)

    def pids(self) -> set[int]:
        return descendants(self.proc.pid) if self.proc and self.proc.alive() else set()

    def procs(self) -> list[Proc]:
        return [self.proc] if self.proc else []


class SshRemote(Peer):
    """
    OpenSSH remote forwarding (C{ssh -R}) through a private sshd on a
    loopback port, with throwaway host and client keys, run as the current
    user.
    """

    name = "ssh-R"
    label = "OpenSSH -R"
    #: C{ssh}'s forwarding option: C{-R} (sshd listens) or C{-L} (ssh listens)
    forward = "-R"

    def __init__(self) -> None:
        self.sshd: Proc | None = None
        self.ssh: Proc | None = None

    def missing(self) -> str | None:
        for tool in ("sshd", "ssh", "ssh-keygen"):
            if not which(tool):
                return f"{tool} is not installed (Debian package: {TOOLS[tool]})"
        return None

    def _keys(self, workdir: Path) -> None:
        for key in ("host_key", "client_key"):
            subprocess.run(
                [which("ssh-keygen") or "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / key)],
                check=True,
            )
        shutil.copy(workdir / "client_key.pub", workdir / "authorized_keys")
        os.chmod(workdir / "authorized_keys", 0o600)

    def _config(self, workdir: Path, port: int) -> Path:
        conf = workdir / "sshd_config"
        conf.write_text(
            f"""Port {port}
ListenAddress 127.0.0.1
HostKey {workdir}/host_key
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
X11Forwarding no
PrintMotd no
LogLevel ERROR
"""
        )
        return conf

    @staticmethod
    def _privsep_dir() -> None:
        """sshd started as root wants its privilege-separation directory."""
        if os.geteuid() == 0 and not Path("/run/sshd").exists():
            print("  creating /run/sshd (sshd's privilege separation directory)")
            os.makedirs("/run/sshd", mode=0o755)

    def start(self, env: Env, origin_port: int) -> Target:
        ssh_port, fwd_port = free_port(), free_port()
        workdir = env.tmp / f"{self.name}-{ssh_port}"  # one per start: fresh keys, no overwrite prompt
        workdir.mkdir()
        self._keys(workdir)
        conf = self._config(workdir, ssh_port)
        self._privsep_dir()
        sshd = which("sshd")
        assert sshd is not None
        self.sshd = env.start(f"sshd-{self.name}", [sshd, "-D", "-e", "-f", str(conf)])
        wait_port(ssh_port, 10, self.sshd.alive)
        self.ssh = env.start(
            f"ssh-client-{self.name}",
            [
                which("ssh") or "ssh",
                "-F",
                "/dev/null",
                "-N",
                "-T",
                "-p",
                str(ssh_port),
                "-i",
                str(workdir / "client_key"),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                f"UserKnownHostsFile={workdir}/known_hosts",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "LogLevel=ERROR",
                self.forward,
                f"127.0.0.1:{fwd_port}:127.0.0.1:{origin_port}",
                f"{getpass.getuser()}@127.0.0.1",
            ],
        )
        try:
            wait_port(fwd_port, 15, self.ssh.alive)
        except RuntimeError as e:
            raise RuntimeError(f"{e}\nssh: {self.ssh.log_tail()}\nsshd: {self.sshd.log_tail()}") from None
        return Target(fwd_port, f"127.0.0.1:{fwd_port}")

    def pids(self) -> set[int]:
        pids: set[int] = set()
        if self.sshd and self.sshd.alive():
            pids |= descendants(self.sshd.pid)
        if self.ssh and self.ssh.alive():
            pids.add(self.ssh.pid)
        return pids

    def procs(self) -> list[Proc]:
        return [p for p in (self.sshd, self.ssh) if p]


#: every path, in table order; direct first
PEERS: list[type[Peer]] = [Direct, Netbore, NginxProxy, SshRemote]


def start_paths(
    env: Env,
    origin_port: int,
    only: list[str] | None,
    classes: list[type[Peer]],
    check: Callable[[Target], None],
    scheme: str = "http",
) -> list[tuple[Peer, Target]]:
    """
    Start each path of C{classes} to the service on C{origin_port} (those
    named in C{only}, and direct), each checked once by C{check}; one that is
    not installed or does not start is skipped with a line saying why.
    """
    started = []
    for cls in classes:
        peer = cls()
        if only and peer.name not in only and peer.name != "direct":
            continue
        why = peer.missing()
        if why:
            print(f"skipping {peer.label}: {why}")
            continue
        try:
            target = peer.start(env, origin_port)
            check(target)
        except Exception as e:
            print(f"skipping {peer.label}: could not start it: {e}")
            peer.stop()
            continue
        host = f" (Host: {target.host})" if scheme == "http" else ""
        shown = target.scheme if scheme == "http" else scheme
        print(f"  {peer.label:<12} {shown}://127.0.0.1:{target.port}{host} pids {sorted(peer.pids()) or '-'}")
        started.append((peer, target))
    return started
