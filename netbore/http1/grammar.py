"""
The HTTP/1.1 grammar both roles share (RFC 9110, RFC 9112): tokens, field
lines, C{Content-Length}, C{Connection} tokens and the hop-by-hop fields.

Regular expressions here work on C{bytes} and C{bytearray} alike, with
C{pos}/C{endpos}, so a head is matched where it lies in a receive buffer,
without copying it out first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "CHUNK_EXT",
    "CHUNK_SIZE",
    "FIELD_LINE",
    "FIELD_SECTION",
    "FIELDS",
    "HOP_BY_HOP",
    "HOST",
    "Header",
    "LEADING_CRLF",
    "REQUEST_LINE",
    "STATUS_LINE",
    "TOKEN",
    "connection_tokens",
    "content_length",
    "split_list",
]

#: One field line: name and value, as sent.
Header = tuple[bytes, bytes]

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# field-vchar = VCHAR / obs-text; a value is field-vchars with single runs of
# SP / HTAB between them (RFC 9110 §5.5), without its surrounding OWS.
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
_VALUE = rb"(?:" + _VCHAR + rb"+(?:[ \t]+" + _VCHAR + rb"+)*)?"

#: A token (method, field name, transfer coding).
TOKEN: Final = re.compile(_TCHAR + rb"+")

#: request-line = method SP request-target SP HTTP-version, the target in
#: one of RFC 9112 §3.2's forms the edge serves: origin (C{/...}), absolute
#: with the scheme the edge serves (C{http://...}, C{https://...}; another
#: scheme, e.g. C{h0ttp}, is read differently by other parsers: llhttp
#: refuses digits in it) or asterisk (C{*}); not authority (CONNECT).
REQUEST_LINE: Final = re.compile(
    rb"(" + _TCHAR + rb"+) (/[\x21-\x7e]*|\*|[Hh][Tt][Tt][Pp][Ss]?://[\x21-\x7e]*) HTTP/([0-9])\.([0-9])"
)

#: status-line = HTTP-version SP status-code SP [ reason-phrase ] (the SP
#: before an empty reason may be missing, as many servers send it).
STATUS_LINE: Final = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")

#: One field line without its line end; groups: name, value.
FIELD_LINE: Final = re.compile(rb"(" + _TCHAR + rb"+):[ \t]*(" + _VALUE + rb")[ \t]*")

#: A whole field section whose every line ends with CRLF, validated in one
#: call ...
FIELD_SECTION: Final = re.compile(rb"(?:" + _TCHAR + rb"+:[ \t]*" + _VALUE + rb"[ \t]*\r\n)*")
#: ... and then its fields taken in one more.
FIELDS: Final = re.compile(rb"(" + _TCHAR + rb"+):[ \t]*(" + _VALUE + rb")[ \t]*\r\n")

_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
#: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
#: (RFC 9112 §7.1.1), names tokens, values tokens or quoted strings.
CHUNK_EXT: Final = rb"(?:[ \t]*;[ \t]*" + _TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR + rb"+|" + _QUOTED + rb"))?)*"

#: chunk-size [ chunk-ext ]: 1 to 16 hex digits (a size that fits 64 bits),
#: white space only around the extensions' C{;} and C{=}.  Groups: the size.
CHUNK_SIZE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})" + CHUNK_EXT)

#: Empty lines a server may skip before a request line (RFC 9112 §2.2).
LEADING_CRLF: Final = re.compile(rb"(?:\r\n){0,8}")

#: RFC 9110 §7.6.1: C{Connection} itself and the connection-specific fields
#: named there (lower-case).  They describe one hop and are never forwarded.
HOP_BY_HOP: Final[frozenset[bytes]] = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    }
)

_DIGITS = re.compile(rb"[0-9]{1,18}")

#: A C{Host} value (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name or IPv4
#: address (unreserved, pct-encoded and sub-delims characters; no C{@},
#: C{/}, C{?} or C{#}) or a bracketed IP literal, then optionally C{:} and
#: a port of 1 to 5 digits.  The port's value (1-65535) is checked apart.
HOST: Final = re.compile(rb"(?:\[[0-9A-Za-z:.]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]*)(?::([0-9]{1,5}))?")


def split_list(values: Iterable[bytes]) -> list[bytes]:
    """
    The lower-cased, non-empty members of comma-separated field values
    (RFC 9110 §5.6.1), in order.
    """
    return [item for v in values for item in (p.strip(b" \t").lower() for p in v.split(b",")) if item]


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """
    The lower-cased field names listed by every C{Connection} field in
    C{headers} (names compared case-insensitively).
    """
    return frozenset(split_list(value for name, value in headers if name.lower() == b"connection"))


def content_length(values: list[bytes]) -> int | None:
    """
    The body length the C{Content-Length} field values C{values} give, or
    L{None} when they do not give one a strict intermediary may trust.

    One rule for requests and responses: exactly one field whose value is 1
    to 18 digits.  A list (C{5, 5}) or a repeated field is refused even
    when its members agree: RFC 9110 §8.6 lets a recipient accept that, but
    two parsers of one message must never disagree on where it ends, and
    common parsers (llhttp) refuse it, so an intermediary that accepted it
    would hand on a message the next hop may read differently.
    """
    if len(values) != 1:
        return None
    value = values[0]
    if _DIGITS.fullmatch(value) is None:
        return None
    return int(value)
