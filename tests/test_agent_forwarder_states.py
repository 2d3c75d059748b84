"""
The explicit states of an L{OriginStream} (L{netbore.agent.stream_states}),
driven through the forwarder as in test_agent_forwarder.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netbore.agent import stream as stream_module
from netbore.agent.stream_states import RESPONSE_MOVES, UPLOAD_MOVES, ResponseState, UploadState, WriterState
from netbore.protocol.errors import ErrorCode

from .test_agent_forwarder import OK, RecordingSink, make, start


def test_module_globals_are_the_members_they_are_named_for() -> None:
    # stream.py binds the members by unpacking the enums in order.
    for prefix, enum in (("U_", UploadState), ("W_", WriterState), ("S_", ResponseState)):
        for member in enum:
            assert getattr(stream_module, prefix + member.name) is member


def test_tables_cover_every_state_and_done_is_final() -> None:
    assert set(UPLOAD_MOVES) == set(UploadState)
    assert set(RESPONSE_MOVES) == set(ResponseState)
    assert RESPONSE_MOVES[ResponseState.DONE] == frozenset()


def test_a_get_has_no_upload_and_goes_waiting_to_done() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink)
    assert stream.upload is UploadState.DONE
    assert (stream.writer, stream.response) == (WriterState.UNSENT, ResponseState.WAITING)
    attempt = origin.accept()
    assert stream.writer is WriterState.READY
    attempt.respond(OK)
    assert stream.response is ResponseState.DONE and stream.finished
    assert stream.writer is WriterState.UNSENT  # the connection went back to the pool
    assert fwd.pool.idle == 1


def test_an_upload_goes_body_ended_done_and_waits_while_blocked() -> None:
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"POST", headers=[(b"Host", b"h")], end_stream=False)
    assert stream.upload is UploadState.BODY
    stream.data_received(b"early")  # no connection yet: queued
    assert sink.acked == 0
    attempt = origin.accept()
    assert stream.writer is WriterState.READY and sink.acked == 5
    attempt.protocol.pauseProducing()
    assert stream.writer is WriterState.BLOCKED
    stream.data_received(b"held")
    stream.end_received()
    assert stream.upload is UploadState.ENDED  # the rest and the body's end wait
    assert not attempt.body().endswith(b"0\r\n\r\n")
    attempt.protocol.resumeProducing()
    assert stream.upload is UploadState.DONE
    assert attempt.body().endswith(b"4\r\nheld\r\n0\r\n\r\n")
    assert sink.acked == 9


def test_the_payload_limit_is_asked_once_per_session() -> None:
    class Counting(RecordingSink):
        asked = 0

        def max_data_payload(self) -> int:
            self.asked += 1
            return super().max_data_payload()

    fwd, origin = make()
    sink = Counting(max_payload=3)
    start(fwd, sink, stream_id=1)
    attempt = origin.accept()
    attempt.respond(OK)
    for stream_id in (3, 5):
        start(fwd, sink, stream_id=stream_id)
        attempt.respond(OK)  # on the same, kept-alive connection
    assert sink.asked == 1
    # And the limit holds: "hello" in DATA of at most 3 bytes.
    assert [bytes(d) for sid, d, _ in sink.data if sid == 5] == [b"hel", b"lo"]
    other = Counting()
    start(fwd, other, stream_id=7)
    assert other.asked == 1


def test_repeated_content_length_is_refused_as_every_hop_does() -> None:
    # One Content-Length rule (netbore.http1): a repeat is refused even when
    # the values agree.
    fwd, origin = make()
    sink = RecordingSink()
    headers = [(b"Host", b"h"), (b"Content-Length", b"3"), (b"Content-Length", b"3")]
    start(fwd, sink, method=b"POST", headers=headers, end_stream=False)
    assert origin.attempts == []
    assert sink.resets[0][:2] == (1, ErrorCode.PROTOCOL_ERROR)
    assert sink.finished == [1]


_UPLOAD_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("data"), st.integers(1, 300)),
        st.sampled_from([("accept", 0), ("pause", 0), ("resume", 0), ("end", 0), ("reset", 0), ("answer", 0)]),
    ),
    max_size=30,
)


@given(_UPLOAD_EVENTS)
@settings(max_examples=300, deadline=None)
def test_every_request_byte_is_acknowledged_exactly_once(events: list[tuple[str, int]]) -> None:
    # Whatever the order of DATA, the origin connection pausing, the edge's
    # END or reset and an early answer: once the session lets the stream
    # go, the edge has all its credit back, never more.
    fwd, origin = make()
    sink = RecordingSink()
    stream = start(fwd, sink, method=b"PUT", headers=[(b"Host", b"h")], end_stream=False)
    attempt = None
    received = 0
    for name, n in events:
        if name == "data":
            received += n
            stream.data_received(b"u" * n)
        elif name == "accept" and attempt is None and not origin.attempts[-1].cancelled:
            attempt = origin.accept()
        elif name == "end":
            stream.end_received()
        elif name == "reset":
            stream.reset_received(ErrorCode.CANCEL)
        elif attempt is not None and not attempt.transport.disconnected:
            if name == "pause":
                attempt.protocol.pauseProducing()
            elif name == "resume":
                attempt.protocol.resumeProducing()
            elif name == "answer":
                attempt.respond(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        assert sink.acked <= received
    stream.abort()
    assert sink.acked == received
