"""
The one HTTP/1.1 codec (RFC 9110, RFC 9112), sans-IO and stdlib only,
shared by the edge and the agent.

Laid out as h11 is: L{grammar} (tokens, fields, C{Content-Length},
C{Connection} tokens, hop-by-hop fields), L{events}, L{head} (the
strictness L{Policy}: L{VIEWER} strict, L{ORIGIN} as lenient as RFC 9112
lets a recipient be), L{readers} (the receive buffer and the body readers
both roles share: content-length, chunked, until-close), L{parsers}
(L{RequestParser}, L{ResponseParser} and their head parsing), L{client}
(L{ClientState}: a client connection's states, sans-IO), L{writers}
(heads, chunk framing) and L{framing} (RFC 9112 §6.3 body length,
keep-alive).

A parser takes one call per read: C{receive(data)} returns the events the
bytes complete (a head, C{bytes} of the body, L{END_OF_MESSAGE}; a
L{ParseError} ends the list), and parsing is linear in the bytes received
however they are split.
"""

from __future__ import annotations

from .client import ClientState
from .events import (
    END_OF_MESSAGE,
    NEED_DATA,
    PAUSED,
    Event,
    ParseError,
    RequestHead,
    ResponseHead,
)
from .framing import Framing, keep_alive, response_framing
from .grammar import HOP_BY_HOP, Header, connection_tokens
from .head import MAX_HEAD, ORIGIN, VIEWER, Policy
from .parsers import RequestParser, ResponseParser
from .writers import CHUNK_END, LAST_CHUNK, chunk_head, reason_phrase, request_head, response_head

__all__ = [
    "CHUNK_END",
    "ClientState",
    "END_OF_MESSAGE",
    "HOP_BY_HOP",
    "LAST_CHUNK",
    "MAX_HEAD",
    "NEED_DATA",
    "ORIGIN",
    "PAUSED",
    "VIEWER",
    "Event",
    "Framing",
    "Header",
    "ParseError",
    "Policy",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "chunk_head",
    "connection_tokens",
    "keep_alive",
    "request_head",
    "response_framing",
    "reason_phrase",
    "response_head",
]
