"""
Host dispatch happens for every request (DESIGN "Known traps"): a
connection handed to twisted.web for the edge's own names serves that one
request and closes, so a kept-alive client that asked the control API
something reaches tunnels again.  In memory, no sockets; and once with real
processes (marked integration).
"""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import resource
from twisted.web.iweb import IRequest

from netbore.edge.viewer import Phase, ViewerProtocol

from . import procs
from .test_edge_exchange import HOST, Harness

PEER = IPv4Address("TCP", "192.0.2.7", 50000)


class Api(resource.Resource):
    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        return b"api"


def connect(h: Harness) -> tuple[ViewerProtocol, StringTransport]:
    """
    A new connection from the viewer to the same edge.
    """
    viewer = h.site.buildProtocol(PEER)
    assert isinstance(viewer, ViewerProtocol)
    transport = StringTransport(peerAddress=PEER)
    viewer.makeConnection(transport)
    return viewer, transport


def test_a_kept_alive_connection_that_asked_the_api_still_reaches_a_tunnel() -> None:
    root = resource.Resource()
    root.putChild(b"tunnels", Api())
    h = Harness(root=root)
    # A keep-alive client: a control-API request, then one for the tunnel.
    h.send(b"GET /tunnels HTTP/1.1\r\nHost: localhost:8080\r\n\r\n")
    out = h.output()
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"api")
    assert b"\r\nconnection: close\r\n" in out.lower()
    assert h.transport.disconnecting
    # Bytes that still arrive on the closing connection go nowhere near a
    # tunnel (twisted.web's channel is closing).
    h.send(b"GET /late HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    assert h.session.heads == []
    # The client reconnects, and its request reaches the tunnel.
    viewer, transport = connect(h)
    viewer.dataReceived(b"GET /app HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    assert [head[1] for head in h.session.heads] == [b"/app"]
    h.session.exchanges[1].response_head(200, b"OK", [(b"Content-Length", b"6")], False)
    h.session.exchanges[1].data(b"tunnel", True)
    assert transport.value().startswith(b"HTTP/1.1 200 OK") and transport.value().endswith(b"tunnel")
    assert not transport.disconnecting and viewer.phase is Phase.IDLE


def test_a_tunnel_connection_turning_to_the_api_is_handed_over_and_closed_after() -> None:
    root = resource.Resource()
    root.putChild(b"tunnels", Api())
    h = Harness(root=root)
    h.send(b"GET /1 HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    h.session.exchanges[1].response_head(200, b"OK", [(b"Content-Length", b"2")], False)
    h.session.exchanges[1].data(b"ok", True)
    assert h.channel.phase is Phase.IDLE
    h.send(b"GET /tunnels HTTP/1.1\r\nHost: control.localhost\r\n\r\n")
    assert h.channel.phase is Phase.HANDED
    assert h.output().endswith(b"api") and h.transport.disconnecting


@pytest.mark.integration
def test_real_edge_dispatches_every_request_by_host(tmp_path: Path) -> None:
    # Real twistd edge and agent, the sample origin, one keep-alive client
    # (http.client reconnects when told Connection: close).
    origin = procs.start_origin(tmp_path)
    edge = agent = None
    try:
        edge = procs.start_edge(tmp_path, "--allow-anonymous")
        agent = procs.start_agent(tmp_path, edge, origin.url, "--name", "app")
        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
        conn.request("GET", "/.well-known/jwks.json", headers={"Host": f"localhost:{edge.port}"})
        api = conn.getresponse()
        assert api.status == 200 and b"keys" in api.read()
        assert api.getheader("Connection") == "close"
        conn.request("GET", "/", headers={"Host": agent.host})
        tunnel = conn.getresponse()
        body = tunnel.read()
        assert tunnel.status == 200, body
        assert tunnel.getheader("Connection") is None  # kept alive: tunnel traffic
        conn.close()
    finally:
        for proc in (agent, edge, origin):
            if proc is not None:
                proc.stop()
