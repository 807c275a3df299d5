"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every :meth:`SQLiteStore.append` call is one transaction, so the server's group
commit (many appends, one fsync) maps directly onto it. Appends use one
connection and reads another: WAL lets a reader thread see every committed
transaction while a writer thread is busy with the next one.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from rewind.errors import StorageError, StoreUnavailableError
from rewind.model import AppendRequest, RecordedEvent, new_event_id
from rewind.storage.base import EventStore

APPLICATION_ID = 0x52574E44  # "RWND": marks a file as a Rewind store.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE events (
    position     INTEGER PRIMARY KEY,
    event_id     BLOB    NOT NULL UNIQUE,
    stream       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    event_type   TEXT    NOT NULL DEFAULT '',
    metadata     BLOB    NOT NULL DEFAULT x'',
    data         BLOB    NOT NULL,
    UNIQUE (stream, version)
);
"""

_COLUMNS = "position, event_id, stream, version, recorded_at, event_type, metadata, data"

_Row = tuple[int, bytes, str, int, int, str, bytes, bytes]


def _to_event(row: _Row) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        event_id=uuid.UUID(bytes=row[1]),
        stream=row[2],
        version=row[3],
        recorded_at_us=row[4],
        event_type=row[5],
        metadata=row[6],
        data=row[7],
    )


class SQLiteStore(EventStore):
    """Events in one SQLite database file; see the module docstring."""

    kind = "sqlite"
    durable = True

    def __init__(self, path: str | Path, *, integrity_check: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot create directory {self.path.parent}: {exc.strerror}"
            ) from exc
        try:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
            self._write_db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._prepare(integrity_check)
            self._read_db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.DatabaseError as exc:
            self._write_db.close()
            raise StoreUnavailableError(f"{self.path} is not a usable Rewind store: {exc}") from exc
        except StoreUnavailableError:
            self._write_db.close()
            raise
        self._closed = False

    def _prepare(self, integrity_check: bool) -> None:
        db = self._write_db
        # Reading the header first makes "file is not a database" surface here.
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        table_count = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if table_count and application_id != APPLICATION_ID:
            raise StoreUnavailableError(
                f"{self.path} is an SQLite database but not a Rewind store; refusing to use it"
            )
        journal_mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if journal_mode.lower() != "wal":
            raise StoreUnavailableError(f"{self.path}: cannot switch to WAL mode ({journal_mode})")
        db.execute("PRAGMA synchronous=FULL")
        if integrity_check:
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreUnavailableError(
                    f"{self.path} fails SQLite's quick check: {'; '.join(problems[:3])}"
                )
        if not table_count:
            db.execute("BEGIN IMMEDIATE")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"{self.path} has schema version {version}; this Rewind reads {SCHEMA_VERSION}"
            )

    def append(self, requests: Sequence[AppendRequest]) -> list[tuple[RecordedEvent, ...]]:
        self._check_open()
        recorded_at = time.time_ns() // 1000
        db = self._write_db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                results = self._insert(requests, recorded_at)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"append rejected: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"append failed: {exc}") from exc
        return results

    def _insert(
        self, requests: Sequence[AppendRequest], recorded_at: int
    ) -> list[tuple[RecordedEvent, ...]]:
        db = self._write_db
        # Read inside the write transaction, so another process sharing the file
        # can never make two appends pick the same position.
        position: int = db.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]
        heads: dict[str, int] = {}
        rows: list[_Row] = []
        results: list[tuple[RecordedEvent, ...]] = []
        for request in requests:
            if request.stream not in heads:
                row = db.execute(
                    "SELECT max(version) FROM events WHERE stream = ?", (request.stream,)
                ).fetchone()
                heads[request.stream] = -1 if row[0] is None else row[0]
            version = heads[request.stream]
            stored = []
            for event in request.events:
                event_id = event.event_id or new_event_id()
                position += 1
                version += 1
                recorded = RecordedEvent(
                    position=position,
                    event_id=event_id,
                    stream=request.stream,
                    version=version,
                    recorded_at_us=recorded_at,
                    event_type=event.event_type,
                    metadata=event.metadata,
                    data=event.data,
                )
                stored.append(recorded)
                rows.append(
                    (
                        position,
                        event_id.bytes,
                        request.stream,
                        version,
                        recorded_at,
                        event.event_type,
                        event.metadata,
                        event.data,
                    )
                )
            heads[request.stream] = version
            results.append(tuple(stored))
        db.executemany(f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return results

    def read_all(
        self, *, after: int = 0, through: int | None = None, limit: int
    ) -> list[RecordedEvent]:
        self._check_open()
        upper = through if through is not None else 2**63 - 1
        try:
            rows = self._read_db.execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? AND position <= ? "
                "ORDER BY position LIMIT ?",
                (after, upper, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        return [_to_event(row) for row in rows]

    def position_of(self, event_id: uuid.UUID) -> int | None:
        self._check_open()
        try:
            row = self._read_db.execute(
                "SELECT position FROM events WHERE event_id = ?", (event_id.bytes,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"lookup failed: {exc}") from exc
        return None if row is None else int(row[0])

    def last_event(self) -> RecordedEvent | None:
        self._check_open()
        try:
            row = self._read_db.execute(
                f"SELECT {_COLUMNS} FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc
        return None if row is None else _to_event(row)

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._read_db.close()
            self._write_db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")
