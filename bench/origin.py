"""
The built-in fast origin for the benchmark, used when nginx is not installed:
plain asyncio protocols, HTTP/1.1 keep-alive, on 127.0.0.1.

Routes (any Host, GET unless said):

- C{/13}: C{Hello, World!} (13 bytes).
- C{/1m}, C{/100m}: the files C{1m} and C{100m} of C{--dir}, sent with
  C{sendfile}.
- C{POST /upload}: reads the body (C{Content-Length} or chunked) and answers
  its SHA-256 in hex.

Run: C{python bench/origin.py PORT --dir DIR}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from pathlib import Path

__all__ = ["serve"]

SMALL = b"Hello, World!"
FILES = {b"/1m": "1m", b"/100m": "100m"}


def _head(status: bytes, length: int, ctype: bytes = b"text/plain") -> bytes:
    return b"HTTP/1.1 %s\r\nServer: bench-origin\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
        status,
        ctype,
        length,
    )


SMALL_RESPONSE = _head(b"200 OK", len(SMALL)) + SMALL
NOT_FOUND = _head(b"404 Not Found", 10) + b"not found\n"


class ChunkedDecoder:
    """Incremental decoder of a chunked body; feeds payload to a hash."""

    def __init__(self, sink: hashlib._Hash) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.remaining = -1  # -1: expecting a size line; -2: trailers
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """Consume C{data}; return what follows the body (pipelined bytes)."""
        self.buf += data
        while not self.done:
            if self.remaining > 0:
                take = min(self.remaining, len(self.buf))
                if not take:
                    return b""
                self.sink.update(memoryview(self.buf)[:take])
                del self.buf[:take]
                self.remaining -= take
                if self.remaining == 0:
                    self.remaining = -3  # CRLF after the chunk
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                return b""
            line = bytes(self.buf[:end])
            del self.buf[: end + 2]
            if self.remaining == -3:
                self.remaining = -1
            elif self.remaining == -1:
                size = int(line.split(b";", 1)[0], 16)
                self.remaining = size if size else -2
            elif line == b"":  # end of trailers
                self.done = True
        rest = bytes(self.buf)
        self.buf.clear()
        return rest


class OriginProtocol(asyncio.Protocol):
    def __init__(self, files: dict[bytes, Path]) -> None:
        self.files = files
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.body_left = 0
        self.chunked: ChunkedDecoder | None = None
        self.hash: hashlib._Hash | None = None
        self.busy = False  # a sendfile in progress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.hash is not None:
            data = self._body(data)
            if self.hash is not None:
                return
        self.buf += data
        self._requests()

    def _body(self, data: bytes) -> bytes:
        """Feed upload bytes; on the end of the body answer and return the rest."""
        assert self.hash is not None
        if self.chunked is not None:
            rest = self.chunked.feed(data)
            if not self.chunked.done:
                return b""
        else:
            take = min(self.body_left, len(data))
            self.hash.update(data[:take])
            self.body_left -= take
            rest = data[take:]
            if self.body_left:
                return b""
        digest = self.hash.hexdigest().encode()
        self.hash, self.chunked = None, None
        assert self.transport is not None
        self.transport.write(_head(b"200 OK", len(digest)) + digest)
        return rest

    def _requests(self) -> None:
        while not self.busy and self.hash is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            self._dispatch(head)

    def _dispatch(self, head: bytes) -> None:
        assert self.transport is not None
        lines = head.split(b"\r\n")
        method, target = lines[0].split(b" ", 2)[:2]
        path = target.split(b"?", 1)[0]
        close = any(line.lower().replace(b" ", b"") == b"connection:close" for line in lines[1:])
        if path == b"/13":
            self.transport.write(SMALL_RESPONSE)
            if close:
                self.transport.close()  # after the buffered response is flushed
        elif path == b"/upload" and method in (b"POST", b"PUT"):
            self._start_upload(lines[1:])
        elif path in self.files and method in (b"GET", b"HEAD"):
            self._send_file(self.files[path], method == b"HEAD")
        else:
            self.transport.write(NOT_FOUND)

    def _start_upload(self, headers: list[bytes]) -> None:
        self.hash = hashlib.sha256()
        self.body_left = 0
        for line in headers:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self.body_left = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = ChunkedDecoder(self.hash)
        pending, self.buf = self.buf, b""
        rest = self._body(pending) if (self.body_left or self.chunked) else self._body(b"")
        self.buf = rest

    def _send_file(self, path: Path, head_only: bool) -> None:
        assert self.transport is not None
        size = path.stat().st_size
        self.transport.write(_head(b"200 OK", size, b"application/octet-stream"))
        if head_only:
            return
        self.busy = True
        self.transport.pause_reading()
        asyncio.ensure_future(self._sendfile(path))

    async def _sendfile(self, path: Path) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            with open(path, "rb") as f:
                await loop.sendfile(self.transport, f)
        except (ConnectionError, RuntimeError):
            self.transport.close()
            return
        self.busy = False
        if not self.transport.is_closing():
            self.transport.resume_reading()
            self._requests()


async def serve(port: int, directory: Path) -> None:
    files = {route: directory / name for route, name in FILES.items() if (directory / name).exists()}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: OriginProtocol(files), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int)
    parser.add_argument("--dir", type=Path, default=Path(os.getcwd()))
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.dir))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
