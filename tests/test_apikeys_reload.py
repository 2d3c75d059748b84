"""
Tests for L{netbore.edge.apiauth.ApiKeysFile}: the edge's keys file read
again on SIGHUP (issue 10 item 3).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogEvent, globalLogPublisher

from netbore.edge.apiauth import ApiKeysFile
from netbore.edge.config import EdgeConfig
from netbore.edge.site import build_edge


def write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)


@pytest.fixture
def events() -> list[LogEvent]:
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen  # type: ignore[misc]
    globalLogPublisher.removeObserver(seen.append)


def test_account_reads_the_file_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    write(path, "alice k-alice admin\nbob k-bob\n")
    keys = ApiKeysFile(str(path))
    assert keys.account("alice") is not None and keys.account("alice").admin  # type: ignore[union-attr]
    assert keys.account("carol") is None
    assert ApiKeysFile().account("alice") is None and not ApiKeysFile().reload()


def test_reload_replaces_the_keys(tmp_path: Path, events: list[LogEvent]) -> None:
    path = tmp_path / "keys"
    write(path, "alice k-alice admin\nbob k-bob\n")
    keys = ApiKeysFile(str(path))
    write(path, "alice k-alice\n")
    assert keys.reload()
    assert keys.authenticate("k-bob") is None
    assert keys.account("bob") is None
    assert keys.account("alice") is not None and not keys.account("alice").admin  # type: ignore[union-attr]
    assert [e["count"] for e in events if e.get("event") == "api_keys_reloaded"] == [1]


@pytest.mark.parametrize(
    "text, mode, why",
    [
        ("alice\n", 0o600, "found no key"),
        ("alice k-alice\n", 0o644, "is accessible by group or others (mode 0644)"),
        (None, 0o600, "cannot read API keys file"),
    ],
)
def test_a_broken_file_is_logged_and_the_old_keys_stay(
    tmp_path: Path, events: list[LogEvent], text: str | None, mode: int, why: str
) -> None:
    path = tmp_path / "keys"
    write(path, "bob k-bob\n")
    keys = ApiKeysFile(str(path))
    if text is None:
        path.unlink()
    else:
        write(path, text, mode)
    assert not keys.reload()
    assert keys.authenticate("k-bob") is not None
    (failed,) = [e for e in events if e.get("event") == "api_keys_reload_failed"]
    assert why in failed["why"] and failed["count"] == 1


def test_sighup_reloads_the_keys_file_of_a_running_edge(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    write(path, "alice k-alice\nbob k-bob\n")
    reactor = MemoryReactorClock()
    edge = build_edge(EdgeConfig(data_dir=str(tmp_path / "data")), reactor=reactor, api_keys_file=str(path))
    before = signal.getsignal(signal.SIGHUP)
    edge.startService()
    try:
        write(path, "alice k-alice\n")
        os.kill(os.getpid(), signal.SIGHUP)  # the handler runs at once, in this (main) thread
        assert edge.api_keys.authenticate("k-bob") is None
        assert edge.api_keys.authenticate("k-alice") is not None
    finally:
        edge.stopService()
    assert signal.getsignal(signal.SIGHUP) == before


def test_sighup_without_a_keys_file_is_logged_and_ignored(tmp_path: Path, events: list[LogEvent]) -> None:
    edge = build_edge(EdgeConfig(data_dir=str(tmp_path / "data")), reactor=MemoryReactorClock())
    edge.startService()
    try:
        os.kill(os.getpid(), signal.SIGHUP)  # would end the process without the handler
    finally:
        edge.stopService()
    assert [e["log_format"] for e in events if e.get("event") == "sighup"] == ["SIGHUP: no --api-keys-file to reload"]
