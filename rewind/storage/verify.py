"""Checking that a store is sound: SQLite's own checks and Rewind's invariants.

:func:`verify_sqlite` reads a whole SQLite store and reports every problem it
finds, as ``rewind verify`` prints them:

* **file**: the path names a readable SQLite database;
* **header**: its ``application_id`` marks it as a Rewind store and its
  ``user_version`` is the schema version this Rewind writes;
* **sqlite**: ``PRAGMA quick_check`` (``integrity_check`` with ``full=True``,
  which also compares every index with its table);
* **schema**: the ``events`` table has the columns and indexes the migrations create;
* **columns**: every value has its column's type (ids are 16-byte blobs, versions
  whole numbers >= 0, ...);
* **positions**: global positions run 1, 2, 3, ... without gaps;
* **streams**: each stream's versions run 0, 1, 2, ... without gaps or repeats,
  in the order of their positions;
* **event-ids**: no event id is stored twice;
* **times**: commit times never decrease as positions grow.

The store keeps no table of streams besides ``events`` (a stream is the set of
its events), so there is no stream metadata to compare against.

Every check is a few set-based statements answered from an index or one scan
of the table, so a store of a million events verifies in a couple of seconds.
All checks read one snapshot, so a store may be verified while a server writes
to it.

:mod:`rewind.storage.startup_check` holds the cheap subset the server runs
whenever it opens a store.
"""

from __future__ import annotations

import functools
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewind.storage.sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "CHECKS",
    "MAX_DETAILS",
    "Problem",
    "VerifyReport",
    "open_for_verify",
    "sqlite_check",
    "verify_sqlite",
]

CHECKS = (
    "file",
    "header",
    "sqlite",
    "schema",
    "columns",
    "positions",
    "streams",
    "event-ids",
    "times",
)
"""The checks :func:`verify_sqlite` runs, in order."""

MAX_DETAILS = 20
"""Problems listed one by one per check; the rest are counted in one more line."""

STARTUP_TAIL = 1000
"""How many of the most recent events the start-up check looks at closely."""

_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a store: which check found it, and what it is."""

    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_sqlite` found.

    ``events``, ``streams`` and ``last_position`` are ``None`` when the checks
    could not get as far as counting them.
    """

    path: Path
    full: bool
    checks: tuple[str, ...]
    problems: tuple[Problem, ...]
    events: int | None = None
    streams: int | None = None
    last_position: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        return {
            "path": str(self.path),
            "ok": self.ok,
            "full": self.full,
            "checks": list(self.checks),
            "problems": [{"check": p.check, "message": p.message} for p in self.problems],
            "events": self.events,
            "streams": self.streams,
            "last_position": self.last_position,
            "seconds": round(self.seconds, 3),
        }


class _Stop(Exception):
    """The checks cannot go on (the file is not a store at all)."""


@dataclass
class Findings:
    """Problems as they are found, at most :data:`MAX_DETAILS` listed per check."""

    problems: list[Problem] = field(default_factory=list)
    listed: dict[str, int] = field(default_factory=dict)
    unlisted: dict[str, int] = field(default_factory=dict)

    def add(self, check: str, message: str) -> None:
        # One line per problem, whatever a driver's message looks like.
        message = " ".join(message.split("\n"))
        if self.listed.get(check, 0) < MAX_DETAILS:
            self.listed[check] = self.listed.get(check, 0) + 1
            self.problems.append(Problem(check, message))
        else:
            self.unlisted[check] = self.unlisted.get(check, 0) + 1

    def total(self, check: str, message: str) -> None:
        """A line summing up problems of ``check`` that were not all listed; never cut."""
        self.problems.append(Problem(check, message))

    def result(self) -> tuple[Problem, ...]:
        problems = list(self.problems)
        for check, count in self.unlisted.items():
            problems.append(Problem(check, f"... and {count} more problem(s) of this kind"))
        order = {name: index for index, name in enumerate(CHECKS)}
        # Stable: the per-check order of discovery stays as it was.
        problems.sort(key=lambda problem: order.get(problem.check, len(order)))
        return tuple(problems)


