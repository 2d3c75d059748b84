"""
Revoked tunnel ids: what makes a deleted tunnel's tokens worthless.

Recreate tokens are stateless JWTs, valid for up to C{--recreate-max-ttl}
(30 days by default), so deleting a tunnel cannot take them back: the edge
remembers the deleted tunnel's id instead, and refuses every token naming
it, until every token that could have been issued for it has expired.

That list must outlive the process (a restart would otherwise let a deleted
tunnel's agent bring it back) and must never lose an entry early (a flood of
create+delete pairs must not push a victim's revocation out).  So it lives
in a small SQLite file in C{--data-dir} (mode 0600), one row per revoked
id, and only rows whose horizon has passed are ever removed.

L{MemoryRevocations} holds the same in a dict, for tests and for callers
that want nothing on disk.
"""

from __future__ import annotations

import os
import sqlite3

from zope.interface import Interface, implementer

from ..auth.keystore import ensure_private_dir

__all__ = ["FILENAME", "IRevocations", "MemoryRevocations", "SQLiteRevocations"]

#: The store's file name in C{--data-dir}.
FILENAME = "revocations.sqlite3"

_SCHEMA = "CREATE TABLE IF NOT EXISTS revoked (tunnel_id TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID"


class IRevocations(Interface):
    """
    A set of revoked tunnel ids, each with the time (seconds since the
    epoch) after which nothing naming it can verify any more.
    """

    def revoke(tunnel_id: str, until: float) -> None:
        """
        Refuse C{tunnel_id} until C{until} at least (a horizon only grows).
        Durable when this returns.
        """

    def is_revoked(tunnel_id: str, now: float) -> bool:
        """
        Is C{tunnel_id} revoked at C{now}?
        """

    def expire(now: float) -> int:
        """
        Drop every entry whose horizon is at or before C{now}; how many went.
        The only way an entry ever leaves.
        """

    def __len__() -> int:
        """
        How many entries are kept (expired ones included until L{expire}).
        """


@implementer(IRevocations)
class MemoryRevocations:
    """
    L{IRevocations} in a dict: unbounded by count, bounded by time.
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def revoke(self, tunnel_id: str, until: float) -> None:
        self._until[tunnel_id] = max(until, self._until.get(tunnel_id, until))

    def is_revoked(self, tunnel_id: str, now: float) -> bool:
        until = self._until.get(tunnel_id)
        return until is not None and until > now

    def expire(self, now: float) -> int:
        gone = [tunnel_id for tunnel_id, until in self._until.items() if until <= now]
        for tunnel_id in gone:
            del self._until[tunnel_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._until)


@implementer(IRevocations)
class SQLiteRevocations:
    """
    L{IRevocations} in an SQLite file (the standard library's C{sqlite3}).

    Every L{revoke} is committed before it returns (a delete is answered
    only once its revocation would survive a crash); lookups are one
    primary-key read.  The file and its journal are created mode 0600.

    @param path: the database file, or C{":memory:"} (tests).
    """

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            # Create it 0600 before SQLite does (SQLite would follow the
            # umask); its journal files take the database file's mode.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.execute("CREATE INDEX IF NOT EXISTS revoked_until ON revoked (until)")

    @classmethod
    def in_directory(cls, data_dir: str) -> SQLiteRevocations:
        """
        The store of the edge whose C{--data-dir} is C{data_dir} (created
        mode 0700 if missing).
        """
        ensure_private_dir(data_dir)
        return cls(os.path.join(data_dir, FILENAME))

    def revoke(self, tunnel_id: str, until: float) -> None:
        self._db.execute(
            "INSERT INTO revoked (tunnel_id, until) VALUES (?, ?) "
            "ON CONFLICT (tunnel_id) DO UPDATE SET until = max(until, excluded.until)",
            (tunnel_id, until),
        )

    def is_revoked(self, tunnel_id: str, now: float) -> bool:
        row = self._db.execute("SELECT until FROM revoked WHERE tunnel_id = ?", (tunnel_id,)).fetchone()
        return row is not None and float(row[0]) > now

    def expire(self, now: float) -> int:
        return self._db.execute("DELETE FROM revoked WHERE until <= ?", (now,)).rowcount

    def __len__(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM revoked").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()
