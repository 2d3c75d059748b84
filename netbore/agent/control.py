"""
The agent's client of the edge's control API, on twisted.web.client.

It makes the requests treq made for it (JSON body, cookies kept, redirects
followed, gzip accepted) without treq and what treq imports (hyperlink,
multipart, its typing helpers): the agent calls the control API a few
times in its life, and those modules stayed resident for all of it.
"""

from __future__ import annotations

import json
import re
from io import BytesIO as _BytesIO
from http.cookiejar import CookieJar
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    ContentDecoderAgent,
    CookieAgent,
    FileBodyProducer,
    GzipDecoder,
    RedirectAgent,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

__all__ = ["ControlClient", "ControlError", "Created"]


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


# Characters a URI may hold as they are: such a URL is sent unchanged.
_PLAIN_URI = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]*\Z")


def request_uri(url: str) -> bytes:
    """
    C{url} as the bytes of a URI, as treq sends it: unchanged when it is
    plain ASCII, otherwise through hyperlink (IDNA host, percent-encoding),
    imported only then.
    """
    if _PLAIN_URI.match(url):
        return url.encode("ascii")
    from hyperlink import EncodedURL

    text: str = EncodedURL.from_text(url).to_uri().to_text()
    return text.encode("ascii")


class _Collector(Protocol):
    """
    Gathers a response body; like treq, a body cut short without a length
    to say so (L{PotentialDataLoss}) counts as complete.
    """

    def __init__(self, finished: Deferred[bytes]) -> None:
        self.finished = finished
        self.parts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(reason)


def read_body(response: IResponse) -> Deferred[bytes]:
    """
    The whole body of C{response}.
    """
    if response.length == 0:
        return succeed(b"")
    finished: Deferred[bytes] = Deferred()
    response.deliverBody(_Collector(finished))
    return finished


class ControlClient:
    """
    Calls C{/auth/token} and C{/tunnels/create} on one edge.

    @param agent: makes the requests (a L{twisted.web.client.Agent}); this
        client adds a cookie jar, redirects and gzip decoding around it.
    """

    def __init__(self, agent: IAgent, control_url: str) -> None:
        self.cookies = CookieJar()
        self.agent: IAgent = ContentDecoderAgent(
            RedirectAgent(CookieAgent(agent, self.cookies)), [(b"gzip", GzipDecoder)]
        )
        self.base = control_url.rstrip("/")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, bearer: str | None) -> dict[str, Any]:
        headers = Headers({b"Accept": [b"application/json"]})
        if bearer:
            headers.setRawHeaders(b"Authorization", [b"Bearer " + bearer.encode()])
        producer = None
        if body is not None:
            encoded = json.dumps(body, separators=(",", ":")).encode("utf-8")
            producer = FileBodyProducer(_BytesIO(encoded))
            headers.setRawHeaders(b"Content-Type", [b"application/json; charset=UTF-8"])
        response = await self.agent.request(
            method.encode("ascii").upper(), request_uri(self.base + path), headers, producer
        )
        content = await read_body(response)
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
    ) -> Created:
        body: dict[str, Any] = {"preferred_transports": ["wss"]}
        if requested_name:
            body["requested_name"] = requested_name
        if recreate_token:
            body["recreate_token"] = recreate_token
        if recreate_ttl is not None:
            body["recreate_token_ttl_seconds"] = recreate_ttl
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
