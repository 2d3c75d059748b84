"""
Agent lifecycle and high availability (issue 4, "Must show"): real
C{twistd} edges and agents, the sample origin and a test-controlled TCP
relay, all on loopback.

Timers are shrunk through the daemons' own options (heartbeats of 1 s,
backoff capped at 1-2 s, grace of 3 s) so that every wait is short and
bounded.  Agents that must be told apart run with C{--host-header rewrite}:
the origin's C{/echo} then reports the origin's own C{host:port}, so every
answer says which origin produced it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netbore.demo.origin import pattern

from . import procs
from .procs import Agent, Edge, Origin, request, wait_for
from .relay import Relay

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
FAST = ("--heartbeat-interval", "1", "--heartbeat-timeout", "1", "--backoff-base", "0.2", "--backoff-cap", "1")


class Lab:
    """
    Starts processes and relays for one test and stops every one of them,
    by its own pid, at the end.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[procs.Proc] = []
        self.relays: list[Relay] = []

    def origin(self) -> Origin:
        proc = procs.start_origin(self.tmp)
        self.procs.append(proc)
        return proc

    def edge(self, *args: str, **kw: Any) -> Edge:
        proc = procs.start_edge(self.tmp, *args, **kw)
        self.procs.append(proc)
        return proc

    def agent(self, edge: Edge, origin: Origin, *args: str, **kw: Any) -> Agent:
        proc = procs.start_agent(self.tmp, edge, origin.url, *args, **kw)
        self.procs.append(proc)
        return proc

    def restart_agent(self, old: Agent, edge: Edge, origin: Origin, *args: str) -> Agent:
        """
        A new agent process on C{old}'s state file (and log file), waited
        for until I{it} says its tunnel is ready: the state file may still
        say "ready" from the old one.
        """
        seen = old.log().count("tunnel ready:")
        proc = self.agent(edge, origin, *args, state_file=old.state_file, wait=False)
        wait_for(lambda: proc.log().count("tunnel ready:") > seen or not proc.alive(), 20, "the new agent's tunnel")
        assert proc.alive(), proc.log()
        proc.wait_ready(5)
        return proc

    def relay(self, upstream_port: int) -> Relay:
        relay = Relay(upstream_port)
        self.relays.append(relay)
        return relay

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=5)
        for relay in self.relays:
            relay.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    started = Lab(tmp_path)
    try:
        yield started
    finally:
        started.close()


def _try(
    port: int, method: str, target: str, host: str, timeout: float = 10, **kw: Any
) -> tuple[int, list[tuple[str, str]], bytes]:
    try:
        return request(port, method, target, host=host, timeout=timeout, **kw)
    except OSError as e:
        return 0, [], repr(e).encode()


def served_by(edge: Edge, host: str, timeout: float = 10) -> tuple[int, str | None]:
    """
    GET /echo through the edge; (status, the origin's host:port or None).
    The agent must run with --host-header rewrite.
    """
    status, _, body = _try(edge.port, "GET", "/echo", host, timeout=timeout)
    if status != 200:
        return status, None
    headers = dict((k.lower(), v) for k, v in json.loads(body)["headers"])
    return status, headers["host"]


def origin_host(origin: Origin) -> str:
    return f"127.0.0.1:{origin.port}"


def wait_served(edge: Edge, host: str, expected: str, timeout: float) -> float:
    """
    Poll until the tunnel at C{host} answers from C{expected}; the time it took.
    """
    start = time.monotonic()

    def ok() -> bool:
        status, seen = served_by(edge, host, timeout=2)
        if status == 200:
            assert seen == expected, f"{host} answered by {seen}, expected {expected}"
            return True
        time.sleep(0.05)
        return False

    wait_for(ok, timeout, f"{host} to be served by {expected}")
    return time.monotonic() - start


