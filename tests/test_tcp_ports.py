"""
The TCP tunnels' ports (L{netbore.edge.tcp_ports}, issue 11): the range
option, allocation (first free, never a port another process holds, the
preferred port of a recreate first), a listener from allocation until
release, every listener stopped with the service.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, globalLogPublisher

from netbore.edge.registry import InMemoryRegistry, Tunnel
from netbore.edge.tcp_ports import PortRange, PortsExhausted, TcpPorts, parse_port_range

from .fake_ports import PortsReactor

NOW = 1_700_000_000.0


# -- the range ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [("20000-20999", 20000, 20999), ("20000", 20000, 20000), (" 5000 - 5001 ", 5000, 5001), ("1-65535", 1, 65535)],
)
def test_ranges(text: str, first: int, last: int) -> None:
    ports = parse_port_range(text)
    assert ports == PortRange(first, last)
    assert len(ports) == last - first + 1
    assert list(ports)[0] == first and list(ports)[-1] == last
    assert first in ports and last in ports and last + 1 not in ports and first - 1 not in ports


def test_range_text() -> None:
    assert str(PortRange(20000, 20999)) == "20000-20999"
    assert str(PortRange(20000, 20000)) == "20000"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "a port or a range"),
        ("abc", "a port or a range"),
        ("20000-", "a port or a range"),
        ("-20000", "a port or a range"),
        ("1-2-3", "a port or a range"),
        ("+5", "a port or a range"),
        ("²", "a port or a range"),
        ("0", "1-65535"),
        ("65000-70000", "1-65535"),
        ("20010-20000", "is empty"),
    ],
)
def test_bad_ranges_name_the_option(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse_port_range(text)
    assert "--tcp-ports" in str(info.value)


# -- allocation on a memory reactor ----------------------------------------------


class Edge:
    def __init__(self, first: int = 20000, last: int = 20004) -> None:
        self.reactor = PortsReactor()
        self.reactor.advance(NOW)
        self.registry = InMemoryRegistry(self.reactor, grace=30)
        self.made: list[int] = []
        self.ports = TcpPorts(PortRange(first, last), "127.0.0.1", self.registry, self.reactor, self.factory)

    def factory(self, port: int) -> Factory[Any]:
        self.made.append(port)
        return Factory.forProtocol(Protocol)

    def hold(self, port: int, held: float = 100.0) -> Tunnel:
        """A TCP tunnel holding C{port} in the registry."""
        tunnel = Tunnel(
            tunnel_id=f"id-{port}",
            name=f"t{port}",
            public_hostname=f"t{port}.localhost",
            public_url=f"tcp://localhost:{port}",
            owner=None,
            edge_id="edge-1",
            held_until=NOW + held,
            protocol="tcp",
            tcp_port=port,
        )
        self.registry.add(tunnel)
        return tunnel


def test_allocates_the_first_free_port_and_listens_on_it() -> None:
    edge = Edge()
    assert edge.ports.allocate() == 20000
    assert edge.ports.allocate() == 20001
    assert edge.ports.listening() == [20000, 20001] == sorted(edge.reactor.open)
    assert edge.made == [20000, 20001]
    listener = edge.reactor.open[20000]
    assert listener.interface == "127.0.0.1"


def test_ports_held_by_live_tunnels_are_skipped() -> None:
    edge = Edge()
    edge.hold(20000)
    edge.hold(20002)
    assert edge.ports.allocate() == 20001
    assert edge.ports.allocate() == 20003


def test_a_port_another_process_holds_is_never_handed_out() -> None:
    edge = Edge(20000, 20002)
    edge.reactor.taken = {20000, 20002}
    assert edge.ports.allocate() == 20001
    with pytest.raises(PortsExhausted, match="20000-20002"):
        edge.ports.allocate()
    assert edge.ports.listening() == [20001]


def test_other_bind_errors_skip_the_port_and_are_logged() -> None:
    edge = Edge(20000, 20001)
    edge.reactor.refuse = {20000: errno.EACCES}
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        assert edge.ports.allocate() == 20001
    finally:
        globalLogPublisher.removeObserver(seen.append)
    [event] = [e for e in seen if e.get("event") == "tcp_port_unusable"]
    assert event["port"] == 20000


def test_exhausted_names_the_range() -> None:
    edge = Edge(20000, 20001)
    edge.ports.allocate()
    edge.ports.allocate()
    with pytest.raises(PortsExhausted, match="every port of the TCP port range 20000-20001 is in use"):
        edge.ports.allocate()


def test_preferred_port_first() -> None:
    edge = Edge()
    assert edge.ports.allocate(preferred=20003) == 20003
    assert edge.ports.allocate() == 20000
    # preferred but held, bound elsewhere, or out of the range: another one
    edge.hold(20001)
    assert edge.ports.allocate(preferred=20001) == 20002
    edge.reactor.taken.add(20004)
    with pytest.raises(PortsExhausted):
        edge.ports.allocate(preferred=20004)
    edge.ports.release(20000)
    assert edge.ports.allocate(preferred=30000) == 20000


def test_release_stops_the_listener_and_frees_the_port() -> None:
    edge = Edge()
    assert edge.ports.allocate() == 20000
    listener = edge.reactor.open[20000]
    edge.ports.release(20000)
    assert listener.stopped
    assert edge.ports.listening() == []
    assert edge.ports.release(20000) is None  # twice is harmless
    assert edge.ports.allocate() == 20000


def test_the_registry_forgetting_a_tunnel_releases_its_port() -> None:
    edge = Edge()
    port = edge.ports.allocate()
    edge.hold(port, held=10)
    other = edge.ports.allocate()
    edge.hold(other, held=1000)
    edge.reactor.advance(10)
    assert edge.registry.expire() == 1
    assert edge.ports.listening() == [other]
    edge.registry.remove(f"id-{other}")
    assert edge.ports.listening() == []
    assert edge.reactor.open == {}


def test_a_lapsed_holder_is_forgotten_when_its_port_is_looked_at() -> None:
    edge = Edge(20000, 20000)
    port = edge.ports.allocate()
    edge.hold(port, held=10)
    with pytest.raises(PortsExhausted):
        edge.ports.allocate()
    edge.reactor.advance(10)
    # no sweep ran: allocation itself notices the lapse, releases, reuses
    assert edge.ports.allocate() == 20000


def test_stop_service_stops_every_listener() -> None:
    edge = Edge()
    edge.ports.startService()
    listeners = [edge.reactor.open[edge.ports.allocate()] for _ in range(3)]
    done = edge.ports.stopService()
    assert all(listener.stopped for listener in listeners)
    assert edge.ports.listening() == []
    assert done.called
    assert not edge.ports.running


# -- real sockets on loopback -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _connect(port: int) -> bool:
    """Does a TCP connection to 127.0.0.1:C{port} open?"""
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    try:
        protocol = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5), Protocol())
    except ConnectionRefusedError:
        return False
    assert protocol.transport is not None
    protocol.transport.abortConnection()
    return True


class _Real:
    def __init__(self, port: int) -> None:
        from twisted.internet import reactor

        self.registry = InMemoryRegistry(reactor, grace=30)
        factory = ClientFactory.forProtocol(Protocol)
        factory.noisy = False
        self.ports = TcpPorts(PortRange(port, port), "127.0.0.1", self.registry, reactor, lambda p: factory)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_real_port_listens_then_refuses_once_released() -> None:
    from twisted.internet import reactor

    port = _free_port()
    real = _Real(port)
    assert real.ports.allocate() == port
    try:
        assert await _connect(port)
    finally:
        stopped = real.ports.release(port)
    await stopped
    await deferLater(reactor, 0, lambda: None)
    assert not await _connect(port)


@pytest.mark.integration
@pytest_twisted.ensureDeferred
async def test_real_port_held_by_another_socket_is_skipped() -> None:
    port = _free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    real = _Real(port)
    try:
        with pytest.raises(PortsExhausted):
            real.ports.allocate()
    finally:
        holder.close()
    assert real.ports.allocate() == port
    await real.ports.stopService()
    assert not await _connect(port)