# The expected schema ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    """The parts of a table's definition that matter: columns and indexes."""

    columns: tuple[tuple[str, str, bool, bool], ...]  # name, type, not null, primary key
    indexes: frozenset[tuple[bool, tuple[str, ...]]]  # unique, columns


def _shape(db: sqlite3.Connection, table: str) -> _Shape:
    columns = tuple(
        (str(name), str(kind).upper(), bool(notnull), bool(pk))
        for _cid, name, kind, notnull, _default, pk in db.execute(f"PRAGMA table_info({table})")
    )
    indexes = set()
    for row in db.execute(f"PRAGMA index_list({table})").fetchall():
        name, unique = row[1], row[2]
        names = tuple(
            str(info[2]) for info in db.execute("SELECT * FROM pragma_index_info(?)", (name,))
        )
        indexes.add((bool(unique), names))
    return _Shape(columns, frozenset(indexes))


@functools.cache
def _expected_shape() -> _Shape:
    """The ``events`` table exactly as the migrations build it, in a scratch database."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for version in range(1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](db)
        return _shape(db, "events")
    finally:
        db.close()


def _describe_index(unique: bool, columns: tuple[str, ...]) -> str:
    return f"{'unique ' if unique else ''}index on events({', '.join(columns)})"


_UNIQUE_IDS = (True, ("event_id",))
_UNIQUE_VERSIONS = (True, ("stream", "version"))


def check_schema(db: sqlite3.Connection, found: Findings) -> _Shape | None:
    """Compare the ``events`` table with the expected one.

    Returns the table's shape, or ``None`` when its data cannot be checked.
    """
    exists = db.execute(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'events'"
    ).fetchone()[0]
    if not exists:
        found.add("schema", "there is no events table")
        return None
    expected, actual = _expected_shape(), _shape(db, "events")
    usable = True
    if actual.columns != expected.columns:
        want = ", ".join(f"{name} {kind}" for name, kind, _, _ in expected.columns)
        have = ", ".join(f"{name} {kind}" for name, kind, _, _ in actual.columns)
        found.add("schema", f"events table has columns ({have}), expected ({want})")
        usable = {c[0] for c in expected.columns} <= {c[0] for c in actual.columns}
    for unique, columns in sorted(expected.indexes - actual.indexes):
        found.add("schema", f"the {_describe_index(unique, columns)} is missing")
    return actual if usable else None


# Reading a file -----------------------------------------------------------------------


def open_for_verify(path: Path) -> sqlite3.Connection:
    """Open an existing database file to check it, never creating one.

    Read-write rather than read-only so that, as with the server, the last
    connection to close folds the WAL back in and removes it; the checks
    themselves only read.
    """
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None)


def _check_file(path: Path, found: Findings) -> None:
    if not path.exists():
        found.add("file", f"{path} does not exist")
        raise _Stop
    if not path.is_file():
        found.add("file", f"{path} is not a regular file")
        raise _Stop
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        found.add("file", f"cannot read {path}: {exc.strerror}")
        raise _Stop from None
    if not head:
        found.add("file", f"{path} is empty, not a Rewind store")
        raise _Stop
    if head != _SQLITE_MAGIC:
        found.add("file", f"{path} is not an SQLite database (its header is not SQLite's)")
        raise _Stop


def _check_header(db: sqlite3.Connection, found: Findings) -> None:
    application_id = int(db.execute("PRAGMA application_id").fetchone()[0])
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    tables = int(db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0])
    if application_id != APPLICATION_ID:
        what = "an empty SQLite database" if not tables else "an SQLite database"
        found.add(
            "header",
            f"{what} but not a Rewind store (application_id {application_id:#x}, "
            f"expected {APPLICATION_ID:#x})",
        )
        if not tables:
            raise _Stop
        # Not ours, so its version number means nothing; the schema check tells the rest.
        return
    if version > SCHEMA_VERSION:
        found.add(
            "header", f"schema version {version} is newer than {SCHEMA_VERSION}, which this reads"
        )
        raise _Stop
    if version != SCHEMA_VERSION:
        found.add(
            "header",
            f"schema version {version}, expected {SCHEMA_VERSION} "
            "(a server started on the store migrates it)",
        )


def sqlite_check(db: sqlite3.Connection, *, full: bool, limit: int) -> list[str]:
    """SQLite's ``quick_check`` (``integrity_check`` if ``full``): its complaints, one per line.

    Empty when the file passes. SQLite stops after ``limit`` complaints.
    """
    pragma = "integrity_check" if full else "quick_check"
    rows = [str(row[0]) for row in db.execute(f"PRAGMA {pragma}({limit})")]
    if rows == ["ok"]:
        return []
    # Several complaints may come in one row, a line each, under a heading.
    lines = (line.strip() for row in rows for line in row.splitlines())
    return [line for line in lines if line and not line.startswith("*** in database")]


def _check_sqlite(db: sqlite3.Connection, full: bool, found: Findings) -> None:
    pragma = "integrity_check" if full else "quick_check"
    # One more than is listed shows whether SQLite had more to say.
    for line in sqlite_check(db, full=full, limit=MAX_DETAILS + 1):
        found.add("sqlite", f"{pragma}: {line}")


# Rewind's invariants --------------------------------------------------------------------

_BAD_COLUMNS_SQL = """
    SELECT position, typeof(event_id), length(event_id), typeof(stream), typeof(version),
           version, typeof(recorded_at), typeof(event_type), typeof(metadata), typeof(data)
    FROM events
    WHERE position > ? AND (
        typeof(event_id) != 'blob' OR length(event_id) != 16 OR typeof(stream) != 'text'
        OR typeof(version) != 'integer' OR version < 0 OR typeof(recorded_at) != 'integer'
        OR typeof(event_type) != 'text' OR typeof(metadata) != 'blob' OR typeof(data) != 'blob')
    ORDER BY position
    LIMIT ?
