"""
The agent's lifetime decisions, without sockets: a fake control API, a fake
connector whose sessions the test opens, refuses and closes, and a
L{Clock} for every timer.

The policy under test (issue 4): create, or re-create with the recreate
token; candidates in order, the next on failure; a refused token re-creates
at once, but only once in a row; a refused recreate token creates afresh,
loudly; full-jitter backoff, reset after a stable session; the recreate
token kept fresh while connected; drain on stop.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from netbore.agent.backoff import Backoff
from netbore.agent.config import merge
from netbore.agent.control_client import ControlError, Created, token_expiry
from netbore.agent.service import STABLE_AFTER, AgentService
from netbore.agent.session import SessionClosed
from netbore.agent.state import AgentState, load_state, save_state
from netbore.protocol.handshake import PROTOCOL_VERSION, Hello, Settings

NOW = 1_700_000_000.0


def jwt(exp: float, **claims: Any) -> str:
    def part(obj: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(dict(claims, exp=int(exp)))}.sig"


def iso(when: float) -> str:
    return datetime.fromtimestamp(int(when), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def created(
    name: str,
    tunnel_id: str,
    *,
    urls: tuple[str, ...] = ("ws://edge-a/connect",),
    expires: float = NOW + 600,
    recreate_exp: float = NOW + 86400,
    serial: int = 0,
) -> Created:
    return Created(
        tunnel_id=tunnel_id,
        name=name,
        public_hostname=f"{name}.localhost",
        public_url=f"http://{name}.localhost",
        candidates=[{"edge_url": url, "edge_id": "e", "supported_transport": "wss"} for url in urls],
        ephemeral_token=f"ephemeral-{tunnel_id}-{serial}",
        recreate_token=jwt(recreate_exp, sub=tunnel_id, name=name, n=serial),
        candidates_expires_at=iso(expires),
        note=None,
        raw={},
    )


class FakeControl:
    """
    Answers create with the next scripted result (a L{Created}, or an
    exception to raise) and records every call.
    """

    def __init__(self, *script: Created | Exception) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []
        self.token_calls: list[str] = []

    async def management_token(self, api_key: str) -> str:
        self.token_calls.append(api_key)
        return "mgmt-" + api_key

    async def create(self, **kwargs: Any) -> Created:
        self.calls.append(kwargs)
        if not self.script:
            raise AssertionError(f"unexpected create {kwargs}")
        result = self.script.pop(0)
        if isinstance(result, Exception):
            raise result
        return result


class FakeProtocol:
    def __init__(self) -> None:
        self.drained: Deferred[None] | None = None
        self.closed_with: str | None = None

    def drain(self) -> Deferred[None]:
        self.drained = Deferred()
        return self.drained

    def close(self, reason: str = "") -> None:
        self.closed_with = reason


@attrs.define
class Attempt:
    url: str
    token: str
    on_ready: Callable[[Hello, Any], None]
    on_closed: Callable[[SessionClosed], None]
    protocol: FakeProtocol = attrs.field(factory=FakeProtocol)

    def ready(self, public_url: str = "") -> None:
        self.on_ready(
            Hello(version=PROTOCOL_VERSION, role="edge", settings=Settings(), public_url=public_url or None),
            self.protocol,
        )

    def refuse(self, status: int = 403) -> None:
        self.on_closed(SessionClosed(was_clean=True, code=None, reason="refused", ready=False, http_status=status))

    def fail_handshake(self) -> None:
        self.on_closed(SessionClosed(was_clean=False, code=None, reason="timeout", ready=False))

    def close(self) -> None:
        self.on_closed(SessionClosed(was_clean=False, code=1006, reason="gone", ready=True))


class FakeConnect:
    """
    Each connect either fails (the URL is in C{unreachable}) or records an
    L{Attempt} for the test to drive.
    """

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.unreachable: set[str] = set()
        self.urls: list[str] = []

    def __call__(self, url: str, token: str, on_ready: Any, on_closed: Any) -> Deferred[None]:
        self.urls.append(url)
        if url in self.unreachable:
            raise ConnectionRefusedError(f"{url} refused the connection")
        self.attempts.append(Attempt(url, token, on_ready, on_closed))
        return succeed(None)

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]


@attrs.define
class World:
    clock: Clock
    control: FakeControl
    connect: FakeConnect
    service: AgentService
    state_file: Path

    def state(self) -> AgentState:
        return load_state(str(self.state_file))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., World]]:
    services: list[AgentService] = []

    def make(*script: Created | Exception, state: AgentState | None = None, **options: Any) -> World:
        state_file = tmp_path / "state.json"
        if state is not None:
            save_state(str(state_file), state)
        cli = {
            "origin": "http://127.0.0.1:3000",
            "state-file": str(state_file),
            "backoff-base": 1.0,
            "backoff-cap": 8.0,
        }
        cli.update(options)
        clock = Clock()
        clock.advance(NOW)
        control = FakeControl(*script)
        connect = FakeConnect()
        service = AgentService(merge(cli, {}), clock, control=control, connect=connect)
        # The worst case of the jitter, so that the delays are exact.
        service.backoff = Backoff(
            service.config.backoff_base, service.config.backoff_cap, uniform=lambda low, high: high
        )
        services.append(service)
        return World(clock, control, connect, service, state_file)

    yield make
    for service in services:
        if service.running:
            service.stopService()


def messages(events: Any) -> list[str]:
    return [formatEvent(e) for e in events]


# -- creating and connecting -------------------------------------------------------


def test_first_run_creates_connects_and_writes_the_state_file(make: Callable[..., World]) -> None:
    w = make(created("myapp", "t1"), name="myapp")
    with capturedLogs() as events:
        w.service.startService()
        assert w.control.calls == [{"requested_name": "myapp", "management_token": None, "recreate_ttl": 7 * 86400}]
        assert w.connect.urls == ["ws://edge-a/connect"]
        assert w.connect.last.token == "ephemeral-t1-0"
        assert w.state().state == "offline"
        w.connect.last.ready("http://myapp.localhost:8080")
    state = w.state()
    assert (state.tunnel_id, state.name, state.public_url, state.state) == (
        "t1",
        "myapp",
        "http://myapp.localhost:8080",
        "ready",
    )
    assert state.recreate_token and token_expiry(state.recreate_token) == NOW + 86400
    assert state.recreate_expires_at == iso(NOW + 86400)
    assert stat.S_IMODE(os.stat(w.state_file).st_mode) == 0o600
    assert "tunnel ready: http://myapp.localhost:8080 -> http://127.0.0.1:3000" in messages(events)


def test_api_key_gets_a_management_token_for_create(make: Callable[..., World], tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("  alice-key-0123456789\n")
    w = make(created("pool", "t1"), name="pool", **{"api-key-file": str(key)})
    w.service.startService()
    assert w.control.token_calls == ["alice-key-0123456789"]
    assert w.control.calls[0]["management_token"] == "mgmt-alice-key-0123456789"


def test_candidates_are_tried_in_order_the_next_on_failure(make: Callable[..., World]) -> None:
    urls = ("ws://a/connect", "ws://b/connect", "ws://c/connect")
    w = make(created("x", "t1", urls=urls))
    w.connect.unreachable.add("ws://a/connect")
    w.service.startService()
    assert w.connect.urls == ["ws://a/connect", "ws://b/connect"]
    # A handshake that fails also moves on to the next.
    w.connect.last.fail_handshake()
    assert w.connect.urls == ["ws://a/connect", "ws://b/connect", "ws://c/connect"]
    w.connect.last.ready()
    assert w.state().state == "ready"
    # Once up and then down, it starts over from the first candidate.
    w.connect.last.close()
    w.clock.advance(1.0)
    assert w.connect.urls[3:] == ["ws://a/connect", "ws://b/connect"]


def test_all_candidates_unreachable_backs_off_exponentially_to_the_cap(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.connect.unreachable.add("ws://edge-a/connect")
    w.service.startService()
    times = []
    for _ in range(6):
        before = len(w.connect.urls)
        start = w.clock.seconds()
        while len(w.connect.urls) == before:
            w.clock.advance(0.25)
        times.append(w.clock.seconds() - start)
    assert times == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert len(w.control.calls) == 1  # the candidates are still good: no re-create


def test_control_api_down_backs_off_too(make: Callable[..., World]) -> None:
    w = make(ConnectionRefusedError("down"), ConnectionRefusedError("down"), created("x", "t1"))
    w.service.startService()
    assert len(w.control.calls) == 1
    w.clock.advance(0.99)
    assert len(w.control.calls) == 1
    w.clock.advance(0.01)
    assert len(w.control.calls) == 2
    w.clock.advance(2.0)
    assert len(w.control.calls) == 3
    assert w.connect.urls == ["ws://edge-a/connect"]


def test_a_stable_session_resets_the_backoff(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.connect.unreachable.add("ws://edge-a/connect")
    w.service.startService()
    w.clock.advance(1.0)
    w.clock.advance(2.0)
    w.clock.advance(4.0)  # next delay would be 8
    w.connect.unreachable.clear()
    w.clock.advance(8.0)
    w.connect.last.ready()
    w.clock.advance(STABLE_AFTER)
    w.connect.last.close()
    n = len(w.connect.urls)
    w.clock.advance(1.0)  # the base again, not 8
    assert len(w.connect.urls) == n + 1


def test_a_brief_session_does_not_reset_the_backoff(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.service.startService()
    for delay in (1.0, 2.0, 4.0):
        w.connect.last.ready()
        w.clock.advance(STABLE_AFTER / 4)
        w.connect.last.close()
        n = len(w.connect.urls)
        w.clock.advance(delay - 0.01)
        assert len(w.connect.urls) == n
        w.clock.advance(0.01)
        assert len(w.connect.urls) == n + 1


# -- refused tokens and re-creating ------------------------------------------------------


def test_refused_token_recreates_at_once_once_then_backs_off(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"), created("x", "t1", serial=1), created("x", "t1", serial=2))
    w.service.startService()
    w.connect.last.refuse(403)
    # At once, with the recreate token of the first create.
    assert len(w.control.calls) == 2
    assert w.control.calls[1]["recreate_token"] == created("x", "t1").recreate_token
    assert w.control.calls[1]["requested_name"] == "x"
    assert w.connect.last.token == "ephemeral-t1-1"
    w.connect.last.refuse(401)
    # Refused again: no hammering, the backoff's first delay first.
    assert len(w.control.calls) == 2
    w.clock.advance(0.99)
    assert len(w.control.calls) == 2
    w.clock.advance(0.01)
    assert len(w.control.calls) == 3
    w.connect.last.ready()
    assert w.state().state == "ready"


def test_refused_then_unreachable_backs_off_instead_of_spinning(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"), created("x", "t1", serial=1), created("x", "t1", serial=2))
    w.service.startService()
    w.connect.unreachable.add("ws://edge-a/connect")
    w.connect.last.refuse(403)
    assert len(w.control.calls) == 2
    assert len(w.connect.urls) == 2
    w.clock.advance(0.5)
    assert len(w.connect.urls) == 2  # waiting out the backoff, not looping


def test_restart_with_a_state_file_recreates_the_same_tunnel(make: Callable[..., World]) -> None:
    token = jwt(NOW + 3600, sub="t1", name="myapp")
    w = make(
        created("myapp", "t1", serial=1),
        state=AgentState(tunnel_id="t1", name="myapp", recreate_token=token, agent_id="agent-kept", state="ready"),
    )
    assert w.service.agent_id == "agent-kept"
    w.service.startService()
    assert w.control.calls == [
        {"requested_name": "myapp", "recreate_token": token, "management_token": None, "recreate_ttl": 7 * 86400}
    ]
    w.connect.last.ready()
    state = w.state()
    assert (state.tunnel_id, state.name, state.agent_id) == ("t1", "myapp", "agent-kept")
    assert state.recreate_token == created("myapp", "t1", serial=1).recreate_token


@pytest.mark.parametrize("status", [400, 401, 403, 409])
def test_refused_recreate_token_creates_afresh_and_says_the_name_changed(
    make: Callable[..., World], status: int
) -> None:
    old = jwt(NOW - 3600, sub="t1", name="myapp")  # truly expired
    w = make(
        ControlError(status, "unauthorized", "token expired"),
        created("fresh-name", "t2"),
        state=AgentState(tunnel_id="t1", name="myapp", recreate_token=old),
    )
    with capturedLogs() as events:
        w.service.startService()
    assert w.control.calls[0]["recreate_token"] == old
    assert "recreate_token" not in w.control.calls[1]
    assert w.control.calls[1]["requested_name"] is None
    text = "\n".join(messages(events))
    assert "THE NAME MAY CHANGE" in text
    assert "TUNNEL NAME CHANGED: myapp is now fresh-name (http://fresh-name.localhost)" in text
    w.connect.last.ready()
    state = w.state()
    assert (state.tunnel_id, state.name) == ("t2", "fresh-name")
    assert state.recreate_token == created("fresh-name", "t2").recreate_token


def test_recreate_failing_otherwise_keeps_the_token_and_backs_off(make: Callable[..., World]) -> None:
    token = jwt(NOW + 3600, sub="t1", name="myapp")
    w = make(
        ControlError(503, "internal_error", "try again"),
        created("myapp", "t1"),
        state=AgentState(tunnel_id="t1", name="myapp", recreate_token=token),
    )
    w.service.startService()
    assert len(w.control.calls) == 1
    assert w.state().recreate_token == token
    w.clock.advance(1.0)
    assert w.control.calls[1]["recreate_token"] == token


def test_a_different_name_starts_a_new_tunnel(make: Callable[..., World]) -> None:
    token = jwt(NOW + 3600, sub="t1", name="old")
    w = make(created("new", "t2"), name="new", state=AgentState(tunnel_id="t1", name="old", recreate_token=token))
    w.service.startService()
    assert w.control.calls == [{"requested_name": "new", "management_token": None, "recreate_ttl": 7 * 86400}]


def test_candidates_near_expiry_are_refreshed_before_reconnecting(make: Callable[..., World]) -> None:
    w = make(created("x", "t1", expires=NOW + 600), created("x", "t1", expires=NOW + 1200, serial=1))
    w.service.startService()
    w.connect.last.ready()
    w.clock.advance(60)
    w.connect.last.close()
    w.clock.advance(1.0)
    # Still 540 s of validity: the same token again, no create.
    assert len(w.control.calls) == 1
    assert w.connect.last.token == "ephemeral-t1-0"
    w.connect.last.ready()
    w.clock.advance(600 - 60 - 1 - 29)  # within 30 s of expiry
    w.connect.last.close()
    w.clock.advance(1.0)
    assert len(w.control.calls) == 2
    assert "recreate_token" in w.control.calls[1]
    assert w.connect.last.token == "ephemeral-t1-1"


# -- keeping the recreate token fresh -------------------------------------------------------


def test_recreate_token_is_refreshed_while_connected(make: Callable[..., World]) -> None:
    first = created("x", "t1", recreate_exp=NOW + 100)
    second = created("x", "t1", recreate_exp=NOW + 50 + 100, serial=1)
    w = make(first, second)
    w.service.startService()
    w.connect.last.ready()
    w.clock.advance(49.9)
    assert len(w.control.calls) == 1
    w.clock.advance(0.1)  # half the remaining life
    assert w.control.calls[1]["recreate_token"] == first.recreate_token
    assert w.state().recreate_token == second.recreate_token
    assert w.state().tunnel_id == "t1"
    assert len(w.connect.urls) == 1  # the session was not touched


def test_refresh_failure_retries_and_a_closed_session_stops_refreshing(make: Callable[..., World]) -> None:
    first = created("x", "t1", recreate_exp=NOW + 100)
    w = make(first, ConnectionRefusedError("control down"))
    w.service.startService()
    w.connect.last.ready()
    w.clock.advance(50)
    assert len(w.control.calls) == 2
    assert w.state().recreate_token == first.recreate_token
    w.connect.last.close()  # no more refreshing while down
    w.control.script.append(created("x", "t1", serial=9))
    w.connect.unreachable.add("ws://edge-a/connect")
    w.clock.advance(0.9)
    assert len(w.control.calls) == 2


# -- stopping --------------------------------------------------------------------------------


def test_stop_drains_the_session_and_leaves_the_name_reclaimable(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.service.startService()
    w.connect.last.ready()
    protocol = w.connect.last.protocol
    done = w.service.stopService()
    assert protocol.drained is not None
    fired: list[Any] = []
    done.addBoth(fired.append)
    assert fired == []  # held until the session has drained
    protocol.drained.callback(None)
    assert fired == [None]
    state = w.state()
    assert state.state == "offline"
    assert state.recreate_token == created("x", "t1").recreate_token
    w.connect.last.close()
    w.clock.advance(100)
    assert len(w.connect.urls) == 1  # no reconnect after stop


def test_stop_cuts_a_drain_that_takes_too_long(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"), **{"drain-timeout": 5.0})
    w.service.startService()
    w.connect.last.ready()
    protocol = w.connect.last.protocol
    done = w.service.stopService()
    fired: list[Any] = []
    done.addBoth(fired.append)
    w.clock.advance(4.9)
    assert fired == [] and protocol.closed_with is None
    w.clock.advance(0.1)
    assert protocol.closed_with == "drain timeout"
    assert len(fired) == 1


def test_stop_while_backing_off_ends_the_loop(make: Callable[..., World]) -> None:
    w = make(created("x", "t1"))
    w.connect.unreachable.add("ws://edge-a/connect")
    w.service.startService()
    w.service.stopService()
    w.clock.advance(100)
    assert w.connect.urls == ["ws://edge-a/connect"]
    assert w.clock.getDelayedCalls() == []


def test_token_expiry_reads_exp_and_tolerates_garbage() -> None:
    assert token_expiry(jwt(12345)) == 12345
    assert token_expiry(None) is None
    assert token_expiry("opaque") is None
    assert token_expiry("a.!!!.c") is None
    assert token_expiry(jwt(0).replace(jwt(0).split(".")[1], "e30")) is None  # {} has no exp
