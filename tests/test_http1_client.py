"""
L{netbore.http1.client.ClientState}: a client connection's states per
direction, sans-IO.
"""

from __future__ import annotations

from netbore.http1 import END_OF_MESSAGE, ClientState, ResponseHead
from netbore.http1.client import Phase, Receiving, Sending

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_request_with_a_body_goes_pending_body_done() -> None:
    state = ClientState()
    assert (state.phase, state.sending, state.receiving) == (Phase.CONNECTING, Sending.IDLE, Receiving.IDLE)
    state.start(b"POST / HTTP/1.1\r\n\r\n", False, True, True, False)
    assert (state.sending, state.receiving, state.chunked) == (Sending.PENDING, Receiving.AWAITING, True)
    state.head_written()
    assert state.sending is Sending.BODY
    assert state.end_body() is True and state.sending is Sending.DONE
    assert state.end_body() is False  # once


def test_a_complete_exchange_leaves_the_connection_reusable() -> None:
    state = ClientState()
    state.start(b"GET / HTTP/1.1\r\n\r\n", False, False, False, True)
    assert state.sending is Sending.DONE
    head, body, end = state.receive(OK)
    assert isinstance(head, ResponseHead) and body == b"ok" and end is END_OF_MESSAGE
    assert state.response_done() == (True, True)
    assert (state.sending, state.receiving, state.carried) == (Sending.IDLE, Receiving.IDLE, 1)
    # The next request on the same connection and parser.
    state.start(b"HEAD / HTTP/1.1\r\n\r\n", True, False, False, True)
    (head, end) = state.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert isinstance(head, ResponseHead) and end is END_OF_MESSAGE


def test_not_reusable_when_the_body_was_not_sent_or_bytes_followed() -> None:
    state = ClientState()
    state.start(b"POST / HTTP/1.1\r\n\r\n", False, True, False, False)
    state.head_written()
    state.receive(OK)
    assert state.response_done() == (False, False)
    state = ClientState()
    state.start(b"GET / HTTP/1.1\r\n\r\n", False, False, False, True)
    state.receive(OK + b"HTTP/1.1 200 OK\r\n")
    assert state.response_done() == (False, True)


def test_retry_only_on_a_reused_connection_before_any_response_byte() -> None:
    state = ClientState()
    state.start(b"GET / HTTP/1.1\r\n\r\n", False, False, False, True)
    assert not state.may_retry()  # a fresh connection
    state.receive(OK)
    state.response_done()
    state.start(b"GET / HTTP/1.1\r\n\r\n", False, False, False, True)
    assert state.may_retry()
    state.receiving = Receiving.RECEIVING
    assert not state.may_retry()
    state.start(b"POST / HTTP/1.1\r\n\r\n", False, False, False, False)
    assert not state.may_retry()  # not retryable (not idempotent)


def test_on_an_open_connection_the_head_goes_out_at_once() -> None:
    state = ClientState()
    state.phase = Phase.OPEN
    state.start(b"POST / HTTP/1.1\r\n\r\n", False, True, False, False)
    assert state.sending is Sending.BODY
