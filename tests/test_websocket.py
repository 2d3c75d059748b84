"""
Tests for L{netbore.websocket}: the tunnel-WebSocket adapter both ends
share, driven through the edge's L{EdgeSession} and the agent's
L{AgentSessionProtocol} over C{twisted.test.iosim}.  No sockets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import LogEvent, capturedLogs

from netbore.agent.session import AgentSessionProtocol
from netbore.edge.agents import EdgeSession
from netbore.protocol import (
    BytesOpened,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    Settings,
    StreamEnded,
    StreamReset,
    WindowOpened,
    WindowUpdate,
    encode,
    max_message_size,
)
from netbore.websocket import MAX_CLOSE_REASON, TransportProducer, close_reason

from .test_agent_session import EDGE_SETTINGS
from .test_agent_session import Harness as AgentHarness
from .test_edge_agents import FakeAgent
from .test_edge_agents import Harness as EdgeHarness


class Exchange:
    """
    A viewer exchange as the edge session sees it, recording each call.
    """

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on

    def _record(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise RuntimeError(f"bug in {call[0]}")

    def response_head(self, status: int, reason: bytes, headers: Any, end_stream: bool) -> None:
        self._record("head", status)

    def data(self, data: bytes, end_stream: bool) -> None:
        self._record("data", data)

    def ended(self) -> None:
        self._record("ended")

    def reset(self, code: int) -> None:
        self._record("reset", code)

    def window_opened(self) -> None:
        self._record("window")

    def upload_paused(self) -> None:
        # (the transport toward the agent is full; not recorded: these
        # tests are about the other calls)
        pass


def _closed(agent: FakeAgent) -> tuple[bool, int | None, str | None] | None:
    # (read through a call: mypy would keep an earlier narrowing)
    return agent.closed


def _failures(events: Sequence[LogEvent]) -> list[LogEvent]:
    return [e for e in events if "log_failure" in e]


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[EdgeHarness, Any, EdgeSession, Any]]:
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    yield h, agent, session, pump


def _open(session: EdgeSession, pump: Any, exchange: Exchange, end_stream: bool = True) -> int:
    sid = session.open_stream(exchange, b"GET", b"/", [(b"host", b"app.tunnel.test")], end_stream)  # type: ignore[arg-type]
    pump.flush()
    return sid


# -- the hello -----------------------------------------------------------------


def test_an_agent_that_sends_no_hello_is_failed_after_the_handshake_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = EdgeHarness(tmp_path)

    def silent(self: FakeAgent) -> None:
        self.opened = True

    monkeypatch.setattr(FakeAgent, "onOpen", silent)
    agent, session, pump = h.connect(h.token())
    assert agent.opened and _closed(agent) is None
    h.clock.advance(h.endpoint.factory.openHandshakeTimeout)
    pump.flush()
    h.clock.advance(3)
    pump.flush()
    assert agent.closed is not None and agent.closed[1] == 4000 + ErrorCode.PROTOCOL_ERROR
    assert session.session is None


def test_each_role_handles_the_events_it_can_receive(edge: Any) -> None:
    h, agent, session, pump = edge
    assert set(session._handlers) == {
        ResponseReceived,
        DataReceived,
        StreamEnded,
        StreamReset,
        WindowOpened,
        GoAwayReceived,
    }
    a = AgentHarness()
    assert set(a.client._handlers) == {
        BytesOpened,  # (the agent takes byte streams: issue 11)
        RequestReceived,
        DataReceived,
        StreamEnded,
        StreamReset,
        WindowOpened,
        GoAwayReceived,
    }


# -- per-event failure isolation --------------------------------------------------


def test_a_bug_in_one_edge_exchange_resets_that_stream_only(edge: Any) -> None:
    h, agent, session, pump = edge
    broken, fine = Exchange(fail_on="head"), Exchange()
    bad_sid = _open(session, pump, broken)
    good_sid = _open(session, pump, fine)
    with capturedLogs() as events:
        agent.session.send_response_head(bad_sid, 200, b"OK", [])
        agent.session.send_response_head(good_sid, 200, b"OK", [])
        agent.flush()  # both heads in one read
        pump.flush()
    (failure,) = _failures(events)
    assert isinstance(failure["log_failure"].value, RuntimeError)
    # The broken exchange was told (its viewer gets a 502), the agent was
    # told with a RESET, and the other stream and the session went on.
    assert broken.calls == [("head", 200), ("reset", ErrorCode.INTERNAL_ERROR)]
    assert fine.calls == [("head", 200)]
    resets = [e for e in agent.events if isinstance(e, StreamReset)]
    assert [(r.stream_id, r.code) for r in resets] == [(bad_sid, ErrorCode.INTERNAL_ERROR)]
    assert agent.closed is None and session.session is not None
    assert _open(session, pump, Exchange()) > good_sid


def test_a_bug_in_one_stream_during_a_window_broadcast_spares_the_others(edge: Any) -> None:
    h, agent, session, pump = edge
    broken, fine = Exchange(fail_on="window"), Exchange()
    bad_sid = _open(session, pump, broken, end_stream=False)
    _open(session, pump, fine, end_stream=False)
    with capturedLogs() as events:
        session.transport_paused()
        session.transport_resumed()  # wakes every stream
    assert len(_failures(events)) == 1
    assert fine.calls == [("window",)]
    assert broken.calls == [("window",), ("reset", ErrorCode.INTERNAL_ERROR)]
    assert bad_sid not in session.streams
    pump.flush()
    assert [e.stream_id for e in agent.events if isinstance(e, StreamReset)] == [bad_sid]


def test_agent_logs_the_failure_of_a_stream_event() -> None:
    h = AgentHarness()

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    h.forwarder.forward = broken  # type: ignore[method-assign,assignment]
    with capturedLogs() as events:
        h.edge_request()
    (failure,) = _failures(events)
    assert isinstance(failure["log_failure"].value, RuntimeError)
    assert h.closed == []


# -- credit ----------------------------------------------------------------------


SMALL = Settings(stream_window=64 * 1024, session_window=128 * 1024)


def test_edge_gives_back_the_credit_of_data_for_a_forgotten_stream(tmp_path: Path) -> None:
    h = EdgeHarness(tmp_path)
    h.endpoint.settings = SMALL  # half the session window: one stream window
    agent, session, pump = h.connect(h.token())
    sid = _open(session, pump, Exchange())
    wire = agent.session
    assert wire is not None
    wire.send_response_head(sid, 200, b"OK", [])
    agent.flush()
    pump.flush()
    session.streams.clear()  # gone on the edge, still open on the wire
    window = wire.send_window(sid)
    sent = 0
    while sent < window:
        n = min(window - sent, 16 * 1024)
        wire.send_data(sid, b"x" * n)
        sent += n
    agent.flush()
    pump.flush()
    # The session window's half went back: a WINDOW_UPDATE on stream 0.
    assert wire._send_window == SMALL.session_window


def test_agent_gives_back_the_credit_of_data_for_a_forgotten_stream() -> None:
    h = AgentHarness(settings=SMALL)
    sid = h.edge_request(b"POST", b"/up", end_stream=False)
    h.client.streams.clear()  # gone on the agent, still open on the wire
    edge = h.edge.session
    assert edge is not None
    window = edge.send_window(sid)
    edge.send_data(sid, b"u" * window)
    h.edge.flush()
    h.flush()
    # The session window's half went back: a WINDOW_UPDATE on stream 0.
    assert edge._send_window == SMALL.session_window


# -- window broadcasts --------------------------------------------------------------


def test_a_session_window_update_wakes_no_stream_that_does_not_wait_on_it(edge: Any) -> None:
    """
    Issue 10, item 16: 200 open streams, none waiting for the session's
    window: an update of it touches none of them (it walked them all).
    """
    h, agent, session, pump = edge
    exchanges = [Exchange() for _ in range(200)]
    for exchange in exchanges:
        _open(session, pump, exchange, end_stream=False)
    # (session window updates by hand: the agent has received nothing)
    for _ in range(3):
        agent.sendMessage(encode(WindowUpdate(0, 1000)), isBinary=True)
    pump.flush()
    assert sum(len(x.calls) for x in exchanges) == 0


# -- message size -----------------------------------------------------------------


def test_both_ends_bound_messages_by_the_one_formula(edge: Any) -> None:
    h, agent, session, pump = edge
    factory = h.endpoint.factory
    assert factory.maxMessagePayloadSize == max_message_size(h.config.max_frame_payload)
    assert factory.maxFramePayloadSize == factory.maxMessagePayloadSize
    a = AgentHarness()
    assert a.factory.maxMessagePayloadSize == max_message_size(a.factory.settings.max_frame_payload)
    assert a.factory.maxFramePayloadSize == a.factory.maxMessagePayloadSize


# -- close reasons ------------------------------------------------------------------


def test_close_reason_is_cut_at_123_utf8_bytes_on_a_character_boundary() -> None:
    assert close_reason("short") == "short"
    ascii_reason = "x" * 200
    assert close_reason(ascii_reason) == "x" * MAX_CLOSE_REASON
    accented = "é" * 100  # 200 bytes; 61 characters fit (122 bytes)
    cut = close_reason(accented)
    assert cut == "é" * 61 and len(cut.encode("utf-8")) <= MAX_CLOSE_REASON
    assert close_reason("x" + "€" * 60) == "x" + "€" * 40  # 3-byte characters: 121 bytes


def test_edge_closes_with_a_long_non_ascii_reason_cut_to_fit(edge: Any) -> None:
    h, agent, session, pump = edge
    error = ProtocolError("é" * 200)
    session.fail(error)
    pump.flush()
    h.clock.advance(3)
    pump.flush()
    assert agent.closed is not None and agent.closed[1] == 4001
    reason = agent.closed[2] or ""
    assert str(error).startswith(reason) and 120 <= len(reason.encode("utf-8")) <= MAX_CLOSE_REASON
    # What the edge says it sent is what went on the wire.
    assert session.sent_close == (4001, reason)


def test_agent_closes_with_a_long_non_ascii_reason_cut_to_fit() -> None:
    h = AgentHarness()
    h.client.close("€" * 100)
    h.flush()
    (closed,) = h.closed
    assert closed.reason == "€" * 41
    assert h.edge.closed is not None and h.edge.closed[2] == "€" * 41


# -- backpressure -------------------------------------------------------------------


def test_edge_registers_a_producer_with_its_transport(edge: Any) -> None:
    h, agent, session, pump = edge
    producer = session.transport.producer
    assert isinstance(producer, TransportProducer) and session.transport.streamingProducer


def test_a_full_transport_shuts_the_edge_streams_until_it_drains(edge: Any) -> None:
    h, agent, session, pump = edge
    exchange = Exchange()
    sid = _open(session, pump, exchange, end_stream=False)
    producer = session.transport.producer
    producer.pauseProducing()
    # The exchange keeps the viewer's body (and pauses the viewer).
    assert session.send_data(sid, b"body") == 0
    assert exchange.calls == []
    producer.resumeProducing()
    assert exchange.calls == [("window",)]
    assert session.send_data(sid, b"body") == 4


def test_agent_streams_opened_while_paused_start_paused() -> None:
    h = AgentHarness()
    producer = h.client_io.producer
    assert isinstance(producer, TransportProducer)
    producer.pauseProducing()
    h.edge_request()
    response = h.respond(0, b"a", length=100)
    transport = response.transport
    assert [transport.paused, h.client.send_window(1)] == [True, 0]  # nothing more toward a full transport
    producer.resumeProducing()
    assert [transport.paused, h.client.send_window(1)] == [False, EDGE_SETTINGS.stream_window - 1]


# -- onConnect failures ----------------------------------------------------------------


def test_a_bug_in_the_edge_s_opening_handshake_is_logged_with_its_failure(edge: Any) -> None:
    h, agent, session, pump = edge

    def broken(tunnel_id: str) -> Any:
        raise RuntimeError("registry down")

    h.registry.get = broken
    with capturedLogs() as events:
        agent, session, pump = h.connect(h.token(), agent_id="other")
    (failure,) = _failures(events)
    assert isinstance(failure["log_failure"].value, RuntimeError)
    assert not agent.opened and agent.closed is not None
    assert "500" in (agent.closed[2] or "") and "registry down" not in (agent.closed[2] or "")


def test_a_bug_in_the_agent_s_opening_handshake_is_logged_with_its_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: AgentSessionProtocol, response: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(AgentSessionProtocol, "_upgraded", broken)
    with capturedLogs() as events:
        h = AgentHarness()
    assert any(isinstance(f["log_failure"].value, RuntimeError) for f in _failures(events))
    (closed,) = h.closed
    assert not closed.ready and h.ready == []


# -- bugs that break the whole session ---------------------------------------------------


def test_a_bug_starting_the_edge_session_closes_it_without_escaping(tmp_path: Path) -> None:
    h = EdgeHarness(tmp_path)

    def broken(tunnel: Any, session: Any) -> None:
        raise RuntimeError("registry down")

    h.endpoint.attach = broken  # type: ignore[method-assign]
    with capturedLogs() as events:
        agent, session, pump = h.connect(h.token())
        h.clock.advance(3)
        pump.flush()
    (failure,) = _failures(events)
    assert isinstance(failure["log_failure"].value, RuntimeError)
    assert agent.closed is not None and agent.closed[1] == 4000 + ErrorCode.INTERNAL_ERROR


def test_a_bug_in_the_session_closes_it_without_escaping(edge: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h, agent, session, pump = edge

    def broken(message: bytes) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(session.session, "receive", broken)
    with capturedLogs() as events:
        agent.sendMessage(encode(WindowUpdate(0, 1)), isBinary=True)
        pump.flush()
        h.clock.advance(3)
        pump.flush()
    assert len(_failures(events)) == 1
    assert agent.closed is not None and agent.closed[1] == 4000 + ErrorCode.INTERNAL_ERROR


# -- the tunnel WebSocket's socket ------------------------------------------------------


def test_both_ends_set_tcp_nodelay(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # autobahn's own tcpNoDelay option never takes effect (it reads it
    # before copying it from the factory); without TCP_NODELAY an agent's
    # second small frame waited 40 ms for the ACK of its first (the TCP bulk
    # benchmark's stalled uploads).
    from twisted.test import iosim

    calls: list[tuple[object, bool]] = []
    monkeypatch.setattr(iosim.FakeTransport, "setTcpNoDelay", lambda self, on: calls.append((self, on)))
    h = AgentHarness()
    assert (h.client_io, True) in calls
    e = EdgeHarness(tmp_path)
    agent, session, pump = e.connect(e.token())
    assert (session.transport, True) in calls
