"""
Where a message's body ends (RFC 9112 §6.3) and whether its connection
carries another message (RFC 9112 §9.3), for both roles.

The request rules are the strict intermediary's: anything two parsers could
read differently is refused.  The response rules are what an agent needs
with origins: RFC 9112 §6.3 (C{Transfer-Encoding} wins over
C{Content-Length}, a body without either runs until the close), any doubt
about where the body ended keeps the connection from being reused, and
only the chunked coding is accepted.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import IntEnum

from .events import ParseError
from .grammar import content_length, split_list

__all__ = [
    "Framing",
    "keep_alive",
    "request_body",
    "response_body",
    "response_framing",
    "response_has_body",
]


class Framing(IntEnum):
    """
    How a body is delimited.
    """

    #: No body (HEAD, 1xx, 204, 304; a request without framing fields).
    NONE = 0
    #: C{Content-Length} bytes.
    LENGTH = 1
    #: Chunked transfer coding.
    CHUNKED = 2
    #: Until the connection closes (responses only).
    CLOSE = 3


def keep_alive(http10: bool, tokens: Collection[bytes]) -> bool:
    """
    Does a message of this version with these C{Connection} tokens
    (lower-cased) leave its connection open?  HTTP/1.1: unless C{close};
    HTTP/1.0: only with C{keep-alive} and without C{close}.
    """
    if http10:
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens


def response_has_body(status: int, head_request: bool) -> bool:
    """
    May a response with C{status} to a request (C{head_request}: a
    C{HEAD}) have a body?  Not for HEAD, 1xx, 204 and 304.
    """
    return not (head_request or status < 200 or status == 204 or status == 304)


def request_body(http10: bool, codings: list[bytes], lengths: list[bytes]) -> int | None:
    """
    The length of a request's body from its C{Transfer-Encoding} and
    C{Content-Length} field values: a number (0: none) or L{None} for
    chunked.

    @raise ParseError: the framing is ambiguous or unsupported: both
        fields (400), C{Transfer-Encoding} in HTTP/1.0 (400), a coding list
        that is not exactly one final C{chunked} (a known-shaped list with
        other codings: 501; otherwise 400), a C{Content-Length} that is not
        one field of 1 to 18 digits (400).
    """
    if codings:
        if http10:
            raise ParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if lengths:
            raise ParseError(400, "both Content-Length and Transfer-Encoding")
        te = split_list(codings)
        if te != [b"chunked"]:
            if te and te[-1] == b"chunked" and b"chunked" not in te[:-1]:
                raise ParseError(501, "transfer coding not implemented")
            raise ParseError(400, "Transfer-Encoding must end with chunked, once")
        return None
    if lengths:
        length = content_length(lengths)
        if length is None:
            raise ParseError(400, "invalid Content-Length")
        return length
    return 0


def response_body(
    status: int, head_request: bool, codings: list[bytes], lengths: list[bytes], reusable: bool
) -> tuple[Framing, int, bool]:
    """
    How a response's body is delimited: its L{Framing}, its length (for
    L{Framing.LENGTH}) and whether the connection stays reusable
    (C{reusable}: what the version and C{Connection} say).

    RFC 9112 §6.3: no body for HEAD, 1xx, 204, 304; C{Transfer-Encoding}
    wins over C{Content-Length}, and a message with both does not leave
    the connection reusable; otherwise C{Content-Length}; otherwise until
    the close.

    @raise ParseError: (502) a C{Content-Length} that is not one field of 1
        to 18 digits, or a C{Transfer-Encoding} other than exactly
        C{chunked} (the agent cannot decode other codings, nor pass them
        on: the field is hop-by-hop), even on a response without a body.
    """
    if codings and split_list(codings) != [b"chunked"]:
        # Another coding could only be passed on with its field, and
        # Transfer-Encoding is hop-by-hop: the body would arrive still coded
        # and unlabelled.
        raise ParseError(502, "transfer coding other than chunked")
    if not response_has_body(status, head_request):
        if lengths and content_length(lengths) is None:
            raise ParseError(502, "bad Content-Length")
        return Framing.NONE, 0, reusable
    if codings:
        return Framing.CHUNKED, 0, reusable and not lengths
    if lengths:
        length = content_length(lengths)
        if length is None:
            raise ParseError(502, "bad Content-Length")
        return (Framing.LENGTH, length, reusable) if length else (Framing.NONE, 0, reusable)
    return Framing.CLOSE, 0, False


def response_framing(status: int, head_request: bool, length: int | None, http11: bool) -> Framing:
    """
    How to frame a response we send: no body where none is allowed, else
    by its C{length} when known, else chunked to an HTTP/1.1 client and by
    the close to an HTTP/1.0 one.
    """
    if not response_has_body(status, head_request):
        return Framing.NONE
    if length is not None:
        return Framing.LENGTH
    return Framing.CHUNKED if http11 else Framing.CLOSE
