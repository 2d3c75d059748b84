"""
Tests for L{netbore.http1.grammar} and L{netbore.http1.framing}: the rules
both roles share.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbore.http1 import HOP_BY_HOP, Framing, ParseError, connection_tokens, keep_alive, response_framing
from netbore.http1.framing import request_body, response_body
from netbore.http1.grammar import content_length, split_list


def test_hop_by_hop_fields_are_rfc9110s() -> None:
    assert HOP_BY_HOP == {b"connection", b"proxy-connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade"}


def test_connection_tokens_of_every_connection_field_lower_cased() -> None:
    headers = [
        (b"connection", b"close, X-Secret ,x-other"),
        (b"Connection", b"  X-Third"),
        (b"X-Secret", b"1"),
    ]
    assert connection_tokens(headers) == {b"close", b"x-secret", b"x-other", b"x-third"}


def test_connection_tokens_ignore_empty_members() -> None:
    assert connection_tokens([(b"Connection", b", ,Foo,,bar ,")]) == {b"foo", b"bar"}


@given(st.lists(st.text("abcXYZ, \t", max_size=12).map(str.encode), max_size=4))
def test_split_list_members_are_non_empty_trimmed_and_lower_cased(values: list[bytes]) -> None:
    members = split_list(values)
    assert all(m and m == m.strip(b" \t").lower() and b"," not in m for m in members)
    assert b"".join(members) == b"".join(p.strip(b" \t") for v in values for p in v.split(b",")).lower()


@pytest.mark.parametrize(
    "values, length",
    [
        ([b"0"], 0),
        ([b"5"], 5),
        ([b"007"], 7),
        ([b"123456789012345678"], 123456789012345678),
        # One rule for both roles: a list or a repeat is refused, even agreeing.
        ([b"5, 5"], None),
        ([b"5", b"5"], None),
        ([b"5", b"6"], None),
        ([b"1234567890123456789"], None),
        ([b"+5"], None),
        ([b"-1"], None),
        ([b"0x10"], None),
        ([b"1 0"], None),
        ([b""], None),
        ([], None),
    ],
)
def test_content_length(values: list[bytes], length: int | None) -> None:
    assert content_length(values) == length


@pytest.mark.parametrize(
    "http10, tokens, expected",
    [
        (False, set(), True),
        (False, {b"close"}, False),
        (False, {b"keep-alive"}, True),
        (True, set(), False),
        (True, {b"keep-alive"}, True),
        (True, {b"keep-alive", b"close"}, False),
    ],
)
def test_keep_alive(http10: bool, tokens: set[bytes], expected: bool) -> None:
    assert keep_alive(http10, tokens) is expected


def test_request_body_length() -> None:
    assert request_body(False, [], []) == 0
    assert request_body(False, [], [b"12"]) == 12
    assert request_body(False, [b"Chunked"], []) is None
    with pytest.raises(ParseError) as e:
        request_body(False, [b"gzip, chunked"], [])
    assert e.value.status == 501
    with pytest.raises(ParseError) as e:
        request_body(False, [b"chunked"], [b"0"])
    assert e.value.status == 400


@pytest.mark.parametrize(
    "status, head_request, codings, lengths, expected",
    [
        (200, True, [b"chunked"], [], (Framing.NONE, 0, True)),
        (204, False, [], [b"7"], (Framing.NONE, 0, True)),
        (304, False, [], [], (Framing.NONE, 0, True)),
        (103, False, [], [], (Framing.NONE, 0, True)),
        (200, False, [], [b"7"], (Framing.LENGTH, 7, True)),
        (200, False, [], [b"0"], (Framing.NONE, 0, True)),
        (200, False, [b"Chunked"], [], (Framing.CHUNKED, 0, True)),
        # Transfer-Encoding wins, and the connection is not trusted after.
        (200, False, [b"chunked"], [b"3"], (Framing.CHUNKED, 0, False)),
        (200, False, [], [], (Framing.CLOSE, 0, False)),
    ],
)
def test_response_body(
    status: int, head_request: bool, codings: list[bytes], lengths: list[bytes], expected: tuple[Framing, int, bool]
) -> None:
    assert response_body(status, head_request, codings, lengths, True) == expected


@pytest.mark.parametrize(
    "status, head_request, codings, lengths",
    [
        (200, False, [], [b"5, 5"]),
        (204, False, [], [b"x"]),  # checked even where there is no body
        (200, True, [], [b"-1"]),
        # Codings the agent could neither decode nor pass on (hop-by-hop).
        (200, False, [b"gzip, chunked"], []),
        (200, False, [b"gzip"], []),
        (200, False, [b"chunked, chunked"], []),
    ],
)
def test_response_body_refusals_are_502s(
    status: int, head_request: bool, codings: list[bytes], lengths: list[bytes]
) -> None:
    with pytest.raises(ParseError) as e:
        response_body(status, head_request, codings, lengths, True)
    assert e.value.status == 502


@pytest.mark.parametrize(
    "status, head_request, length, http11, framing",
    [
        (200, False, 5, True, Framing.LENGTH),
        (200, False, None, True, Framing.CHUNKED),
        (200, False, None, False, Framing.CLOSE),
        (200, True, 5, True, Framing.NONE),
        (204, False, None, True, Framing.NONE),
        (304, False, 5, True, Framing.NONE),
        (101, False, None, True, Framing.NONE),
    ],
)
def test_response_framing(status: int, head_request: bool, length: int | None, http11: bool, framing: Framing) -> None:
    assert response_framing(status, head_request, length, http11) is framing
