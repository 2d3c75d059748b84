"""
The edge daemon as operators and agents see it: a real
C{twistd -n netbore-edge} on a loopback port, driven over HTTP.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from . import procs

pytestmark = pytest.mark.integration


call = procs.call


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    path.write_text("# account key [admin]\nalice alice-key-0123456789\nroot root-key-0123456789 admin\n")
    path.chmod(0o600)  # the edge refuses a keys file others may read
    return path


def test_create_list_delete_over_http(tmp_path: Path, keys_file: Path) -> None:
    edge = procs.start_edge(tmp_path, "--api-keys-file", str(keys_file))
    try:
        status, body = call(edge, "POST", "/tunnels/create", {})
        assert status == 401 and body["error"] == "unauthorized"

        status, body = call(edge, "POST", "/auth/token", token="alice-key-0123456789")
        assert status == 200, body
        alice = body["management_token"]
        assert body["token_type"] == "Bearer"

        status, created = call(edge, "POST", "/tunnels/create", {"requested_name": "myapp"}, token=alice)
        assert status == 201, created
        assert created["public_hostname"] == "myapp.localhost"
        assert created["public_url"] == f"http://myapp.localhost:{edge.port}"
        assert created["candidates"][0]["edge_url"] == f"ws://127.0.0.1:{edge.port}/connect"

        status, listing = call(edge, "GET", "/tunnels/list", token=alice)
        assert status == 200
        assert [(t["tunnel_id"], t["state"]) for t in listing["tunnels"]] == [(created["tunnel_id"], "PENDING")]

        # Another caller cannot take the name.
        status, body = call(edge, "POST", "/auth/token", token="root-key-0123456789")
        root = body["management_token"]
        status, body = call(edge, "POST", "/tunnels/create", {"requested_name": "myapp"}, token=root)
        assert status == 409 and body["error"] == "name_taken"

        status, body = call(edge, "POST", "/tunnels/delete", {"tunnel_id": created["tunnel_id"]}, token=alice)
        assert status == 200 and body["tunnel_id"] == created["tunnel_id"]
        status, listing = call(edge, "GET", "/tunnels/list", token=alice)
        assert listing["tunnels"] == []

        # Released: now the name is free for anybody entitled to create.
        status, body = call(edge, "POST", "/tunnels/create", {"requested_name": "myapp"}, token=root)
        assert status == 201
    finally:
        assert edge.stop() in (0, -15), edge.log()
    assert "Traceback" not in edge.log()


def test_keys_survive_restart(tmp_path: Path, keys_file: Path) -> None:
    data_dir = tmp_path / "data"
    edge = procs.start_edge(tmp_path, "--api-keys-file", str(keys_file), data_dir=data_dir)
    try:
        _, body = call(edge, "POST", "/auth/token", token="alice-key-0123456789")
        token = body["management_token"]
        _, jwks_before = call(edge, "GET", "/.well-known/jwks.json")
    finally:
        edge.stop()
    key_files = list((data_dir / "keys").iterdir())
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700

    edge = procs.start_edge(tmp_path, "--api-keys-file", str(keys_file), data_dir=data_dir, port=edge.port)
    try:
        _, jwks_after = call(edge, "GET", "/.well-known/jwks.json")
        assert jwks_after == jwks_before
        status, body = call(edge, "GET", "/tunnels/list", token=token)
        assert status == 200, body
    finally:
        edge.stop()


def test_failed_bind_stops_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            procs.TWISTD
            + ["netbore-edge", "--listen", f"tcp:{port}:interface=127.0.0.1", "--data-dir", str(tmp_path / "d")],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=str(procs.ROOT)),
        )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"cannot listen on tcp:{port}:interface=127.0.0.1: [Errno 98] Address already in use" in output
    assert "Traceback" not in result.stdout + result.stderr


def test_agent_creates_and_reuses_its_state(tmp_path: Path, origin: procs.Origin) -> None:
    edge = procs.start_edge(tmp_path, "--allow-anonymous")
    state_file = tmp_path / "state.json"
    try:
        agent = procs.start_agent(tmp_path, edge, origin.url, "--name", "keeper", state_file=state_file)
        first = agent.wait_ready()
        assert first["name"] == "keeper"
        assert first["public_url"] == f"http://keeper.localhost:{edge.port}"
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        assert first["recreate_token"] and first["tunnel_id"]
        assert f"tunnel ready: http://keeper.localhost:{edge.port} -> {origin.url}" in agent.log()
        agent.stop()

        # Without --name this time: the state file alone brings the same tunnel back.
        agent = procs.start_agent(tmp_path, edge, origin.url, state_file=state_file)
        second = agent.wait_ready()
        assert (second["name"], second["tunnel_id"]) == (first["name"], first["tunnel_id"])
        status, _, body = procs.request(edge.port, "GET", "/", host=f"keeper.localhost:{edge.port}")
        assert status == 200 and b"Hello through netbore" in body
        agent.stop()
    finally:
        edge.stop()


def test_options_help_lists_the_contract(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(procs.ROOT))
    edge = subprocess.run(
        procs.TWISTD + ["netbore-edge", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    for option in [
        "--listen",
        "--domain",
        "--data-dir",
        "--allow-anonymous",
        "--api-keys-file",
        "--jwt-secret-file",
        "--ephemeral-ttl",
        "--recreate-max-ttl",
        "--response-timeout",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--grace",
        "--drain-timeout",
        "--auth-failures-per-minute",
        "--advertise-url",
    ]:
        assert option in edge.stdout, option
    agent = subprocess.run(
        procs.TWISTD + ["netbore-agent", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    for option in [
        "--control-url",
        "--origin",
        "--name",
        "--api-key-file",
        "--state-file",
        "--config",
        "--ca-cert",
        "--recreate-ttl",
        "--backoff-base",
        "--backoff-cap",
        "--drain-timeout",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--host-header",
    ]:
        assert option in agent.stdout, option
