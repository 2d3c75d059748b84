"""
C{twistd netbore-edge}'s TCP tunnel options (issue 11, TCP tunnels):
C{--tcp-ports} and C{--tcp-interface} parsed and checked, the ports'
service in the edge's tree, and every listener stopped when it stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.application.service import IServiceCollection
from twisted.internet.protocol import Factory
from twisted.python import usage

from netbore.edge.config import EdgeConfig
from netbore.edge.site import EdgeService
from netbore.edge.tap import Options, makeService
from netbore.edge.tcp_ports import PortRange, TcpPorts

from .fake_ports import PortsReactor


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_off_by_default() -> None:
    options = parse()
    assert options["tcp-ports"] is None
    assert options["tcp-interface"] == "127.0.0.1"
    config = options.config()
    assert (config.tcp_ports, config.tcp_interface) == (None, "127.0.0.1")
    assert config == EdgeConfig()


@pytest.mark.parametrize(
    ("argv", "ports", "interface"),
    [
        (["--tcp-ports", "20000-20999"], PortRange(20000, 20999), "127.0.0.1"),
        (["--tcp-ports", "20000"], PortRange(20000, 20000), "127.0.0.1"),
        (["--tcp-ports", "5432-5433", "--tcp-interface", "0.0.0.0"], PortRange(5432, 5433), "0.0.0.0"),
        (["--tcp-ports=20000-20001", "--tcp-interface=::"], PortRange(20000, 20001), "::"),
    ],
)
def test_tcp_options(argv: list[str], ports: PortRange, interface: str) -> None:
    config = parse(*argv).config()
    assert (config.tcp_ports, config.tcp_interface) == (ports, interface)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tcp-ports", "20999-20000"], "--tcp-ports: the range '20999-20000' is empty"),
        (["--tcp-ports", "lots"], "--tcp-ports must be a port or a range of ports A-B"),
        (["--tcp-ports", "0-10"], "--tcp-ports: ports are 1-65535"),
        (["--tcp-ports", "65535-65536"], "--tcp-ports: ports are 1-65535"),
        (["--tcp-interface", "localhost"], "--tcp-interface must be an IP address"),
        (["--tcp-interface", "300.1.1.1"], "--tcp-interface must be an IP address"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError) as refused:
        parse(*argv)
    assert message in str(refused.value)


def test_help_lists_the_options() -> None:
    text = str(Options())
    assert "--tcp-ports=" in text and "--tcp-interface=" in text


def _edge(parent: object) -> EdgeService:
    edge = list(IServiceCollection(parent))[0]
    assert isinstance(edge, EdgeService)
    return edge


def test_no_ports_service_without_tcp_ports(tmp_path: Path) -> None:
    edge = _edge(makeService(parse("--data-dir", str(tmp_path)), reactor=PortsReactor()))
    assert edge.tcp_ports is None
    assert list(IServiceCollection(edge)) == []


def test_ports_service_listens_on_the_interface_and_stops_with_the_edge(tmp_path: Path) -> None:
    reactor = PortsReactor()
    options = parse("--data-dir", str(tmp_path), "--tcp-ports", "20000-20009", "--tcp-interface", "::")
    parent = makeService(options, reactor=reactor)
    edge = _edge(parent)
    ports = edge.tcp_ports
    assert isinstance(ports, TcpPorts)
    assert list(IServiceCollection(edge)) == [ports]
    assert ports.name == "tcp-ports"
    assert (ports.ports, ports.interface) == (PortRange(20000, 20009), "::")
    assert isinstance(ports.factory(20000), Factory)
    parent.privilegedStartService()
    parent.startService()
    # starting binds the --listen port only; a TCP tunnel's port from its create on
    assert sorted(reactor.open) == [8080]
    assert ports.running
    assert ports.allocate() == 20000
    assert ports.allocate() == 20001
    listeners = [reactor.open[20000], reactor.open[20001]]
    assert [listener.interface for listener in listeners] == ["::", "::"]
    stopped = parent.stopService()
    assert stopped.called
    assert all(listener.stopped for listener in listeners)
    assert ports.listening() == []
    assert not ports.running
