"""Bare in-process SQLite: what the storage alone can do, without a server around it."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path


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
                "INSERT INTO events (event_id, data) VALUES (?, ?)", (uuid.uuid1().bytes, payload)
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
