"""
HTTP/1.1 Upgrade pass-through in memory (issue 11, WebSocket
pass-through): netbore.edge.bytestream and netbore.agent.upgrade with a
real edge, agent session and origin on netbore.testing's InMemoryTunnel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from netbore.agent.upgrade import HIGH_WATER
from netbore.edge.config import EdgeConfig
from netbore.protocol import Settings
from netbore.testing import InMemoryTunnel, Viewer

SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Protocol: chat.v2\r\n\r\n"
)


class UpgradeOrigin(Protocol):
    """
    An origin that switches C{/ws} to an echo of raw bytes, refuses another
    upgrade with 403 (400 for a request that is not one), and records what
    it saw.
    """

    def __init__(self, seen: list[UpgradeOrigin]) -> None:
        seen.append(self)
        self.head = b""
        self.switched = False
        self.echoed = 0
        self.lost = False
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        if self.switched:
            self.echoed += len(data)
            self.transport.write(data)  # type: ignore[union-attr]
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        self.head, rest = self.buf[: end + 4], self.buf[end + 4 :]
        if self.head.startswith(b"GET /ws "):
            self.switched = True
            self.transport.write(SWITCH)  # type: ignore[union-attr]
            if rest:
                self.dataReceived(rest)
        elif b"\r\nupgrade: echo\r\n" in self.head.lower():
            self.transport.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\nnot for you\r\n")  # type: ignore[union-attr]
        else:  # (not an upgrade: its Upgrade field was dropped on the way)
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = True


@pytest.fixture
def seen() -> list[UpgradeOrigin]:
    return []


@pytest.fixture
def tunnel(seen: list[UpgradeOrigin]) -> Iterator[InMemoryTunnel]:
    t = InMemoryTunnel.build(origin=Factory.forProtocol(lambda: UpgradeOrigin(seen)))
    yield t
    t.close()


def upgrade(tunnel: InMemoryTunnel, target: str = "/ws", viewer: Viewer | None = None) -> Viewer:
    viewer = viewer or tunnel.viewer()
    viewer.send(
        f"GET {target} HTTP/1.1\r\nHost: {tunnel.host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: chat.v2\r\n\r\n".encode()
    )
    tunnel.pump()
    return viewer


def test_switch_and_echo(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    assert viewer.received == SWITCH
    (origin,) = seen
    # The hop-by-hop fields of an upgrade reach the origin, with the edge's forwarding fields.
    head = origin.head.lower()
    assert b"\r\nconnection: upgrade\r\n" in head and b"\r\nupgrade: echo\r\n" in head
    assert b"sec-websocket-key: dghlihnhbxbszsbub25jzq==" in head and b"x-forwarded-for: " in head
    viewer.received = b""
    viewer.send(b"hello, raw bytes\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    tunnel.pump()
    assert viewer.received == b"hello, raw bytes\r\n\r\nGET / HTTP/1.1\r\n\r\n"


def test_bytes_sent_with_the_request_wait_for_the_switch(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = tunnel.viewer()
    viewer.send(
        f"GET /ws HTTP/1.1\r\nHost: {tunnel.host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n".encode()
        + b"GET /not-a-request HTTP/1.1\r\n\r\nearly"
    )
    tunnel.pump()
    # Not read as a pipelined request: the origin's 101 first, then they go through as bytes.
    assert viewer.received == SWITCH + b"GET /not-a-request HTTP/1.1\r\n\r\nearly"
    assert seen[0].echoed == len(b"GET /not-a-request HTTP/1.1\r\n\r\nearly")


def test_large_echo_under_backpressure(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    viewer.received = b""
    data = bytes(range(256)) * (4 * 4096 + 7)  # ~4 MiB, beyond every window
    viewer.send(data)
    tunnel.pump()
    assert len(viewer.received) == len(data)
    assert viewer.received == data


def test_viewer_close_reaches_origin(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    viewer.close()
    tunnel.pump()
    # The viewer's clean close is an END: the agent shuts the origin's write
    # side (iosim's loseWriteConnection does nothing), the stream goes on.
    streams = tunnel.agent.current.streams  # type: ignore[union-attr]
    (stream,) = streams.values()
    assert stream.got_end and not stream.sent_end
    seen[0].transport.loseConnection()  # type: ignore[union-attr]
    tunnel.pump()
    assert stream.finished and not streams
    assert not tunnel.edge.registry.by_name("app").sessions[0].streams  # type: ignore[union-attr]


def test_origin_close_reaches_viewer(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    seen[0].transport.write(b"bye")  # type: ignore[union-attr]
    seen[0].transport.loseConnection()  # type: ignore[union-attr]
    tunnel.pump()
    assert viewer.received.endswith(b"bye")
    # The origin's close is an END: the edge shuts the viewer's write side
    # (iosim's loseWriteConnection does nothing); the viewer's close ends it all.
    edge_streams = tunnel.edge.registry.by_name("app").sessions[0].streams  # type: ignore[union-attr]
    (exchange,) = edge_streams.values()
    assert exchange.got_end and not exchange.sent_end
    viewer.close()
    tunnel.pump()
    assert exchange.sent_end and not edge_streams
    assert not tunnel.agent.current.streams  # type: ignore[union-attr]


def test_refused_upgrade_is_an_ordinary_response(tunnel: InMemoryTunnel) -> None:
    viewer = upgrade(tunnel, "/refuse")
    response = viewer.response()
    assert response.status == 403 and response.body == b"not for you\r\n"


def test_agent_without_byte_streams(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    tunnel.disconnect_agent()
    old = tunnel.connect_agent("old-agent", settings=Settings())  # byte_streams not announced, as before issue 11
    assert old.current is not None
    response = upgrade(tunnel).response()
    assert response.status == 502
    assert response.header("X-Netbore-Error") == "upgrade_not_supported"
    assert not seen
    # An ordinary request still goes through.
    assert tunnel.get("/plain").status == 400


def test_no_idle_timeout_by_default(tunnel: InMemoryTunnel) -> None:
    viewer = upgrade(tunnel)
    tunnel.advance(24 * 3600)
    viewer.received = b""
    viewer.send(b"still there")
    tunnel.pump()
    assert viewer.received == b"still there" and not viewer.lost


def test_stream_idle_timeout(seen: list[UpgradeOrigin]) -> None:
    config = EdgeConfig(domain="tunnel.test", allow_anonymous=True, stream_idle_timeout=30.0)
    tunnel = InMemoryTunnel.build(origin=Factory.forProtocol(lambda: UpgradeOrigin(seen)), config=config)
    try:
        viewer = upgrade(tunnel)
        tunnel.advance(20)
        viewer.send(b"ping")  # bytes moved: the clock starts again
        tunnel.pump()
        tunnel.advance(20)
        assert not viewer.lost
        tunnel.advance(11)
        assert viewer.lost and seen[0].lost
        assert not tunnel.agent.current.streams  # type: ignore[union-attr]
    finally:
        tunnel.close()


WINDOW = 2 * 1024 * 1024  # (the edge's and the agent's default stream window)


def _ends(tunnel: InMemoryTunnel) -> tuple[Any, Any]:
    (exchange,) = tunnel.edge.registry.by_name("app").sessions[0].streams.values()  # type: ignore[union-attr]
    (stream,) = tunnel.agent.current.streams.values()  # type: ignore[union-attr]
    return exchange, stream


def test_a_full_viewer_holds_its_stream_window(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    viewer.received = b""
    exchange, stream = _ends(tunnel)
    exchange.pauseProducing()  # the viewer's socket is full
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB from the origin
    seen[0].transport.write(data)  # type: ignore[union-attr]
    tunnel.pump()
    # Written to the viewer's socket but not acknowledged: the agent stopped
    # at the window, and stopped reading the origin beyond its high water.
    assert len(viewer.received) <= WINDOW
    assert exchange.unacked == len(viewer.received)
    # (iosim's transports ignore pauseProducing: the agent asked, that is what shows here)
    assert stream.reading_paused and stream.out.size > HIGH_WATER
    exchange.resumeProducing()
    tunnel.pump()
    assert viewer.received == data


def test_a_full_origin_holds_its_stream_window(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    viewer = upgrade(tunnel)
    viewer.received = b""
    exchange, stream = _ends(tunnel)
    stream.pauseProducing()  # the origin's socket is full
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB from the viewer
    viewer.send(data)
    tunnel.pump()
    # The agent acknowledges nothing more: the edge holds the rest and stops reading the viewer.
    assert seen[0].echoed <= WINDOW
    assert stream.unacked == seen[0].echoed
    assert exchange.upload_blocked and exchange.backlog
    stream.resumeProducing()
    tunnel.pump()
    assert seen[0].echoed == len(data) and viewer.received == data


def test_a_viewer_closing_behind_its_held_bytes_still_has_them_sent_then_ended(
    tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]
) -> None:
    viewer = upgrade(tunnel)
    viewer.received = b""
    exchange, stream = _ends(tunnel)
    stream.pauseProducing()  # the origin's socket is full
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB from the viewer, then it closes
    viewer.send(data)
    tunnel.pump()
    assert exchange.backlog
    viewer.close()
    tunnel.pump()
    stream.resumeProducing()
    tunnel.pump()
    assert seen[0].echoed == len(data)
    assert not exchange.backlog and stream.got_end  # the END followed the bytes


def test_a_101_head_breaking_the_rules_is_refused(tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]) -> None:
    global SWITCH
    bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nX-Bad: a\x01b\r\n\r\n"
    original, SWITCH = SWITCH, bad
    try:
        response = upgrade(tunnel).response()
    finally:
        SWITCH = original
    assert response.status == 502 and response.header("X-Netbore-Error") == "invalid_response"
    assert tunnel.edge.site.router.refused_heads == 1


def test_max_byte_streams_per_tunnel(seen: list[UpgradeOrigin]) -> None:
    config = EdgeConfig(domain="tunnel.test", allow_anonymous=True, max_byte_streams=2)
    tunnel = InMemoryTunnel.build(origin=Factory.forProtocol(lambda: UpgradeOrigin(seen)), config=config)
    try:
        first, second = upgrade(tunnel), upgrade(tunnel)
        assert first.received == second.received == SWITCH
        refused = upgrade(tunnel).response()
        assert refused.status == 503 and refused.header("X-Netbore-Error") == "too_many_streams"
        assert tunnel.edge.site.router.byte_streams_refused == 1
        assert len(seen) == 2  # (the refused one never reached the origin)
        # An ordinary request is not a byte stream: still served.
        assert tunnel.get("/plain").status == 400
        # One closed (both ways): its place is free again.
        first.close()
        seen[0].transport.loseConnection()  # type: ignore[union-attr]
        tunnel.pump()
        assert upgrade(tunnel).received == SWITCH
        assert tunnel.edge.site.router.byte_streams == {tunnel.created["tunnel_id"]: 2}
    finally:
        tunnel.close()


def test_data_with_end_stream_keeps_the_viewer_direction_going(
    tunnel: InMemoryTunnel, seen: list[UpgradeOrigin]
) -> None:
    # An agent may end its direction with its last DATA (END_STREAM) rather
    # than a separate END: the viewer's direction goes on, its window
    # updates still reach the edge's stream.
    viewer = upgrade(tunnel)
    edge_streams = tunnel.edge.registry.by_name("app").sessions[0].streams  # type: ignore[union-attr]
    ((stream_id, exchange),) = edge_streams.items()
    tunnel.agent.current.send_data(stream_id, b"last words", end_stream=True)  # type: ignore[union-attr]
    tunnel.pump()
    assert viewer.received.endswith(b"last words") and exchange.got_end
    assert edge_streams.get(stream_id) is exchange
    viewer.send(b"x" * (8 * 1024 * 1024))  # beyond every window: held, sent as it opens
    tunnel.pump()
    assert not exchange.backlog and not exchange.upload_blocked
