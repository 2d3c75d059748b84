"""
What every path of the benchmark leads to, and what the run shares: the
tools it may use, the run environment (L{Env}: the work directory and the
process group), and the origin (nginx or the built-in one).  The paths to
it are in L{bench.peers}.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Proc, ProcessGroup, free_port, wait_port

__all__ = ["TOOLS", "BuiltinOrigin", "Env", "NginxOrigin", "Origin", "start_nginx", "which"]

REPO = Path(__file__).resolve().parent.parent
SMALL = b"Hello, World!"

#: binaries the run can use, and the Debian package that has each
TOOLS = {
    "wrk": "wrk",
    "nginx": "nginx",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def which(tool: str) -> str | None:
    """C{shutil.which}, also looking in the sbin directories (sshd, nginx)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin:/sbin"
    return shutil.which(tool, path=path)


@dataclass
class Env:
    """Shared by every process of one run."""

    tmp: Path
    group: ProcessGroup
    server_cores: set[int] | None
    files: dict[str, Path] = field(default_factory=dict)  # route -> file served

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        return self.group.start(name, cmd, self.tmp / f"{name}.log", env=env, cores=self.server_cores, cwd=self.tmp)


def _nginx_common(workdir: Path) -> str:
    """Global part of a private nginx config, run in the foreground as us."""
    user = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"  {kind}_temp_path {workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
{temps}
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
"""


def start_nginx(env: Env, name: str, http_body: str) -> Proc:
    nginx = which("nginx")
    assert nginx is not None
    workdir = env.tmp / name
    workdir.mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(_nginx_common(workdir) + http_body + "}\n")
    check = subprocess.run([nginx, "-t", "-q", "-p", str(workdir), "-c", str(conf)], capture_output=True, text=True)
    if check.returncode:
        raise RuntimeError(f"nginx rejects {conf}: {check.stderr.strip()}")
    return env.start(name, [nginx, "-p", str(workdir), "-c", str(conf)])


# ------------------------------------------------------------------ origins


class Origin:
    """The service every path leads to: routes /13, /1m, /100m, POST /upload."""

    name = "origin"
    port = 0
    proc: Proc | None = None

    def missing(self) -> str | None:
        return None

    def start(self, env: Env) -> int:
        raise NotImplementedError

    def upload_ok(self, status: int, body: bytes, sha: str) -> bool:
        """Whether the origin received exactly the bytes whose SHA-256 is C{sha}."""
        return status == 200 and body.decode(errors="replace").strip() == sha


class NginxOrigin(Origin):
    """
    nginx serving the files, and reading uploads whole into files that are
    kept (C{client_body_in_file_only on}) so the bench can hash them. C{return}
    alone would answer before the body is read and discard it, so the upload
    location hands the stored file's name to a bodiless internal request.
    """

    name = "nginx"

    def missing(self) -> str | None:
        return None if which("nginx") else "nginx is not installed"

    def start(self, env: Env) -> int:
        self.port = free_port()
        locations = "\n".join(
            f"    location = {route} {{ alias {path}; default_type application/octet-stream; }}"
            for route, path in env.files.items()
        )
        body = f"""
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    location = /13 {{ default_type text/plain; return 200 "{SMALL.decode()}"; }}
{locations}
    location = /upload {{
      client_max_body_size 0;
      client_body_buffer_size 1m;
      client_body_in_file_only on;
      proxy_pass http://127.0.0.1:{self.port}/_stored;
      proxy_http_version 1.1;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Body-File $request_body_file;
    }}
    location = /_stored {{ allow 127.0.0.1; deny all; default_type text/plain; return 200 "$http_x_body_file"; }}
  }}
"""
        self.proc = start_nginx(env, "origin-nginx", body)
        wait_port(self.port, 10, self.proc.alive)
        return self.port

    def upload_ok(self, status: int, body: bytes, sha: str) -> bool:
        if status != 200:
            return False
        stored = Path(body.decode().strip())
        try:
            digest = hashlib.sha256(stored.read_bytes()).hexdigest()
        except OSError:
            return False
        stored.unlink()
        return digest == sha


class BuiltinOrigin(Origin):
    """C{bench/origin.py}: asyncio, sendfile for downloads, hashes uploads."""

    name = "builtin"

    def start(self, env: Env) -> int:
        self.port = free_port()
        directory = next(iter(env.files.values())).parent
        cmd = [sys.executable, str(REPO / "bench" / "origin.py"), str(self.port), "--dir", str(directory)]
        self.proc = env.start("origin-builtin", cmd)
        wait_port(self.port, 10, self.proc.alive)
        return self.port
