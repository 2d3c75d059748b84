"""
The edge's settings, gathered from the command line in one frozen object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .tcp_ports import PortRange

__all__ = ["EdgeConfig"]


@attrs.frozen
class EdgeConfig:
    """
    Everything the edge's components need to know about their policy.

    Durations are in seconds (floats allowed).
    """

    domain: str = "localhost"
    data_dir: str = "netbore-data"
    edge_id: str = "edge-1"
    region: str = "local"
    allow_anonymous: bool = False
    #: The C{edge_url} put in C{candidates}; L{None} means "the scheme and
    #: Host the create request came in on, path C{/connect}".
    advertise_url: str | None = None
    #: The scheme viewers use for C{public_url}; L{None} means the scheme the
    #: request came in on.
    public_scheme: str | None = None
    ephemeral_ttl: float = 600.0
    recreate_default_ttl: float = 86400.0
    recreate_max_ttl: float = 30 * 86400.0
    management_ttl: float = 86400.0
    response_timeout: float = 60.0
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 10.0
    grace: float = 30.0
    drain_timeout: float = 10.0
    auth_failures_per_minute: int = 10
    #: Largest control API request body, in bytes (413 above it).
    max_control_body: int = 64 * 1024
    #: Flow-control windows offered to agents, and the largest frame payload.
    stream_window: int = 2 * 1024 * 1024
    session_window: int = 16 * 1024 * 1024
    max_frame_payload: int = 64 * 1024
    #: Live and held tunnels one account may have (403 quota_exceeded).
    max_tunnels_per_account: int = 100
    #: Live and held tunnels one client address may have created anonymously.
    max_tunnels_per_address: int = 10
    #: POST /tunnels/create calls per client address a minute (429 above).
    creates_per_minute: int = 30
    #: Seconds a viewer may accept no bytes of its response (its connection
    #: full) before it is closed and its stream reset (nginx's send_timeout).
    send_timeout: float = 60.0
    #: Seconds an upgraded connection (a byte stream: WebSocket) may carry
    #: no bytes either way before it is closed; 0: no limit (the default: a
    #: WebSocket may stay quiet for long, its own pings keep it alive).
    stream_idle_timeout: float = 0.0
    #: Peers whose C{X-Forwarded-For} and C{X-Forwarded-Proto} are believed
    #: (C{--trusted-proxy}, CIDR ranges; none by default).
    trusted_proxies: tuple[str, ...] = ()
    #: Slowest request body accepted while the edge reads it, bytes a
    #: second on average (each C{body_min_rate * response_timeout / 2}
    #: bytes restart the response timeout; a body that times out is 408 and
    #: its connection closes).
    body_min_rate: int = 500
    #: Connections open at once, in all (cut to the descriptor limit less
    #: a reserve) and from one address (see L{netbore.edge.limits}).
    max_connections: int = 10000
    max_connections_per_ip: int = 256
    #: Byte streams (upgraded connections, TCP tunnels' connections) open at
    #: once per tunnel; one over it is refused (503 page, or closed) and counted.
    max_byte_streams: int = 1000
    #: Label the viewer request and byte counters with the tunnel's name
    #: (C{--metrics-per-tunnel}; off: no label takes unbounded values).
    metrics_per_tunnel: bool = False
    #: The public ports TCP tunnels are given (C{--tcp-ports}); L{None}: this
    #: edge creates no TCP tunnels.
    tcp_ports: PortRange | None = None
    #: The address TCP tunnels' ports listen on (C{--tcp-interface}).
    tcp_interface: str = "127.0.0.1"
    #: The directory of certificates chosen by SNI on C{ssl:} listeners
    #: (C{--tls-dir}); L{None}: each listener has its own certificate only.
    tls_dir: str | None = None
    #: The CA that signs agents' client certificates (C{--agent-ca}); L{None}:
    #: agents need none (netbore.edge.agentca).
    agent_ca: str | None = None
    #: Revoked agent certificates (C{--agent-crl}): a PEM CRL or hex serials.
    agent_crl: str | None = None
    #: Plain-HTTP endpoints redirecting to HTTPS (C{--redirect-listen}).
    redirect_listen: tuple[str, ...] = ()
    #: The ACME webroot answered on them (C{--acme-dir}); L{None}: none.
    acme_dir: str | None = None
