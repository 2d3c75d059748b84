"""
The strictness L{Policy} of reading messages: L{VIEWER} for what the edge
reads from viewers (strict wherever two readings of the same bytes could
differ), L{ORIGIN} for what the agent reads from origins (as lenient as RFC
9112 lets a recipient be: bare LF line ends, obs-fold); and the field
section reading both policies share.

One field grammar (L{grammar}) for both: the fast path checks a whole CRLF
field section with one regex call and takes its fields with one more (see
L{parsers}); only a head that fails it, under a lenient policy, is read
line by line here.  Heads are matched where they lie in the receive buffer
(C{buf} between C{start} and C{end}), never copied out first.
"""

from __future__ import annotations

import re
from typing import Final

from .events import ParseError
from .grammar import CHUNK_EXT, CHUNK_SIZE, FIELD_LINE, FIELD_SECTION, FIELDS, Header

__all__ = ["MAX_HEAD", "MAX_LINE", "ORIGIN", "VIEWER", "Policy", "first_line", "parse_fields"]

Buffer = bytes | bytearray

#: The most bytes a head (start line and field section) or a trailer
#: section may take.
MAX_HEAD: Final = 64 * 1024
#: The longest chunk-size line (size and extensions).
MAX_LINE: Final = 4096


class Policy:
    """
    How strict reading a message is.

    @ivar bare_lf: a lone LF ends a line as CRLF does (RFC 9112 §2.2 lets a
        recipient accept it); else a bare LF is refused.
    @ivar obs_fold: a field line starting with white space continues the
        previous one (replaced by one SP, RFC 9112 §5.2); else refused.
    @ivar max_head: the most bytes a head or a trailer section may take.
    @ivar max_fields: the most field lines in a head.
    @ivar max_line: the longest chunk-size line.
    @ivar error: the status of a L{ParseError} for a malformed message.
    @ivar chunk_size: the grammar of a chunk-size line (without line end).
    """

    __slots__ = ("bare_lf", "obs_fold", "max_head", "max_fields", "max_line", "error", "chunk_size")

    def __init__(
        self,
        *,
        bare_lf: bool,
        obs_fold: bool,
        error: int,
        chunk_size: re.Pattern[bytes],
        max_head: int = MAX_HEAD,
        max_fields: int = MAX_HEAD,
        max_line: int = MAX_LINE,
    ) -> None:
        self.bare_lf = bare_lf
        self.obs_fold = obs_fold
        self.error = error
        self.chunk_size = chunk_size
        self.max_head = max_head
        self.max_fields = max_fields
        self.max_line = max_line


#: The edge reading viewers: CRLF only, no obs-fold, no white space after a
#: chunk size except before C{;}; errors are 400s.
VIEWER: Final = Policy(bare_lf=False, obs_fold=False, error=400, chunk_size=CHUNK_SIZE)

#: The agent reading its origin: bare LF and obs-fold accepted, white space
#: after a chunk size tolerated, at most 256 fields; errors are 502s.
ORIGIN: Final = Policy(
    bare_lf=True,
    obs_fold=True,
    error=502,
    chunk_size=re.compile(rb"([0-9A-Fa-f]{1,16})" + CHUNK_EXT + rb"[ \t]*"),
    max_fields=256,
)


def first_line(buf: Buffer, start: int, end: int, policy: Policy) -> tuple[int, int]:
    """
    Where the start line ends (its last byte before the line end) and where
    the field section begins.
    """
    nl = buf.find(b"\n", start, end)
    if nl < 0:
        raise ParseError(policy.error, "no start line")
    if nl > start and buf[nl - 1] == 13:
        return nl - 1, nl + 1
    if not policy.bare_lf:
        raise ParseError(policy.error, "bare LF in the head")
    return nl, nl + 1


def parse_fields(buf: Buffer, start: int, end: int, policy: Policy) -> list[Header]:
    """
    The field lines of C{buf[start:end]} (each with its line end), names
    and values as sent, values without surrounding white space.

    @raise ParseError: a malformed line, or one the policy does not allow.
    """
    if FIELD_SECTION.fullmatch(buf, start, end) is not None:
        headers: list[Header] = FIELDS.findall(buf, start, end)
    elif not (policy.bare_lf or policy.obs_fold):
        raise ParseError(policy.error, "malformed header field")
    else:
        headers = []
        for raw in bytes(buf[start:end]).split(b"\n")[:-1]:
            if raw.endswith(b"\r"):
                line = raw[:-1]
            elif policy.bare_lf:
                line = raw
            else:
                raise ParseError(policy.error, "bare LF in the head")
            if line[:1] in (b" ", b"\t"):
                if not policy.obs_fold or not headers:
                    raise ParseError(policy.error, "obs-fold")
                name, value = headers[-1]
                more = FIELD_LINE.fullmatch(b"x:" + line)
                if more is None:
                    raise ParseError(policy.error, "malformed header field")
                more_value = more.group(2)
                headers[-1] = (name, value + b" " + more_value if value and more_value else value or more_value)
                continue
            field = FIELD_LINE.fullmatch(line)
            if field is None:
                raise ParseError(policy.error, "malformed header field")
            headers.append((field.group(1), field.group(2)))
    if len(headers) > policy.max_fields:
        raise ParseError(policy.error, "too many header fields")
    return headers
