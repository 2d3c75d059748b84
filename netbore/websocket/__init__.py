"""
The tunnel WebSocket, shared by the edge's agent endpoint
(L{netbore.edge.agents}) and the agent's session (L{netbore.agent.session}):

  - L{netbore.websocket.adapter}: L{TunnelWebSocket}, the autobahn
    protocol mixin around the sans-IO session: its per-message hot path
    (reads, dispatch table, credit, flushing and framing its messages into
    the write batch), on
  - L{netbore.websocket.lifecycle}: the role's hooks, hello, failure
    isolation, backpressure and closing, on
  - L{netbore.websocket.batched}: the write batch taken from the factory,
    flushing before a close, the transport's producer;
  - L{netbore.websocket.options}: L{set_tunnel_options}, L{close_reason},
    the check of autobahn's C{sendData};
  - L{netbore.websocket.fastpaths}: L{install_fast_paths}, autobahn's
    per-message costs removed by an explicit call from each C{makeService}.
"""

from .adapter import TunnelFactory, TunnelStream, TunnelWebSocket
from .batched import TransportProducer
from .fastpaths import FastPaths, install_fast_paths, remove_fast_paths
from .options import MAX_CLOSE_REASON, close_reason, send_data_known, set_tunnel_options

__all__ = [
    "MAX_CLOSE_REASON",
    "FastPaths",
    "TunnelFactory",
    "TunnelStream",
    "TransportProducer",
    "TunnelWebSocket",
    "close_reason",
    "install_fast_paths",
    "remove_fast_paths",
    "send_data_known",
    "set_tunnel_options",
]
