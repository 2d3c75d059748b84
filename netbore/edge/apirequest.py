"""
Reading control API requests: JSON bodies checked against the shipped
schemas and the size limit, the client's address, the C{Host} a request came
in on and the URLs made from it; and the time formats of the answers.

The routes live in L{netbore.edge.control}; errors are the
L{netbore.edge.apierrors.ApiError}s raised here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from twisted.web.server import Request

from .apierrors import invalid_request, payload_too_large
from .clientaddr import normalise

__all__ = [
    "client_address",
    "edge_url",
    "iso8601",
    "json_body",
    "load_schema",
    "parse_json",
    "public_url",
    "request_host",
    "seconds_text",
    "validator",
]

# A Host header we are willing to echo into URLs: a DNS name or IPv4
# literal, or a bracketed IPv6 literal, with an optional port.
_HOST = re.compile(
    r"\A(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))"
    r"|(?P<v6>\[[0-9A-Fa-f:.]+\]))(?::(?P<port>[0-9]{1,5}))?\Z"
)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def load_schema(filename: str) -> dict[str, Any]:
    """
    One of the JSON Schemas shipped in C{netbore/schemas/}.
    """
    text = (resources.files("netbore") / "schemas" / filename).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def validator(filename: str) -> Draft202012Validator:
    """
    A validator of the shipped schema C{filename}, the schema itself checked
    first.
    """
    schema = load_schema(filename)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def iso8601(when: float) -> str:
    """
    C{when} (seconds since the epoch) as ISO-8601 UTC with a C{Z}, to the
    second (rounded down).
    """
    return datetime.fromtimestamp(int(when), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_text(value: float) -> str:
    """
    A duration for a person: C{3600} not C{3600.0} or C{3.6e+03}.
    """
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


#: Deepest nesting of arrays and objects accepted in a request body (the
#: shipped schemas need 2).
MAX_JSON_DEPTH = 32

#: Largest magnitude of a JSON number accepted: 2**53, the I-JSON limit
#: (RFC 7493 §2.2), beyond which numbers do not round-trip through a float.
MAX_JSON_NUMBER = 2**53


def _parse_int(text: str) -> int:
    value = int(text)  # ValueError beyond Python's 4300 digits
    if abs(value) > MAX_JSON_NUMBER:
        raise ValueError(f"number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not (abs(value) <= MAX_JSON_NUMBER):  # also refuses inf and nan
        raise ValueError(f"number {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _too_deep(value: Any, limit: int) -> bool:
    """
    Does C{value} nest arrays and objects more than C{limit} deep?  (No
    recursion: the parser's own limit is far larger than ours.)
    """
    level: list[Any] = [value]
    for _ in range(limit + 1):
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children:
            return False
        level = children
    return True


def parse_json(raw: bytes) -> Any:
    """
    The JSON text C{raw} (UTF-8), with numbers in the I-JSON range and
    nesting at most L{MAX_JSON_DEPTH} deep.

    @raise ValueError: naming what is wrong, for a 400.
    """
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except UnicodeDecodeError as e:
        raise ValueError(str(e)) from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return value


def _describe(error: ValidationError) -> str:
    where = "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(error.absolute_path)
    )
    if where:
        return f"field {where!r}: {error.message}"
    return str(error.message)


def client_address(request: Request) -> str:
    """
    The client's address (the peer's, or the one a trusted proxy names:
    L{netbore.edge.controlhttp.ControlRequest}), normalised
    (L{netbore.edge.clientaddr.normalise}) so that one client has one
    failed-authentication budget; C{"unknown"} for transports without a
    host (a UNIX socket, some test transports).
    """
    get = getattr(request, "getClientAddress", None)
    address = get() if get is not None else None
    host = getattr(address, "host", None)
    return normalise(host) if isinstance(host, str) and host else "unknown"


def _raw_body(request: Request, limit: int) -> bytes:
    """
    The request's body, refused with 413 above C{limit} bytes (declared or
    received).
    """
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise invalid_request("Content-Length is not a number") from None
        if declared > limit:
            raise payload_too_large(limit)
    content = request.content
    raw: bytes = b""
    if content is not None:
        content.seek(0)
        raw = content.read(limit + 1)
    if len(raw) > limit:
        raise payload_too_large(limit)
    return raw


def json_body(request: Request, schema: Draft202012Validator, limit: int) -> dict[str, Any]:
    """
    The request's JSON object body, valid against C{schema}; an empty body
    is C{{}}.

    @raise ApiError: 413 above C{limit} bytes; 400 for a body that is not
        C{application/json}, not a JSON object, or not valid.
    """
    raw = _raw_body(request, limit)
    if not raw.strip():
        body: dict[str, Any] = {}
    else:
        ctype = request.getHeader(b"content-type")
        media = (ctype or b"").split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            raise invalid_request("request body must be JSON with Content-Type: application/json")
        try:
            parsed = parse_json(raw)
        except ValueError as e:
            raise invalid_request(f"request body is not valid JSON: {e}") from None
        if not isinstance(parsed, dict):
            raise invalid_request("request body must be a JSON object")
        body = parsed
    error = best_match(schema.iter_errors(body))
    if error is not None:
        raise invalid_request(_describe(error))
    return body


def request_host(request: Request) -> tuple[str, int | None]:
    """
    The host (lower-cased) and port the request was sent to, from C{Host}
    or, without one, from the socket.

    @raise ApiError: 400 for a C{Host} that is not a host name.
    """
    raw = request.getHeader(b"host")
    if raw is None:
        address = request.getHost()
        host = getattr(address, "host", "localhost")
        return (host, getattr(address, "port", None))
    match = _HOST.match(raw.strip().decode("latin-1"))
    if match is None:
        raise invalid_request("the Host header is not a host name")
    host = (match.group("name") or match.group("v6")).lower()
    port = match.group("port")
    return (host, int(port) if port is not None else None)


def _url(scheme: str, host: str, port: int | None, path: str = "") -> str:
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}{path}"
    return f"{scheme}://{host}:{port}{path}"


def public_url(request: Request, hostname: str, scheme: str | None) -> str:
    """
    The URL a viewer opens for C{hostname}: C{scheme} (or the request's),
    and the port the request came in on.
    """
    scheme = scheme or ("https" if request.isSecure() else "http")
    _, port = request_host(request)
    return _url(scheme, hostname, port, "")


def edge_url(request: Request, advertise_url: str | None) -> str:
    """
    The C{edge_url} of a candidate: C{advertise_url}, or C{/connect} on the
    scheme and C{Host} the request came in on.
    """
    if advertise_url:
        return advertise_url
    host, port = request_host(request)
    return _url("wss" if request.isSecure() else "ws", host, port, "/connect")
