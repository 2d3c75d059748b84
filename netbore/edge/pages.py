"""
The pages viewers see when the edge answers instead of the origin.

Small HTML for browsers, JSON when C{Accept} asks for it; both say which of
the cases it is, and an C{X-Netbore-Error} header names it for tools.
"""

from __future__ import annotations

import html
import json

from twisted.web.iweb import IRequest

__all__ = [
    "ViewerError",
    "NOT_FOUND",
    "OFFLINE",
    "UNREACHABLE",
    "ORIGIN_ERROR",
    "TIMEOUT",
    "HEAD_TOO_LARGE",
    "render_error",
]


class ViewerError:
    __slots__ = ("status", "code", "title", "message")

    def __init__(self, status: int, code: str, title: str, message: str) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.message = message


NOT_FOUND = ViewerError(
    404, "tunnel_not_found", "Tunnel not found",
    "There is no tunnel at this address. Check the name, or start the agent that serves it.",
)
OFFLINE = ViewerError(
    502, "tunnel_offline", "Tunnel offline",
    "This tunnel exists but its agent is not connected right now. Try again shortly.",
)
UNREACHABLE = ViewerError(
    502, "origin_unreachable", "Origin unreachable",
    "The agent is connected but could not reach the service behind it.",
)
ORIGIN_ERROR = ViewerError(
    502, "origin_error", "Origin error",
    "The service behind this tunnel closed the connection before answering.",
)
TIMEOUT = ViewerError(
    504, "origin_timeout", "Origin timeout",
    "The service behind this tunnel did not answer in time.",
)

HEAD_TOO_LARGE = ViewerError(
    431, "request_head_too_large", "Request header fields too large",
    "The request's headers are too large, or not valid, to pass through the tunnel.",
)

_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{status} {title}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>{status} {title}</h1><p>{message}</p><p><small>{host} &middot; netbore</small></p>
</body></html>
"""


def _wants_json(request: IRequest) -> bool:
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept or b"+json" in accept


def render_error(request: IRequest, error: ViewerError) -> None:
    """
    Answer C{request} with C{error}'s page and finish it.
    """
    host = (request.getHeader(b"host") or b"").decode("ascii", "replace")
    if _wants_json(request):
        body = json.dumps(
            {"error": error.code, "message": error.message, "status": error.status, "host": host}
        ).encode()
        ctype = b"application/json"
    else:
        body = _HTML.format(
            status=error.status,
            title=html.escape(error.title),
            message=html.escape(error.message),
            host=html.escape(host),
        ).encode()
        ctype = b"text/html; charset=utf-8"
    request.setResponseCode(error.status)
    headers = request.responseHeaders
    headers.setRawHeaders(b"content-type", [ctype])
    headers.setRawHeaders(b"content-length", [str(len(body)).encode()])
    headers.setRawHeaders(b"cache-control", [b"no-store"])
    headers.setRawHeaders(b"x-netbore-error", [error.code.encode()])
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
