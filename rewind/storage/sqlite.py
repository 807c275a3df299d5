"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Every :meth:`SQLiteStore.append` call is one transaction, so the server's group
commit (many appends, one fsync) maps directly onto it. Appends use one
connection and reads another: WAL lets a reader thread see every committed
transaction while a writer thread is busy with the next one. Every read is
one statement, so it sees one committed state, and an index lookup or range.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from rewind.errors import (
    StorageError,
    StorageFullError,
    StoreUnavailableError,
    WritesStoppedError,
)
from rewind.model import AppendRequest, RecordedEvent, StreamInfo, event_id_from_bytes
from rewind.storage.base import AppendResult, EventStore
from rewind.storage.group import GroupCommit
from rewind.storage.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION, migrate
from rewind.storage.startup_check import startup_problems
from rewind.storage.verify import sqlite_check

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore"]

_COLUMNS = "position, event_id, stream, version, recorded_at, event_type, metadata, data"

_Row = tuple[int, bytes, str, int, int, str, bytes, bytes]

_MAX_INTEGER = 2**63 - 1
_IDS_PER_LOOKUP = 500  # well below SQLite's bound on parameters per statement
_MAX_ROWS_PER_INSERT = 64
"""Rows per INSERT statement: 512 parameters, far below SQLite's bound."""

# Primary result codes (the low byte of an extended code) that decide what a
# failed append means; see https://www.sqlite.org/rescode.html.
_SQLITE_FULL = 13
# After these, what reached the disk is unknown (a failed write or fsync may
# have been half done, or the file is damaged): the store stops writing.
_SQLITE_UNKNOWN_STATE = {
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    14,  # SQLITE_CANTOPEN
    26,  # SQLITE_NOTADB
}

# Statements of the append transaction.
LAST_COMMIT_SQL = (
    "SELECT position, recorded_at FROM events WHERE position = (SELECT max(position) FROM events)"
)
STREAM_HEAD_SQL = "SELECT max(version) FROM events WHERE stream = ?"
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?)"  # one event's columns in an INSERT

# Reads. Each is a single statement answered from an index.
POSITION_OF_SQL = "SELECT position FROM events WHERE event_id = ?"
# Commit times never decrease as positions grow, and positions run 1, 2, 3, ...,
# so the first position at or after a time is found by binary search over
# positions: about log2(n) primary-key lookups (each step joins the event at
# its midpoint), with no index on times to keep up at every commit. The
# answer lies in [low, high) throughout.
POSITION_AT_SQL = """
    WITH RECURSIVE search(low, high) AS (
        SELECT 1, (SELECT max(position) FROM events) + 1
        UNION ALL
        SELECT
            CASE WHEN middle.recorded_at >= ?1 THEN low ELSE (low + high) / 2 + 1 END,
            CASE WHEN middle.recorded_at >= ?1 THEN (low + high) / 2 ELSE high END
        FROM search JOIN events AS middle ON middle.position = (low + high) / 2
        WHERE low < high
    )
    SELECT low FROM search WHERE low = high AND low <= (SELECT max(position) FROM events)
"""
LAST_EVENT_SQL = (
    f"SELECT {_COLUMNS} FROM events WHERE position = (SELECT max(position) FROM events)"
)
STREAM_FORWARDS_SQL = (
    f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?"
)
STREAM_BACKWARDS_SQL = (
    f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND version <= ? ORDER BY version DESC LIMIT ?"
)
# A stream's head and first event, found by (stream, version) index lookups,
# for each name in ``names``. Versions start at 0, so the first event is version 0.
_STREAM_INFO_SELECT = """
    SELECT last.stream, last.version, first.position, last.position
    FROM names
    JOIN events AS last ON last.stream = names.stream
        AND last.version = (SELECT max(version) FROM events WHERE stream = names.stream)
    JOIN events AS first ON first.stream = names.stream AND first.version = 0
    ORDER BY names.stream
"""
STREAM_INFO_SQL = "WITH names(stream) AS (SELECT ?)" + _STREAM_INFO_SELECT
# Stream names are found one index seek at a time (each the least name above
# the one before), so a page costs ``limit`` seeks however long the streams are.
_LIST_STREAMS_SQL = (
    """
    WITH RECURSIVE names(stream) AS (
        SELECT (SELECT stream FROM events WHERE stream {after} ORDER BY stream LIMIT 1)
        UNION ALL
        SELECT (SELECT stream FROM events WHERE stream > names.stream ORDER BY stream LIMIT 1)
        FROM names WHERE names.stream IS NOT NULL
        LIMIT ?
    )
    """
    + _STREAM_INFO_SELECT
)
LIST_STREAMS_SQL = _LIST_STREAMS_SQL.format(after="> ?")
LIST_STREAMS_FROM_START_SQL = _LIST_STREAMS_SQL.format(after=">= ''")


