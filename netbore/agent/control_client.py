"""
The agent's client of the edge's control API (treq), and reading the
times and tokens it answers with.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any, Protocol

import attrs
import treq
from treq.client import HTTPClient

__all__ = ["ControlClient", "ControlError", "Created", "TunnelControl", "iso8601", "parse_time", "token_expiry"]


def parse_time(text: str) -> float:
    """
    An ISO-8601 time from the control API (C{candidates_expires_at}) in
    seconds since the epoch; 0 when it cannot be read.
    """
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return 0.0


def iso8601(when: float | None) -> str | None:
    """
    C{when} as ISO-8601 UTC to the second, or L{None}.
    """
    if when is None:
        return None
    return datetime.fromtimestamp(int(when), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_expiry(token: str | None) -> float | None:
    """
    The C{exp} claim of a JWT, read without verifying it (the agent only
    schedules by it; the edge does the verifying), or L{None}.
    """
    if not token:
        return None
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class ControlError(Exception):
    """
    The control API answered with an error (or not at all).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@attrs.frozen
class Created:
    tunnel_id: str
    name: str
    public_hostname: str
    public_url: str
    candidates: list[dict[str, Any]]
    ephemeral_token: str
    recreate_token: str | None
    candidates_expires_at: str
    note: str | None
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)


class TunnelControl(Protocol):
    """
    What the agent's service needs of the control API client
    (L{ControlClient}); tests give it a fake.
    """

    async def management_token(self, api_key: str) -> str: ...

    async def create(
        self,
        *,
        requested_name: str | None = None,
        recreate_token: str | None = None,
        management_token: str | None = None,
        recreate_ttl: int | None = None,
        protocol: str | None = None,
    ) -> Created: ...


class ControlClient:
    """
    Calls C{/auth/token} and C{/tunnels/create} on one edge.
    """

    def __init__(self, http: HTTPClient, control_url: str) -> None:
        self.http = http
        self.base = control_url.rstrip("/")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, bearer: str | None) -> dict[str, Any]:
        headers = {b"Accept": [b"application/json"]}
        if bearer:
            headers[b"Authorization"] = [b"Bearer " + bearer.encode()]
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        response = await self.http.request(method, self.base + path, **kwargs)
        content = await treq.content(response)
        try:
            data = json.loads(content) if content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.code >= 400:
            raise ControlError(
                response.code,
                str(data.get("error", "http_error")),
                str(data.get("message", content[:200].decode("utf-8", "replace"))),
            )
        return data

    async def management_token(self, api_key: str) -> str:
        data = await self._call("POST", "/auth/token", None, api_key)
        return str(data["management_token"])

    async def create(
        self,
        *,
        requested_name: str | None = None,
        recreate_token: str | None = None,
        management_token: str | None = None,
        recreate_ttl: int | None = None,
        protocol: str | None = None,
    ) -> Created:
        """
        C{POST /tunnels/create}; C{protocol} C{"tcp"} asks for a TCP tunnel
        (a public port), none for an HTTP one.
        """
        body: dict[str, Any] = {"preferred_transports": ["wss"]}
        if requested_name:
            body["requested_name"] = requested_name
        if recreate_token:
            body["recreate_token"] = recreate_token
        if recreate_ttl is not None:
            body["recreate_token_ttl_seconds"] = recreate_ttl
        if protocol is not None:
            body["protocol"] = protocol
        data = await self._call("POST", "/tunnels/create", body, management_token)
        hostname = str(data["public_hostname"])
        return Created(
            tunnel_id=str(data["tunnel_id"]),
            name=hostname.split(".", 1)[0],
            public_hostname=hostname,
            public_url=str(data.get("public_url") or f"http://{hostname}"),
            candidates=list(data["candidates"]),
            ephemeral_token=str(data["ephemeral_token"]),
            recreate_token=data.get("recreate_token"),
            candidates_expires_at=str(data["candidates_expires_at"]),
            note=data.get("note"),
            raw=data,
        )
