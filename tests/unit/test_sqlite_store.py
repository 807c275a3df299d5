"""What only the SQLite backend has: its file, its settings and its refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rewind.errors import StoreUnavailableError
from rewind.model import AppendRequest, NewEvent
from rewind.storage.sqlite import APPLICATION_ID, SQLiteStore


def test_a_new_store_creates_its_directories_and_marks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_commits_are_synchronous_full(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    try:
        assert store._write_db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_reads_use_indexes_not_scans(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    try:
        plans = {
            "by id": "SELECT position FROM events WHERE event_id = ?",
            "range": "SELECT * FROM events WHERE position > ? AND position <= ? "
            "ORDER BY position LIMIT ?",
            "stream head": "SELECT max(version) FROM events WHERE stream = ?",
        }
        for name, sql in plans.items():
            plan = " ".join(
                row[3]
                for row in store._write_db.execute(
                    "EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?")
                )
            )
            assert "SCAN" not in plan, f"{name} scans: {plan}"
    finally:
        store.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not an SQLite file at all" * 100)
    with pytest.raises(StoreUnavailableError, match="not a usable Rewind store"):
        SQLiteStore(path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreUnavailableError, match="not a Rewind store"):
        SQLiteStore(path)
    with sqlite3.connect(path) as db:  # and left untouched
        assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreUnavailableError, match="schema version 99"):
        SQLiteStore(path)


def test_a_corrupted_file_fails_the_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    payload = b"x" * 200
    store.append([AppendRequest("s", tuple(NewEvent(payload) for _ in range(2000)))])
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(path.read_bytes())
    page_size = 4096
    # Scribble over the middle pages, keeping the header and schema page intact.
    for page in range(3, len(raw) // page_size - 1, 2):
        raw[page * page_size : page * page_size + 64] = b"\xa5" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(path)


def test_an_unwritable_location_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a regular file where a directory should be")
    with pytest.raises(StoreUnavailableError, match="cannot create directory"):
        SQLiteStore(blocker / "events.db")
