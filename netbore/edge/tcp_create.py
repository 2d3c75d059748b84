"""
What creating a TCP tunnel changes in the control API (issue 11): the
protocol a create asks for, checked against its recreate token; the port
it is given; the claims its recreate token carries; the fields its answers
gain.

A TCP tunnel's recreate token carries C{protocol} (C{"tcp"}) and C{port}
(its public port): after an edge restart, whose registry is empty, the
tunnel is re-created on that port if it is free.  A token without
C{protocol} is an HTTP tunnel's.
"""

from __future__ import annotations

from typing import Any

from ..auth.tokens import Claims
from .apierrors import invalid_request, ports_exhausted, tcp_not_enabled
from .registry import Tunnel
from .tcp_ports import PortsExhausted, TcpPorts

__all__ = ["allocate_port", "preferred_port", "protocol_fields", "recreate_claims", "tunnel_protocol"]


def tunnel_protocol(asked: str | None, recreate: Claims | None, tcp_ports: TcpPorts | None) -> str:
    """
    The protocol of the tunnel to create: as C{asked} (default C{"http"}),
    which must be the C{recreate} token's tunnel's when one is given.

    @raise ApiError: 400 C{invalid_request} when the two differ; 400
        C{tcp_not_enabled} for TCP on an edge without C{tcp_ports}.
    """
    if recreate is not None:
        was = recreate.raw.get("protocol", "http")
        if asked is not None and asked != was:
            raise invalid_request(f"the recreate token is for a {was} tunnel, not a {asked} tunnel")
        asked = was
    protocol = asked or "http"
    if protocol == "tcp" and tcp_ports is None:
        raise tcp_not_enabled("this edge serves no TCP tunnels (it was started without --tcp-ports)")
    return protocol


def allocate_port(tcp_ports: TcpPorts | None, preferred: int | None) -> int:
    """
    A port for a new TCP tunnel, listened on: C{preferred} if it is free.

    @raise ApiError: 409 C{ports_exhausted}, naming the range.
    """
    assert tcp_ports is not None  # tunnel_protocol checked
    try:
        return tcp_ports.allocate(preferred)
    except PortsExhausted as e:
        raise ports_exhausted(f"{e}; delete a TCP tunnel or wait for one to be released") from None


def preferred_port(claims: Claims) -> int | None:
    """
    The port a recreate token names, if it names one.
    """
    port = claims.raw.get("port")
    return port if type(port) is int else None


def recreate_claims(tunnel: Tunnel) -> dict[str, Any] | None:
    """
    The claims a recreate token of C{tunnel} carries beyond the usual ones.
    """
    if tunnel.protocol != "tcp":
        return None
    return {"protocol": tunnel.protocol, "port": tunnel.tcp_port}


def protocol_fields(tunnel: Tunnel) -> dict[str, Any]:
    """
    A tunnel's C{protocol}, and a TCP tunnel's C{tcp_port}, for the create
    answer and the list's entries.
    """
    if tunnel.tcp_port is None:
        return {"protocol": tunnel.protocol}
    return {"protocol": tunnel.protocol, "tcp_port": tunnel.tcp_port}
