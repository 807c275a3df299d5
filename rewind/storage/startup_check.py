"""The start-up check: the cheap subset of ``rewind verify`` run whenever a store opens.

Index lookups and the most recent events only, so that start-up stays fast
however large the store is; the whole check is :func:`rewind.storage.verify.verify_sqlite`.
"""

from __future__ import annotations

import sqlite3

from rewind.storage.verify import STARTUP_TAIL, Findings, Problem, check_columns, check_schema

__all__ = ["startup_problems"]

# The recent events: each one's id must find it through the id index, each
# version above 0 must follow its predecessor, and each stream's newest event
# there must be the head the (stream, version) index reports.
_TAIL_ID_SQL = """
    SELECT t.position FROM events AS t WHERE t.position > ?
      AND (SELECT position FROM events WHERE event_id = t.event_id) IS NOT t.position
    LIMIT 1
"""
_TAIL_VERSION_SQL = """
    SELECT t.position, t.stream, t.version FROM events AS t
    WHERE t.position > ? AND t.version > 0 AND NOT EXISTS (
        SELECT 1 FROM events AS p
        WHERE p.stream = t.stream AND p.version = t.version - 1 AND p.position < t.position)
    LIMIT 1
"""
# The unary + keeps SQLite from walking the whole (stream, version) index to group.
_TAIL_HEAD_SQL = """
    SELECT t.stream, max(t.version) FROM events AS t WHERE t.position > ?
    GROUP BY +t.stream
    HAVING max(t.version) != (SELECT max(version) FROM events WHERE stream = t.stream)
    LIMIT 1
"""
_TAIL_TIME_SQL = """
    SELECT b.position FROM events AS a JOIN events AS b ON b.position = a.position + 1
    WHERE a.position > ? AND b.recorded_at < a.recorded_at
    LIMIT 1
"""


def startup_problems(db: sqlite3.Connection, *, tail: int = STARTUP_TAIL) -> list[Problem]:
    """The cheap checks for opening a store, in milliseconds whatever its size.

    The schema; positions 1..last without gaps (count against the highest
    position, both from indexes); and, over the ``tail`` most recent events,
    ids, versions, stream heads and commit times. The first problem of each
    kind is reported. ``db`` must be at the current schema version.
    """
    found = Findings()
    check_schema(db, found)
    if found.problems:
        # Without its indexes the lookups below would each read the whole table.
        return list(found.result())
    count = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    if count == 0:
        return list(found.result())
    first = int(db.execute("SELECT min(position) FROM events").fetchone()[0])
    last = int(db.execute("SELECT max(position) FROM events").fetchone()[0])
    if first != 1 or last != count:
        found.add(
            "positions",
            f"{count} events but positions run from {first} to {last}: some are missing",
        )
    after = max(0, last - tail)
    check_columns(db, found, after=after, limit=1)
    if "columns" in found.listed:
        # The checks below assume values of the right types.
        return list(found.result())
    row = db.execute(_TAIL_ID_SQL, (after,)).fetchone()
    if row is not None:
        found.add("event-ids", f"the event at position {row[0]} is not found by its id")
    row = db.execute(_TAIL_VERSION_SQL, (after,)).fetchone()
    if row is not None:
        position, stream, version = row
        found.add(
            "streams",
            f"stream {stream!r}: version {version} at position {position} "
            f"does not follow version {version - 1}",
        )
    row = db.execute(_TAIL_HEAD_SQL, (after,)).fetchone()
    if row is not None:
        found.add(
            "streams", f"stream {row[0]!r}: its newest event (version {row[1]}) is not its head"
        )
    row = db.execute(_TAIL_TIME_SQL, (after,)).fetchone()
    if row is not None:
        found.add("times", f"position {row[0]} was recorded earlier than position {row[0] - 1}")
    return list(found.result())
