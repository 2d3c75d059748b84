"""
The states of an L{netbore.agent.forwarder.OriginStream}: one machine per
direction, and one for the request on its origin connection, with their
legal moves (as h11's C{_state.py} keeps its tables apart from the code
that moves through them).

Members hash by identity (they are singletons): C{Enum}'s hash by name
costs a Python call each time a move is checked.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["RESPONSE_MOVES", "UPLOAD_MOVES", "ResponseState", "UploadState", "WriterState"]


class UploadState(Enum):
    """
    Where the request body is, from the edge toward the origin.
    """

    __hash__ = object.__hash__

    #: DATA is expected: written to the origin connection as it comes, or
    #: queued while the connection cannot take it.
    BODY = "body"
    #: The edge's END is in: the queued rest goes out, then the body's end.
    ENDED = "ended"
    #: No body, or all of it written and ended, or dropped.
    DONE = "done"


class WriterState(Enum):
    """
    The request on its origin connection (the connection's push producer
    state, as far as this request is concerned).
    """

    __hash__ = object.__hash__

    #: No connection yet, or the head is not written: body bytes wait.
    UNSENT = "unsent"
    #: The head is written and the connection takes more.
    READY = "ready"
    #: The connection's write buffer is full: body bytes wait.
    BLOCKED = "blocked"


class ResponseState(Enum):
    """
    Where the origin's response is, toward the edge.
    """

    __hash__ = object.__hash__

    #: No head yet.
    WAITING = "waiting"
    #: The head went to the edge; the body follows under the stream's window.
    BODY = "body"
    #: The origin's response is all read; what the window held back goes,
    #: then the stream's end.
    COMPLETE = "complete"
    #: The stream is over here: ended, reset or failed.
    DONE = "done"


_U = UploadState
_S = ResponseState

#: The legal moves of the upload.
UPLOAD_MOVES: dict[UploadState, frozenset[UploadState]] = {
    _U.BODY: frozenset({_U.ENDED, _U.DONE}),
    _U.ENDED: frozenset({_U.DONE}),
    _U.DONE: frozenset({_U.DONE}),
}

#: The legal moves of the response.
RESPONSE_MOVES: dict[ResponseState, frozenset[ResponseState]] = {
    _S.WAITING: frozenset({_S.BODY, _S.COMPLETE, _S.DONE}),
    _S.BODY: frozenset({_S.COMPLETE, _S.DONE}),
    _S.COMPLETE: frozenset({_S.DONE}),
    _S.DONE: frozenset(),
}
