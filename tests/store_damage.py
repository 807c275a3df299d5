"""Small real SQLite stores, and ways to damage them by editing the file with sqlite3 directly.

Each damage function opens the (closed) store file with plain ``sqlite3``,
makes one kind of change Rewind itself never makes, and closes it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rewind.model import AppendRequest, NewEvent
from rewind.storage.sqlite import SQLiteStore

STREAMS = ("alpha", "beta", "gamma")


def build_store(path: Path, events: int = 30) -> None:
    """``events`` events, one per commit, taking turns over :data:`STREAMS`."""
    with SQLiteStore(path) as store:
        for number in range(events):
            event = NewEvent(data=f"event {number}".encode(), event_type="Numbered")
            store.append([AppendRequest(STREAMS[number % len(STREAMS)], (event,))])


@contextmanager
def edit(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the file, committed and closed afterwards."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        yield db
        db.execute("COMMIT")
    finally:
        db.close()


def position_of(path: Path, stream: str, version: int) -> int:
    with edit(path) as db:
        row = db.execute(
            "SELECT position FROM events WHERE stream = ? AND version = ?", (stream, version)
        ).fetchone()
    assert row is not None, (stream, version)
    return int(row[0])


def head_of(path: Path, stream: str) -> int:
    with edit(path) as db:
        return int(
            db.execute("SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
        )


def delete_position(path: Path, position: int) -> None:
    with edit(path) as db:
        db.execute("DELETE FROM events WHERE position = ?", (position,))


def set_column(path: Path, position: int, column: str, value: object) -> None:
    with edit(path) as db:
        db.execute(f"UPDATE events SET {column} = ? WHERE position = ?", (value, position))


def swap_positions(path: Path, first: int, second: int) -> None:
    """Exchange two events' positions (their ids, streams, versions and data move)."""
    with edit(path) as db:
        db.execute("UPDATE events SET position = -1 WHERE position = ?", (first,))
        db.execute("UPDATE events SET position = ? WHERE position = ?", (first, second))
        db.execute("UPDATE events SET position = ? WHERE position = -1", (second,))


def drop_unique_constraints(path: Path, *, keep_unique_ids: bool = False) -> None:
    """Rebuild the events table without its UNIQUE constraints (SQLite cannot drop them).

    With ``keep_unique_ids`` only the one on (stream, version) goes.
    """
    unique_ids = " UNIQUE" if keep_unique_ids else ""
    with edit(path) as db:
        db.execute(
            f"""
            CREATE TABLE loose (
                position     INTEGER PRIMARY KEY,
                event_id     BLOB    NOT NULL{unique_ids},
                stream       TEXT    NOT NULL,
                version      INTEGER NOT NULL,
                recorded_at  INTEGER NOT NULL,
                event_type   TEXT    NOT NULL DEFAULT '',
                metadata     BLOB    NOT NULL DEFAULT x'',
                data         BLOB    NOT NULL
            )
            """
        )
        db.execute("INSERT INTO loose SELECT * FROM events")
        db.execute("DROP TABLE events")
        db.execute("ALTER TABLE loose RENAME TO events")


def set_pragma(path: Path, name: str, value: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA {name} = {value}")
    finally:
        db.close()


def plain_sqlite_file(path: Path) -> None:
    """An SQLite database of some other application."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('not events')")
    finally:
        db.close()


def scribble_on_page(path: Path, page: int) -> None:
    """Overwrite most of one database page with garbage, as a failing disk might."""
    with edit(path) as db:
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    assert page <= pages, (page, pages)
    with path.open("r+b") as handle:
        handle.seek((page - 1) * page_size + 8)
        handle.write(b"\xa5\x5a" * ((page_size - 16) // 2))


def change_behind_index(path: Path, position: int) -> None:
    """Change an event's id in its table row but not in the id index, as a torn write might.

    The file's bytes are edited directly, so SQLite never learns of the change:
    only a check that compares index and table (``integrity_check``) can tell.
    """
    with edit(path) as db:
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        event_id = db.execute(
            "SELECT event_id FROM events WHERE position = ?", (position,)
        ).fetchone()[0]
    # Closing the last connection moved everything from the WAL into the file.
    content = bytearray(path.read_bytes())
    in_table = []
    offset = content.find(event_id)
    while offset >= 0:
        page_start = offset - offset % page_size
        header = page_start + (100 if page_start == 0 else 0)  # page 1 starts with the file header
        if content[header] == _TABLE_LEAF_PAGE:
            in_table.append(offset)
        offset = content.find(event_id, offset + 1)
    assert len(in_table) == 1, (position, in_table)
    content[in_table[0] + len(event_id) - 1] ^= 0xFF
    path.write_bytes(content)


_TABLE_LEAF_PAGE = 0x0D  # the first byte of a table B-tree leaf page's header
