"""
C{ssl:} listeners of C{--listen} with our own TLS context factory
(L{netbore.edge.tls.ListenerCertificates}): the endpoint string keeps its
meaning (port, C{interface=}, C{backlog=}, C{privateKey=}, C{certKey=},
C{extraCertChain=}, C{dhParameters=}), but TLS versions and ciphers are
ours whatever it says (C{sslmethod=} is ignored, with a warning), and SNI
chooses among the certificates of C{--tls-dir}.
"""

from __future__ import annotations

import os
import sys

from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.logger import Logger

from .._types import Reactor
from .tls import CertificateDirectory, CertificateFiles, ListenerCertificates

__all__ = ["is_ssl", "split_description", "ssl_listener"]

log = Logger()

#: Twisted's file when an C{ssl:} string names no C{privateKey=}.
TWISTED_DEFAULT_KEY = "server.pem"


def is_ssl(description: str) -> bool:
    """Whether C{description} is an C{ssl:} server endpoint string."""
    return description.split(":", 1)[0].strip().lower() == "ssl"


def split_description(description: str) -> tuple[list[str], dict[str, str]]:
    """
    An endpoint string's positional arguments and C{key=value} parameters,
    split on the colons not escaped with a backslash (Twisted's grammar).
    """
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    args: list[str] = []
    params: dict[str, str] = {}
    for part in parts:
        key, equals, value = part.partition("=")
        if equals:
            params[key] = value
        else:
            args.append(part)
    return args, params


def ssl_listener(
    reactor: Reactor, description: str, directory: CertificateDirectory | None
) -> tuple[SSL4ServerEndpoint, ListenerCertificates]:
    """
    The endpoint of the C{ssl:} string C{description} and its certificates.

    The default certificate is the string's own C{privateKey=}/C{certKey=};
    without C{privateKey=}, the C{default.pem} of C{directory}, else
    Twisted's C{server.pem}.

    @raise ValueError: a malformed string (no or a bad port, an unknown
        parameter).
    @raise netbore.edge.tls.CertificateError: a certificate that cannot be
        loaded.
    """
    args, params = split_description(description)
    known = {"port", "interface", "backlog", "privateKey", "certKey", "extraCertChain", "dhParameters", "sslmethod"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]}=")
    ports = args[1:] or ([params["port"]] if "port" in params else [])
    if len(ports) != 1:
        raise ValueError("an ssl: endpoint takes exactly one port")
    try:
        port = int(ports[0])
        backlog = int(params.get("backlog", "50"))
    except ValueError:
        raise ValueError(f"bad port or backlog in {description!r}") from None
    if "sslmethod" in params:
        log.warn(
            "--listen {description}: sslmethod= ignored: the edge speaks TLS 1.2 and 1.3 only",
            description=description,
            event="tls_sslmethod_ignored",
        )
    key = params.get("privateKey")
    if key is None:
        key = (directory.default_file if directory is not None else None) or TWISTED_DEFAULT_KEY
    files = CertificateFiles(
        key=os.path.abspath(key),
        cert=os.path.abspath(params.get("certKey") or key),
        chain=os.path.abspath(params["extraCertChain"]) if "extraCertChain" in params else None,
        dh=os.path.abspath(params["dhParameters"]) if "dhParameters" in params else None,
    )
    certificates = ListenerCertificates(files, directory)
    endpoint = SSL4ServerEndpoint(reactor, port, certificates, backlog=backlog, interface=params.get("interface", ""))
    return endpoint, certificates


def tls_directory(path: str | None, listen: list[str]) -> CertificateDirectory | None:
    """
    The loaded C{--tls-dir} for these C{--listen} strings; L{None} without
    one.  A directory with a file that cannot be used, or without an
    C{ssl:} listener to serve it, stops the edge at start-up.
    """
    if path is None:
        return None
    problems = [f"{path} needs an ssl: --listen to serve its certificates"]
    directory = CertificateDirectory(os.path.abspath(path))
    if any(is_ssl(description) for description in listen):
        problems = directory.load()
    if problems:
        sys.stderr.write("netbore-edge: --tls-dir: " + "; ".join(problems) + "\n")
        raise SystemExit(1)
    return directory
