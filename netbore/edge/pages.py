"""
The pages viewers see when the edge answers instead of the origin.

Small HTML for browsers, JSON when C{Accept} asks for it; both say which of
the cases it is, and an C{X-Netbore-Error} header names it for tools.
"""

from __future__ import annotations

import html
import json

__all__ = [
    "ViewerError",
    "NOT_FOUND",
    "OFFLINE",
    "UNREACHABLE",
    "ORIGIN_ERROR",
    "TIMEOUT",
    "HEAD_TOO_LARGE",
    "BAD_REQUEST",
    "REQUEST_TIMEOUT",
    "NOT_IMPLEMENTED",
    "VERSION_NOT_SUPPORTED",
    "INVALID_RESPONSE",
    "UPGRADE_NOT_SUPPORTED",
    "TARGET_NOT_SERVED",
    "METHOD_NOT_ALLOWED",
    "ALLOW",
    "headers",
    "render",
]


class ViewerError:
    __slots__ = ("status", "code", "title", "message")

    def __init__(self, status: int, code: str, title: str, message: str) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.message = message


NOT_FOUND = ViewerError(
    404,
    "tunnel_not_found",
    "Tunnel not found",
    "There is no tunnel at this address. Check the name, or start the agent that serves it.",
)
OFFLINE = ViewerError(
    502,
    "tunnel_offline",
    "Tunnel offline",
    "This tunnel exists but its agent is not connected right now. Try again shortly.",
)
UNREACHABLE = ViewerError(
    502,
    "origin_unreachable",
    "Origin unreachable",
    "The agent is connected but could not reach the service behind it.",
)
ORIGIN_ERROR = ViewerError(
    502,
    "origin_error",
    "Origin error",
    "The service behind this tunnel closed the connection before answering.",
)
TIMEOUT = ViewerError(
    504,
    "origin_timeout",
    "Origin timeout",
    "The service behind this tunnel did not answer in time.",
)

HEAD_TOO_LARGE = ViewerError(
    431,
    "request_head_too_large",
    "Request header fields too large",
    "The request's headers are too large, or not valid, to pass through the tunnel.",
)

BAD_REQUEST = ViewerError(
    400,
    "bad_request",
    "Bad request",
    "The request is not valid HTTP/1.1 (its framing or headers are malformed or ambiguous).",
)
REQUEST_TIMEOUT = ViewerError(
    408,
    "request_timeout",
    "Request timeout",
    "The request (its headers or its body) did not arrive in time.",
)
NOT_IMPLEMENTED = ViewerError(
    501,
    "not_implemented",
    "Not implemented",
    "The request uses a transfer coding the edge does not implement.",
)
VERSION_NOT_SUPPORTED = ViewerError(
    505,
    "http_version_not_supported",
    "HTTP version not supported",
    "The edge speaks HTTP/1.0 and HTTP/1.1 on this port.",
)

INVALID_RESPONSE = ViewerError(
    502,
    "invalid_response",
    "Invalid response",
    "The service behind this tunnel sent a response head that is not valid HTTP; the edge did not pass it on.",
)
UPGRADE_NOT_SUPPORTED = ViewerError(
    502,
    "upgrade_not_supported",
    "Upgrade not supported",
    "This tunnel's agent is too old to carry WebSocket or other upgraded connections; update it.",
)
TOO_MANY_STREAMS = ViewerError(
    503,
    "too_many_streams",
    "Too many connections to this tunnel",
    "This tunnel carries as many WebSocket and other long-lived connections as it may right now. Try again later.",
)
TARGET_NOT_SERVED = ViewerError(
    400,
    "bad_request",
    "Bad request",
    "A tunnel serves requests for a path (such as /index.html): not absolute URLs (a proxy's form) or *.",
)
METHOD_NOT_ALLOWED = ViewerError(
    405,
    "method_not_allowed",
    "Method not allowed",
    "A tunnel does not serve CONNECT: the edge is not a forward proxy.",
)

#: The C{Allow} of a L{METHOD_NOT_ALLOWED} page: what a tunnel forwards
#: (any method but C{CONNECT}; these are the registered ones).
ALLOW = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"

_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{status} {title}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>{status} {title}</h1><p>{message}</p><p><small>{host} &middot; netbore</small></p>
</body></html>
"""


def _wants_json(accept: bytes) -> bool:
    return b"application/json" in accept or b"+json" in accept


def render(error: ViewerError, host: bytes, accept: bytes) -> tuple[bytes, bytes]:
    """
    C{error}'s page for a viewer who asked for C{host} and accepts
    C{accept}: its content type and body.
    """
    name = host.decode("ascii", "replace")
    if _wants_json(accept):
        body = json.dumps(
            {"error": error.code, "message": error.message, "status": error.status, "host": name}
        ).encode()
        return b"application/json", body
    body = _HTML.format(
        status=error.status,
        title=html.escape(error.title),
        message=html.escape(error.message),
        host=html.escape(name),
    ).encode()
    return b"text/html; charset=utf-8", body


def headers(ctype: bytes, body: bytes, error: ViewerError) -> list[tuple[bytes, bytes]]:
    """
    The response headers of an error page.
    """
    fields = [
        (b"Content-Type", ctype),
        (b"Content-Length", b"%d" % len(body)),
        (b"Cache-Control", b"no-store"),
        (b"X-Netbore-Error", error.code.encode()),
    ]
    if error.status == 405:
        fields.append((b"Allow", ALLOW))
    return fields
