from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import procs

#: Address families a unit test may not bind or connect (C{socketpair()},
#: Unix sockets and the reactor's waker stay allowed).
_INET = (socket.AF_INET, socket.AF_INET6)
_GUARDED = ("bind", "connect", "connect_ex")


class SocketInUnitTest(OSError):
    """
    A unit test tried to bind or connect a TCP/UDP socket.

    An C{OSError} (C{EACCES}), so that Twisted turns it into a failed
    listen or connect at once instead of a hang; the fixture fails the
    test at teardown even when the code under test swallowed it.
    """


@pytest.fixture(autouse=True)
def no_inet_sockets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """
    Unit tests open no sockets (DESIGN.md, "Tests"): for every test not
    marked C{integration}, binding or connecting an C{AF_INET}/C{AF_INET6}
    socket raises L{SocketInUnitTest}, and the test fails.  Build the
    tunnel in memory instead (L{netbore.testing}, C{twisted.test.iosim},
    C{treq.testing.StubTreq}), or mark the test C{integration}.

    Yields the refused calls (a test of the guard clears them).
    """
    caught: list[str] = []
    if request.node.get_closest_marker("integration") is not None:
        yield caught
        return

    def guard(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if self.family in _INET:
                call = f"socket.{name}{args!r}"
                caught.append(call)
                raise SocketInUnitTest(
                    errno.EACCES,
                    f"{call} in a unit test: unit tests open no sockets; use netbore.testing "
                    "or twisted.test.iosim, or mark the test integration",
                )
            return original(self, *args, **kwargs)

        return guarded

    for name in _GUARDED:
        monkeypatch.setattr(socket.socket, name, guard(name, getattr(socket.socket, name)))
    yield caught
    if caught:
        pytest.fail(
            f"{request.node.nodeid} opened sockets (unit tests must not; mark it integration "
            f"or use netbore.testing): {', '.join(caught)}",
            pytrace=False,
        )


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[procs.Origin]:
    proc = procs.start_origin(tmp_path)
    yield proc
    proc.stop()