def read_all_sql(*, backwards: bool, stream_bounds: int, event_types: int | None) -> str:
    """The statement for :meth:`SQLiteStore.read_all`.

    Parameters, in order: after, through, ``stream_bounds`` (0, 1 or 2) stream
    name bounds (lower, then upper), ``event_types`` types, limit.
    """
    conditions = ["position > ?", "position <= ?"]
    # The unary + keeps SQLite from reading the stream-name index instead: the
    # events must come in position order, and walking positions stops after
    # ``limit`` matches, where a name range would gather and sort every match.
    conditions += ["+stream >= ?", "+stream < ?"][:stream_bounds]
    if event_types is not None:
        conditions.append(f"event_type IN ({', '.join('?' * event_types)})")
    order = "DESC" if backwards else "ASC"
    return (
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(conditions)} "
        f"ORDER BY position {order} LIMIT ?"
    )


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``.

    ``None`` when there is none (every character is the highest code point).
    SQLite compares text as UTF-8 bytes, which orders as code points do.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates are not text; skip to the next character
            code = 0xE000
        if code <= 0x10FFFF:
            chars[-1] = chr(code)
            return "".join(chars)
        chars.pop()
    return None


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _clamp(number: int) -> int:
    """``number`` within SQLite's integers: beyond them every bound means the same."""
    return max(-_MAX_INTEGER, min(number, _MAX_INTEGER))


def _to_event(row: _Row) -> RecordedEvent:
    return RecordedEvent(
        position=row[0],
        event_id=event_id_from_bytes(row[1]),
        stream=row[2],
        version=row[3],
        recorded_at_us=row[4],
        event_type=row[5],
        metadata=row[6],
        data=row[7],
    )


def _has_chosen_ids(request: AppendRequest) -> bool:
    return any(event.event_id is not None for event in request.events)


def _insert_sql(rows: int) -> str:
    """An INSERT of ``rows`` events (a power of two up to the maximum, so few distinct SQL)."""
    sql = _INSERT_SQL_BY_ROWS.get(rows)
    if sql is None:
        sql = _INSERT_SQL_BY_ROWS[rows] = (
            f"INSERT INTO events ({_COLUMNS}) VALUES {', '.join([_ROW_PLACEHOLDERS] * rows)}"
        )
    return sql


_INSERT_SQL_BY_ROWS: dict[int, str] = {}


