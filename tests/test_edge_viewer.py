"""
The edge's viewer connection (L{ViewerProtocol}) without sockets: keep-alive,
pipelining, HTTP/1.0, Expect, response framing, chunked uploads, timeouts,
refusals, and the hand-over to twisted.web for the edge's own names.
"""

from __future__ import annotations

from typing import Any

from twisted.web import resource
from twisted.web.iweb import IRequest

from netbore.edge.viewer import IDLE_TIMEOUT, PIPELINE_BUFFER

from .test_edge_exchange import HOST, Harness, _headers

GET = b"GET /%d HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n"


def answer(h: Harness, stream_id: int, body: bytes = b"ok", headers: list[tuple[bytes, bytes]] | None = None) -> None:
    exchange = h.session.exchanges[stream_id]
    fields = [(b"Content-Length", b"%d" % len(body))] if headers is None else headers
    exchange.response_head(200, b"OK", fields, False)
    exchange.data(body, True)


def responses(data: bytes) -> list[tuple[bytes, list[tuple[bytes, bytes]], bytes]]:
    """
    Split Content-Length-framed responses: (status line, fields, body).
    """
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = [(n.lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
        length = int(_headers(fields, b"content-length")[0])
        out.append((lines[0], fields, data[:length]))
        data = data[length:]
    return out


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        return b"control " + request.getHeader(b"host")  # type: ignore[operator]


def test_keep_alive_serves_requests_one_after_the_other() -> None:
    h = Harness()
    h.send(GET % 1)
    answer(h, 1, b"one")
    h.send(GET % 2)
    answer(h, 2, b"two")
    out = responses(h.output())
    assert [(s, b) for s, _, b in out] == [(b"HTTP/1.1 200 OK", b"one"), (b"HTTP/1.1 200 OK", b"two")]
    assert not h.transport.disconnecting
    assert [head[1] for head in h.session.heads] == [b"/1", b"/2"]


def test_pipelined_requests_wait_for_the_response_in_flight() -> None:
    h = Harness()
    h.send(GET % 1 + GET % 2 + GET % 3)
    assert len(h.session.heads) == 1
    answer(h, 1, b"one")
    assert len(h.session.heads) == 2
    answer(h, 2, b"two")
    answer(h, 3, b"three")
    assert [b for _, _, b in responses(h.output())] == [b"one", b"two", b"three"]


def test_pipelined_bytes_beyond_the_buffer_pause_reading() -> None:
    h = Harness()
    h.send(GET % 1)
    filler = b"GET /x HTTP/1.1\r\nHost: " + HOST + b"\r\nX-Filler: " + b"a" * 4000 + b"\r\n\r\n"
    while h.channel.buffered_bytes() <= PIPELINE_BUFFER:
        assert h.transport.producerState == "producing"
        h.send(filler)
    assert h.transport.producerState == "paused"
    answer(h, 1)
    assert h.transport.producerState == "producing"


def test_connection_close_closes_after_the_response() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\nConnection: close\r\n\r\n")
    answer(h, 1)
    assert _headers(h.response_headers(), b"connection") == [b"close"]
    assert h.transport.disconnecting


def test_http_1_0_is_close_delimited_without_a_length() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.0\r\nHost: " + HOST + b"\r\n\r\n")
    h.exchange.response_head(200, b"OK", [(b"Content-Type", b"text/plain")], False)
    h.exchange.data(b"streamed", True)
    assert h.status() == 200
    assert _headers(h.response_headers(), b"transfer-encoding") == []
    assert _headers(h.response_headers(), b"connection") == [b"close"]
    assert h.body() == b"streamed"
    assert h.transport.disconnecting


def test_http_1_0_keep_alive_with_a_length() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.0\r\nHost: " + HOST + b"\r\nConnection: keep-alive\r\n\r\n")
    answer(h, 1)
    assert _headers(h.response_headers(), b"connection") == [b"keep-alive"]
    assert not h.transport.disconnecting


def test_chunked_response_framing_and_origin_framing_headers_dropped() -> None:
    h = Harness()
    h.send(GET % 1)
    h.exchange.response_head(
        200,
        b"OK",
        [
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"99"),
            (b"Connection", b"X-Private"),
            (b"X-Private", b"1"),
        ],
        False,
    )
    h.exchange.data(b"abc", False)
    h.exchange.data(b"", False)
    h.exchange.data(b"defgh", True)
    fields = h.response_headers()
    assert _headers(fields, b"content-length") == [] and _headers(fields, b"x-private") == []
    assert _headers(fields, b"transfer-encoding") == [b"chunked"]
    assert h.body() == b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"
    h.send(GET % 2)
    assert len(h.session.heads) == 2


def test_response_shorter_than_its_length_closes_the_connection() -> None:
    h = Harness()
    h.send(GET % 1)
    h.exchange.response_head(200, b"OK", [(b"Content-Length", b"10")], False)
    h.exchange.data(b"abc", False)
    h.exchange.ended()
    assert h.body() == b"abc"
    assert h.transport.disconnecting


def test_expect_100_continue() -> None:
    h = Harness()
    h.send(b"PUT /up HTTP/1.1\r\nHost: " + HOST + b"\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    assert h.output() == b"HTTP/1.1 100 Continue\r\n\r\n"
    h.send(b"data")
    assert bytes(h.session.sent[1]) == b"data" and h.session.ended == [1]


def test_chunked_upload_is_streamed_and_ended() -> None:
    h = Harness()
    h.send(b"POST /up HTTP/1.1\r\nHost: " + HOST + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert h.session.heads[0][3] is False  # a body follows
    assert all(n != b"transfer-encoding" for n, _ in h.session.heads[0][2])
    h.send(b"3\r\nabc\r\n")
    assert bytes(h.session.sent[1]) == b"abc" and h.session.ended == []
    h.send(b"2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n")
    assert bytes(h.session.sent[1]) == b"abcde" and h.session.ended == [1]


def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    h = Harness()
    h.send(b"HEAD / HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    h.exchange.response_head(200, b"OK", [(b"Content-Type", b"text/plain")], False)
    h.exchange.data(b"ignored", True)
    assert h.body() == b""
    assert _headers(h.response_headers(), b"transfer-encoding") == []
    assert not h.transport.disconnecting


def test_malformed_request_gets_400_and_the_connection_closes() -> None:
    h = Harness()
    h.send(b"POST / HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert h.status() == 400
    assert _headers(h.response_headers(), b"connection") == [b"close"]
    assert h.transport.disconnecting
    assert h.session.heads == []


def test_a_host_with_userinfo_after_the_colon_never_reaches_the_agent() -> None:
    # "victim:@evil.example" would otherwise be forwarded, and links built
    # from it would point at evil.example.
    h = Harness()
    h.send(b"GET / HTTP/1.1\r\nHost: " + HOST + b":@evil.example\r\n\r\n")
    assert h.status() == 400
    assert h.transport.disconnecting
    assert h.session.heads == []


def test_a_head_too_large_is_431_with_its_reason_phrase() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\nX-Filler: " + b"a" * 70000 + b"\r\n\r\n")
    assert h.output().startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert h.transport.disconnecting


def test_a_content_length_list_is_refused_at_the_edge_as_the_agent_would() -> None:
    # One rule (netbore.http1.grammar.content_length) for both ends: the
    # edge no longer forwards what the agent then refuses with a 502.
    h = Harness()
    h.send(b"POST / HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 5, 5\r\n\r\nhello")
    assert h.status() == 400
    assert h.session.heads == []


def test_idle_keep_alive_connection_is_closed() -> None:
    h = Harness()
    h.send(GET % 1)
    answer(h, 1)
    h.clock.advance(IDLE_TIMEOUT - 1)
    assert not h.transport.disconnecting
    h.clock.advance(2)
    assert h.transport.disconnecting


def test_an_idle_connection_still_full_of_its_last_response_is_aborted() -> None:
    # Issue 10, item 1: closing a connection whose viewer reads nothing
    # waits for ever for its buffer to drain; at the idle deadline it is cut.
    h = Harness()
    h.send(GET % 1)
    answer(h, 1)
    h.channel.pauseProducing()  # the response filled the viewer's socket buffer
    h.clock.advance(IDLE_TIMEOUT + 1)
    assert h.transport.disconnected


def test_slow_head_gets_408() -> None:
    h = Harness()
    h.clock.advance(IDLE_TIMEOUT / 2)
    h.send(b"GET / HTTP/1.1\r\nHost: ")
    h.clock.advance(IDLE_TIMEOUT / 2 + 1)
    assert h.status() == 408
    assert h.transport.disconnecting


def test_no_idle_timeout_while_a_request_is_in_flight() -> None:
    h = Harness()
    h.send(GET % 1)
    h.exchange.response_head(200, b"OK", [(b"Content-Type", b"text/event-stream")], False)
    h.clock.advance(IDLE_TIMEOUT * 3)
    assert not h.transport.disconnecting


def test_the_edge_s_own_names_are_handed_to_twisted_web_for_one_request() -> None:
    root = resource.Resource()
    root.putChild(b"hello", Hello())
    h = Harness(root=root)
    h.send(b"GET /hello HTTP/1.1\r\nHost: localhost:8080\r\n\r\nGET /hello HTTP/1.1\r\nHost: control.localhost\r\n\r\n")
    out = h.output()
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert out.endswith(b"control localhost:8080")
    # One request per hand-over: twisted.web closes after its response, and
    # the pipelined request is left for the client to send again.
    assert b"connection: close" in out.lower()
    assert b"control.localhost" not in out
    assert h.transport.disconnecting
    assert h.session.heads == []
    assert h.transport.producer is not h.channel


def test_a_connection_turning_to_the_edge_s_name_is_handed_over_between_requests() -> None:
    root = resource.Resource()
    root.putChild(b"hello", Hello())
    h = Harness(root=root)
    h.send(GET % 1 + b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert len(h.session.heads) == 1
    answer(h, 1, b"tunnel")
    out = h.output()
    assert b"tunnel" in out and out.endswith(b"control localhost")


def test_write_pause_reaches_the_next_pipelined_exchange() -> None:
    h = Harness()
    h.send(GET % 1 + GET % 2)
    first = h.session.exchanges[1]
    first.response_head(200, b"OK", [(b"Content-Length", b"2")], False)
    first.data(b"ok", False)
    h.channel.pauseProducing()  # the viewer's socket buffer is full
    first.data(b"", True)  # (the end, with nothing waiting: the response is complete)
    exchange: Any = h.session.exchanges[2]
    exchange.response_head(200, b"OK", [(b"Content-Length", b"4")], False)
    exchange.data(b"ab", False)
    assert h.session.acked.get(2, 0) == 0  # held while the viewer is slow
    h.channel.resumeProducing()
    assert h.session.acked[2] == 2


def test_drain_closes_idle_connections_only() -> None:
    h = Harness()
    h.send(GET % 1)
    h.channel.close_if_idle()
    assert not h.transport.disconnecting
    answer(h, 1)
    h.channel.close_if_idle()
    assert h.transport.disconnecting


def test_error_pages_keep_the_connection() -> None:
    h = Harness()
    h.send(b"GET / HTTP/1.1\r\nHost: nosuch.localhost\r\n\r\n" + GET % 2)
    assert h.output().startswith(b"HTTP/1.1 404 ")
    assert len(h.session.heads) == 1
    assert not h.transport.disconnecting
