"""
The clients of the scale test (L{bench.scale}), on asyncio: a fake agent
(WebSocket client speaking the tunnel protocol, answering every stream with
L{BODY}) and a minimal keep-alive HTTP/1.1 client for the control API and
the viewers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

from netbore.protocol import frames as F
from netbore.protocol.handshake import PROTOCOL_VERSION, SUBPROTOCOL, Hello, Settings, decode_hello, encode_hello

__all__ = ["BODY", "FakeAgent", "Http", "ws_frame"]

#: The body every stream is answered with.
BODY = b"ok\n"
_RESPONSE_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


# ---------------------------------------------------------------- WebSocket


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    if n:
        full = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "little") ^ int.from_bytes(full, "little")).to_bytes(n, "little")
    return key + payload


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One masked (client-to-server) WebSocket frame, FIN set."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + _mask(payload)


class FakeAgent(asyncio.Protocol):
    """
    One agent session: WebSocket client, hello, and a responder that
    answers every REQUEST_HEAD with 200 and L{BODY}.  Pings are answered
    (the edge's heartbeat); WINDOW_UPDATEs and the like are ignored.
    """

    def __init__(self, host: str, path: str, token: str, agent_id: str, ready: asyncio.Future[Any]) -> None:
        self.host, self.path, self.token, self.agent_id = host, path, token, agent_id
        self.ready = ready
        self.buf = bytearray()
        self.upgraded = False
        self.hello: Hello | None = None
        self.transport: asyncio.Transport | None = None
        self.answered = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\nAuthorization: Bearer {self.token}\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the hello: {exc}"))

    def send_frame(self, message: bytes) -> None:
        assert self.transport is not None
        self.transport.write(ws_frame(0x2, message))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buf[: self.buf.find(b"\r\n")])
            del self.buf[: end + 4]
            if b" 101 " not in status + b" ":
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            hello = Hello(version=PROTOCOL_VERSION, role="agent", settings=Settings(), agent_id=self.agent_id)
            assert self.transport is not None
            self.transport.write(ws_frame(0x1, encode_hello(hello).encode()))
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            i = 2
            if n == 126:
                if len(buf) < 4:
                    return
                (n,) = struct.unpack_from("!H", buf, 2)
                i = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                (n,) = struct.unpack_from("!Q", buf, 2)
                i = 10
            if len(buf) < i + n:
                return
            payload = bytes(buf[i : i + n])
            del buf[: i + n]
            self._message(b0 & 0x0F, payload)

    def _message(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 0x9:  # ping
            self.transport.write(ws_frame(0xA, payload))
        elif opcode == 0x8:  # close: echo it
            self.transport.write(ws_frame(0x8, payload[:2]))
            self.transport.close()
        elif opcode == 0x1 and self.hello is None:
            self.hello = decode_hello(payload, expected_role="edge")
            if not self.ready.done():
                self.ready.set_result(self)
        elif opcode == 0x2:
            frame = F.decode(payload)
            if isinstance(frame, F.RequestHead):
                # GETs only: the head ends the request body.
                self.send_frame(F.encode(F.ResponseHead(frame.stream_id, 200, b"OK", _RESPONSE_HEADERS)))
                self.send_frame(F.encode_data(frame.stream_id, BODY, end_stream=True))
                self.answered += 1


# ---------------------------------------------------------------- control API


class Http:
    """
    A minimal keep-alive HTTP/1.1 client (Content-Length or chunked bodies).
    It opens a new connection after a response that said C{Connection:
    close} (the edge closes its control-API connections after each request).
    """

    def __init__(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.port = port
        self.reader, self.writer = reader, writer
        self.reopen = False

    @classmethod
    async def open(cls, port: int) -> Http:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        return cls(port, r, w)

    async def request(self, method: str, target: str, host: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.reopen:
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.reopen = False
        head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self.reopen = True
        if not chunked:
            return int(status_line.split()[1]), await self.reader.readexactly(length) if length else b""
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return int(status_line.split()[1]), b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()

    def close(self) -> None:
        self.writer.close()
