"""
Peers with different windows (found by the TCP bulk benchmark, issue 11):
each side sends under the smaller of the two windows (clamp_peer), so a
receiver with larger windows than its sender must give credit back on what
the sender may have in flight, not on its own window; else the transfer
stops for good after the sender's window.
"""

from __future__ import annotations

import pytest

from netbore.protocol import DataReceived, Session, Settings, clamp_peer

from .test_protocol_session import pump

MiB = 1 << 20


def upload(edge_settings: Settings, agent_settings: Settings, total: int) -> int:
    """Send C{total} bytes edge to agent, acknowledging as they arrive; how many arrived."""
    edge = Session("edge", edge_settings, clamp_peer(edge_settings, agent_settings))
    agent = Session("agent", agent_settings, clamp_peer(agent_settings, edge_settings))
    sid = edge.send_request_head(b"POST", b"/", [])
    sent = acked = 0
    for _ in range(100_000):
        n = min(edge.send_window(sid), total - sent, 16384)
        if n <= 0:
            for m in agent.data_to_send():
                edge.receive(m)
            if sent == total or edge.send_window(sid) <= 0:
                break  # done, or no credit will come
            continue
        edge.send_data(sid, b"\0" * n)
        sent += n
        for event in pump(edge, agent):
            if isinstance(event, DataReceived):
                agent.acknowledge(sid, len(event.data))
                acked += len(event.data)
        for m in agent.data_to_send():
            edge.receive(m)
    return acked


@pytest.mark.parametrize(
    "edge_settings, agent_settings",
    [
        (Settings(), Settings()),
        (Settings(), Settings(session_window=64 * MiB)),
        (Settings(), Settings(stream_window=16 * MiB)),
        (Settings(session_window=64 * MiB, stream_window=16 * MiB), Settings()),
        (Settings(stream_window=256 * 1024), Settings(stream_window=16 * MiB, session_window=64 * MiB)),
    ],
)
def test_every_byte_arrives_whatever_the_windows(edge_settings: Settings, agent_settings: Settings) -> None:
    assert upload(edge_settings, agent_settings, 40 * MiB) == 40 * MiB
