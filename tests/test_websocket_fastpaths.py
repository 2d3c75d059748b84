"""
Tests for L{netbore.websocket.fastpaths} and the batched C{sendData}: what
netbore takes out of autobahn's per-message path happens only by an
explicit call, only where autobahn is the one it was written against, and
otherwise autobahn works as it is.  No sockets.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import autobahn.util
import autobahn.websocket.protocol as autobahn_protocol
import pytest
from autobahn.twisted.websocket import WebSocketAdapterProtocol
from autobahn.websocket.protocol import WebSocketProtocol

from netbore.protocol import GoAway, decode, encode
from netbore.websocket import (
    FastPaths,
    TunnelWebSocket,
    adapter,
    install_fast_paths,
    options,
    remove_fast_paths,
    send_data_known,
)

from .test_edge_agents import Harness as EdgeHarness


@pytest.fixture(autouse=True)
def no_fast_paths() -> Iterator[None]:
    remove_fast_paths()
    yield
    remove_fast_paths()


def _observed_messages(tmp_path: Path) -> list[bytes]:
    """
    Messages the edge session's autobahn "message" observers saw while
    the agent sent two.
    """
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    seen: list[bytes] = []
    session.on("message", lambda payload, is_binary: seen.append(payload))
    exchange_calls: list[Any] = []

    class Exchange:
        def response_head(self, *args: Any) -> None:
            exchange_calls.append(args[0])

        def reset(self, code: int) -> None:
            exchange_calls.append(-code)

    sid = session.open_stream(Exchange(), b"GET", b"/", [], True)  # type: ignore[arg-type]
    pump.flush()
    assert agent.session is not None
    agent.session.send_response_head(sid, 200, b"OK", [], end_stream=True)
    agent.flush()
    pump.flush()
    assert exchange_calls == [200]  # delivered either way
    return seen


def test_importing_changes_nothing_in_autobahn() -> None:
    script = (
        "import autobahn.util, autobahn.websocket.protocol as p, autobahn.twisted.websocket as t\n"
        "import netbore.websocket, netbore.edge.agents, netbore.agent.session\n"
        "from netbore.websocket import TunnelWebSocket\n"
        "assert p.hltype is autobahn.util.hltype and t.hlval is autobahn.util.hlval\n"
        "assert not TunnelWebSocket.skip_message_observers and not TunnelWebSocket.skip_read_debug\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_install_makes_debug_arguments_plain_and_skips_message_observers(tmp_path: Path) -> None:
    assert _observed_messages(tmp_path) != []  # autobahn's way: observers fire
    installed = install_fast_paths()
    assert installed == FastPaths(
        plain_debug_arguments=True, no_message_observers=True, no_read_debug_line=True, own_frame_reads=True
    )
    assert autobahn_protocol.hltype is not autobahn.util.hltype
    assert autobahn_protocol.hltype(WebSocketProtocol.sendData) is WebSocketProtocol.sendData
    assert TunnelWebSocket.skip_message_observers
    assert _observed_messages(tmp_path) == []
    assert install_fast_paths() == installed  # idempotent
    remove_fast_paths()
    assert autobahn_protocol.hltype is autobahn.util.hltype


def test_a_changed_on_message_end_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = WebSocketProtocol.onMessageEnd

    def changed(self: WebSocketProtocol) -> None:
        original(self)

    monkeypatch.setattr(WebSocketProtocol, "onMessageEnd", changed)
    installed = install_fast_paths()
    assert not installed.no_message_observers
    assert not TunnelWebSocket.skip_message_observers
    assert _observed_messages(tmp_path) != []  # autobahn's own, observers and all


def test_formatters_that_are_not_autobahn_s_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    def other(value: Any) -> str:
        return "other"

    monkeypatch.setattr(autobahn_protocol, "hltype", other)
    installed = install_fast_paths()
    assert not installed.plain_debug_arguments
    assert autobahn_protocol.hltype is other


def test_a_changed_send_data_is_not_relied_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = WebSocketProtocol.sendData

    def changed(self: WebSocketProtocol, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        original(self, data, sync, chopsize)

    monkeypatch.setattr(WebSocketProtocol, "sendData", changed)
    assert not send_data_known()
    monkeypatch.undo()
    # With the check failed (as at import on such an autobahn), frames are
    # written by autobahn at once, not held in the batch.
    monkeypatch.setattr(adapter, "_BATCHED_SEND", False)
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    h.writes.hold()
    try:
        session.go_away("now")
        session.flush_frames()
        assert session.transport.stream != []
    finally:
        h.writes.release()


def test_the_installed_autobahn_takes_every_fast_path() -> None:
    # Run against autobahn's newest release too (tox -e newest): a change
    # there shows here, not as a silent slowdown.
    assert send_data_known()
    assert install_fast_paths() == FastPaths(
        plain_debug_arguments=True, no_message_observers=True, no_read_debug_line=True, own_frame_reads=True
    )


def _read_debug_lines(tmp_path: Path) -> int:
    """
    autobahn's per-read debug lines while the edge session reads a message.
    """
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    lines: list[Any] = []

    class Spy:
        """
        The session's autobahn logger, its debug calls counted.
        """

        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def debug(self, format: str, **kw: Any) -> None:
            if "received" in format and "data_len" in kw:
                lines.append(kw)
            self.real.debug(format, **kw)

    session.log = Spy(session.log)  # this session's only
    agent.sendMessage(encode(GoAway(0, 0, b"")), isBinary=True)
    pump.flush()
    assert session.session is not None and session.session.go_away_received
    return len(lines)


def test_install_skips_autobahn_s_per_read_debug_line(tmp_path: Path) -> None:
    assert _read_debug_lines(tmp_path) == 1
    install_fast_paths()
    assert TunnelWebSocket.skip_read_debug
    assert _read_debug_lines(tmp_path) == 0


def test_a_changed_data_received_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = WebSocketAdapterProtocol.dataReceived

    def changed(self: WebSocketAdapterProtocol, data: bytes) -> None:
        original(self, data)

    monkeypatch.setattr(WebSocketAdapterProtocol, "dataReceived", changed)
    assert not install_fast_paths().no_read_debug_line
    assert not TunnelWebSocket.skip_read_debug
    assert _read_debug_lines(tmp_path) == 1


# -- the adapter's own binary frames ------------------------------------------

#: One message per header form: 7-bit length, 16-bit, 64-bit; masked by an
#: integer XOR and by autobahn's masker.
_SIZES = (1, 125, 126, 300, 2048, 2049, 0xFFFF, 0x10000 + 7)


def _messages() -> list[bytes]:
    return [bytes((i * 7 + n) & 0xFF for i in range(n)) for n in _SIZES]


def _stats(ws: Any) -> tuple[int, ...]:
    s = ws.trafficStats
    return (
        s.outgoingWebSocketMessages,
        s.outgoingWebSocketFrames,
        s.outgoingOctetsAppLevel,
        s.outgoingOctetsWebSocketLevel,
        s.outgoingOctetsWireLevel,
    )


def _send(ws: Any, messages: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    assert ws.session is not None
    monkeypatch.setattr(ws.session, "outbox", list(messages))
    monkeypatch.setattr(ws.session, "data_to_send", lambda: list(messages))
    ws.maxMessagePayloadSize = 0
    ws.flush_frames()
    monkeypatch.undo()


def test_the_edge_frames_its_messages_byte_for_byte_as_autobahn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    got: list[bytes] = []
    agent.onMessage = lambda payload, is_binary: got.append(payload)  # type: ignore[method-assign]
    agent.maxMessagePayloadSize = agent.maxFramePayloadSize = 0
    assert session.own_frames and not session.mask_frames
    written: list[bytes] = session.transport.stream
    before, start = _stats(session), len(written)
    _send(session, _messages(), monkeypatch)
    own, own_stats = b"".join(written[start:]), _stats(session)
    # The same messages through autobahn's sendMessage: the same bytes and counts.
    session.own_frames = False
    start = len(written)
    _send(session, _messages(), monkeypatch)
    theirs = b"".join(written[start:])
    assert own == theirs
    assert [b - a for a, b in zip(before, own_stats, strict=True)] == [
        b - a for a, b in zip(own_stats, _stats(session), strict=True)
    ]
    pump.flush()
    assert got == _messages() * 2


def test_the_agent_masks_its_frames_as_autobahn_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from .test_agent_session import Harness as AgentHarness

    h = AgentHarness()
    h.flush()
    got: list[bytes] = []
    h.edge.onMessage = lambda payload, is_binary: got.append(payload)  # type: ignore[method-assign]
    h.edge.maxMessagePayloadSize = h.edge.maxFramePayloadSize = 0
    assert h.client.own_frames and h.client.mask_frames
    _send(h.client, _messages(), monkeypatch)
    h.flush()
    assert got == _messages()  # (autobahn refuses an unmasked client frame)


def test_a_changed_send_message_is_not_relied_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bytes] = []
    original = WebSocketProtocol.sendMessage

    def changed(self: WebSocketProtocol, payload: bytes, isBinary: bool = False, *args: Any) -> None:
        if isBinary:
            sent.append(payload)
        original(self, payload, isBinary, *args)

    monkeypatch.setattr(WebSocketProtocol, "sendMessage", changed)
    assert not options.send_message_known()
    # With the check failed (as at import on such an autobahn), each binary
    # message goes through autobahn's sendMessage.
    monkeypatch.setattr(adapter, "_SEND_MESSAGE", False)
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    assert not session.own_frames
    session.go_away("now")
    assert [type(decode(message)) for message in sent] == [GoAway]


def _splits(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for n in sizes * (len(data) // max(1, sum(sizes)) + 1):
        if i >= len(data):
            break
        out.append(data[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("sizes", [[1 << 30], [1], [7, 300, 2], [70000, 3]])
def test_the_edge_reads_frames_as_autobahn_reads_them(tmp_path: Path, sizes: list[int]) -> None:
    # Binary messages of every header form, a ping, a text message and a
    # fragmented message between them, cut into reads anywhere: the edge's
    # own reading hands each message on once, in order, as autobahn does
    # (it reads the control frame, the text and the fragments), and counts
    # what autobahn counts.
    installed = install_fast_paths()
    assert installed.own_frame_reads and TunnelWebSocket.read_frames
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    assert session.own_reads
    got: list[tuple[bytes, bool]] = []
    session.onMessage = lambda payload, is_binary: got.append((payload, is_binary))  # type: ignore[method-assign]
    session.maxMessagePayloadSize = session.maxFramePayloadSize = 0
    written: list[bytes] = agent.transport.stream
    del written[:]
    messages = _messages()
    expected: list[tuple[bytes, bool]] = []
    for i, message in enumerate(messages):
        agent.sendMessage(message, isBinary=True)
        expected.append((message, True))
        if i == 2:
            agent.sendPing(b"ping")
            agent.sendMessage(b"text", isBinary=False)
            expected.append((b"text", False))
        if i == 4:
            agent.sendMessage(b"ab" * 10, isBinary=True, fragmentSize=7)
            expected.append((b"ab" * 10, True))
    data = b"".join(written)
    del written[:]
    stats = session.trafficStats
    before = (stats.incomingWebSocketMessages, stats.incomingOctetsWireLevel)
    for chunk in _splits(data, sizes):
        session.dataReceived(chunk)
    assert got == expected
    assert stats.incomingWebSocketMessages - before[0] == len(expected)
    assert stats.incomingOctetsWireLevel - before[1] == len(data)


def test_a_changed_read_path_is_not_relied_on(monkeypatch: pytest.MonkeyPatch) -> None:
    original = WebSocketProtocol.onFrameEnd

    def changed(self: WebSocketProtocol) -> Any:
        return original(self)

    monkeypatch.setattr(WebSocketProtocol, "onFrameEnd", changed)
    installed = install_fast_paths()
    assert not installed.own_frame_reads and not TunnelWebSocket.read_frames


def test_a_binary_frame_split_across_reads_is_read_without_autobahn(tmp_path: Path) -> None:
    # A bulk transfer's 64 KiB frames never end where a 64 KiB read does:
    # their front is kept and the frame read once it is in, in one join,
    # rather than going through autobahn's frame reader (three calls a
    # frame) -- however small the reads.
    install_fast_paths()
    h = EdgeHarness(tmp_path)
    agent, session, pump = h.connect(h.token())
    got: list[bytes] = []
    session.onMessage = lambda payload, is_binary: got.append(payload)  # type: ignore[method-assign]
    handed: list[bytes] = []
    session._dataReceived = handed.append  # type: ignore[method-assign]
    written: list[bytes] = agent.transport.stream
    del written[:]
    messages = [bytes([i]) * 65536 for i in range(5)]
    for message in messages:
        agent.sendMessage(message, isBinary=True)
    data = b"".join(written)
    for chunk in _splits(data, [65536, 1, 4000, 3]):
        session.dataReceived(chunk)
    assert got == messages and not handed
    assert session.partial is None
