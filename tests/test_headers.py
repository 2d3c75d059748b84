"""
Tests for L{netbore.headers}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netbore.headers import HOP_BY_HOP, connection_tokens, strip_hop_by_hop


def test_removes_rfc9110_hop_by_hop_fields() -> None:
    headers = [
        (b"Host", b"app.example.com"),
        (b"Connection", b"keep-alive"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"TE", b"trailers"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"websocket"),
        (b"Accept", b"*/*"),
    ]
    assert strip_hop_by_hop(headers) == [
        (b"Host", b"app.example.com"),
        (b"Accept", b"*/*"),
    ]


def test_removes_fields_named_in_connection() -> None:
    headers = [
        (b"connection", b"close, X-Secret ,x-other"),
        (b"Connection", b"  X-Third"),
        (b"X-Secret", b"1"),
        (b"x-other", b"2"),
        (b"X-THIRD", b"3"),
        (b"X-Kept", b"4"),
    ]
    assert strip_hop_by_hop(headers) == [(b"X-Kept", b"4")]


def test_keeps_repeated_fields_in_order_and_forwarding_headers() -> None:
    headers = [
        (b"Set-Cookie", b"a=1"),
        (b"X-Forwarded-For", b"192.0.2.1, 198.51.100.7"),
        (b"Set-Cookie", b"b=2; Path=/"),
        (b"X-Forwarded-Proto", b"https"),
        (b"Set-Cookie", b"c=3"),
    ]
    assert strip_hop_by_hop(headers) == headers


def test_connection_tokens_ignore_empty_members() -> None:
    assert connection_tokens([(b"Connection", b", ,Foo,,bar ,")]) == {b"foo", b"bar"}


_names = st.sampled_from(
    [b"Host", b"Accept", b"Set-Cookie", b"X-A", b"x-b", b"Connection", b"TE", b"Upgrade"]
)
_values = st.sampled_from([b"", b"x-a", b"X-B, close", b"1", b"a=b"])


@given(st.lists(st.tuples(_names, _values)))
def test_result_is_an_ordered_subsequence_without_hop_by_hop(
    headers: list[tuple[bytes, bytes]],
) -> None:
    result = strip_hop_by_hop(headers)
    named = connection_tokens(headers)
    it = iter(headers)
    assert all(any(h == item for h in it) for item in result)
    assert not any(n.lower() in HOP_BY_HOP | named for n, _ in result)
    assert [h for h in headers if h[0].lower() not in HOP_BY_HOP | named] == result
