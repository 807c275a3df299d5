"""Every SQL statement of the PostgreSQL store, with the schema's tables named in full.

Kept apart from :mod:`rewind.storage.postgres`, which runs them, so that the
queries and the indexes they rely on can be read in one place.
"""

from __future__ import annotations

from rewind.storage.postgres_schema import quote_identifier

__all__ = ["COLUMNS", "COPY_TYPES", "Statements"]

COLUMNS = "position, event_id, stream, version, recorded_at, event_type, metadata, data"
"""The events table's columns, in the order of :class:`~rewind.model.RecordedEvent`'s fields."""

COPY_TYPES = ["int8", "uuid", "text", "int8", "int8", "text", "bytea", "bytea"]
"""Each column's type, as binary COPY needs them."""


class Statements:
    """Every statement of the store, with the schema's tables named in full."""

    def __init__(self, schema: str) -> None:
        events = f"{quote_identifier(schema)}.events"
        # The append transaction, run in this order.
        self.lock = "SELECT pg_advisory_xact_lock(%s, %s)"
        self.last_commit = (
            f"SELECT position, recorded_at FROM {events} ORDER BY position DESC LIMIT 1"
        )
        self.stream_heads = (
            f"SELECT name, (SELECT max(version) FROM {events} WHERE stream = name) "
            "FROM unnest(%s::text[]) AS names(name)"
        )
        # One index probe per id: "event_id = ANY(…)" may be planned as a scan.
        self.stored_events = (
            f"SELECT {COLUMNS} FROM unnest(%b::uuid[]) AS ids(id) "
            f"CROSS JOIN LATERAL (SELECT * FROM {events} WHERE event_id = ids.id) AS found"
        )
        self.notify = "SELECT pg_notify(%s, %s)"
        self.copy = f"COPY {events} ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
        # Reads; each is one statement, so it sees one committed state.
        self.position_of = f"SELECT position FROM {events} WHERE event_id = %s"
        self.position_at = (
            f"SELECT position FROM {events} WHERE recorded_at >= %s "
            "ORDER BY recorded_at, position LIMIT 1"
        )
        self.last_event = f"SELECT {COLUMNS} FROM {events} ORDER BY position DESC LIMIT 1"
        self.stream_forwards = (
            f"SELECT {COLUMNS} FROM {events} WHERE stream = %s AND version >= %s "
            "ORDER BY version LIMIT %s"
        )
        self.stream_backwards = (
            f"SELECT {COLUMNS} FROM {events} WHERE stream = %s AND version <= %s "
            "ORDER BY version DESC LIMIT %s"
        )
        # A stream's head and its first event (version 0), by index lookups.
        info = (
            f"CROSS JOIN LATERAL (SELECT version, position FROM {events} "
            "WHERE stream = names.name ORDER BY version DESC LIMIT 1) AS last "
            f"JOIN {events} AS first ON first.stream = names.name AND first.version = 0 "
        )
        self.stream_info = (
            "SELECT names.name, last.version, first.position, last.position "
            f"FROM (SELECT %s::text AS name) AS names {info}"
        )
        # Names are found one index seek at a time (each the least name above
        # the one before), so a page costs ``limit`` seeks however long the
        # streams are. The column's "C" collation orders names by code point.
        list_streams = f"""
            WITH RECURSIVE found(name) AS (
                (SELECT stream FROM {events} WHERE stream {{after}} ORDER BY stream LIMIT 1)
                UNION ALL
                SELECT (SELECT stream FROM {events} WHERE stream > found.name
                        ORDER BY stream LIMIT 1)
                FROM found WHERE found.name IS NOT NULL
            )
            SELECT names.name, last.version, first.position, last.position
            FROM (SELECT name FROM found WHERE name IS NOT NULL LIMIT %s) AS names {info}
            ORDER BY names.name
        """
        self.list_streams = list_streams.format(after="> %s")
        self.list_streams_from_start = list_streams.format(after=">= ''")
        self._events = events
        self._read_all: dict[tuple[bool, bool, bool], str] = {}

    def read_all(self, *, backwards: bool, prefix: bool, types: bool) -> str:
        """The read-all statement; parameters: after, through, [prefix], [types], limit."""
        key = (backwards, prefix, types)
        sql = self._read_all.get(key)
        if sql is None:
            conditions = ["position > %s", "position <= %s"]
            if prefix:
                conditions.append("starts_with(stream, %s)")
            if types:
                conditions.append("event_type = ANY(%s::text[])")
            sql = self._read_all[key] = (
                f"SELECT {COLUMNS} FROM {self._events} WHERE {' AND '.join(conditions)} "
                f"ORDER BY position {'DESC' if backwards else 'ASC'} LIMIT %s"
            )
        return sql
