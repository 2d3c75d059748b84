"""
The states of a L{netbore.edge.exchange.ViewerExchange}, one machine per
direction, and their legal moves (as h11's C{_state.py} keeps its tables
apart from the code that moves through them).

The request side follows the viewer's body toward the agent; the response
side follows the answer toward the viewer.  They meet in two places only:
the response is sent to the viewer once the viewer's whole body has been
read (L{BODY_IN}), and a response that is over before then stops the
forwarding of the body (which is then read and dropped).

Members hash by identity (they are singletons): the exchange checks its
moves against the tables on the request path, and C{Enum}'s hash by name
costs a Python call each time.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["BODY_IN", "REQUEST_MOVES", "RESPONSE_MOVES", "RequestState", "ResponseState"]


class RequestState(Enum):
    """
    Where the viewer's request body is, toward the agent.
    """

    __hash__ = object.__hash__

    #: The stream is open; none of the body went on yet, more may come.
    OPEN = "open"
    #: Part of the body went on; more may come.
    SENDING = "sending"
    #: The body is all read; its queued rest goes as the window opens,
    #: then END.
    ENDING = "ending"
    #: The body is all read and was empty; END is on the stream.
    EMPTY = "empty"
    #: The body is all read and went on; END is on the stream.
    DONE = "done"
    #: Nothing goes on (an error, an early answer, a reset, the viewer
    #: gone): the rest of the body is read and dropped, never buffered.
    DROPPING = "dropping"
    #: The body is all read and was dropped.
    DROPPED = "dropped"


class ResponseState(Enum):
    """
    Where the answer is, toward the viewer.
    """

    __hash__ = object.__hash__

    #: No head yet: the response timer runs.
    WAITING = "waiting"
    #: The head (and maybe body) came while the viewer is still sending:
    #: held until the viewer's body is in.
    EARLY = "early"
    #: The whole response came while the viewer is still sending: the
    #: stream is reset, the response held until the viewer's body is in.
    EARLY_END = "early_end"
    #: An error page is due once the viewer's body is in.
    FAILED = "failed"
    #: The head went to the viewer; the body follows as it comes.
    STREAMING = "streaming"
    #: Finished, answered with a page, cut, or the viewer went away.
    DONE = "done"


_Q = RequestState
_R = ResponseState

#: The legal moves of the request side.
REQUEST_MOVES: dict[RequestState, frozenset[RequestState]] = {
    _Q.OPEN: frozenset({_Q.SENDING, _Q.EMPTY, _Q.DROPPING}),
    _Q.SENDING: frozenset({_Q.SENDING, _Q.ENDING, _Q.DONE, _Q.DROPPING}),
    _Q.ENDING: frozenset({_Q.DONE, _Q.DROPPED}),
    _Q.EMPTY: frozenset(),
    _Q.DONE: frozenset(),
    _Q.DROPPING: frozenset({_Q.DROPPED}),
    _Q.DROPPED: frozenset(),
}

#: The legal moves of the response side.
RESPONSE_MOVES: dict[ResponseState, frozenset[ResponseState]] = {
    _R.WAITING: frozenset({_R.EARLY, _R.EARLY_END, _R.FAILED, _R.STREAMING, _R.DONE}),
    _R.EARLY: frozenset({_R.EARLY_END, _R.FAILED, _R.STREAMING, _R.DONE}),
    _R.EARLY_END: frozenset({_R.FAILED, _R.STREAMING, _R.DONE}),
    _R.FAILED: frozenset({_R.DONE}),
    _R.STREAMING: frozenset({_R.DONE}),
    _R.DONE: frozenset(),
}

#: Request states in which the viewer's whole body has been read.
BODY_IN: frozenset[RequestState] = frozenset({_Q.ENDING, _Q.EMPTY, _Q.DONE, _Q.DROPPED})
