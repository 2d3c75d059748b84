"""
The state of one client connection (the agent's to its origin), sans-IO:
one request at a time, in h11's style of one state per direction.

The Twisted shell (L{netbore.agent.origin_connection.OriginConnection})
does the IO; L{ClientState} is its response parser and says where the
connection and each direction are, what the request's body framing is,
whether a failed request may be sent again and whether the connection may
carry the next one.
"""

from __future__ import annotations

from enum import Enum

from .parsers import ResponseParser
from .readers import State

_HEAD = State.HEAD
_DONE = State.DONE

__all__ = ["ClientState", "Phase", "Receiving", "Sending"]


class Phase(Enum):
    """
    The connection itself.
    """

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class Sending(Enum):
    """
    Our side: the current request.
    """

    #: No request (new, or idle).
    IDLE = "idle"
    #: Accepted; its head goes out once the connection is open.
    PENDING = "pending"
    #: The head is out; body bytes follow.
    BODY = "body"
    #: The request is complete.
    DONE = "done"


class Receiving(Enum):
    """
    The server's side: the current response.
    """

    #: No request on the connection.
    IDLE = "idle"
    #: Not one response byte yet.
    AWAITING = "awaiting"
    #: Response bytes are arriving.
    RECEIVING = "receiving"


class ClientState(ResponseParser):
    """
    One client connection's request and response states, and the parser
    of its responses (one for the connection's lifetime: it is one).

    @ivar request: the current request's head, as written.
    @ivar chunked: the current request's body is chunked.
    @ivar carried: responses completed on this connection.
    """

    __slots__ = ("phase", "sending", "receiving", "request", "chunked", "retryable", "carried")

    def __init__(self) -> None:
        super().__init__()
        self.phase = Phase.CONNECTING
        self.sending = Sending.IDLE
        self.receiving = Receiving.IDLE
        self.request = b""
        self.chunked = False
        self.retryable = False
        self.carried = 0

    def start(self, request: bytes, head_request: bool, body: bool, chunked: bool, retryable: bool) -> None:
        """
        A request is accepted: C{request} (its head) to write, at once when
        the connection is open (else L{head_written} says when), then a body
        if C{body} (C{chunked} or not); C{retryable}: it may be sent again
        if this connection, reused, fails before any response byte.
        """
        self.request = request
        self.chunked = chunked
        self.retryable = retryable
        if not body:
            self.sending = Sending.DONE
        elif self.phase is Phase.OPEN:
            self.sending = Sending.BODY  # the head goes out at once
        else:
            self.sending = Sending.PENDING
        self.receiving = Receiving.AWAITING
        # As ResponseParser.start_next, without a call into another module.
        if self._state is _DONE:
            self._state = _HEAD
        self.head_request = head_request

    def head_written(self) -> None:
        if self.sending is Sending.PENDING:
            self.sending = Sending.BODY

    def end_body(self) -> bool:
        """
        The request body is complete; C{True} if it was being sent (the
        caller then writes the last chunk of a chunked body).
        """
        if self.sending is not Sending.BODY:
            return False
        self.sending = Sending.DONE
        return True

    def response_done(self) -> tuple[bool, bool]:
        """
        The response is complete: (the connection may carry the next
        request as far as HTTP goes, the request was complete).
        """
        self.carried += 1
        self.receiving = Receiving.IDLE
        body_done = self.sending is Sending.DONE
        self.sending = Sending.IDLE
        head = self.head
        # As ResponseParser.reusable, without a call into another module.
        reusable = self._state is _DONE and self._pos >= len(self._buf) and head is not None and head.keep_alive
        return reusable and body_done, body_done

    def may_retry(self) -> bool:
        """
        The connection failed: may the request be sent again on a fresh
        one?  Only an idempotent request without a body (C{retryable}), on a
        connection that carried a response before, that got no response
        byte (RFC 9110 §9.2.2).
        """
        return self.receiving is Receiving.AWAITING and self.carried > 0 and self.retryable
