"""
The revocation store (issue 10, item 4): revoked tunnel ids survive the
process, are never evicted early however many there are, and leave only
once their horizon has passed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from zope.interface.verify import verifyObject

from netbore.edge.revocations import FILENAME, IRevocations, MemoryRevocations, SQLiteRevocations

NOW = 1_700_000_000.0


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> IRevocations:
    if request.param == "sqlite":
        return SQLiteRevocations(str(tmp_path / FILENAME))
    return MemoryRevocations()


def test_provides_the_interface(store: IRevocations) -> None:
    assert verifyObject(IRevocations, store)


def test_revoke_until_a_horizon_that_only_grows(store: IRevocations) -> None:
    assert not store.is_revoked("t1", NOW)
    store.revoke("t1", NOW + 100)
    store.revoke("t1", NOW + 50)  # never shortened
    assert store.is_revoked("t1", NOW + 99.5)
    assert not store.is_revoked("t1", NOW + 100)
    assert not store.is_revoked("t2", NOW)
    assert len(store) == 1


def test_expire_removes_only_expired_entries(store: IRevocations) -> None:
    store.revoke("short", NOW + 10)
    store.revoke("long", NOW + 1000)
    assert store.expire(NOW + 9) == 0
    assert store.expire(NOW + 10) == 1
    assert len(store) == 1
    assert store.is_revoked("long", NOW + 10)


def test_survives_reopening(tmp_path: Path) -> None:
    """
    What one edge process revoked, the next one (same --data-dir) refuses.
    """
    first = SQLiteRevocations.in_directory(str(tmp_path))
    first.revoke("deleted-tunnel", NOW + 3600)
    first.close()  # as if the process died after answering the delete
    second = SQLiteRevocations.in_directory(str(tmp_path))
    assert second.is_revoked("deleted-tunnel", NOW)
    assert not second.is_revoked("deleted-tunnel", NOW + 3600)


def test_file_is_private_and_the_directory_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        data_dir = tmp_path / "new" / "data"
        store = SQLiteRevocations.in_directory(str(data_dir))
        store.revoke("t", NOW + 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in data_dir.iterdir())
    assert FILENAME in files
    for name in files:  # the database and its journal files
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name


def test_an_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.touch(mode=0o644)
    path.chmod(0o644)
    SQLiteRevocations(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_many_entries_never_evict_a_victim() -> None:
    """
    100,000 revocations after the victim's, then an expiry sweep: the
    victim's entry is still there (only expired entries ever go).  In an
    in-memory database: the same SQL, without 100,000 fsyncs.
    """
    store = SQLiteRevocations(":memory:")
    store.revoke("victim", NOW + 30 * 86400)
    for i in range(100_000):
        store.revoke(f"squat-{i}", NOW + 1 + i % 2 * 86400)
    assert store.expire(NOW + 1) == 50_000
    assert store.is_revoked("victim", NOW + 1)
    assert len(store) == 50_001
