"""
The edge's header rules for tunnel traffic, as an intermediary (RFC 9110
§7.6): what goes on to the agent of a viewer's request head, and what goes
back to the viewer of the origin's response head.

  - Hop-by-hop fields, and those a C{Connection} field names, never pass.
  - The edge sets C{X-Forwarded-For} (the viewer's address appended to what
    the viewer sent), C{X-Forwarded-Proto}, C{X-Forwarded-Host} and
    C{X-Netbore-Client-IP}; a viewer's own values of the last three are
    dropped.
  - Everything else passes byte for byte and in order, so repeated fields
    (several C{Set-Cookie}) keep their number and sequence.
"""

from __future__ import annotations

from ..http1.grammar import HOP_BY_HOP, content_length, split_list

__all__ = ["Fields", "request_fields", "response_fields"]

Fields = list[tuple[bytes, bytes]]

#: Headers the edge sets itself; a viewer's own values are dropped (except
#: X-Forwarded-For, which the edge appends to).
_EDGE_SET = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-netbore-client-ip"})

#: Request fields never forwarded as the viewer sent them.
_DROP = HOP_BY_HOP | _EDGE_SET


def request_fields(
    fields: Fields, connection: frozenset[bytes], host: bytes | None, client: bytes, secure: bool
) -> Fields:
    """
    The viewer's request fields to send on (names lower-cased, as the
    viewer parser gives them): hop-by-hop fields and those named in
    C{connection} removed, forwarding fields set.

    @param host: the request's C{Host}.
    @param client: the viewer's address.
    @param secure: the viewer came over TLS.
    """
    drop = _DROP | connection if connection else _DROP
    headers: Fields = []
    append = headers.append
    forwarded_for: bytes | None = None
    for field in fields:
        name = field[0]
        if name in drop:
            continue
        if name == b"x-forwarded-for":
            value = field[1]
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        append(field)
    append((b"x-forwarded-for", client if forwarded_for is None else forwarded_for + b", " + client))
    append((b"x-forwarded-proto", b"https" if secure else b"http"))
    append((b"x-forwarded-host", host or b""))
    append((b"x-netbore-client-ip", client))
    return headers


def response_fields(headers: Fields) -> tuple[Fields, int | None]:
    """
    The response fields to send the viewer (hop-by-hop fields and those
    named in C{Connection} removed, order and repetitions kept) and the
    body's length by C{Content-Length} (L{None}: not length-delimited).

    A C{Content-Length} the viewer could not rely on is dropped so the
    viewer's connection frames the body itself: one that the one rule of
    L{netbore.http1.grammar.content_length} refuses (not a number, a list,
    a repeat), or any beside C{Transfer-Encoding} (RFC 9112 §6.3: the
    origin's body was delimited otherwise).
    """
    forwarded: Fields = []
    append = forwarded.append
    named: list[bytes] | None = None
    lengths: list[bytes] | None = None
    chunked = False
    for field in headers:
        name = field[0].lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                named = (named or []) + split_list((field[1],))
            elif name == b"transfer-encoding":
                chunked = True
            continue
        if name == b"content-length":
            if lengths is None:
                lengths = [field[1].strip()]
            else:
                lengths.append(field[1].strip())
        append(field)
    drop = frozenset(named) - HOP_BY_HOP if named else None
    if drop:
        forwarded = [f for f in forwarded if f[0].lower() not in drop]
        if b"content-length" in drop:
            lengths = None
    length: int | None = None
    if lengths is not None:
        length = None if chunked else content_length(lengths)
        if length is None:
            forwarded = [f for f in forwarded if f[0].lower() != b"content-length"]
    return forwarded, length
