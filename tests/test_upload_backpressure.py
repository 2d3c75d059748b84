"""
A hostile agent must not make the edge buffer without limit (issue 10,
item 2), without sockets: the peer's windows are clamped to ours, and a
full WebSocket transport toward the agent pauses the viewers whose bodies
feed it at once, until it drains.  The same with real processes:
L{tests.test_integration_hostile_agent}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from netbore.protocol import Settings, clamp_peer
from netbore.protocol.handshake import MAX_WINDOW

from . import test_edge_agents
from .test_edge_agents import Harness as AgentsHarness
from .test_edge_exchange import Harness as ExchangeHarness

KiB = 1024
HUGE = Settings(stream_window=MAX_WINDOW, session_window=MAX_WINDOW, max_frame_payload=1024 * KiB, batch=True)


def test_clamp_peer_cuts_the_peer_s_windows_to_ours() -> None:
    local = Settings(stream_window=64 * KiB, session_window=256 * KiB)
    clamped = clamp_peer(local, HUGE)
    assert (clamped.stream_window, clamped.session_window) == (64 * KiB, 256 * KiB)
    # What the peer says of frames and batching is its own business.
    assert (clamped.max_frame_payload, clamped.batch) == (1024 * KiB, True)
    # Smaller windows than ours are kept as the peer announced them.
    small = Settings(stream_window=1000, session_window=2000)
    assert clamp_peer(local, small) == small


def test_an_agent_announcing_huge_windows_gets_only_the_edge_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(test_edge_agents, "AGENT_SETTINGS", HUGE)
    h = AgentsHarness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    assert edge.session is not None and edge.peer_hello is not None
    assert edge.peer_hello.settings.stream_window == MAX_WINDOW
    sid = edge.session.send_request_head(b"POST", b"/", [(b"host", b"app.tunnel.test")], False)
    assert edge.session.send_window(sid) == h.config.stream_window
    many = [edge.session.send_request_head(b"POST", b"/", [(b"host", b"app.tunnel.test")], False) for _ in range(20)]
    sent = 0
    for stream_id in [sid, *many]:
        n = edge.session.send_window(stream_id)
        edge.session.send_data(stream_id, b"x" * n)
        sent += n
    # The whole session never holds more unacknowledged than the edge's own session window.
    assert sent == h.config.session_window
    assert edge.session.send_window(many[-1]) == 0


class _Exchange:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def upload_paused(self) -> None:
        self.calls.append("paused")

    def window_opened(self) -> None:
        self.calls.append("window")


def test_a_full_transport_pauses_every_stream_of_the_session_at_once(tmp_path: Path) -> None:
    h = AgentsHarness(tmp_path)
    agent, edge, pump = h.connect(h.token())
    exchanges = [_Exchange() for _ in range(3)]
    for exchange in exchanges:
        edge.open_stream(exchange, b"POST", b"/", [(b"host", b"app.tunnel.test")], False)  # type: ignore[arg-type]
    producer: Any = edge.transport.producer  # type: ignore[union-attr]
    producer.pauseProducing()
    assert [e.calls for e in exchanges] == [["paused"]] * 3
    producer.pauseProducing()  # (once per pause)
    assert [e.calls for e in exchanges] == [["paused"]] * 3
    producer.resumeProducing()
    assert [e.calls for e in exchanges] == [["paused", "window"]] * 3


def test_an_uploading_viewer_is_paused_at_once_and_resumed_when_the_transport_drains() -> None:
    h = ExchangeHarness(window=1024 * KiB)
    h.head(b"POST", b"/upload", length=100 * KiB)
    h.send(b"a" * KiB)
    assert h.transport.producerState == "producing"
    h.exchange.upload_paused()
    # Not read any more, although the stream's window is open.
    assert h.transport.producerState == "paused"
    h.exchange.window_opened()
    assert h.transport.producerState == "producing"
    h.send(b"b" * KiB)
    assert bytes(h.session.sent[1]) == b"a" * KiB + b"b" * KiB


def test_a_viewer_not_sending_a_body_is_not_paused() -> None:
    h = ExchangeHarness()
    h.head(b"GET", b"/")
    h.exchange.upload_paused()
    assert h.transport.producerState == "producing"
