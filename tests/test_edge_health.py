"""
Issue 13 (health and list fields): C{/healthz}, C{/readyz} and the list
entries' C{connected_at}, C{last_seen_at} and C{sessions}, Clock-driven.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest_twisted

from netbore.edge.apirequest import iso8601, load_schema
from netbore.edge.health import Readiness
from netbore.edge.registry import TunnelState
from netbore.edge.sessiontimes import sample, session_fields

from .test_control_api import NOW, assert_valid, make_edge
from .test_edge_agents import Harness


@attrs.define
class Flag:
    running: bool = True
    draining: bool = False


@attrs.define
class Session:
    last_read: float | None = None


async def _get(edge: Any, path: str, base: str = "http://localhost:8080") -> tuple[int, Any, bytes]:
    response = await edge.stub.request("GET", base + path)
    return response.code, response.headers, await response.content()


@pytest_twisted.ensureDeferred
async def test_healthz_is_alive_without_credentials(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    status, headers, body = await _get(edge, "/healthz")
    assert (status, body) == (200, b'{"status":"ok"}\n')
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert headers.getRawHeaders("content-type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_readyz_follows_listening_and_draining(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    router, service, listener = Flag(), Flag(), Flag(running=False)
    edge.api.readiness = Readiness(router, service, [listener])
    status, headers, body = await _get(edge, "/readyz")
    assert status == 503
    assert b'"reason":"not_listening"' in body
    listener.running = True
    status, headers, body = await _get(edge, "/readyz")
    assert (status, body) == (200, b'{"status":"ok"}\n')
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    router.draining = True  # EdgeService.stopService (SIGTERM)
    status, headers, body = await _get(edge, "/readyz")
    assert status == 503
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert headers.getRawHeaders("content-type") == ["application/json"]
    assert b'"status":"unavailable","reason":"draining"' in body
    edge.api.readiness.keys_loaded = False
    router.draining = False
    status, _, body = await _get(edge, "/readyz")
    assert status == 503 and b'"reason":"keys_not_loaded"' in body


@pytest_twisted.ensureDeferred
async def test_health_is_not_rate_limited(tmp_path: Path) -> None:
    edge = make_edge(tmp_path, auth_failures_per_minute=1)
    edge.api.readiness = Readiness(Flag(), Flag())
    headers = {"Authorization": "Bearer nonsense"}
    for _ in range(3):
        await edge.stub.request("GET", "http://localhost:8080/tunnels/list", headers=headers)
    limited = await edge.stub.request("GET", "http://localhost:8080/tunnels/list", headers=headers)
    assert limited.code == 429
    for path in ("/healthz", "/readyz"):
        response = await edge.stub.request("GET", "http://localhost:8080" + path, headers=headers)
        assert response.code == 200, path


@pytest_twisted.ensureDeferred
async def test_list_entries_carry_session_times(tmp_path: Path) -> None:
    edge = make_edge(tmp_path)
    token = edge.management("alice")
    _, _, created = await edge.create({"requested_name": "myapp"}, token=token)
    tunnel = edge.registry.get(created["tunnel_id"])

    async def entry() -> dict[str, Any]:
        _, _, body = await edge.call("GET", "/tunnels/list", token=token)
        assert_valid(load_schema("tunnels-list-response.json"), body)
        [only] = body["tunnels"]
        return {k: only[k] for k in ("connected_at", "last_seen_at", "sessions")}

    assert await entry() == {"connected_at": None, "last_seen_at": None, "sessions": 0}
    first = Session()
    edge.clock.advance(10)
    edge.registry.attach_session(tunnel, first)
    assert await entry() == {"connected_at": iso8601(NOW + 10), "last_seen_at": None, "sessions": 1}
    edge.clock.advance(5)
    second = Session(last_read=NOW + 15)
    edge.registry.attach_session(tunnel, second)
    first.last_read = NOW + 20
    assert await entry() == {"connected_at": iso8601(NOW + 10), "last_seen_at": iso8601(NOW + 20), "sessions": 2}
    edge.clock.advance(100)
    edge.registry.detach_session(tunnel, first)
    edge.registry.detach_session(tunnel, second)
    # Nobody connected; the last frame is remembered.
    assert await entry() == {"connected_at": None, "last_seen_at": iso8601(NOW + 20), "sessions": 0}


def test_each_read_records_the_time_on_the_session(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    opened = h.clock.seconds()
    assert edge.heard and edge.last_read is None  # a flag per read, no clock call
    assert session_fields(h.tunnel, opened)["connected_at"] == iso8601(opened)
    assert (edge.heard, edge.last_read) == (False, opened)
    h.clock.advance(42)
    agent.sendPing()
    pump.flush()
    h.clock.advance(0.5)
    sample(h.endpoint.sessions, h.clock.seconds())  # the edge's one-second sample
    assert edge.last_read == opened + 42.5
    h.clock.advance(10)
    assert session_fields(h.tunnel, h.clock.seconds()) == {
        "connected_at": iso8601(opened),
        "last_seen_at": iso8601(opened + 42),
        "sessions": 1,
    }
    h.clock.advance(8)
    agent.sendClose()
    pump.flush()
    assert h.tunnel.state is TunnelState.DOWN
    # (the close frame was read at detach, sampled then) kept afterwards
    assert session_fields(h.tunnel, h.clock.seconds() + 30) == {
        "connected_at": None,
        "last_seen_at": iso8601(opened + 60.5),
        "sessions": 0,
    }
