"""
What the parsers return: a head (L{RequestHead} or L{ResponseHead}), body
bytes as plain C{bytes} (no wrapper: a read that is all body comes out as
the same object), L{END_OF_MESSAGE}; L{NEED_DATA} and L{PAUSED} say why
there is nothing more yet.  Anything malformed raises L{ParseError}.
"""

from __future__ import annotations

from typing import Final

from .grammar import Header

__all__ = [
    "END_OF_MESSAGE",
    "NEED_DATA",
    "PAUSED",
    "Event",
    "ParseError",
    "RequestHead",
    "ResponseHead",
    "Sentinel",
]


class Sentinel:
    """
    A named marker event, compared by identity.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: No event until more bytes are fed.
NEED_DATA: Final = Sentinel("NEED_DATA")
#: The current message's body is complete.
END_OF_MESSAGE: Final = Sentinel("END_OF_MESSAGE")
#: A message is complete and the next is not to be read yet (see the
#: parsers' C{start_next}).
PAUSED: Final = Sentinel("PAUSED")


class ParseError(Exception):
    """
    The bytes are not a message this codec accepts.

    @ivar status: the status to answer with: for a request, the one its
        client gets before the connection closes (400, 408, 431, 501, 505);
        for a response, 502 (the origin broke HTTP).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RequestHead:
    """
    A parsed request head.  Field names are lower-cased; values (without
    surrounding white space), order and repetitions are as sent.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "host",
        "length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "connection",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: list[Header],
        host: bytes | None,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        connection: frozenset[bytes],
    ) -> None:
        self.method = method
        self.target = target
        #: C{b"HTTP/1.1"} or C{b"HTTP/1.0"} (later 1.x minors read as 1.1).
        self.version = version
        self.headers = headers
        self.host = host
        #: Body length; 0 when there is no body; L{None} when chunked.
        self.length = length
        self.chunked = chunked
        #: The client allows another request on this connection.
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        #: The field names listed in C{Connection} (lower-cased).
        self.connection = connection

    def header(self, name: bytes) -> bytes | None:
        """
        The first value of the field C{name} (lower-case), or L{None}.
        """
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} {self.headers!r}>"


class ResponseHead:
    """
    A parsed final response head.

    @ivar headers: every field line, in order, name and value as sent (value
        without surrounding white space; an obs-fold replaced by one SP).
    @ivar keep_alive: the connection may carry another request once this
        response's body is complete (see L{framing.keep_alive}, and a body
        with its own end).
    @ivar connection: the lower-cased tokens of every C{Connection} field.
    @ivar length: the body's length from C{Content-Length}; C{0} for a
        response without a body; L{None} when chunked or read until close.
    @ivar chunked: the body is chunked.
    """

    __slots__ = ("status", "reason", "headers", "keep_alive", "connection", "length", "chunked")

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: list[Header],
        keep_alive: bool,
        connection: frozenset[bytes],
        length: int | None,
        chunked: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.keep_alive = keep_alive
        self.connection = connection
        self.length = length
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status} {self.reason!r} {self.headers!r}>"


#: What C{next_event} returns (and C{receive}, which may end with a
#: L{ParseError}).
Event = RequestHead | ResponseHead | bytes | Sentinel | ParseError
