"""
A TCP tunnel's agent service (issue 11, TCP tunnels): C{--tcp HOST:PORT}
creates with C{"protocol": "tcp"}, logs C{tunnel ready: tcp://<domain>:<port>
-> <host>:<port>}, keeps the local address in the state file and, restarted
with it, re-creates as TCP with its recreate token (the edge gives the same
port back).  Fakes of the control API and the session as in
C{test_agent_service.py}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest_twisted
from treq.testing import StubTreq
from twisted.logger import capturedLogs
from twisted.web.resource import Resource

from netbore.agent.control_client import ControlClient, Created
from netbore.agent.state import AgentState
from netbore.agent.tcp import TcpForwarder

from .test_agent_service import NOW, World, created, make, messages

__all__ = ["make"]  # the fixture, imported for pytest

TCP = {"origin": None, "tcp": "127.0.0.1:5432"}
PUBLIC = "tcp://localhost:20001"


def tcp_created(tunnel_id: str = "t1", serial: int = 0, **kw: Any) -> Created:
    return attrs.evolve(created("db", tunnel_id, serial=serial, **kw), public_url=PUBLIC)


def test_tcp_agent_creates_as_tcp_and_logs_its_address(make: Callable[..., World]) -> None:
    w = make(tcp_created(), name="db", **TCP)
    assert isinstance(w.service.forwarder, TcpForwarder)
    with capturedLogs() as events:
        w.service.startService()
        assert w.control.calls == [
            {"requested_name": "db", "management_token": None, "recreate_ttl": 7 * 86400, "protocol": "tcp"}
        ]
        w.connect.last.ready(PUBLIC)
    assert f"tunnel ready: {PUBLIC} -> 127.0.0.1:5432" in messages(events)
    state = w.state()
    assert (state.public_url, state.tcp, state.origin, state.state) == (PUBLIC, "127.0.0.1:5432", None, "ready")


def test_tcp_agent_restarted_with_its_state_file_recreates_as_tcp(make: Callable[..., World]) -> None:
    first = make(tcp_created(), **TCP)
    first.service.startService()
    first.connect.last.ready(PUBLIC)
    first.service.stopService()
    state = first.state()
    again = make(tcp_created(serial=1), state=state, **TCP)
    again.service.startService()
    (call,) = again.control.calls
    assert call["recreate_token"] == state.recreate_token and call["protocol"] == "tcp"
    assert call["requested_name"] == "db"


def test_tcp_agent_refreshes_its_recreate_token_as_tcp(make: Callable[..., World]) -> None:
    w = make(tcp_created(recreate_exp=NOW + 100), tcp_created(serial=1, recreate_exp=NOW + 200), **TCP)
    w.service.startService()
    w.connect.last.ready(PUBLIC)
    w.clock.advance(50)
    assert len(w.control.calls) == 2 and w.control.calls[1]["protocol"] == "tcp"


def test_a_state_file_of_another_kind_of_tunnel_is_not_reclaimed(make: Callable[..., World]) -> None:
    # An HTTP tunnel's state file given to a TCP agent (and back): a new tunnel.
    http_state = AgentState(
        tunnel_id="t0", name="web", recreate_token=created("web", "t0").recreate_token, origin="http://127.0.0.1:3000"
    )
    w = make(tcp_created(), state=http_state, **TCP)
    w.service.startService()
    (call,) = w.control.calls
    assert "recreate_token" not in call and call["protocol"] == "tcp" and call["requested_name"] is None
    tcp_state = AgentState(tunnel_id="t1", name="db", recreate_token=tcp_created().recreate_token, tcp="127.0.0.1:5432")
    w = make(created("web", "t2"), state=tcp_state)
    w.service.startService()
    (call,) = w.control.calls
    assert "recreate_token" not in call and "protocol" not in call


class _CreateResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def render_POST(self, request: Any) -> bytes:
        self.bodies.append(json.loads(request.content.read()))
        request.setResponseCode(201)
        return json.dumps(
            {
                "tunnel_id": "t1",
                "public_hostname": "db.localhost",
                "public_url": PUBLIC,
                "candidates": [{"edge_url": "ws://localhost/connect"}],
                "ephemeral_token": "e",
                "candidates_expires_at": "2030-01-01T00:00:00Z",
            }
        ).encode()


@pytest_twisted.ensureDeferred
async def test_the_create_request_carries_the_protocol() -> None:
    resource = _CreateResource()
    client = ControlClient(StubTreq(resource), "http://localhost")  # type: ignore[arg-type]
    answer = await client.create(requested_name="db", protocol="tcp")
    await client.create(requested_name="web")
    assert resource.bodies[0]["protocol"] == "tcp" and "protocol" not in resource.bodies[1]
    assert answer.public_url == PUBLIC