def _insert(db: sqlite3.Connection, events: Sequence[RecordedEvent]) -> None:
    """Insert ``events`` with multi-row statements.

    Measured against ``executemany`` with one row per step, many rows per
    statement cost a quarter less per event: the statement is stepped once,
    not once per row. Row counts are powers of two so that the statement
    cache holds every form needed.

    Blobs are bound as ``bytearray``: the sqlite3 module binds a bytearray
    directly, but looks for an adapter for every ``bytes`` parameter, a
    failed attribute lookup that formats an exception message each time.
    The copies cost less than that (1.0 against 1.8 µs per row of three
    blobs, measured on two cores).
    """
    start, remaining = 0, len(events)
    rows = _MAX_ROWS_PER_INSERT
    while remaining:
        while rows > remaining:
            rows //= 2
        parameters: list[object] = []
        add = parameters.extend
        for event in events[start : start + rows]:
            add(
                (
                    event.position,
                    # UUID.bytes is a Python property; this is its body, a call fewer per row.
                    bytearray(event.event_id.int.to_bytes(16)),
                    event.stream,
                    event.version,
                    event.recorded_at_us,
                    event.event_type,
                    bytearray(event.metadata),
                    bytearray(event.data),
                )
            )
        db.execute(_insert_sql(rows), parameters)
        start += rows
        remaining -= rows


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
            problems = sqlite_check(db, full=False, limit=3)
            if problems:
                raise StoreUnavailableError(
                    f"{self.path} fails SQLite's quick check: {'; '.join(problems[:3])}"
                )
        migrate(db, self.path)
        if integrity_check:
            self._check_invariants()

    def _check_invariants(self) -> None:
        """Refuse a store that breaks Rewind's invariants, judged by the cheap start-up check.

        Index lookups and the most recent events only, so opening stays fast
        on a big store; ``rewind verify`` reads everything.
        """
        db = self._write_db
        # One snapshot, in case another process writes to the file meanwhile.
        db.execute("BEGIN")
        try:
            problems = startup_problems(db)
        finally:
            db.execute("ROLLBACK")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise StoreUnavailableError(
                f"{self.path} fails Rewind's start-up check: {problems[0]}{more}; "
                f"`rewind verify --storage sqlite:{self.path}` checks it in full"
            )

    # Appending -------------------------------------------------------------------

    def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        self._check_open()
        if self.write_failure is not None:
            raise WritesStoppedError(f"writes stopped: {self.write_failure}")
        try:
            try:
                return self._append_transaction(requests, look_up_ids=False)
            except sqlite3.IntegrityError:
                # A client-chosen id is stored already (a re-send, or a
                # conflict): decide again, knowing the stored events.
                return self._append_transaction(requests, look_up_ids=True)
        except sqlite3.Error as exc:
            raise self._append_failure(exc) from exc

    def _append_transaction(
        self, requests: Sequence[AppendRequest], *, look_up_ids: bool
    ) -> list[AppendResult]:
        """Decide and store ``requests`` in one transaction; see :meth:`_decide`."""
        now = time.time_ns() // 1000
        db = self._write_db
        db.execute("BEGIN IMMEDIATE")
        try:
            results, new_events = self._decide(requests, now, look_up_ids=look_up_ids)
            if new_events:
                _insert(db, new_events)
            db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) may already have rolled back.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _append_failure(self, error: sqlite3.Error) -> StorageError:
        """The storage error a failed append transaction stands for.

        A full disk only refuses this commit: SQLite rolled it back whole, and
        the next one may find space. An I/O error stops all writing, because a
        failed write or fsync leaves unknown what the disk holds.
        """
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_FULL:
            return StorageFullError(f"storage full: {error}; nothing was stored")
        if code in _SQLITE_UNKNOWN_STATE:
            name = getattr(error, "sqlite_errorname", "I/O error")
            self.write_failure = f"{name} during a commit at {_utc_now()}: {error}"
            return WritesStoppedError(
                f"writes stopped: {self.write_failure}; nothing of this append was "
                "acknowledged; restart Rewind once the cause is fixed"
            )
        return StorageError(f"append failed: {error}")

    def _decide(
        self, requests: Sequence[AppendRequest], now: int, *, look_up_ids: bool
    ) -> tuple[list[AppendResult], list[RecordedEvent]]:
        """Decide every request inside the write transaction: results and events to insert.

        Reading inside it means another process sharing the file can never
        make two appends pick the same position or version.

        Without ``look_up_ids``, client-chosen ids are taken to be new, which
        spares an index lookup per event: nearly every append brings new ids.
        Such a decision stands only if every request carrying ids is accepted,
        since a refused one may be a re-send (whose expectation need not hold
        any more); otherwise the group is decided again knowing the stored
        events. An accepted id that is stored already makes the unique index
        refuse the INSERT, and :meth:`append` starts again with the lookup.
        """
        db = self._write_db
        last = db.execute(LAST_COMMIT_SQL).fetchone()
        last_position, last_recorded_at = (0, 0) if last is None else last
        stored: dict[int, RecordedEvent] = {}
        if look_up_ids:
            stored = self._stored_events(
                [event.event_id for request in requests for event in request.events]
            )
        group = GroupCommit(
            last_position=last_position,
            # Never earlier than the last commit, so time order is position order.
            recorded_at_us=max(now, last_recorded_at),
            stream_head=self._stream_head,
            stored_events=stored,
        )
        results = [group.add(request) for request in requests]
        if not look_up_ids:
            for request, result in zip(requests, results, strict=True):
                if not isinstance(result, tuple) and _has_chosen_ids(request):
                    return self._decide(requests, now, look_up_ids=True)
        return results, group.new_events

    def _stream_head(self, stream: str) -> int:
        head = self._write_db.execute(STREAM_HEAD_SQL, (stream,)).fetchone()[0]
        return -1 if head is None else int(head)

    def _stored_events(self, event_ids: list[uuid.UUID | None]) -> dict[int, RecordedEvent]:
        """The already stored events among ``event_ids``, by id value: one query per chunk."""
        found: dict[int, RecordedEvent] = {}
        unique = [event_id for event_id in dict.fromkeys(event_ids) if event_id is not None]
        for start in range(0, len(unique), _IDS_PER_LOOKUP):
            chunk = unique[start : start + _IDS_PER_LOOKUP]
            sql = f"SELECT {_COLUMNS} FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})"
            for row in self._write_db.execute(sql, [event_id.bytes for event_id in chunk]):
                event = _to_event(row)
                found[event.event_id.int] = event
        return found

    # Reading ---------------------------------------------------------------------

    def read_all(
        self,
        *,
        after: int = 0,
        through: int | None = None,
        limit: int,
        backwards: bool = False,
        stream_prefix: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        if limit <= 0 or (event_types is not None and not event_types):
            # Nothing can match; and SQLite would read a negative LIMIT as "no limit".
            self._check_open()
            return []
        bounds: list[str] = []
        if stream_prefix:
            upper = prefix_upper_bound(stream_prefix)
            bounds = [stream_prefix] if upper is None else [stream_prefix, upper]
        types = None if event_types is None else list(dict.fromkeys(event_types))
        sql = read_all_sql(
            backwards=backwards,
            stream_bounds=len(bounds),
            event_types=None if types is None else len(types),
        )
        params = [
            _clamp(after),
            _MAX_INTEGER if through is None else _clamp(through),
            *bounds,
            *(types or ()),
            _clamp(limit),
        ]
        return [_to_event(row) for row in self._read(sql, params)]

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        limit: int,
        backwards: bool = False,
    ) -> list[RecordedEvent]:
        if limit <= 0:
            self._check_open()
            return []
        if backwards:
            top = _MAX_INTEGER if from_version is None else _clamp(from_version)
            rows = self._read(STREAM_BACKWARDS_SQL, (stream, top, _clamp(limit)))
        else:
            bottom = _clamp(from_version or 0)
            rows = self._read(STREAM_FORWARDS_SQL, (stream, bottom, _clamp(limit)))
        return [_to_event(row) for row in rows]

    def position_of(self, event_id: uuid.UUID) -> int | None:
        rows = self._read(POSITION_OF_SQL, (event_id.bytes,))
        return int(rows[0][0]) if rows else None

    def position_at(self, timestamp_us: int) -> int | None:
        rows = self._read(POSITION_AT_SQL, (_clamp(timestamp_us),))
        return int(rows[0][0]) if rows else None

    def last_event(self) -> RecordedEvent | None:
        rows = self._read(LAST_EVENT_SQL, ())
        return _to_event(rows[0]) if rows else None

    def stream_info(self, stream: str) -> StreamInfo | None:
        rows = self._read(STREAM_INFO_SQL, (stream,))
        return StreamInfo(*rows[0]) if rows else None

    def list_streams(self, *, after: str | None = None, limit: int) -> list[StreamInfo]:
        if limit <= 0:
            self._check_open()
            return []
        if after is None:
            rows = self._read(LIST_STREAMS_FROM_START_SQL, (_clamp(limit),))
        else:
            rows = self._read(LIST_STREAMS_SQL, (after, _clamp(limit)))
        return [StreamInfo(*row) for row in rows]

    def _read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        self._check_open()
        try:
            return self._read_db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._read_db.close()
            self._write_db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")
