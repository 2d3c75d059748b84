"""
The edge's rules for header fields beyond the hop-by-hop ones (issue 10):
what a viewer may not make the origin see, what an agent may not make a
viewer see.

Only constants (compiled patterns, sets) are read on a request's ordinary
path: L{netbore.edge.exchange} applies them inline, as a call into another
module costs on every request (C{bench/trace.py}).  The functions here run
only when a rule is broken or a field needs rewriting.

Request side (item 15):
  - A C{Connection} field never removes C{Host} or the forwarding fields
    (L{KEPT}): they are the edge's to set or to pass on.
  - A field whose name equals a forwarding field once C{_} is read as
    C{-} (C{X_Netbore_Client_IP}, C{X-Forwarded_For}) is dropped
    (L{UNDERSCORED}): CGI and WSGI servers map both spellings to one
    variable, so an origin could read the viewer's value as the edge's.

Response side:
  - A response head from an agent is passed on only if every field name
    is an RFC 9110 C{token}, no field value or reason phrase holds a
    control character other than HTAB, the status is 100-599, and a
    C{CONNECT} is not answered with 2xx (item 14; L{head_problem}).
  - A C{Set-Cookie} C{Domain} attribute naming a proper parent of the
    tunnel's host name (the edge's domain, or a parent of that) is removed,
    so one tenant cannot set cookies every other tenant's viewers send
    ("cookie tossing", item 6; L{strip_cookie_domain}).
"""

from __future__ import annotations

import re
from itertools import product
from typing import Final

from ..http1.grammar import TOKEN, Header

__all__ = [
    "BAD_TEXT",
    "CONTROLS",
    "FORWARDING",
    "TCHARS",
    "KEPT",
    "COOKIE_DOMAIN",
    "UNDERSCORED",
    "head_problem",
    "strip_cookie_domain",
]

# -- request fields (item 15) ---------------------------------------------------

#: The fields the edge sets (or, for C{X-Forwarded-For}, appends to).
FORWARDING: Final = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-netbore-client-ip"})

#: Fields a C{Connection} field may name without removing them.
KEPT: Final = FORWARDING | {b"host"}


def _underscored(name: bytes) -> frozenset[bytes]:
    """Every spelling of C{name} with some of its C{-} written C{_}, C{name} itself not included."""
    parts = name.split(b"-")
    spellings = {
        b"".join(p + s for p, s in zip(parts, (*seps, b""), strict=True))
        for seps in product((b"-", b"_"), repeat=len(parts) - 1)
    }
    spellings.discard(name)
    return frozenset(spellings)


#: The forwarding fields' names with C{_} for some C{-}, lower-case.
UNDERSCORED: Final = frozenset().union(*(_underscored(name) for name in FORWARDING))

# -- response heads (item 14) ---------------------------------------------------

#: A control character other than HTAB (in a field value or reason phrase).
BAD_TEXT: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

#: The two rules (a field name is a L{netbore.http1.grammar.TOKEN}; no
#: L{BAD_TEXT}) as byte sets, for C{bytes.translate(None, ...)}: a
#: joined run of names is all tokens when nothing is left once L{TCHARS}
#: are deleted; a joined run of values holds no control when deleting
#: L{CONTROLS} keeps its length.  (Cheaper than a regex call on the short
#: strings of a head, and each is one C call for the whole head.)
TCHARS: Final = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CONTROLS: Final = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])


def head_problem(method: bytes, status: int, reason: bytes, headers: list[Header]) -> str | None:
    """
    Why a response head to a C{method} request is not one to pass on to a
    viewer, or L{None} when it is.
    """
    if not 100 <= status <= 599:
        return f"status {status} out of range"
    if BAD_TEXT.search(reason) is not None:
        return "control character in the reason phrase"
    for name, value in headers:
        if TOKEN.fullmatch(name) is None:
            return f"field name {name[:40]!r} is not a token"
        if BAD_TEXT.search(value) is not None:
            return f"control character in the value of {name[:40]!r}"
    if method == b"CONNECT" and 200 <= status < 300:
        return "2xx answer to CONNECT"
    return None


# -- Set-Cookie (item 6) --------------------------------------------------------

#: Finds a C{Set-Cookie} value that may carry a C{Domain} attribute (then
#: L{strip_cookie_domain} reads it properly).
COOKIE_DOMAIN: Final = re.compile(rb";[ \t]*domain", re.IGNORECASE)

_PLAIN_NAME = re.compile(rb"[a-z0-9.\-]*")


def strip_cookie_domain(value: bytes, host: bytes) -> bytes:
    """
    The C{Set-Cookie} value C{value} from the tunnel at C{host} (its public
    host name, lower-case), without the C{Domain} attributes that would
    send the cookie to other names than C{host}'s own.

    A C{Domain} naming C{host} itself (case-insensitive, leading or
    trailing dot allowed) is kept: such a cookie goes to C{host} and names
    below it, which are no tenant's (a tunnel name is one label).  A
    C{Domain} naming a proper parent of C{host} (the edge's domain, or a
    parent of that) is removed, so the cookie becomes host-only.  So is one
    that a browser could read as some other name than it spells (anything
    beyond letters, digits, C{.} and C{-}: percent-escapes, non-ASCII).  Any
    other C{Domain} names an unrelated host; browsers refuse such a cookie,
    and it is passed on as it is.  An empty one (which browsers ignore) is
    removed.
    """
    parts = value.split(b";")
    kept = [parts[0]]
    for part in parts[1:]:
        name, eq, domain = part.partition(b"=")
        if eq and name.strip(b" \t").lower() == b"domain":
            d = domain.strip(b" \t").lower().strip(b".")
            if not d or _PLAIN_NAME.fullmatch(d) is None or (d != host and host.endswith(b"." + d)):
                continue
        kept.append(part)
    return b";".join(kept)
