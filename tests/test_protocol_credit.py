"""
The credit pump (L{netbore.protocol.credit}): a stream's sending queue and
its receiving side's acknowledgements.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netbore.protocol.credit import ReceiveCredit, SendQueue

# -- SendQueue ---------------------------------------------------------------


def test_first_push_asks_to_pause_the_source_once() -> None:
    q = SendQueue()
    assert q.push(b"abc") is True
    assert q.push(b"de") is False
    assert q.size == 5
    assert q.source_paused


def test_take_splits_a_chunk_by_view_and_keeps_its_rest_first() -> None:
    q = SendQueue()
    q.push(b"abcdef")
    q.push(b"gh")
    first = q.take(4)
    assert isinstance(first, memoryview) and bytes(first) == b"abcd"
    assert q.size == 4
    assert bytes(q.take(10)) == b"ef"
    assert q.take() == b"gh"
    assert q.size == 0


def test_take_without_room_takes_the_whole_first_chunk() -> None:
    q = SendQueue()
    data = b"x" * 100
    q.push(data)
    assert q.take() is data


def test_peek_and_advance() -> None:
    q = SendQueue()
    q.push(b"abcdef")
    assert q.peek() == b"abcdef"
    q.advance(0)
    assert q.size == 6
    q.advance(2)
    assert bytes(q.peek()) == b"cdef" and q.size == 4
    q.advance(4)
    assert q.size == 0


def test_drained_resumes_the_source_only_once_the_queue_is_empty() -> None:
    q = SendQueue()
    assert q.drained() is False  # never paused
    q.push(b"ab")
    assert q.drained() is False  # still holding
    q.take()
    assert q.drained() is True
    assert q.drained() is False  # already resumed
    assert q.push(b"c") is True  # pauses again


def test_clear_returns_the_bytes_dropped() -> None:
    q = SendQueue()
    q.push(b"abc")
    q.push(b"defg")
    q.take(1)
    assert q.clear() == 6
    assert q.size == 0


@given(st.lists(st.one_of(st.binary(min_size=1, max_size=50), st.integers(min_value=-1, max_value=60)), max_size=60))
def test_queue_gives_back_the_bytes_in_order_however_taken(ops: list[bytes | int]) -> None:
    q = SendQueue()
    pushed = bytearray()
    taken = bytearray()
    for op in ops:
        if isinstance(op, bytes):
            q.push(op)
            pushed += op
        elif q.size:
            taken += q.take(op)
        assert q.size == len(pushed) - len(taken)
    while q.size:
        taken += q.take(7)
    assert bytes(taken) == bytes(pushed)


# -- ReceiveCredit -----------------------------------------------------------------


def test_delivered_bytes_are_acknowledged_at_once_unless_paused() -> None:
    c = ReceiveCredit()
    assert c.receive(10) == 10
    c.pause()
    assert c.receive(5) == 0
    assert c.held == 5
    assert c.resume() == 5
    assert c.held == 0


def test_undelivered_bytes_wait_for_delivery() -> None:
    c = ReceiveCredit()
    assert c.receive(3, delivered=False) == 0
    assert c.receive(4, delivered=False) == 0
    assert c.resume(delivered=False) == 0
    assert c.delivered() == 7


def test_delivered_while_paused_waits_for_resume() -> None:
    c = ReceiveCredit()
    c.receive(3, delivered=False)
    c.pause()
    assert c.delivered() == 0
    assert c.resume() == 3


def test_close_gives_everything_back_and_later_bytes_at_once() -> None:
    c = ReceiveCredit()
    c.pause()
    c.receive(8)
    assert c.close() == 8
    assert c.receive(2, delivered=False) == 2
    assert c.delivered() == 0


def test_close_with_the_last_bytes() -> None:
    c = ReceiveCredit()
    c.receive(3, delivered=False)
    assert c.close(4) == 7


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), st.integers(0, 100), st.booleans()),
        st.tuples(st.just("delivered"), st.just(0), st.just(False)),
        st.tuples(st.just("pause"), st.just(0), st.just(False)),
        st.tuples(st.just("resume"), st.just(0), st.booleans()),
        st.tuples(st.just("close"), st.integers(0, 100), st.just(False)),
    ),
    max_size=80,
)


@given(_OPS)
def test_every_byte_received_is_acknowledged_exactly_once(ops: list[tuple[str, int, bool]]) -> None:
    c = ReceiveCredit()
    received = acknowledged = 0
    for name, n, flag in ops:
        if name == "receive":
            received += n
            acknowledged += c.receive(n, flag)
        elif name == "delivered":
            acknowledged += c.delivered()
        elif name == "pause":
            c.pause()
        elif name == "resume":
            acknowledged += c.resume(flag)
        else:
            received += n
            acknowledged += c.close(n)
        # Never more than came in; what is missing is what is held.
        assert acknowledged + c.held == received
    # However the stream ends (reset, viewer gone, finished), closing it
    # settles the account.
    acknowledged += c.close()
    assert acknowledged == received
    assert c.receive(5, False) == 5
