"""
C{python -m netbore.demo --tls} for real: its edge serves the tunnel over
TLS with a certificate that verifies against the CA it generated, by the
public name (SNI), and the curl lines it prints work.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from . import procs

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _get(port: int, host: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host.rsplit(":", 1)[0]
    )
    try:
        conn.request("GET", "/echo?demo=tls", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_demo_tls_serves_https_verified_against_its_ca(tmp_path: Path) -> None:
    out_path = tmp_path / "demo.out"
    with open(out_path, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "netbore.demo", "--tls", "--port", "0", "--dir", str(tmp_path / "demo")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(procs.ROOT)),
            cwd=str(procs.ROOT),
        )
    children: set[int] = set()
    try:

        def started() -> bool:
            assert demo.poll() is None, out_path.read_text()
            return "press Ctrl-C to stop" in out_path.read_text()

        procs.wait_for(started, 60, "the demo to print its URL")
        text = out_path.read_text()
        children.update(_children(demo.pid))
        assert len(children) == 3, text  # origin, edge, agent
        match = re.search(r"is public at (https://(demo\.tunnel\.localhost:(\d+)))\n", text)
        assert match, text
        url, host, port = match[1], match[2], int(match[3])
        ca = tmp_path / "demo" / "pki" / "ca.pem"
        assert f"curl --cacert {ca} {url}/echo" in text

        # A client trusting only the generated CA verifies the edge for the
        # tunnel's name, and the request reaches the origin over TLS.
        status, body = _get(port, host, ssl.create_default_context(cafile=str(ca)))
        assert status == 200
        assert b'"target": "/echo?demo=tls"' in body
        assert b'["X-Forwarded-Proto", "https"]' in body
        # Without that CA, or for another name, the certificate is refused.
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(port, host, ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            _get(port, f"demo.example.com:{port}", ssl.create_default_context(cafile=str(ca)))

        # The curl lines it prints work as printed.
        if shutil.which("curl"):
            lines = [line.split(":", 1)[1].strip() for line in text.splitlines() if "curl --cacert" in line]
            assert len(lines) == 2, text
            for line in lines:
                result = subprocess.run(
                    [*shlex.split(line), "--silent", "--show-error", "--max-time", "10"],
                    capture_output=True,
                    timeout=20,
                )
                assert result.returncode == 0, (line, result.stderr)
                assert b'"X-Forwarded-Proto", "https"' in result.stdout

        # SIGTERM stops the demo and every process it started.
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(30) == 0
        procs.wait_for(lambda: not any(_alive(pid) for pid in children), 10, "the demo's processes to stop")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(5)
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