"""


def check_columns(
    db: sqlite3.Connection, found: Findings, *, after: int = 0, limit: int = -1
) -> None:
    """Every value of the type its column should hold: for ``limit`` events after ``after``."""
    expected = (
        ("event_id", 1, "blob"),
        ("stream", 3, "text"),
        ("version", 4, "integer"),
        ("recorded_at", 6, "integer"),
        ("event_type", 7, "text"),
        ("metadata", 8, "blob"),
        ("data", 9, "blob"),
    )
    for row in db.execute(_BAD_COLUMNS_SQL, (after, limit)):
        position = row[0]
        wrong = [f"{name} is {row[index]}" for name, index, kind in expected if row[index] != kind]
        if row[1] == "blob" and row[2] != 16:
            wrong.append(f"event_id is {row[2]} bytes long, not 16")
        if row[4] == "integer" and row[5] < 0:
            wrong.append(f"version is {row[5]}")
        found.add("columns", f"event at position {position}: {'; '.join(wrong)}")


def _missing(noun: str, low: int, high: int) -> str:
    """``position 5 is missing``, ``positions 5-7 are missing``."""
    return f"{noun} {low} is missing" if low == high else f"{noun}s {low}-{high} are missing"


def _check_positions(db: sqlite3.Connection, found: Findings) -> tuple[int, int]:
    """Positions 1..last without gaps; returns (count, last)."""
    count = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    if count == 0:
        return 0, 0
    # Separate statements: each is one look at the primary key's ends.
    first = int(db.execute("SELECT min(position) FROM events").fetchone()[0])
    last = int(db.execute("SELECT max(position) FROM events").fetchone()[0])
    if first < 1:
        found.add("positions", f"the first position is {first}, expected 1")
    elif first > 1:
        found.add("positions", _missing("position", 1, first - 1))
    if last - first + 1 != count:
        # Each gap starts after a stored position whose successor is not stored.
        gaps = db.execute(
            """
            SELECT a.position + 1,
                   (SELECT min(position) FROM events WHERE position > a.position) - 1
            FROM events AS a
            WHERE a.position < ? AND NOT EXISTS
                (SELECT 1 FROM events AS b WHERE b.position = a.position + 1)
            ORDER BY a.position
            LIMIT ?
            """,
            (last, MAX_DETAILS),
        ).fetchall()
        for low, high in gaps:
            found.add("positions", _missing("position", low, high))
        if last - first + 1 - count > sum(high - low + 1 for low, high in gaps):
            found.total(
                "positions",
                f"{last - max(first, 1) + 1 - count} positions are missing in all: "
                f"{count} events from {first} to {last}",
            )
    return count, last


_STREAM_SUMMARY_SQL = """
    SELECT count(*), coalesce(sum(bad), 0) FROM (
        SELECT min(version) != 0 OR max(version) + 1 != count(*) AS bad
        FROM events GROUP BY stream
    )
