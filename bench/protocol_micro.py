"""
Micro-benchmark of the sans-IO protocol core on the per-request path.

Times, in-process and without sockets: encoding and decoding a request
head, a response head and a DATA frame; one whole steady-state C{GET}
between an edge and an agent L{Session} (request head, response head, a
small body, BATCH on, credit acknowledged); and L{Session.send_data} /
L{Session.receive} of 16 KiB chunks.  With C{--crossings} it also counts
calls from one C{netbore} module into another during that C{GET} (the
callee's module taken from its globals, as C{attrs}-generated methods
carry the module of their class).

Run it before and after a change to the protocol package, back to back::

    python -m bench.protocol_micro
    python -m bench.protocol_micro --crossings
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

from netbore.protocol import (
    Data,
    RequestHead,
    ResponseHead,
    Session,
    Settings,
    decode,
    encode,
)

HEADERS = [
    (b"host", b"app.tunnel.example.com"),
    (b"user-agent", b"wrk"),
    (b"accept", b"*/*"),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"app.tunnel.example.com"),
    (b"x-netbore-client-ip", b"127.0.0.1"),
]
RESPONSE_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
BODY = b"Hello, world!"
CHUNK = b"x" * 16384


def _pair() -> tuple[Session, Session]:
    settings = Settings(batch=True)
    return Session("edge", settings, settings), Session("agent", settings, settings)


def _get(edge: Session, agent: Session) -> None:
    """
    One steady-state GET, as the two shells drive it.
    """
    stream_id = edge.send_request_head(b"GET", b"/", HEADERS, end_stream=True)
    for message in edge.data_to_send():
        agent.receive(message)
    agent.send_response_head(stream_id, 200, b"OK", RESPONSE_HEADERS)
    agent.send_data(stream_id, BODY, end_stream=True)
    for message in agent.data_to_send():
        for event in edge.receive(message):
            data = getattr(event, "data", None)
            if data:
                edge.acknowledge(stream_id, len(data))
    for message in edge.data_to_send():
        agent.receive(message)


def _stream_chunks() -> Callable[[], None]:
    edge, agent = _pair()
    stream_id = edge.send_request_head(b"POST", b"/", HEADERS)
    for message in edge.data_to_send():
        agent.receive(message)

    def step() -> None:
        edge.send_data(stream_id, CHUNK)
        for message in edge.data_to_send():
            agent.receive(message)
        agent.acknowledge(stream_id, len(CHUNK))
        for message in agent.data_to_send():
            edge.receive(message)

    return step


def cases() -> dict[str, Callable[[], Any]]:
    request = RequestHead(1, b"GET", b"/index.html", HEADERS, True)
    response = ResponseHead(1, 200, b"OK", RESPONSE_HEADERS)
    data = Data(1, CHUNK)
    request_bytes, response_bytes, data_bytes = encode(request), encode(response), encode(data)
    edge, agent = _pair()
    return {
        "encode request head": lambda: encode(request),
        "decode request head": lambda: decode(request_bytes),
        "encode response head": lambda: encode(response),
        "decode response head": lambda: decode(response_bytes),
        "encode DATA 16 KiB": lambda: encode(data),
        "decode DATA 16 KiB": lambda: decode(data_bytes),
        "session GET": lambda: _get(edge, agent),
        "session send_data+receive 16 KiB": _stream_chunks(),
    }


def count_crossings() -> Counter[tuple[str, str]]:
    """
    Calls from one C{netbore} module into another during one steady-state
    GET (after a warm-up GET on the same sessions).
    """
    edge, agent = _pair()
    _get(edge, agent)
    crossings: Counter[tuple[str, str]] = Counter()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event != "call":
            return
        callee = frame.f_globals.get("__name__", "")
        caller_frame: FrameType | None = frame.f_back
        caller = caller_frame.f_globals.get("__name__", "") if caller_frame else ""
        if callee.startswith("netbore.") and caller.startswith("netbore.") and callee != caller:
            crossings[(caller, callee)] += 1

    sys.setprofile(profile)
    try:
        _get(edge, agent)
    finally:
        sys.setprofile(None)
    return crossings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--crossings", action="store_true", help="count module crossings of one GET")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args(argv)
    if options.crossings:
        crossings = count_crossings()
        for (caller, callee), n in sorted(crossings.items()):
            print(f"{n:4d}  {caller} -> {callee}")
        print(f"{sum(crossings.values()):4d}  total")
        return
    for name, case in cases().items():
        # CPU time of this process: other processes on a busy machine
        # then cost little but cache and frequency effects.
        timer = timeit.Timer(case, timer=time.process_time)
        number, _ = timer.autorange()
        best = min(timer.repeat(options.repeat, number)) / number
        print(f"{best * 1e6:9.2f} us  {name}")


if __name__ == "__main__":
    main()
