"""Bare in-process SQLite: what the storage alone can do, without a server around it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from rewind.model import new_event_id


def commit_per_event(path: Path, payload: bytes, seconds: float) -> tuple[int, float]:
    """Insert one event per transaction for ``seconds``, durably like Rewind's store.

    WAL with ``synchronous=FULL``, ``BEGIN IMMEDIATE``, one INSERT, ``COMMIT``:
    the fsync per commit is the cost group commit exists to share. Returns
    events committed and seconds taken.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " position INTEGER PRIMARY KEY,"
            " event_id BLOB NOT NULL UNIQUE,"
            " data BLOB NOT NULL)"
        )
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO events (event_id, data) VALUES (?, ?)", (new_event_id().bytes, payload)
            )
            db.execute("COMMIT")
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                return count, now - started
    finally:
        db.close()


def paged_select(path: Path, after: int, events: int, page: int) -> tuple[int, float, int]:
    """Read ``events`` rows after position ``after`` in pages of ``page``, as the server must.

    Each page is one indexed range SELECT continuing from the last position
    seen, the same access path a seed QUERY takes. Returns rows read, seconds
    and the last position, to continue from.
    """
    db = sqlite3.connect(path)
    try:
        count = 0
        last = after
        started = time.perf_counter()
        while count < events:
            rows = db.execute(
                "SELECT position, event_id, data FROM events"
                " WHERE position > ? ORDER BY position LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                raise RuntimeError(f"the store ran out after {count} of {events} rows")
            last = rows[-1][0]
            count += len(rows)
        return count, time.perf_counter() - started, last
    finally:
        db.close()


def batch_commits(path: Path, payload: bytes, batch: int, events: int) -> tuple[int, float]:
    """Insert ``events`` rows, ``batch`` per transaction, durably like Rewind's store.

    The table has the columns and indexes of Rewind's own events table (every
    column; unique ids, unique stream and version) and the ids are made as
    Rewind's clients make them, so each row costs the same index maintenance.
    WAL with ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` … ``COMMIT`` per
    batch. Returns rows committed and seconds.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " position INTEGER PRIMARY KEY,"
            " event_id BLOB NOT NULL UNIQUE,"
            " stream TEXT NOT NULL,"
            " version INTEGER NOT NULL,"
            " recorded_at INTEGER NOT NULL,"
            " event_type TEXT NOT NULL DEFAULT '',"
            " metadata BLOB NOT NULL DEFAULT x'',"
            " data BLOB NOT NULL,"
            " UNIQUE (stream, version))"
        )
        insert = (
            "INSERT INTO events"
            " (event_id, stream, version, recorded_at, event_type, metadata, data)"
            " VALUES (?, 'bench', ?, ?, 'benchmark', x'', ?)"
        )
        count = 0
        started = time.perf_counter()
        while count < events:
            now_us = time.time_ns() // 1000
            rows = [
                (new_event_id().bytes, version, now_us, payload)
                for version in range(count, count + min(batch, events - count))
            ]
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, rows)
            db.execute("COMMIT")
            count += len(rows)
        return count, time.perf_counter() - started
    finally:
        db.close()


def paged_select_all(path: Path, start: int, events: int, page: int) -> tuple[int, float, int]:
    """Read ``events`` whole rows from position ``start`` on, ``page`` rows per SELECT.

    Every column a v2 read returns, by the same position range a READ_ALL
    takes. Returns rows read, seconds and the next position, to continue from.
    """
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count = 0
        position = start
        started = time.perf_counter()
        while count < events:
            rows = db.execute(
                "SELECT position, event_id, stream, version, recorded_at, event_type,"
                " metadata, data FROM events WHERE position >= ? ORDER BY position LIMIT ?",
                (position, min(page, events - count)),
            ).fetchall()
            if not rows:
                raise RuntimeError(f"the store ran out after {count} of {events} rows")
            position = rows[-1][0] + 1
            count += len(rows)
        return count, time.perf_counter() - started, position
    finally:
        db.close()
