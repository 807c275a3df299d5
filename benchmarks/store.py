"""Building (once) and caching the big SQLite stores the read benchmarks use.

A store is built through :class:`rewind.storage.sqlite.SQLiteStore` itself, in
large batches, so the file is exactly what the server would have written. The
file is cached under ``benchmarks/.data/``, keyed by event count and by a hash
of the schema the current code creates, so a schema change rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from rewind.model import DEFAULT_STREAM, AppendRequest, NewEvent
from rewind.storage.sqlite import SQLiteStore

DATA_DIR = Path(__file__).resolve().parent / ".data"
BATCH = 10_000
PAYLOAD_SIZE = 100


def schema_fingerprint() -> str:
    """A short hash of the schema a fresh store gets (tables, indexes, pragmas)."""
    with tempfile.TemporaryDirectory(dir=DATA_DIR, prefix="schema-") as scratch:
        path = Path(scratch) / "empty.db"
        SQLiteStore(path).close()
        db = sqlite3.connect(path)
        try:
            ddl = db.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
            ids = (
                db.execute("PRAGMA application_id").fetchone()
                + db.execute("PRAGMA user_version").fetchone()
            )
        finally:
            db.close()
    return hashlib.sha256(repr((ddl, ids)).encode()).hexdigest()[:12]


def _event_payload(seq: int) -> bytes:
    body = f'{{"type":"item-added","seq":{seq},"pad":"'.encode()
    return body + b"x" * (PAYLOAD_SIZE - len(body) - 2) + b'"}'


def _is_complete(path: Path, events: int) -> bool:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        last = db.execute("SELECT max(position) FROM events").fetchone()[0]
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return bool(last == events)


def build(path: Path, events: int) -> None:
    """Write a store of ``events`` events of :data:`PAYLOAD_SIZE` bytes to ``path``."""
    with SQLiteStore(path, integrity_check=False) as store:
        for start in range(0, events, BATCH):
            batch = tuple(
                NewEvent(data=_event_payload(seq))
                for seq in range(start, min(events, start + BATCH))
            )
            store.append([AppendRequest(DEFAULT_STREAM, batch)])


def cached_store(events: int) -> tuple[Path, float]:
    """The cached store of ``events`` events, built first if needed.

    Returns its path and the seconds spent building (0 when it was cached).
    Building goes to a scratch name that is renamed into place only when
    complete, so an interrupted build never leaves a short store behind.
    Stores of the same size cached for another schema are removed first:
    each takes hundreds of megabytes, and this code cannot use them.
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"seed-{events}-events-schema-{schema_fingerprint()}.db"
    if path.exists() and _is_complete(path, events):
        return path, 0.0
    for stale in DATA_DIR.glob(f"seed-{events}-events-schema-*"):
        if not stale.name.startswith(path.name):
            stale.unlink()
    scratch = path.with_name(path.name + ".building")
    for leftover in (path, scratch):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{leftover}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    build(scratch, events)
    # Fold the WAL into the main file so that one file is the whole store and
    # can be renamed on its own.
    db = sqlite3.connect(scratch)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    os.replace(scratch, path)
    return path, time.perf_counter() - started


def event_id_at(path: Path, position: int) -> bytes:
    """The seed-protocol id (36 ASCII characters) of the event at ``position``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT event_id FROM events WHERE position = ?", (position,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise RuntimeError(f"{path} has no event at position {position}")
    return str(uuid.UUID(bytes=row[0])).encode("ascii")


def warm_file_cache(path: Path) -> None:
    """Read the whole file once, so every measurement starts from the same warm OS cache."""
    with path.open("rb") as handle:
        while handle.read(1 << 20):
            pass