"""
_BAD_STREAMS_SQL = """
    SELECT stream FROM events GROUP BY stream
    HAVING min(version) != 0 OR max(version) + 1 != count(*)
    LIMIT ?
"""
_REPEATED_VERSIONS_SQL = """
    SELECT stream, version, group_concat(position, ', ') FROM events
    GROUP BY stream, version HAVING count(*) > 1
"""
# Versions of the wrong type (the columns check names them) are left out.
_VERSION_GAPS_SQL = """
    WITH v(version) AS (
        SELECT version FROM events WHERE stream = ?1 AND typeof(version) = 'integer')
    SELECT DISTINCT a.version + 1, (SELECT min(version) FROM v WHERE version > a.version) - 1
    FROM v AS a
    WHERE a.version < (SELECT max(version) FROM v)
      AND NOT EXISTS (SELECT 1 FROM v AS b WHERE b.version = a.version + 1)
    ORDER BY 1
"""
# Version order and position order must agree within a stream.
_OUT_OF_ORDER_SQL = """
    SELECT a.stream, a.version, a.position, b.version, b.position
    FROM events AS a JOIN events AS b ON b.stream = a.stream AND b.version = a.version + 1
    WHERE b.position < a.position AND typeof(a.version) = 'integer'
"""


def _check_streams(db: sqlite3.Connection, found: Findings, shape: _Shape) -> int:
    """Each stream's versions 0..head, unique, in position order; returns the stream count.

    Repeats are looked for only when the unique (stream, version) index is
    missing: while it exists SQLite refuses every repeat, and that the index
    covers every row is what ``integrity_check`` (``full``) proves.
    """
    streams, miscounted = (int(n) for n in db.execute(_STREAM_SUMMARY_SQL).fetchone())
    suspects: dict[str, None] = {}
    if miscounted:
        for (stream,) in db.execute(_BAD_STREAMS_SQL, (MAX_DETAILS,)):
            suspects[stream] = None
    repeats = [] if _UNIQUE_VERSIONS in shape.indexes else db.execute(_REPEATED_VERSIONS_SQL)
    for stream, version, positions in repeats:
        found.add(
            "streams", f"stream {stream!r}: version {version} is stored at positions {positions}"
        )
        # A repeat can hide a gap from the counts: look at the stream closely too.
        if len(suspects) < MAX_DETAILS:
            suspects[stream] = None
    for stream in suspects:
        first = int(
            db.execute("SELECT min(version) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
        )
        if first > 0:
            found.add("streams", f"stream {stream!r}: {_missing('version', 0, first - 1)}")
        for low, high in db.execute(_VERSION_GAPS_SQL, (stream,)):
            found.add("streams", f"stream {stream!r}: {_missing('version', low, high)}")
    if miscounted > MAX_DETAILS:
        found.total("streams", f"{miscounted} streams in all have missing or repeated versions")
    for stream, version, position, next_version, next_position in db.execute(_OUT_OF_ORDER_SQL):
        found.add(
            "streams",
            f"stream {stream!r}: version {version} is at position {position}, "
            f"after version {next_version} at position {next_position}",
        )
    return streams


def _check_event_ids(db: sqlite3.Connection, found: Findings, shape: _Shape) -> None:
    """No id stored twice: looked for only without the unique index (as for versions)."""
    if _UNIQUE_IDS in shape.indexes:
        return
    repeated = db.execute(
        "SELECT event_id, group_concat(position, ', ') FROM events "
        "GROUP BY event_id HAVING count(*) > 1"
    )
    for event_id, positions in repeated:
        shown = str(uuid.UUID(bytes=event_id)) if _is_uuid(event_id) else repr(event_id)
        found.add("event-ids", f"event id {shown} is stored at positions {positions}")


def _is_uuid(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 16


def _check_times(db: sqlite3.Connection, found: Findings) -> None:
    # Neighbouring positions, found by primary key: a self-join, no sort.
    earlier = db.execute(
        """
        SELECT b.position, a.position FROM events AS a
        JOIN events AS b ON b.position = a.position + 1
        WHERE b.recorded_at < a.recorded_at
        ORDER BY b.position
        """
    )
    for later, before in earlier:
        found.add("times", f"position {later} was recorded earlier than position {before}")


# Putting it together -------------------------------------------------------------------


def verify_sqlite(path: Path, *, full: bool = False) -> VerifyReport:
    """Check the SQLite store at ``path`` thoroughly; see the module docstring.

    Never creates the file nor changes its content. Every kind of trouble,
    a file that cannot be read included, ends up in the report: nothing is
    raised for a bad store.
    """
    started = time.perf_counter()
    run = _Run(full)
    try:
        run.check("file", lambda: _check_file(path, run.found))
        try:
            db = open_for_verify(path)
        except sqlite3.Error as exc:
            run.found.add("file", f"cannot open {path}: {exc}")
            raise _Stop from None
        try:
            run.all(db)
        finally:
            db.close()
    except _Stop:
        pass
    return VerifyReport(
        path=path,
        full=full,
        checks=tuple(run.ran),
        problems=run.found.result(),
        events=run.events,
        streams=run.streams,
        last_position=run.last_position,
        seconds=time.perf_counter() - started,
    )


class _Run:
    """One verification: the checks run so far, their findings and the counts."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.found = Findings()
        self.ran: list[str] = []
        self.events: int | None = None
        self.streams: int | None = None
        self.last_position: int | None = None

    def check(self, name: str, step: Callable[[], object]) -> object:
        """Run one check; a database error stops it (and, for the header, all the rest)."""
        self.ran.append(name)
        try:
            return step()
        except sqlite3.DatabaseError as exc:
            self.found.add(name, f"could not be checked: {exc}")
            if name == "header":
                raise _Stop from None
            return None
        except (TypeError, ValueError):
            # Values of the wrong type (which the columns check names) upset the arithmetic.
            self.found.add(name, "could not be checked: values of the wrong type")
            return None

    def all(self, db: sqlite3.Connection) -> None:
        found = self.found
        # One read transaction: every check sees the same committed state.
        db.execute("BEGIN")
        try:
            self.check("header", lambda: _check_header(db, found))
            self.check("sqlite", lambda: _check_sqlite(db, self.full, found))
            shape = self.check("schema", lambda: check_schema(db, found))
            if not isinstance(shape, _Shape):
                return
            self.check("columns", lambda: check_columns(db, found))
            positions = self.check("positions", lambda: _check_positions(db, found))
            if isinstance(positions, tuple):
                self.events, self.last_position = positions
            streams = self.check("streams", lambda: _check_streams(db, found, shape))
            if isinstance(streams, int):
                self.streams = streams
            self.check("event-ids", lambda: _check_event_ids(db, found, shape))
            self.check("times", lambda: _check_times(db, found))
        finally:
            db.execute("ROLLBACK")
