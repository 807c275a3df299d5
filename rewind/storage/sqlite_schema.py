"""The SQLite store's schema and the migrations that build it.

A fresh file and an old file reach the current schema by the same road: the
migrations run in order from the file's ``user_version`` up to
:data:`SCHEMA_VERSION`, in one transaction, so a file is either fully at the
old version or fully at the new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from rewind.errors import StoreUnavailableError

APPLICATION_ID = 0x52574E44  # "RWND": marks a file as a Rewind store.
SCHEMA_VERSION = 3


def _create_events_table(db: sqlite3.Connection) -> None:
    db.execute(_EVENTS_TABLE)


# The text stays as version 1 wrote it: SQLite keeps it in the file, and fresh
# and migrated files should read the same.
_EVENTS_TABLE = """
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


def _order_commit_times(db: sqlite3.Connection) -> None:
    # Version 1 took each commit's time from the clock as it was, so a clock
    # stepping back could leave a later position with an earlier time. From
    # version 2 on times never decrease with position (finding a position by
    # time relies on it), so raise any such time to the latest one before it.
    db.execute(
        """
        UPDATE events SET recorded_at = fixed.recorded_at
        FROM (
            SELECT position,
                   max(recorded_at) OVER (ORDER BY position ROWS UNBOUNDED PRECEDING)
                       AS recorded_at
            FROM events
        ) AS fixed
        WHERE events.position = fixed.position AND events.recorded_at < fixed.recorded_at
        """
    )


def _drop_time_index(db: sqlite3.Connection) -> None:
    # Version 2 also indexed commit times. Since times rise with positions, a
    # binary search over positions finds a time as well (about 20 primary-key
    # lookups in a million events), and every commit writes one index fewer:
    # 5.1 WAL frames per 8-event commit instead of 6.7. Files that a version 2
    # Rewind wrote still have the index; files migrated from version 1 by this
    # one never built it.
    db.execute("DROP INDEX IF EXISTS events_by_time")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _create_events_table,
    2: _order_commit_times,
    3: _drop_time_index,
}
"""The step that brings a file from version ``n - 1`` to version ``n``."""


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file open on ``db`` (autocommit mode) to :data:`SCHEMA_VERSION`.

    A file written by a newer Rewind is refused with :class:`StoreUnavailableError`.
    """
    version = _user_version(db)
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(version, path)
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have migrated meanwhile.
        version = _user_version(db)
        _refuse_newer(version, path)
        if version == 0:
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _refuse_newer(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreUnavailableError(
            f"{path} has schema version {version}; this Rewind reads {SCHEMA_VERSION}"
        )
