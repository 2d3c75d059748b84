"""
Header handling shared by the edge and the agent.

Both ends of the tunnel are intermediaries in the sense of RFC 9110 §7.6:
headers that describe one connection (hop-by-hop headers) must not be
forwarded.  Everything else passes through byte for byte and in order, so
repeated fields such as ``Set-Cookie`` keep their number and sequence.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "HOP_BY_HOP",
    "Header",
    "connection_tokens",
    "strip_hop_by_hop",
]

Header = tuple[bytes, bytes]

# RFC 9110 §7.6.1: Connection itself plus the connection-specific fields
# named there.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
    }
)


def connection_tokens(headers: Iterable[Header]) -> frozenset[bytes]:
    """
    The lower-cased field names listed by every ``Connection`` header in
    C{headers} (RFC 9110 §7.6.1: comma-separated, optional whitespace).
    """
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() != b"connection":
            continue
        for token in value.split(b","):
            token = token.strip(b" \t").lower()
            if token:
                tokens.add(token)
    return frozenset(tokens)


def strip_hop_by_hop(headers: list[Header]) -> list[Header]:
    """
    Return C{headers} without the hop-by-hop fields of RFC 9110 §7.6.1 and
    without any field named in a ``Connection`` header.

    Order, name spelling and values of the remaining fields are unchanged;
    repeated fields all survive in their original order.
    """
    drop = HOP_BY_HOP | connection_tokens(headers)
    return [(name, value) for name, value in headers if name.lower() not in drop]
