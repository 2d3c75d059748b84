"""
The demo over TLS (C{python -m netbore.demo --tls}): a throwaway private CA
and a server certificate for the demo's domain, the edge's C{ssl:} listener
on them, and a request that verifies the edge against that CA.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl

from ..certs.cli import main as certs

__all__ = ["DOMAIN", "fetch", "listen", "make_pki"]

#: The demo's tunnel domain over TLS.  Not C{localhost}: TLS clients refuse
#: a wildcard directly under one label (C{*.localhost}), and curl resolves
#: every C{*.localhost} name to loopback itself.
DOMAIN = "tunnel.localhost"


def make_pki(directory: str) -> tuple[str, str]:
    """
    Make a CA and a certificate for L{DOMAIN}, C{*.DOMAIN} and C{127.0.0.1}
    (the agent reaches the control API there) in C{directory}, or keep
    those made by an earlier run (C{--dir}); return the paths of the CA
    certificate and of the server's PEM (certificate and key).
    """
    ca, pem = os.path.join(directory, "ca.pem"), os.path.join(directory, f"{DOMAIN}.pem")
    if os.path.exists(ca) and os.path.exists(pem):
        return ca, pem
    quiet = io.StringIO()
    if certs(["ca", "--out", directory, "--cn", "netbore demo CA (throwaway)"], out=quiet) != 0:
        raise SystemExit(f"could not make the demo's CA in {directory}")
    if certs(["server", "--ca", directory, "--domain", DOMAIN, "--name", "127.0.0.1"], out=quiet) != 0:
        raise SystemExit(f"could not make the demo's server certificate in {directory}")
    return ca, pem


def _escape(path: str) -> str:
    # Endpoint strings separate their fields with ':'.
    return path.replace("\\", "\\\\").replace(":", "\\:")


def listen(port: int, pem: str) -> str:
    """
    The edge's C{--listen} for TLS on loopback C{port} with the PEM C{pem}.
    """
    return f"ssl:{port}:interface=127.0.0.1:privateKey={_escape(pem)}:certKey={_escape(pem)}"


def fetch(host: str, port: int, ca: str, timeout: float = 10) -> tuple[int, bytes]:
    """
    GET C{/} from the public name C{host} (with its port) over TLS to
    127.0.0.1:C{port}, verifying the edge's certificate for that name
    against C{ca} as a browser would (SNI); (status, body).
    """
    context = ssl.create_default_context(cafile=ca)
    name = host.rsplit(":", 1)[0]
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    conn.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=timeout), server_hostname=name
    )
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
