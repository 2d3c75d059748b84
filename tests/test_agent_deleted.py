"""
An admin's (or the owner's) delete takes the name down for good (issue 10,
"also wrong"): the deleted tunnel's agent is told so, by the WebSocket close
code 4100 or by 410 C{tunnel_deleted} for its recreate token, logs why and
stops; it neither re-creates the tunnel nor asks for the name afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest_twisted
from twisted.logger import capturedLogs

from netbore.agent.config import merge
from netbore.agent.control_client import ControlClient, ControlError
from netbore.agent.service import AgentService
from netbore.agent.session import SessionClosed
from netbore.agent.state import AgentState, load_state

from .test_agent_service import NOW, FakeConnect, World, created, jwt, make, messages
from .test_control_api import BASE, make_edge

__all__ = ["make"]  # the fixture, imported for pytest


def deleted_by_close(w: World) -> None:
    w.connect.last.on_closed(SessionClosed(was_clean=True, code=4100, reason="tunnel deleted", ready=True))


def test_close_code_4100_stops_the_agent_for_good(make: Callable[..., World]) -> None:
    w = make(created("myapp", "t1"), name="myapp")
    w.service.startService()
    w.connect.last.ready()
    with capturedLogs() as events:
        deleted_by_close(w)
        w.clock.advance(3600)
    assert len(w.control.calls) == 1  # no re-create, no fresh create of the name
    assert len(w.connect.urls) == 1  # no reconnect
    assert w.service.deleted
    state = w.state()
    assert (state.state, state.tunnel_id, state.name) == ("deleted", "t1", "myapp")
    text = "\n".join(messages(events))
    assert "TUNNEL DELETED: myapp (t1) was deleted on the edge (tunnel deleted); not re-creating it" in text


def test_recreate_token_refused_as_deleted_stops_the_agent(make: Callable[..., World]) -> None:
    """
    After a restart (of the agent, or of the edge while it was away), the
    recreate token is answered 410: the agent does not fall back to creating
    the name afresh, as it does for a merely invalid token.
    """
    token = jwt(NOW + 3600, sub="t1", name="myapp")
    w = make(
        ControlError(410, "tunnel_deleted", "tunnel t1 (myapp) was deleted; its recreate tokens are revoked"),
        name="myapp",
        state=AgentState(tunnel_id="t1", name="myapp", recreate_token=token),
    )
    with capturedLogs() as events:
        w.service.startService()
        w.clock.advance(3600)
    assert len(w.control.calls) == 1
    assert w.control.calls[0]["recreate_token"] == token
    assert w.connect.urls == []
    state = w.state()
    # The token stays: started again, the agent asks, hears 410 and stops again.
    assert (state.state, state.recreate_token) == ("deleted", token)
    assert any("TUNNEL DELETED: myapp (t1)" in line and "revoked" in line for line in messages(events))


def test_refresh_answered_deleted_closes_the_session_and_stops(make: Callable[..., World]) -> None:
    first = created("x", "t1", recreate_exp=NOW + 100)
    w = make(first, ControlError(410, "tunnel_deleted", "deleted"))
    w.service.startService()
    w.connect.last.ready()
    w.clock.advance(50)  # the refresh
    assert w.connect.last.protocol.closed_with == "tunnel deleted"
    w.connect.last.close()
    w.clock.advance(3600)
    assert len(w.control.calls) == 2
    assert len(w.connect.urls) == 1
    assert w.state().state == "deleted"


@pytest_twisted.ensureDeferred
async def test_against_the_real_control_api_an_admin_delete_sticks(tmp_path: Path) -> None:
    """
    The agent's real control client against the edge's real control API: an
    admin deletes the tunnel while the agent is away; the agent comes back
    with its candidates (refused: the tunnel is gone), then its recreate
    token (410), and stops; the name stays free.
    """
    edge = make_edge(tmp_path / "edge")
    clock = edge.clock
    connect = FakeConnect()
    state_file = tmp_path / "state.json"
    config = merge(
        {"origin": "http://127.0.0.1:3000", "state-file": str(state_file), "name": "myapp", "backoff-base": 1.0},
        {},
    )
    agent = AgentService(config, clock, control=ControlClient(edge.stub, BASE), connect=connect)  # type: ignore[arg-type]
    agent.startService()
    try:
        for _ in range(10):  # let the stubbed HTTP exchange finish
            if connect.attempts:
                break
            clock.advance(0)
        connect.last.ready()
        tunnel = edge.registry.by_name("myapp")
        assert tunnel is not None
        status, _, body = await edge.call(
            "POST", "/tunnels/delete", {"tunnel_id": tunnel.tunnel_id}, token=edge.management("root", "admin")
        )
        assert (status, body["state"]) == (200, "DELETED")
        connect.last.close()  # the session broke (code 1006) rather than being closed with 4100
        with capturedLogs() as events:
            for _ in range(20):
                clock.advance(1)
                if connect.attempts and len(connect.attempts) == 2 and not connect.last.protocol.closed_with:
                    connect.last.refuse(403)  # the edge: "tunnel unknown or deleted"
                if agent.deleted:
                    break
        assert agent.deleted
        clock.advance(3600)
        assert len(connect.attempts) == 2
        assert edge.registry.by_name("myapp") is None
        assert load_state(str(state_file)).state == "deleted"
        assert any("TUNNEL DELETED: myapp" in line for line in messages(events))
    finally:
        agent.stopService()
