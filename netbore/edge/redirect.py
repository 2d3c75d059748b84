"""
The plain-HTTP redirect listener (C{--redirect-listen}): every request for
the edge's names gets C{308 Permanent Redirect} to the same target over
HTTPS; C{/.well-known/acme-challenge/<token>} is answered from
C{--acme-dir} for every host (ACME HTTP-01); anything else is a 404, so
the listener is no open redirect.  On twisted.web: not the hot path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from twisted.internet import endpoints
from twisted.web.http import Request as HTTPRequest
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from .._types import Reactor
from ..names import is_valid_label
from .listener import Listener
from .tls_listen import is_ssl

__all__ = ["ACME_PREFIX", "RedirectResource", "https_port", "redirect_listeners"]

#: The path ACME HTTP-01 challenges are fetched at; the token follows it.
ACME_PREFIX = b"/.well-known/acme-challenge/"
#: A token is base64url (RFC 8555 §8.3): no dots, no slashes, so no traversal.
_TOKEN = re.compile(rb"[A-Za-z0-9_-]{1,256}")
#: Largest challenge file answered (a key authorization is ~90 bytes).
_MAX_CHALLENGE = 4096


def https_port(listen: Sequence[str]) -> int | None:
    """
    The port of the first C{ssl:} listener in C{listen}, or L{None} when it
    is 443 or there is none (TLS then ends at a proxy on 443 in front).
    """
    for description in listen:
        if not is_ssl(description):
            continue
        for field in description.split(":")[1:]:
            value = field[len("port=") :] if field.startswith("port=") else field
            if value.isdigit():
                return None if int(value) == 443 else int(value)
            if "=" not in field:
                break
    return None


def _host(request: Request) -> str | None:
    """The Host header's name, lower case, without port or final dot."""
    raw = request.getHeader(b"host")
    if raw is None:
        return None
    try:
        host = raw.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if host.startswith("["):  # an IPv6 literal is none of our names
        return None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".")


class RedirectResource(Resource):
    """
    The whole redirect listener's site, one leaf.

    @param domain: the edge's C{--domain}; it and C{*.<domain>} redirect.
    @param port: the HTTPS port put in C{Location}, L{None} for 443.
    @param acme_dir: the ACME webroot (C{--acme-dir}); challenges are the
        files C{<acme_dir>/.well-known/acme-challenge/<token>}.
    """

    isLeaf = True

    def __init__(self, domain: str, port: int | None, acme_dir: str | None) -> None:
        super().__init__()
        self.domain = domain
        self.port = port
        self.acme_dir = acme_dir

    def render(self, request: Request) -> bytes:
        target = request.uri
        if target.startswith(ACME_PREFIX):
            return self._challenge(request, target[len(ACME_PREFIX) :])
        host = _host(request)
        if host is None or not self._ours(host) or not target.startswith(b"/"):
            return self._text(request, 404, b"Not found.\n")
        authority = host if self.port is None else f"{host}:{self.port}"
        location = b"https://" + authority.encode("ascii") + target
        request.setHeader(b"location", location)
        return self._text(request, 308, b"This site is served over HTTPS: " + location + b"\n")

    def _ours(self, host: str) -> bool:
        if host == self.domain:
            return True
        label, dot, parent = host.partition(".")
        return bool(dot) and parent == self.domain and is_valid_label(label)

    def _challenge(self, request: Request, token: bytes) -> bytes:
        token = token.split(b"?", 1)[0]
        if self.acme_dir is None or _TOKEN.fullmatch(token) is None:
            return self._text(request, 404, b"No such challenge.\n")
        path = os.path.join(self.acme_dir, ".well-known", "acme-challenge", token.decode("ascii"))
        try:
            with open(path, "rb") as f:
                body = f.read(_MAX_CHALLENGE + 1)
        except OSError:  # missing, a directory, unreadable
            return self._text(request, 404, b"No such challenge.\n")
        if len(body) > _MAX_CHALLENGE:
            return self._text(request, 404, b"No such challenge.\n")
        return self._text(request, 200, body)

    @staticmethod
    def _text(request: Request, code: int, body: bytes) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return body


class _QuietSite(Site):
    """No access log line per redirect (the edge logs its own traffic)."""

    displayTracebacks = False

    def log(self, request: HTTPRequest) -> None:
        pass


def redirect_listeners(
    reactor: Reactor, descriptions: Sequence[str], domain: str, listen: Sequence[str], acme_dir: str | None
) -> list[Listener]:
    """
    One L{Listener} per C{--redirect-listen}, all serving one site.

    @raise ValueError: (or KeyError, TypeError) a description that is no
        server endpoint string.
    """
    site = _QuietSite(RedirectResource(domain, https_port(listen), acme_dir))
    return [Listener(d, endpoints.serverFromString(reactor, d), site) for d in descriptions]
