"""
Test helpers: a whole tunnel -- edge, agent and origin -- in memory.

As C{treq.testing} lets a test drive a Klein app without sockets, this
module builds a real edge (L{netbore.edge.site.build_edge}), a real agent
session (L{netbore.agent.session.AgentSessionFactory} around an
L{netbore.agent.forwarder.OriginForwarder}) and an origin, all on one
C{MemoryReactorClock}, and joins their connections with
C{twisted.test.iosim}:

    tunnel = InMemoryTunnel.build(data_dir)
    response = tunnel.request(b"GET /13 HTTP/1.1\\r\\nHost: app.tunnel.test\\r\\n\\r\\n")
    assert response.status == 200 and response.body == b"Hello, World!"

Every connection takes the path it takes in production: the tunnel is
created with a C{POST /tunnels/create} sent to the edge's Site (the viewer
protocol hands it to twisted.web and Klein); the agent opens the WebSocket
to C{/connect} with the ephemeral token it got (the viewer protocol hands
the upgrade to twisted.web and autobahn); the origin pool connects with
C{connectTCP} on the memory reactor, and L{MemoryNetwork} completes those
connections to whatever listens on that port.

Nothing here opens a socket or touches the global reactor.  Only public
constructors are used, so tests written on this module survive changes
inside the edge and the agent.
"""

from __future__ import annotations

from ._memory import LOOPBACK, HelloOrigin, MemoryNetwork, Response, Viewer, hello_origin
from ._tunnel import EDGE_PORT, ORIGIN_PORT, InMemoryTunnel

__all__ = [
    "EDGE_PORT",
    "LOOPBACK",
    "ORIGIN_PORT",
    "HelloOrigin",
    "InMemoryTunnel",
    "MemoryNetwork",
    "Response",
    "Viewer",
    "hello_origin",
]
