"""
TCP tunnels on the agent in memory (issue 11, TCP tunnels): a raw byte
stream (C{BYTES_OPEN} mode C{RAW}) opened by a real edge session toward a
real agent session run with C{--tcp}, on netbore.testing's InMemoryTunnel
(the edge's public-port listener is not used: the stream is opened on the
edge's session directly, as its TCP listener does).  The local service is
an echo on the in-memory network.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from netbore.agent.tcp import NOT_HTTP, TcpForwarder, TcpStream
from netbore.agent.upgrade import HIGH_WATER
from netbore.protocol import ErrorCode
from netbore.testing import LOOPBACK, ORIGIN_PORT, InMemoryTunnel

WINDOW = 2 * 1024 * 1024  # (the edge's and the agent's default stream window)


class Echo(Protocol):
    """The local TCP service: echoes, unless told to hold what it reads."""

    def __init__(self, seen: list[Echo]) -> None:
        seen.append(self)
        self.got = b""
        self.echo = True
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.got += data
        if self.echo:
            self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = reason


class ViewerEnd:
    """
    Stands for the edge's side of one TCP connection (what the edge's TCP
    listener hangs in its session's C{streams}): records what the agent
    sent; acknowledges at once unless C{hold}.
    """

    def __init__(self) -> None:
        self.data = b""
        self.got_end = False
        self.reset_code: int | None = None
        self.hold = False
        self.held = 0

    def received(self, data: bytes, end_stream: bool) -> int:
        self.data += data
        self.got_end = self.got_end or end_stream
        if self.hold:
            self.held += len(data)
            return 0
        return len(data)

    def ended(self) -> bool:
        self.got_end = True
        return True  # (still sending: its window updates must reach it)

    def reset(self, code: int) -> None:
        self.reset_code = code

    def response_head(self, *args: Any) -> None:
        raise AssertionError("a RAW stream has no response head")

    def window_opened(self) -> None:
        pass

    def upload_paused(self) -> None:
        pass


@pytest.fixture
def seen() -> list[Echo]:
    return []


@pytest.fixture
def tunnel(seen: list[Echo]) -> Iterator[InMemoryTunnel]:
    t = InMemoryTunnel.build(origin=Factory.forProtocol(lambda: Echo(seen)))
    assert t.agent is not None
    t.agent.forwarder = TcpForwarder(t.reactor, f"{LOOPBACK}:{ORIGIN_PORT}")  # the agent's --tcp
    yield t
    t.close()


def edge_session(tunnel: InMemoryTunnel) -> Any:
    return tunnel.edge.registry.by_name("app").sessions[0]  # type: ignore[union-attr]


def open_raw(tunnel: InMemoryTunnel, pump: bool = True) -> tuple[int, ViewerEnd]:
    session = edge_session(tunnel)
    stream_id = session.session.open_byte_stream([(b"peer", b"192.0.2.7:51514")])
    end = ViewerEnd()
    session.streams[stream_id] = end
    session.flush()
    if pump:
        tunnel.pump()
    return stream_id, end


def send(tunnel: InMemoryTunnel, stream_id: int, data: bytes) -> None:
    """Send C{data} from the edge, as its window allows, pumping between."""
    session = edge_session(tunnel)
    while data:
        n = session.send_data(stream_id, data)
        data = data[n:]
        tunnel.pump()
        if not n and data:
            raise AssertionError(f"the stream's window stays shut with {len(data)} bytes to send")


def agent_stream(tunnel: InMemoryTunnel, stream_id: int) -> TcpStream:
    stream = tunnel.agent.current.streams[stream_id]  # type: ignore[union-attr]
    assert isinstance(stream, TcpStream)
    return stream


def test_bytes_both_ways(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    (echo,) = seen  # one new connection to the local address per stream
    data = bytes(range(256)) * (4 * 4096 + 7)  # ~4 MiB, beyond every window
    send(tunnel, stream_id, data)
    assert echo.got == data and end.data == data
    # A second stream is a second connection.
    second, end2 = open_raw(tunnel)
    send(tunnel, second, b"other")
    assert len(seen) == 2 and end2.data == b"other" and end.data == data


def test_bytes_sent_before_the_dial_completes_wait_for_it(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    session = edge_session(tunnel)
    stream_id, end = open_raw(tunnel, pump=False)
    assert session.send_data(stream_id, b"early ") == len(b"early ")
    session.send_end(stream_id)
    tunnel.pump()
    (echo,) = seen
    assert echo.got == b"early " and end.data == b"early "
    assert agent_stream(tunnel, stream_id).got_end


def test_edge_end_shuts_the_local_write_side_and_the_rest_still_flows(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    shut: list[bool] = []
    stream.transport.loseWriteConnection = lambda: shut.append(True)  # type: ignore[union-attr]  # (iosim's does nothing)
    send(tunnel, stream_id, b"request")
    edge_session(tunnel).send_end(stream_id)
    tunnel.pump()
    assert shut == [True] and stream.got_end and not stream.finished
    # The local side goes on answering after the viewer's half-close.
    seen[0].transport.write(b" and the answer")  # type: ignore[union-attr]
    seen[0].transport.loseConnection()  # type: ignore[union-attr]
    tunnel.pump()
    assert end.data == b"request and the answer" and end.got_end
    assert stream.finished and stream_id not in tunnel.agent.current.streams  # type: ignore[union-attr]


def test_local_end_is_an_end_toward_the_edge_and_the_viewer_may_still_send(
    tunnel: InMemoryTunnel, seen: list[Echo]
) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    seen[0].echo = False
    seen[0].transport.write(b"banner")  # type: ignore[union-attr]
    seen[0].transport.loseConnection()  # type: ignore[union-attr]  # (a clean end, as a FIN)
    tunnel.pump()
    assert end.data == b"banner" and end.got_end and end.reset_code is None
    assert stream.sent_end and not stream.got_end and not stream.finished


def test_a_stalled_local_reader_stops_the_acknowledgements(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    seen[0].echo = False
    stream.pauseProducing()  # the local connection's socket is full
    session = edge_session(tunnel)
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB from the viewer
    sent = 0
    while sent < len(data):
        n = session.send_data(stream_id, data[sent:])
        tunnel.pump()
        if not n:
            break
        sent += n
    # Written to the local socket but not acknowledged: the edge's window
    # shut at one stream window.
    assert sent <= WINDOW and stream.unacked == len(seen[0].got) == sent
    stream.resumeProducing()
    tunnel.pump()
    assert stream.unacked == 0
    send(tunnel, stream_id, data[sent:])
    assert seen[0].got == data


def test_a_stalled_viewer_stops_the_local_reads(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    end.hold = True  # the viewer reads nothing
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB from the local service
    seen[0].transport.write(data)  # type: ignore[union-attr]
    tunnel.pump()
    # The agent sent a stream window and holds the rest; beyond its high
    # water it stopped reading the local connection.
    assert len(end.data) == WINDOW
    assert stream.reading_paused and stream.out.size > HIGH_WATER
    end.hold = False
    edge_session(tunnel).acknowledge(stream_id, end.held)
    tunnel.pump()
    assert end.data == data and not stream.reading_paused


def test_dial_failure_resets_the_stream(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    tunnel.agent.forwarder = TcpForwarder(tunnel.reactor, f"{LOOPBACK}:4999")  # type: ignore[union-attr]  # (nothing there)
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        stream_id, end = open_raw(tunnel)
        tunnel.advance(1)  # (HostnameEndpoint reports the refusal at its next attempt's time)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert end.reset_code == ErrorCode.ORIGIN_UNREACHABLE and not seen
    assert stream_id not in tunnel.agent.current.streams  # type: ignore[union-attr]
    assert any(
        e.get("log_format", "").startswith("cannot reach the TCP service") and e["address"] == f"{LOOPBACK}:4999"
        for e in logged
    )


def test_a_reset_from_the_edge_aborts_the_local_connection(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    edge_session(tunnel).reset(stream_id, ErrorCode.CANCEL)
    tunnel.pump()
    assert stream.finished and seen[0].lost is not None
    assert stream_id not in tunnel.agent.current.streams  # type: ignore[union-attr]


def test_a_broken_local_connection_resets_the_stream(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    stream_id, end = open_raw(tunnel)
    stream = agent_stream(tunnel, stream_id)
    stream.connectionLost(Failure(ConnectionResetError()))  # (a TCP reset from the local service)
    tunnel.pump()
    assert end.reset_code == ErrorCode.ORIGIN_RESET


def test_an_http_request_to_a_tcp_agent_is_refused(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    response = tunnel.get("/")
    assert response.status == 502 and not seen


def test_an_upgrade_to_a_tcp_agent_is_refused(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    session = edge_session(tunnel)
    stream_id = session.session.open_upgrade(b"GET", b"/ws", [(b"host", b"app.tunnel.test")])
    end = ViewerEnd()
    session.streams[stream_id] = end
    session.flush()
    tunnel.pump()
    assert end.reset_code == ErrorCode.ORIGIN_UNREACHABLE and not seen
    assert NOT_HTTP == b"a TCP tunnel: no HTTP service here"


def test_an_http_agent_refuses_a_raw_stream(tunnel: InMemoryTunnel, seen: list[Echo]) -> None:
    tunnel.agent.forwarder = tunnel.forwarder  # type: ignore[union-attr]  # (the agent's --origin)
    stream_id, end = open_raw(tunnel)
    assert end.reset_code == ErrorCode.REFUSED_STREAM and not seen
