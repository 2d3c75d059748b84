"""
WebSocket pass-through end to end (issue 11, "Must show"): real C{twistd}
edge and agent processes, a WebSocket echo origin written with autobahn
(L{tests.ws_origin}) and autobahn's Twisted client as the viewer
(L{tests.ws_client}), each its own process, all on loopback.

Without the pass-through the edge drops C{Upgrade}/C{Connection} (they
are hop-by-hop): the origin never sees an upgrade, so every opening
handshake here fails, and C{/refuse} answers 400 instead of 403.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import procs
from .procs import Agent, Edge, Proc, free_port, request, wait_for

REFUSED = b"upgrade refused by origin\n"  # (tests.ws_origin's)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class WsOrigin(Proc):
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        super().__init__(
            "ws-origin", [sys.executable, "-m", "tests.ws_origin", str(self.port)], tmp / f"ws-origin-{self.port}.log"
        )
        wait_for(lambda: procs._listening(self.port) or not self.alive(), 15, "the WebSocket origin to listen")
        assert self.alive(), self.log()
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("websocket")


@pytest.fixture(scope="module")
def origin(tmp: Path) -> Iterator[WsOrigin]:
    proc = WsOrigin(tmp)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def edge(tmp: Path) -> Iterator[Edge]:
    proc = procs.start_edge(tmp, "--allow-anonymous", "--response-timeout", "5", data_dir=tmp / "edge-data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agent(tmp: Path, edge: Edge, origin: WsOrigin) -> Iterator[Agent]:
    proc = procs.start_agent(tmp, edge, origin.url, "--name", "ws")
    yield proc
    proc.stop()


# -- autobahn's Twisted client, in its own process (tests.ws_client) ----------------


def play(edge: Edge, agent: Agent, scenario: str) -> dict[str, Any]:
    """Run L{tests.ws_client}'s C{scenario} through the tunnel; what it saw."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.ws_client", scenario, str(edge.port), agent.host],
        capture_output=True,
        timeout=120,
        cwd=str(procs.ROOT),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


# -- tests ---------------------------------------------------------------------------


def test_text_binary_subprotocol_and_extension(edge: Edge, agent: Agent) -> None:
    seen = play(edge, agent, "basic")
    assert seen["protocol"] == "chat.v2"
    # The origin's Sec-WebSocket-Extensions came through: permessage-deflate is on.
    assert seen["extensions"] == ["PerMessageDeflate"]
    assert seen["text"] == ["héllo, wörld", False]
    assert seen["binary_ok"]
    assert seen["closed"][:2] == [True, 1000], seen["closed"]


def test_ten_mib_message(edge: Edge, agent: Agent) -> None:
    seen = play(edge, agent, "big")
    assert seen["binary"] and seen["length"] == 10 * MiB
    assert seen["echoed"] == seen["sent"]


def test_thousand_small_messages_in_order(edge: Edge, agent: Agent) -> None:
    assert play(edge, agent, "many")["in_order"]


def test_ping_answered_by_the_origin(edge: Edge, agent: Agent) -> None:
    assert play(edge, agent, "ping")["pong"] == "are you there?"


def test_close_from_the_client(edge: Edge, agent: Agent, origin: WsOrigin) -> None:
    clean, code, _ = play(edge, agent, "close-client")["closed"]
    assert clean and code == 1000  # (the origin's closing reply: autobahn answers 1000)
    wait_for(lambda: "code=4001 reason=bye from client" in origin.log(), 10, "the origin to see the close")


def test_close_from_the_origin(edge: Edge, agent: Agent) -> None:
    assert play(edge, agent, "close-origin")["closed"] == [True, 4002, "bye from origin"]


def test_origin_refusing_the_upgrade(edge: Edge, agent: Agent) -> None:
    status, headers, body = request(
        edge.port,
        "GET",
        "/refuse",
        host=agent.host,
        headers=[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    assert status == 403
    assert body == REFUSED
