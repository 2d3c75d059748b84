"""
API keys: the edge's C{--api-keys-file} and the agent's C{--api-key-file}.

The edge's file holds one entry a line::

    # account  key                                   [admin]
    alice      correct-horse-battery-staple
    bob        sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 admin

Blank lines and lines whose first non-blank character is C{#} are ignored.
Columns are separated by whitespace, so a key cannot contain any.  A key
written C{sha256:<64 hex digits>} is the SHA-256 of the clear key (always:
there is no way to write a clear key starting with C{sha256:}).

An account may have several lines, one per key, so that its key can be
rotated without downtime; every line of one account must agree on C{admin}.
A key (or hash) may appear only once in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import attrs

__all__ = [
    "Account",
    "ApiKeys",
    "ApiKeysError",
    "hash_api_key",
    "read_api_key_file",
]

_HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"\A[0-9a-fA-F]{64}\Z")
#: Account names become the C{sub} of management tokens.
_ACCOUNT = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}\Z")


class ApiKeysError(ValueError):
    """
    An API key file cannot be used.  The message names the file (and line)
    and never contains a key.
    """


@attrs.frozen
class Account:
    """
    Who an API key belongs to.
    """

    name: str
    admin: bool = False


@attrs.frozen
class _Entry:
    account: Account
    digest: bytes = attrs.field(repr=False)
    line: int


def hash_api_key(key: str) -> str:
    """
    The C{sha256:<hex>} form of C{key}, to put in the edge's file instead of
    the clear key.
    """
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _digest_of(key: str, where: str) -> bytes:
    if not key.startswith(_HASH_PREFIX):
        return hashlib.sha256(key.encode("utf-8")).digest()
    hex_digits = key[len(_HASH_PREFIX) :]
    if not _HEX_DIGEST.match(hex_digits):
        raise ApiKeysError(f"{where}: a sha256: key needs exactly 64 hex digits")
    return bytes.fromhex(hex_digits)


def _parse_line(text: str, where: str, number: int) -> _Entry:
    fields = text.split()
    if len(fields) < 2:
        raise ApiKeysError(f"{where}: expected '<account> <key> [admin]', found no key")
    if len(fields) > 3:
        raise ApiKeysError(f"{where}: expected '<account> <key> [admin]', found more columns")
    if not _ACCOUNT.match(fields[0]):
        raise ApiKeysError(
            f"{where}: account names are 1-64 characters of letters, digits and ._@+- starting with a letter or digit"
        )
    if len(fields) == 3 and fields[2] != "admin":
        raise ApiKeysError(f"{where}: the third column may only be 'admin'")
    account = Account(name=fields[0], admin=len(fields) == 3)
    return _Entry(account=account, digest=_digest_of(fields[1], where), line=number)


def _check_new_entry(entry: _Entry, entries: list[_Entry], where: str) -> None:
    for earlier in entries:
        if hmac.compare_digest(earlier.digest, entry.digest):
            raise ApiKeysError(f"{where}: same key as line {earlier.line}")
        same_name = earlier.account.name == entry.account.name
        if same_name and earlier.account.admin != entry.account.admin:
            raise ApiKeysError(
                f"{where}: account {entry.account.name} is admin on one line and not on the other (line {earlier.line})"
            )


class ApiKeys:
    """
    The accounts and keys the edge accepts, checked in constant time with
    respect to which entry matches.
    """

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def empty(cls) -> ApiKeys:
        """
        No keys: every key is refused.
        """
        return cls([])

    @classmethod
    def load(cls, path: str) -> ApiKeys:
        """
        Parse the edge's C{--api-keys-file} at C{path}.

        @raise ApiKeysError: naming the file and line at fault.
        """
        try:
            with open(path, "rb") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ApiKeysError(f"cannot read API keys file {path}: {e.strerror}") from e
        entries: list[_Entry] = []
        for number, raw in enumerate(lines, 1):
            where = f"{path} line {number}"
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ApiKeysError(f"{where}: not UTF-8 text") from None
            if not text or text.startswith("#"):
                continue
            entry = _parse_line(text, where, number)
            _check_new_entry(entry, entries, where)
            entries.append(entry)
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def account(self, name: str) -> Account | None:
        """
        The account called C{name} as the file has it now (its C{admin}
        column included), or L{None} when no line names it.
        """
        for entry in self._entries:
            if entry.account.name == name:
                return entry.account
        return None

    def authenticate(self, presented: str) -> Account | None:
        """
        The account whose key is C{presented}, or L{None}.

        The SHA-256 of C{presented} is compared with every entry's digest
        with L{hmac.compare_digest}, all of them every time, so the time
        taken does not depend on which entry (if any) matches.
        """
        if not isinstance(presented, str) or not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: Account | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.account
        return found


def read_api_key_file(path: str) -> str:
    """
    The key in the agent's C{--api-key-file}: the whole file, surrounding
    whitespace stripped.

    @raise ApiKeysError: when the file cannot be read, is empty, or holds
        more than one word.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ApiKeysError(f"cannot read API key file {path}: {e.strerror}") from e
    try:
        key = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ApiKeysError(f"API key file {path} is not UTF-8 text") from None
    if not key:
        raise ApiKeysError(f"API key file {path} is empty")
    if len(key.split()) != 1:
        raise ApiKeysError(f"API key file {path} must hold the key alone, without blanks")
    return key