def call(edge: Edge, path: str, body: Any = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    status, _, content = request(
        edge.port,
        "POST" if body is not None else "GET",
        path,
        host=f"127.0.0.1:{edge.port}",
        body=data,
        headers=headers,
    )
    return status, json.loads(content) if content else {}


class Load:
    """
    Viewer threads asking C{/echo} of some tunnels in a loop, recording
    (start, end, host, status, origin seen) for every request.
    """

    def __init__(self, edge: Edge, hosts: list[str], threads_per_host: int = 2) -> None:
        self.edge = edge
        self.results: list[tuple[float, float, str, int, str | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(host,), daemon=True)
            for host in hosts
            for _ in range(threads_per_host)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, host: str) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            status, seen = served_by(self.edge, host, timeout=15)
            with self._lock:
                self.results.append((start, time.monotonic(), host, status, seen))
            if status != 200:
                time.sleep(0.02)

    def stop(self) -> list[tuple[float, float, str, int, str | None]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)
        with self._lock:
            return list(self.results)


def exit_status(proc: procs.Proc, timeout: float) -> int:
    proc.popen.wait(timeout)
    return proc.popen.returncode


# -- edge and agent restarts ------------------------------------------------------


def test_edge_sigkill_and_restart_the_tunnel_returns_under_its_name(lab: Lab) -> None:
    origin = lab.origin()
    data_dir = lab.tmp / "edge-data"
    edge = lab.edge("--allow-anonymous", data_dir=data_dir)
    agent = lab.agent(
        edge, origin, "--name", "comeback", "--backoff-cap", "2", "--backoff-base", "0.5", "--host-header", "rewrite"
    )
    before = agent.state()
    host = f"comeback.localhost:{edge.port}"
    assert served_by(edge, host) == (200, origin_host(origin))

    edge.kill()
    # Let the agent fail a few times, so that its backoff reaches the cap.
    time.sleep(4)
    assert agent.state()["state"] == "offline"
    edge = lab.edge("--allow-anonymous", port=edge.port, data_dir=data_dir)
    took = wait_served(edge, host, origin_host(origin), timeout=10)
    print(f"tunnel served again {took:.2f} s after the edge listened again")
    assert took < 10
    after = agent.wait_ready(5)
    assert (
        (after["name"], after["tunnel_id"])
        == (before["name"], before["tunnel_id"])
        == ("comeback", before["tunnel_id"])
    )
    assert "Traceback" not in agent.log()


def test_agent_sigkill_and_restart_with_its_state_file_gets_the_same_tunnel(lab: Lab) -> None:
    origin = lab.origin()
    edge = lab.edge("--allow-anonymous")
    agent = lab.agent(edge, origin)  # a random name: only the state file can bring it back
    before = agent.state()
    assert before["tunnel_id"] and before["name"]
    agent.kill()
    again = lab.restart_agent(agent, edge, origin)
    after = again.state()
    assert (after["name"], after["tunnel_id"]) == (before["name"], before["tunnel_id"])
    status, _, _ = request(edge.port, "GET", "/", host=again.host)
    assert status == 200


# -- a silent or broken network between agent and edge ------------------------------


def test_relay_freeze_and_drop_reconnect_and_never_cross_tunnels(lab: Lab) -> None:
    one, two = lab.origin(), lab.origin()
    port = procs.free_port()
    relay = lab.relay(port)
    via_relay = ("--control-url", f"http://127.0.0.1:{relay.port}", "--host-header", "rewrite", *FAST)
    # The edge hands out the relay as the candidate.
    edge = lab.edge(
        "--allow-anonymous",
        "--response-timeout",
        "5",
        "--heartbeat-interval",
        "5",
        "--heartbeat-timeout",
        "5",
        "--advertise-url",
        f"ws://127.0.0.1:{relay.port}/connect",
        port=port,
    )
    a = lab.agent(edge, one, "--name", "tunnel-one", *via_relay)
    b = lab.agent(edge, two, "--name", "tunnel-two", *via_relay)
    hosts = {
        f"tunnel-one.localhost:{edge.port}": origin_host(one),
        f"tunnel-two.localhost:{edge.port}": origin_host(two),
    }
    for host, expected in hosts.items():
        wait_served(edge, host, expected, 10)
    assert len(relay.live()) >= 2

    load = Load(edge, list(hosts))
    try:
        time.sleep(0.5)
        # Freeze: both agents must notice the silence by their heartbeat
        # (interval 1 s + timeout 1 s) and reconnect.
        frozen_at = time.monotonic()
        frozen = relay.freeze()
        wait_for(
            lambda: all(p.client_closed_at is not None for p in frozen),
            8,
            "the agents to give up the frozen connections",
        )
        detection = max(p.client_closed_at or 0 for p in frozen) - frozen_at
        print(f"frozen connections abandoned by the agents after {detection:.2f} s")
        assert detection <= 1 + 1 + 1.0
        for host, expected in hosts.items():
            took = wait_served(edge, host, expected, 10)
            print(f"{host} served again {took:.2f} s after detection")

        # Drop: every connection closed at once.
        relay.drop()
        for host, expected in hosts.items():
            wait_served(edge, host, expected, 10)
        time.sleep(0.5)
    finally:
        results = load.stop()

    assert results
    wrong = [r for r in results if r[3] == 200 and r[4] != hosts[r[2]]]
    assert wrong == []
    for host in hosts:
        assert any(r[2] == host and r[3] == 200 for r in results)
    # Only the edge's own answers (offline / timeout) stand in meanwhile.
    assert {r[3] for r in results} <= {200, 502, 504}, sorted({r[3] for r in results})
    for agent in (a, b):
        assert "Traceback" not in agent.log(), agent.log()


# -- tokens: expired ephemeral, refused recreate -------------------------------------


def test_expired_ephemeral_token_reclaims_by_recreate_token_then_a_refused_one_changes_the_name(lab: Lab) -> None:
    origin = lab.origin()
    port = procs.free_port()
    relay = lab.relay(port)
    edge_args = ("--allow-anonymous", "--ephemeral-ttl", "1", "--advertise-url", f"ws://127.0.0.1:{relay.port}/connect")
    edge = lab.edge(*edge_args, port=port)
    agent = lab.agent(edge, origin, "--host-header", "rewrite", *FAST)  # random name
    first = agent.state()
    host = f"{first['name']}.localhost:{edge.port}"
    assert served_by(edge, host) == (200, origin_host(origin))

    # The ephemeral token (1 s) has expired; cut the connection.  The agent
    # must come back by calling create with its recreate token: same name,
    # same id, and a fresh recreate token in the state file.
    time.sleep(1.5)
    relay.drop()
    wait_for(lambda: agent.state().get("recreate_token") != first["recreate_token"], 10, "a re-create")
    wait_served(edge, host, origin_host(origin), 10)
    second = agent.wait_ready(5)
    assert (second["name"], second["tunnel_id"]) == (first["name"], first["tunnel_id"])

    # An edge with other keys refuses the recreate token: the agent creates
    # afresh, under a new name, and says so loudly.
    edge.kill()
    edge = lab.edge(*edge_args, port=edge.port, data_dir=lab.tmp / "other-keys")
    wait_for(lambda: agent.state().get("name") not in (None, first["name"]), 15, "a new tunnel")
    third = agent.wait_ready(10)
    assert third["tunnel_id"] != first["tunnel_id"]
    new_host = f"{third['name']}.localhost:{edge.port}"
    wait_served(edge, new_host, origin_host(origin), 10)
    log = agent.log()
    assert f"TUNNEL NAME CHANGED: {first['name']} is now {third['name']}" in log
    status, _, _ = request(edge.port, "GET", "/", host=host)
    assert status == 404


# -- grace ------------------------------------------------------------------------------


def test_grace_holds_the_name_then_releases_it(lab: Lab) -> None:
    origin = lab.origin()
    edge = lab.edge("--allow-anonymous", "--ephemeral-ttl", "1", "--recreate-max-ttl", "2", "--grace", "3")
    agent = lab.agent(edge, origin, "--name", "graceful")
    host = f"graceful.localhost:{edge.port}"
    assert request(edge.port, "GET", "/", host=host)[0] == 200
    time.sleep(1)  # past the recreate token's 2 s by the end of the grace
    agent.kill()
    killed_at = time.monotonic()

    # Held: the offline page for viewers, 409 for anybody else.
    status, headers, _ = request(edge.port, "GET", "/", host=host, headers={"Accept": "application/json"})
    assert status == 502
    assert dict((k.lower(), v) for k, v in headers)["x-netbore-error"] == "tunnel_offline"
    status, body = call(edge, "/tunnels/create", {"requested_name": "graceful"})
    assert status == 409 and body["error"] == "name_taken"

    # Released after the grace: 404, and the name can be created again.
    def released() -> bool:
        if request(edge.port, "GET", "/", host=host)[0] == 404:
            return True
        time.sleep(0.1)
        return False

    wait_for(released, 8, "the name to be released")
    held_for = time.monotonic() - killed_at
    print(f"name released {held_for:.2f} s after the agent was killed (grace 3 s)")
    assert 2.5 <= held_for <= 5.5
    status, body = call(edge, "/tunnels/create", {"requested_name": "graceful"})
    assert status == 201, body


# -- graceful drain ------------------------------------------------------------------------


def _slow_download(port: int, host: str, n: int, started: threading.Event, out: dict[str, Any]) -> None:
    """
    GET /bytes/n and read it slowly (about 5 MiB/s); out gets status,
    length and SHA-256 of what arrived.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    digest = hashlib.sha256()
    got = 0
    try:
        conn.request("GET", f"/bytes/{n}", headers={"Host": host})
        response = conn.getresponse()
        out["status"] = response.status
        while True:
            chunk = response.read(64 * 1024)
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
            if got >= 2 * MiB:
                started.set()
            time.sleep(0.012)
    except OSError as e:
        out["error"] = repr(e)
    finally:
        out["length"] = got
        out["sha256"] = digest.hexdigest()
        out["done_at"] = time.monotonic()
        started.set()
        conn.close()


@pytest.mark.parametrize("who", ["edge", "agent"])
def test_sigterm_during_a_20_mib_download_lets_it_finish_then_exits(lab: Lab, who: str) -> None:
    origin = lab.origin()
    edge = lab.edge("--allow-anonymous")
    agent = lab.agent(edge, origin, "--name", "drain")
    host = f"drain.localhost:{edge.port}"
    n = 20 * MiB
    expected = hashlib.sha256(pattern(n)).hexdigest()
    started = threading.Event()
    out: dict[str, Any] = {}
    viewer = threading.Thread(target=_slow_download, args=(edge.port, host, n, started, out), daemon=True)
    viewer.start()
    assert started.wait(15)
    target = edge if who == "edge" else agent
    target.signal(signal.SIGTERM)
    termed_at = time.monotonic()
    viewer.join(20)
    assert not viewer.is_alive()
    assert "error" not in out, out
    assert out["status"] == 200
    assert out["length"] == n
    assert out["sha256"] == expected
    # Still ours to read after the signal: the drain carried it.
    assert out["done_at"] - termed_at > 1.0
    status = exit_status(target, 12)
    assert status in (0, -signal.SIGTERM), target.log()
    exited_at = time.monotonic()
    assert exited_at - termed_at < 10 + 2
    assert "drain timeout" not in target.log()
    assert "Traceback" not in target.log()
    if who == "agent":
        # The name is left reclaimable: the same state file gets it back.
        before = agent.state()
        again = lab.restart_agent(agent, edge, origin)
        assert (again.state()["name"], again.state()["tunnel_id"]) == ("drain", before["tunnel_id"])
    else:
        assert "edge drained" in target.log()


# -- agent pools -------------------------------------------------------------------------------


def test_two_agents_serve_one_name_and_one_dying_fails_no_request_after_detection(lab: Lab) -> None:
    keys = lab.tmp / "api-keys"
    keys.write_text("alice alice-key-0123456789\n")
    keys.chmod(0o600)
    key_file = lab.tmp / "alice.key"
    key_file.write_text("alice-key-0123456789\n")
    one, two = lab.origin(), lab.origin()
    edge = lab.edge("--api-keys-file", str(keys))
    common = ("--name", "pool", "--api-key-file", str(key_file), "--host-header", "rewrite")
    a = lab.agent(edge, one, "--agent-id", "agent-a", *common)
    b = lab.agent(edge, two, "--agent-id", "agent-b", *common)
    assert a.state()["tunnel_id"] == b.state()["tunnel_id"]
    _, token = call(edge, "/auth/token", {"api_key": "alice-key-0123456789"})
    management = token["management_token"]

    def sessions() -> int:
        status, listing = call(edge, "/tunnels/list", token=management)
        assert status == 200
        return int(listing["tunnels"][0]["sessions"])

    assert sessions() == 2
    host = f"pool.localhost:{edge.port}"
    load = Load(edge, [host], threads_per_host=4)
    try:
        wait_for(
            lambda: {r[4] for r in list(load.results) if r[3] == 200} >= {origin_host(one), origin_host(two)},
            10,
            "both origins to serve",
        )
        time.sleep(0.5)
        b.kill()
        killed_at = time.monotonic()
        wait_for(lambda: sessions() == 1, 10, "the edge to notice")
        detected_at = time.monotonic()
        time.sleep(2)
    finally:
        results = load.stop()

    before = [r for r in results if r[0] < killed_at]
    after = [r for r in results if r[0] >= detected_at]
    assert {r[4] for r in before if r[3] == 200} == {origin_host(one), origin_host(two)}
    failed = [r for r in after if r[3] != 200]
    print(
        f"{len(results)} requests; {len([r for r in results if r[3] != 200])} failed in all; "
        f"detected {detected_at - killed_at:.2f} s after the kill; {len(after)} after detection, {len(failed)} failed"
    )
    assert len(after) > 20
    assert failed == []
    assert {r[4] for r in after} == {origin_host(one)}


# -- configuration file errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, named",
    [
        ("origin: http://127.0.0.1:9\nheartbeat_intervall: 5\n", "heartbeat_intervall"),
        ("origin: http://127.0.0.1:9\nbackoff-cap: soon\n", "backoff-cap"),
    ],
)
def test_config_file_errors_stop_the_agent_naming_the_key(tmp_path: Path, content: str, named: str) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(content)
    proc = subprocess.run(
        [*procs.TWISTD, "netbore-agent", "--config", str(config), "--state-file", str(tmp_path / "state.json")],
        capture_output=True,
        timeout=30,
        cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=str(procs.ROOT)),
    )
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode != 0, output
    assert named in output, output
    assert "Traceback" not in output
    assert not (tmp_path / "state.json").exists()
