"""
A TCP echo origin for the integration tests and the benchmark's checks
(issue 11, TCP tunnels), run as its own process:
C{python -m tests.tcp_echo PORT}.

Every connection's bytes are echoed back as they come, with backpressure
(a client that does not read stops being read: C{drain}); when the client
shuts its write side, the origin writes C{TRAILER} after the echo, then
shuts its own: a client sees the trailer only if the way between keeps its
half-closed connection open.
"""

from __future__ import annotations

import asyncio
import sys

TRAILER = b"-- end of echo after your EOF --\n"


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        await asyncio.sleep(0.05)  # (the trailer comes after the client's EOF, not with it)
        writer.write(TRAILER)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await reader.read()  # until the other side closes too
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", port)
    print(f"echo listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
