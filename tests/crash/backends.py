"""Where a crash run stores its events, and how the store is checked once the server stopped.

The server's own answers (READ_ALL, READ_STREAM, LIST_STREAMS) are checked by
the harness whatever the backend; a backend adds what only the storage itself
can show: SQLite's ``PRAGMA integrity_check`` on the file, or, on PostgreSQL,
Rewind's invariants asked of the schema in SQL. Either way the stored rows must
be exactly the events the server returned.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rewind.model import RecordedEvent
from tests import postgres_support

BACKEND_VARIABLE = "REWIND_SOAK_BACKEND"
"""``sqlite`` or ``postgres``: the only backend a soak run uses (both when unset)."""
BACKENDS = ("sqlite", "postgres")

Row = tuple[Any, ...]


class Backend(Protocol):
    """A store for one crash run."""

    @property
    def storage(self) -> str:
        """The ``--storage`` value the server is started with."""
        ...

    def check_stored(self, events: Sequence[RecordedEvent]) -> list[str]:
        """Problems with the stopped server's store, which should hold exactly ``events``."""
        ...


def selected_backends() -> tuple[str, ...]:
    """The backends :data:`BACKEND_VARIABLE` asks for; all of them when it is unset."""
    chosen = os.environ.get(BACKEND_VARIABLE, "").strip()
    if not chosen:
        return BACKENDS
    if chosen not in BACKENDS:
        raise ValueError(f"{BACKEND_VARIABLE}={chosen!r}: choose one of {', '.join(BACKENDS)}")
    return (chosen,)


def _rows_of(events: Sequence[RecordedEvent], *, id_as_uuid: bool) -> list[Row]:
    """The events as the store's rows: position, id, stream, version, time, type, metadata, data."""
    return [
        (
            e.position,
            e.event_id if id_as_uuid else e.event_id.bytes,
            e.stream,
            e.version,
            e.recorded_at_us,
            e.event_type,
            e.metadata,
            e.data,
        )
        for e in events
    ]


def _compare_rows(rows: Sequence[Row], expected: Sequence[Row]) -> list[str]:
    if list(rows) == list(expected):
        return []
    return [f"the store holds {len(rows)} rows that differ from the {len(expected)} events read"]


_COLUMNS = "position, event_id, stream, version, recorded_at, event_type, metadata, data"


class SQLiteFile:
    """An SQLite file: ``PRAGMA integrity_check`` must pass and its rows match what was read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def storage(self) -> str:
        """``sqlite:PATH``."""
        return f"sqlite:{self.path}"

    def check_stored(self, events: Sequence[RecordedEvent]) -> list[str]:
        """Open the file directly: intact, and holding what the server returned."""
        db = sqlite3.connect(self.path)
        try:
            integrity = [row[0] for row in db.execute("PRAGMA integrity_check")]
            rows = db.execute(f"SELECT {_COLUMNS} FROM events ORDER BY position").fetchall()
        finally:
            db.close()
        problems = []
        if integrity != ["ok"]:
            problems.append(f"PRAGMA integrity_check: {'; '.join(integrity[:5])}")
        return problems + _compare_rows(rows, _rows_of(events, id_as_uuid=False))


# Each query counts the rows that break one of Rewind's invariants; all must say 0.
_INVARIANTS = {
    "positions do not run 1, 2, 3, ... without gaps": (
        "SELECT count(*) FROM (SELECT position, row_number() OVER (ORDER BY position) AS n "
        "FROM {s}.events) AS t WHERE position <> n"
    ),
    "a stream's versions do not run 0, 1, 2, ... in position order": (
        "SELECT count(*) FROM (SELECT version, row_number() OVER "
        "(PARTITION BY stream ORDER BY position) - 1 AS expected FROM {s}.events) AS t "
        "WHERE version <> expected"
    ),
    "an event id is stored more than once": (
        "SELECT count(*) - count(DISTINCT event_id) FROM {s}.events"
    ),
    "commit times decrease as positions grow": (
        "SELECT count(*) FROM (SELECT recorded_at, lag(recorded_at) OVER (ORDER BY position) "
        "AS before FROM {s}.events) AS t WHERE recorded_at < before"
    ),
}


class PostgresSchema:
    """A schema of its own in the test database: Rewind's invariants hold in SQL, rows match."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    @property
    def storage(self) -> str:
        """The test database's URL with ``?schema=``."""
        return postgres_support.store_url(self.schema)

    def check_stored(self, events: Sequence[RecordedEvent]) -> list[str]:
        """Ask the schema, over a connection of its own, for broken invariants and its rows."""
        from rewind.storage.postgres_schema import SCHEMA_VERSION, quote_identifier

        s = quote_identifier(self.schema)
        problems = []
        with postgres_support.admin() as db:
            versions = [row[0] for row in db.execute(f"SELECT version FROM {s}.schema_version")]
            if versions != [SCHEMA_VERSION]:
                problems.append(f"schema_version holds {versions}, not [{SCHEMA_VERSION}]")
            for broken, query in _INVARIANTS.items():
                row = db.execute(query.format(s=s)).fetchone()
                count = row[0] if row else None
                if count != 0:
                    problems.append(f"{broken} ({count} rows)")
            rows = db.execute(f"SELECT {_COLUMNS} FROM {s}.events ORDER BY position").fetchall()
        # psycopg gives uuid columns as uuid.UUID and bytea as bytes, as the events carry them.
        return problems + _compare_rows(rows, _rows_of(events, id_as_uuid=True))
