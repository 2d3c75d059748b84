"""
Host dispatch happens for every request (DESIGN "Known traps"): a
connection handed to twisted.web for the edge's own names serves that one
request and closes, so a kept-alive client that asked the control API
something reaches tunnels again.  In memory, no sockets.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import resource
from twisted.web.iweb import IRequest

from netbore.edge.viewer import Phase, ViewerProtocol

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
