"""The PostgreSQL store's schema and the migrations that build it.

Rewind keeps its tables in one schema of its own (``rewind`` unless the
storage URL names another): ``events``, and ``schema_version``, whose single
row says which of :data:`MIGRATIONS` have run. A fresh schema and an old one
reach :data:`SCHEMA_VERSION` by the same road, in one transaction, so a schema
is either fully at the old version or fully at the new one. The transaction
holds the append lock, so servers starting together migrate once, and none
appends meanwhile.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rewind.errors import StoreUnavailableError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

DEFAULT_SCHEMA = "rewind"

EVENT_ID_CONSTRAINT = "events_event_id_key"
"""The unique index on event ids; an append that breaks it re-sends or reuses an id."""

LOCK_CLASS = 0x52574E44  # "RWND": the first key of every advisory lock Rewind takes.

_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


def schema_problem(schema: str) -> str | None:
    """Why ``schema`` cannot name Rewind's schema; ``None`` if it can."""
    if not schema:
        return "is empty"
    if "\x00" in schema:
        return "contains NUL"
    if len(schema.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        return f"is longer than {_MAX_IDENTIFIER_BYTES} bytes"
    return None


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier: any name is taken literally, case and all."""
    return '"' + name.replace('"', '""') + '"'


def lock_key(schema: str) -> tuple[int, int]:
    """The two keys of the advisory lock that serialises appends to ``schema``'s store.

    Every server computes the same keys for the same schema; stores in other
    schemas of the database take other locks and never wait for each other.
    """
    second = zlib.crc32(schema.encode("utf-8"))
    return LOCK_CLASS, second - 2**32 if second >= 2**31 else second


# Each migration is a list of statements; ``{s}`` stands for the quoted schema.
_VERSION_1 = [
    """
    CREATE TABLE {s}.events (
        position     bigint PRIMARY KEY CHECK (position > 0),
        event_id     uuid   NOT NULL CONSTRAINT events_event_id_key UNIQUE,
        stream       text   COLLATE "C" NOT NULL,
        version      bigint NOT NULL CHECK (version >= 0),
        recorded_at  bigint NOT NULL,
        event_type   text   COLLATE "C" NOT NULL DEFAULT '',
        metadata     bytea  NOT NULL DEFAULT '',
        data         bytea  NOT NULL,
        UNIQUE (stream, version)
    )
    """,
    # Finding a position by time; times never decrease as positions grow.
    "CREATE INDEX events_by_time ON {s}.events (recorded_at, position)",
]

MIGRATIONS: Sequence[Sequence[str]] = [_VERSION_1]
"""``MIGRATIONS[n - 1]`` brings a schema from version ``n - 1`` to version ``n``."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: psycopg.Connection[TupleRow], schema: str) -> None:
    """Bring Rewind's schema on ``db`` (in autocommit mode) to :data:`SCHEMA_VERSION`.

    Creates the schema if it does not exist. Refuses, with
    :class:`StoreUnavailableError`, a schema written by a newer Rewind and one
    that holds tables but is not a Rewind store.
    """
    if _version(db, schema) == SCHEMA_VERSION:
        return
    s = quote_identifier(schema)
    with db.transaction():
        # Under the append lock, read again: another server may have migrated meanwhile.
        db.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock_key(schema))
        version = _version(db, schema)
        if version is None:
            if _has_tables(db, schema):
                raise StoreUnavailableError(
                    f"schema {schema!r} holds tables but is not a Rewind store; "
                    "refusing to use it (name another with ?schema=)"
                )
            db.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
            db.execute(f"CREATE TABLE {s}.schema_version (version integer NOT NULL)")
            db.execute(f"INSERT INTO {s}.schema_version VALUES (0)")
            version = 0
        if version > SCHEMA_VERSION:
            raise StoreUnavailableError(
                f"schema {schema!r} has schema version {version}; "
                f"this Rewind reads {SCHEMA_VERSION}"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                db.execute(statement.format(s=s))
        db.execute(f"UPDATE {s}.schema_version SET version = %s", (SCHEMA_VERSION,))


def _version(db: psycopg.Connection[TupleRow], schema: str) -> int | None:
    """The schema's version, or ``None`` when it has no ``schema_version`` table."""
    # A catalog query, not to_regclass: that consults a per-session cache,
    # which waiting for an advisory lock does not refresh, so it could miss
    # the table another server created meanwhile.
    exists = db.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'schema_version'",
        (schema,),
    ).fetchone()
    if exists is None:
        return None
    table = f"{quote_identifier(schema)}.schema_version"
    row = db.execute(f"SELECT max(version) FROM {table}").fetchone()
    if row is None or row[0] is None:
        raise StoreUnavailableError(f"schema {schema!r}: {table} is empty; not a usable store")
    return int(row[0])


def _has_tables(db: psycopg.Connection[TupleRow], schema: str) -> bool:
    row = db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (schema,)).fetchone()
    return row is not None and int(row[0]) > 0
