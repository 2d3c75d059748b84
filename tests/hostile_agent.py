"""
A hostile agent for the integration tests (issue 10, item 2): it creates
an anonymous tunnel, opens the tunnel WebSocket, announces the largest
windows the protocol allows (2^31-1) with the real hello code, and then
never reads its socket again.  Run as C{python -m tests.hostile_agent
<edge port> <name> <ready file>}; it writes the tunnel's host to the ready
file once its hello is sent, and sleeps until it is killed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import sys
import time

from netbore.protocol import PROTOCOL_VERSION, SUBPROTOCOL, Hello, Settings, encode_hello
from netbore.protocol.handshake import MAX_WINDOW

__all__ = ["main"]


def _create(port: int, name: str) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"requested_name": name}).encode()
        conn.request("POST", "/tunnels/create", body, {"Host": "localhost", "Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read())
        assert response.status == 201, data
        return dict(data)
    finally:
        conn.close()


def _masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n <= 125:
        head = bytes([0x81, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0xFF]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def main(port: int, name: str, ready: str) -> None:
    created = _create(port, name)
    token = str(created["ephemeral_token"])
    public_url = str(created["public_url"])
    sock = socket.socket()
    # A small receive buffer: the kernel soaks up little of what the edge sends.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /connect HTTP/1.1\r\n"
            "Host: localhost\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101"), answer
    settings = Settings(stream_window=MAX_WINDOW, session_window=MAX_WINDOW, max_frame_payload=64 * 1024, batch=False)
    hello = Hello(PROTOCOL_VERSION, "agent", settings, agent_id="hostile", tunnel_id=str(created["tunnel_id"]))
    sock.sendall(_masked_text_frame(encode_hello(hello).encode()))
    # Wait for the edge's hello (the session is attached once it is sent), then read no more.
    time.sleep(0.5)
    with open(ready + ".tmp", "w") as f:
        f.write(public_url.split("://", 1)[1].split("/", 1)[0])
    os.replace(ready + ".tmp", ready)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
