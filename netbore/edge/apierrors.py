"""
JSON responses and errors of the control API.

Every error is an HTTP status plus C{{"error": <code>, "message": <text>}}
(DESIGN.md); L{ApiError} carries both and L{render_error} writes them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from twisted.web.server import Request

__all__ = [
    "ApiError",
    "forbidden",
    "invalid_request",
    "json_response",
    "method_not_allowed",
    "name_taken",
    "names_exhausted",
    "not_found",
    "payload_too_large",
    "ports_exhausted",
    "quota_exceeded",
    "rate_limited",
    "render_error",
    "tcp_not_enabled",
    "tunnel_deleted",
    "unauthorized",
]


class ApiError(Exception):
    """
    An error answer: C{status}, C{code}, C{message} and extra headers.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def invalid_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Bearer realm="netbore"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def method_not_allowed(allowed: list[str]) -> ApiError:
    allow = ", ".join(allowed)
    return ApiError(
        405,
        "method_not_allowed",
        f"this path accepts only {allow}",
        {"Allow": allow},
    )


def name_taken(message: str) -> ApiError:
    return ApiError(409, "name_taken", message)


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")


def rate_limited(retry_after: float, what: str = "failed authentications") -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        429,
        "rate_limited",
        f"too many {what} from your address; retry in {seconds} s",
        {"Retry-After": str(seconds)},
    )


def quota_exceeded(message: str) -> ApiError:
    return ApiError(403, "quota_exceeded", message)


def tunnel_deleted(message: str) -> ApiError:
    return ApiError(410, "tunnel_deleted", message)


def names_exhausted(message: str) -> ApiError:
    return ApiError(503, "names_exhausted", message, {"Retry-After": "1"})


def tcp_not_enabled(message: str) -> ApiError:
    return ApiError(400, "tcp_not_enabled", message)


def ports_exhausted(message: str) -> ApiError:
    return ApiError(409, "ports_exhausted", message)


def json_response(request: Request, status: int, body: Any, *, no_store: bool = False) -> bytes:
    """
    Set C{status} and JSON headers on C{request}; the encoded C{body}.
    """
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    if no_store:
        request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body, separators=(",", ":")).encode("utf-8") + b"\n"


def render_error(request: Request, error: ApiError) -> bytes:
    """
    Write C{error} to C{request}; the body bytes.
    """
    for name, value in error.headers.items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return json_response(
        request,
        error.status,
        {"error": error.code, "message": error.message},
        no_store=True,
    )
