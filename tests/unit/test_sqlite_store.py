"""What only the SQLite backend has: its file, its settings and its refusals."""

from __future__ import annotations

import bisect
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

from rewind.errors import StorageError, StoreUnavailableError
from rewind.model import AppendRequest, NewEvent
from rewind.storage import sqlite as sqlite_store
from rewind.storage import sqlite_schema
from rewind.storage.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore


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


def _query_plan(db: sqlite3.Connection, sql: str) -> list[str]:
    # Plain ``?`` each take a parameter; every ``?N`` names one of the first N.
    numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
    count = max(numbered, default=0) + len(re.findall(r"\?(?!\d)", sql))
    return [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, (1,) * count)]


def _statements() -> dict[str, str]:
    statements = {
        name: getattr(sqlite_store, name)
        for name in dir(sqlite_store)
        if name.endswith("_SQL") and not name.startswith("_")
    }
    for backwards in (False, True):
        for bounds in (0, 1, 2):
            for types in (None, 1, 3):
                statements[f"read_all {backwards} {bounds} {types}"] = sqlite_store.read_all_sql(
                    backwards=backwards, stream_bounds=bounds, event_types=types
                )
    statements["ids"] = "SELECT position FROM events WHERE event_id IN (?, ?, ?)"
    return statements


def test_every_statement_is_answered_from_an_index(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    try:
        statements = _statements()
        assert len(statements) > 20
        for name, sql in statements.items():
            plan = _query_plan(store._write_db, sql)
            # Only the recursive tables (the list of stream names, the binary
            # search for a time) and their constant seeds are scanned.
            recursive = ("SCAN names", "SCAN search")
            scans = [step for step in plan if step.startswith("SCAN") and step not in recursive]
            assert scans in ([], ["SCAN CONSTANT ROW"]), f"{name} scans: {plan}"
    finally:
        store.close()


def test_listing_streams_does_not_walk_their_events(tmp_path: Path) -> None:
    """A page of streams costs index seeks, however many events each stream holds."""
    store = SQLiteStore(tmp_path / "events.db", integrity_check=False)
    try:
        many = tuple(NewEvent(b"") for _ in range(50_000))
        store.append([AppendRequest(name, many) for name in ("a", "b", "c")])
        store.append([AppendRequest(name, (NewEvent(b""),)) for name in ("d", "e")])
        steps: list[int] = []
        # The progress handler is called every N virtual machine steps.
        store._read_db.set_progress_handler(lambda: steps.append(1) and 0, 1000)
        listed = store.list_streams(limit=10)
        store._read_db.set_progress_handler(None, 0)
        assert [info.event_count for info in listed] == [50_000, 50_000, 50_000, 1, 1]
        assert len(steps) < 5, "listing streams walked their events"
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


def test_a_failed_transaction_stores_nothing_of_the_group(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:  # a stand-in for a disk that fails mid-commit
        db.execute(
            "CREATE TRIGGER fail BEFORE INSERT ON events WHEN NEW.data = x'dead' "
            "BEGIN SELECT RAISE(ABORT, 'disk trouble'); END"
        )
    store = SQLiteStore(path)
    try:
        store.append([AppendRequest("s", (NewEvent(b"first"),))])
        with pytest.raises(StorageError, match="disk trouble"):
            store.append(
                [
                    AppendRequest("s", (NewEvent(b"fine"),)),
                    AppendRequest("t", (NewEvent(b"\xde\xad"),)),
                ]
            )
        assert [e.data for e in store.read_all(limit=10)] == [b"first"]
        [[after]] = store.append([AppendRequest("s", (NewEvent(b"next"),))])
        assert (after.position, after.version) == (2, 1)
    finally:
        store.close()


# Migrations ----------------------------------------------------------------------------

_VERSION_1_SCHEMA = """
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


def _write_version_1_store(path: Path, recorded_at: list[int]) -> None:
    """A file as the first Rewind release left it: one stream, the given commit times."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_VERSION_1_SCHEMA)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        db.executemany(
            "INSERT INTO events (position, event_id, stream, version, recorded_at, data) "
            "VALUES (?, ?, 'default', ?, ?, ?)",
            [
                (position, uuid.uuid1().bytes, position - 1, at, b"old %d" % position)
                for position, at in enumerate(recorded_at, start=1)
            ],
        )
        db.commit()
    finally:
        db.close()


def _schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        return [(kind, name, " ".join((sql or "").split())) for kind, name, sql in rows]


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # Commit times as a clock that stepped back between commits leaves them.
    _write_version_1_store(path, [1_000, 2_000, 1_500, 3_000])
    store = SQLiteStore(path)
    try:
        events = store.read_all(limit=10)
        assert [e.data for e in events] == [b"old 1", b"old 2", b"old 3", b"old 4"]
        assert [e.recorded_at_us for e in events] == [1_000, 2_000, 2_000, 3_000]
        assert store.position_at(1_500) == 2
        assert store.position_at(2_001) == 4
        [[new]] = store.append([AppendRequest("default", (NewEvent(b"new"),), 3)])
        assert (new.position, new.version) == (5, 4)
    finally:
        store.close()
    fresh = tmp_path / "fresh.db"
    SQLiteStore(fresh).close()
    assert _schema(path) == _schema(fresh)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_a_version_2_store_loses_its_time_index_and_still_finds_times(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _write_version_1_store(path, [1_000, 2_000, 2_000, 3_000])
    with sqlite3.connect(path) as db:  # what version 2 added: times in order, and their index
        db.execute("CREATE INDEX events_by_time ON events (recorded_at)")
        db.execute("PRAGMA user_version=2")
    store = SQLiteStore(path)
    try:
        assert [store.position_at(at) for at in (0, 1_000, 1_001, 2_000, 3_000, 3_001)] == [
            1,
            1,
            2,
            2,
            4,
            None,
        ]
    finally:
        store.close()
    fresh = tmp_path / "fresh.db"
    SQLiteStore(fresh).close()
    assert "events_by_time" not in [name for _, name, _ in _schema(path)]
    assert _schema(path) == _schema(fresh)


def test_position_at_finds_the_first_event_at_or_after_a_time_among_many(
    tmp_path: Path,
) -> None:
    """The binary search over positions, where many events share each time."""
    path = tmp_path / "many.db"
    times = [1_000 + 10 * (number // 3) for number in range(1_001)]
    _write_version_1_store(path, times)
    store = SQLiteStore(path)
    try:
        for at in range(990, times[-1] + 12, 3):
            first = bisect.bisect_left(times, at)
            assert store.position_at(at) == (first + 1 if first < len(times) else None), at
    finally:
        store.close()


def test_a_failed_migration_leaves_the_file_at_its_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    _write_version_1_store(path, [1_000])

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE INDEX half_built ON events (recorded_at)")
        raise sqlite3.OperationalError("interrupted")

    monkeypatch.setitem(sqlite_schema.MIGRATIONS, 2, broken)
    with pytest.raises(StoreUnavailableError, match="interrupted"):
        SQLiteStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert [name for _, name, _ in _schema(path)] == [
            "sqlite_autoindex_events_1",
            "sqlite_autoindex_events_2",
            "events",
        ]
    monkeypatch.undo()
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
