"""
Tests for L{netbore.auth.apikeys}.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from netbore.auth import apikeys
from netbore.auth.apikeys import (
    Account,
    ApiKeys,
    ApiKeysError,
    hash_api_key,
    read_api_key_file,
)

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789"
BOB_HASH = hashlib.sha256(BOB_KEY.encode()).hexdigest()


def _keys_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "api-keys"
    path.write_text(text)
    return str(path)


def _load(tmp_path: Path, text: str) -> ApiKeys:
    return ApiKeys.load(_keys_file(tmp_path, text))


def test_clear_key(tmp_path: Path) -> None:
    keys = _load(tmp_path, f"alice {ALICE_KEY}\n")
    assert keys.authenticate(ALICE_KEY) == Account("alice", admin=False)


@pytest.mark.parametrize("digest", [BOB_HASH, BOB_HASH.upper()])
def test_sha256_key(tmp_path: Path, digest: str) -> None:
    keys = _load(tmp_path, f"bob sha256:{digest}\n")
    assert keys.authenticate(BOB_KEY) == Account("bob", admin=False)
    assert keys.authenticate(f"sha256:{digest}") is None


def test_hash_api_key_form_is_accepted(tmp_path: Path) -> None:
    assert hash_api_key(BOB_KEY) == f"sha256:{BOB_HASH}"
    keys = _load(tmp_path, f"bob {hash_api_key(BOB_KEY)}\n")
    assert keys.authenticate(BOB_KEY) == Account("bob")


def test_admin_column(tmp_path: Path) -> None:
    keys = _load(tmp_path, f"alice {ALICE_KEY}\nbob sha256:{BOB_HASH} admin\n")
    assert keys.authenticate(ALICE_KEY) == Account("alice", admin=False)
    assert keys.authenticate(BOB_KEY) == Account("bob", admin=True)


def test_comments_and_blank_lines_ignored(tmp_path: Path) -> None:
    text = f"# accounts\n\n   \n  # indented comment\nalice {ALICE_KEY}\n\n\tbob\t{BOB_KEY}  \n"
    keys = _load(tmp_path, text)
    assert len(keys) == 2
    assert keys.authenticate(ALICE_KEY) == Account("alice")
    assert keys.authenticate(BOB_KEY) == Account("bob")


def test_comment_line_holds_no_key(tmp_path: Path) -> None:
    keys = _load(tmp_path, f"# carol carol-key-0123456789\nalice {ALICE_KEY}\n")
    assert keys.authenticate("carol-key-0123456789") is None


@pytest.mark.parametrize("presented", ["wrong", ALICE_KEY + "x", ALICE_KEY[:-1], " " + ALICE_KEY, "", "alice"])
def test_wrong_key_is_none(tmp_path: Path, presented: str) -> None:
    keys = _load(tmp_path, f"alice {ALICE_KEY}\nbob sha256:{BOB_HASH} admin\n")
    assert keys.authenticate(presented) is None


def test_one_account_several_keys(tmp_path: Path) -> None:
    keys = _load(tmp_path, f"alice {ALICE_KEY}\nalice {BOB_KEY}\n")
    assert keys.authenticate(ALICE_KEY) == keys.authenticate(BOB_KEY) == Account("alice")


def test_empty_refuses_everything() -> None:
    keys = ApiKeys.empty()
    assert len(keys) == 0
    assert keys.authenticate(ALICE_KEY) is None


def test_every_entry_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The first entry matching does not stop the comparisons: the time taken
    does not tell which entry matched.
    """
    keys = _load(tmp_path, f"alice {ALICE_KEY}\nbob {BOB_KEY}\ncarol carol-key-0123\n")
    calls: list[tuple[bytes, bytes]] = []
    real = apikeys.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", counting)
    assert keys.authenticate(ALICE_KEY) == Account("alice")
    assert len(calls) == 3
    assert all(b == hashlib.sha256(ALICE_KEY.encode()).digest() for _, b in calls)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("alice\n", 1, "found no key"),
        (f"# c\nalice {ALICE_KEY} root\n", 2, "only be 'admin'"),
        (f"alice {ALICE_KEY} admin extra\n", 1, "more columns"),
        ("\n\nbob sha256:abc\n", 3, "64 hex digits"),
        (f"bob sha256:{'g' * 64}\n", 1, "64 hex digits"),
        (f"bob sha256:{BOB_HASH}00\n", 1, "64 hex digits"),
        (f"alice {ALICE_KEY}\nbob {ALICE_KEY}\n", 2, "same key as line 1"),
        (f"bob {BOB_KEY}\nalice sha256:{BOB_HASH}\n", 2, "same key as line 1"),
        (f"alice {ALICE_KEY} admin\n\nalice {BOB_KEY}\n", 3, "admin on one line"),
        (f"-alice {ALICE_KEY}\n", 1, "account names"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = _keys_file(tmp_path, text)
    with pytest.raises(ApiKeysError) as info:
        ApiKeys.load(path)
    message = str(info.value)
    assert f"{path} line {line}:" in message
    assert words in message
    assert ALICE_KEY not in message and BOB_KEY not in message


def test_not_utf8_names_line(tmp_path: Path) -> None:
    path = tmp_path / "api-keys"
    path.write_bytes(b"alice k1-0123456789\nbob \xff\xfe\n")
    with pytest.raises(ApiKeysError, match=f"{path} line 2: not UTF-8"):
        ApiKeys.load(str(path))


def test_missing_file_named(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(ApiKeysError, match=f"cannot read API keys file {path}"):
        ApiKeys.load(str(path))


def test_account_is_frozen() -> None:
    account = Account("alice", admin=True)
    with pytest.raises(AttributeError):
        account.admin = False  # type: ignore[misc]


# -- the agent's --api-key-file ---------------------------------------------------


def test_read_api_key_file_strips_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(f"\n  {ALICE_KEY}\t\n\n")
    assert read_api_key_file(str(path)) == ALICE_KEY


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_read_api_key_file_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "key"
    path.write_text(content)
    with pytest.raises(ApiKeysError, match=f"API key file {path} is empty"):
        read_api_key_file(str(path))


def test_read_api_key_file_two_words(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(f"alice {ALICE_KEY}\n")
    with pytest.raises(ApiKeysError, match="the key alone"):
        read_api_key_file(str(path))


def test_read_api_key_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ApiKeysError, match="cannot read API key file"):
        read_api_key_file(str(tmp_path / "absent"))
