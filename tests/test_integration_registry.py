"""
Deletes that stick (issue 10, item 4 and "an admin's delete"): real
C{twistd} edge and agent processes, the sample origin, on loopback.

An admin deletes a tunnel while its agent is connected: the agent logs why
and stops; the edge is killed (SIGKILL: the revocation must already be on
disk) and started again on the same C{--data-dir}; the deleted tunnel's
recreate token is then refused with 410 C{tunnel_deleted}, by the control
API and by the agent itself restarted on its state file, and the name stays
free.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from . import procs
from .procs import wait_for

pytestmark = pytest.mark.integration

FAST = ("--heartbeat-interval", "1", "--heartbeat-timeout", "1", "--backoff-base", "0.2", "--backoff-cap", "1")


call = procs.call


def test_a_deleted_tunnel_stays_deleted_across_an_edge_restart(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("root root-key-0123456789 admin\n")
    keys.chmod(0o600)
    data_dir = tmp_path / "edge-data"
    edge_args = ("--allow-anonymous", "--api-keys-file", str(keys))
    started: list[procs.Proc] = []
    try:
        origin = procs.start_origin(tmp_path)
        started.append(origin)
        edge = procs.start_edge(tmp_path, *edge_args, data_dir=data_dir)
        started.append(edge)
        agent = procs.start_agent(tmp_path, edge, origin.url, "--name", "doomed", *FAST)
        started.append(agent)
        before = agent.state()
        host = f"doomed.localhost:{edge.port}"
        assert procs.request(edge.port, "GET", "/", host=host)[0] == 200

        _, body = call(edge, "POST", "/auth/token", token="root-key-0123456789")
        admin = body["management_token"]
        status, body = call(edge, "POST", "/tunnels/delete", {"tunnel_id": before["tunnel_id"]}, token=admin)
        assert (status, body["state"]) == (200, "DELETED")

        # The agent is told (close code 4100), says so, and does not come back.
        wait_for(lambda: "TUNNEL DELETED" in agent.log(), 10, "the agent to log the delete")
        wait_for(lambda: agent.state().get("state") == "deleted", 5, "the state file to say deleted")
        status, _, _ = procs.request(edge.port, "GET", "/", host=host)
        assert status == 404
        _, listing = call(edge, "GET", "/tunnels/list", token=admin)
        assert listing["tunnels"] == []
        assert agent.alive()
        agent.stop()

        revocations = data_dir / "revocations.sqlite3"
        assert stat.S_IMODE(revocations.stat().st_mode) == 0o600
        edge.kill()
        edge = procs.start_edge(tmp_path, *edge_args, data_dir=data_dir, port=edge.port)
        started.append(edge)

        # The old recreate token, after the restart: refused, documented code.
        recreate = agent.state()["recreate_token"]
        status, body = call(edge, "POST", "/tunnels/create", {"recreate_token": recreate})
        assert (status, body["error"]) == (410, "tunnel_deleted"), body
        status, body = call(edge, "POST", "/tunnels/create", {"recreate_token": recreate, "requested_name": "doomed"})
        assert (status, body["error"]) == (410, "tunnel_deleted"), body

        # The agent restarted on its state file hears the same and stops.
        again = procs.start_agent(
            tmp_path, edge, origin.url, "--name", "doomed", *FAST, state_file=agent.state_file, wait=False
        )
        started.append(again)
        wait_for(lambda: again.log().count("TUNNEL DELETED") >= 2, 15, "the restarted agent to log the delete")
        assert again.alive()
        assert again.state()["state"] == "deleted"
        assert procs.request(edge.port, "GET", "/", host=host)[0] == 404
        _, listing = call(edge, "GET", "/tunnels/list", token=admin)
        assert listing["tunnels"] == []
        assert "Traceback" not in edge.log()
        assert "Traceback" not in again.log()
    finally:
        for proc in reversed(started):
            proc.stop()
