"""Events in a PostgreSQL database, shared by every Rewind server pointed at it.

**One global order.** Positions are not taken from a sequence: a sequence
hands out numbers when rows are inserted, but transactions become visible when
they commit, in any order, so a reader could see position 8 before a slower
transaction holding position 7 commits, and skip 7 for good. Instead every
append transaction first takes a transaction-scoped advisory lock (the same
key on every server using the schema, see :func:`lock_key`), then reads the
head position and the stream heads, inserts, and commits. PostgreSQL
releases the lock only after the commit is visible, so head read, insert and
commit form one critical section across all servers: positions are
gap-free, and they become visible in position order. A reader that sees
position N has therefore seen every position below it.

**Group commit.** :meth:`PostgresStore.append` is one transaction for the
whole group, its rows sent with one binary ``COPY``: for 100 or 1,000 events
that is the fastest of the ways measured (``executemany``, a multi-row
``INSERT``, ``INSERT … SELECT unnest(…)``), and for a single event none of
them is measurably faster.

**Notifications.** Every append transaction that stores events also sends
one ``NOTIFY`` on the schema's channel, carrying the new head position; it is
delivered when the transaction commits, and never if it does not. A third
connection listens on that channel (see :mod:`rewind.storage.postgres_listen`)
so that a server hears of the other servers' commits at once
(:meth:`PostgresStore.commit_wakeup_fd`).

**Durability.** The store refuses a connection whose ``synchronous_commit`` is
``off``: a commit PostgreSQL has acknowledged could then be lost in a crash,
and Rewind would have acknowledged it too.

**Connections.** One connection appends (the server's writer thread), one
reads and one listens (both the server's loop thread); each is used by one
thread at a time.
Each is opened again by the next call after it is lost, so a PostgreSQL
restart costs the calls made while it is down (they raise
:class:`~rewind.errors.StoreUnavailableError`) and nothing more. A read, or an
append whose connection turns out to have been lost before its transaction
could commit, is tried once more on a fresh connection.

**A COMMIT without a reply.** If the connection breaks while COMMIT is under
way, the transaction may or may not have committed. The store asks on a new
connection, under the append lock (so the lost transaction has ended either
way), whether the first event it inserted is stored: if so the append
succeeded, if not it failed and stored nothing. Only when PostgreSQL cannot
be reached for that question does the outcome stay unknown: the append fails
with :class:`~rewind.errors.StorageError` saying so, and a client that sends
it again with the same event ids gets the original positions back if it was
stored, or stores it now if it was not. (Seed-protocol ``PUBLISH`` carries no
ids, so a resend of such an append may store it twice.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import RowFactory, TupleRow, args_row, tuple_row

from rewind.errors import (
    AppendRejectedError,
    StorageError,
    StoreUnavailableError,
)
from rewind.model import AppendRequest, RecordedEvent, StreamInfo
from rewind.storage.base import AppendResult, EventStore
from rewind.storage.group import GroupCommit
from rewind.storage.postgres_connection import (
    CONNECTION_DEFAULTS,
    CommitUnknown,
    Connection,
    Link,
    Lost,
    RowT,
    append_failure,
    connection_lost,
    fetch,
    one_line,
    roll_back,
    show,
)
from rewind.storage.postgres_listen import CommitListener, notify_channel
from rewind.storage.postgres_schema import (
    DEFAULT_SCHEMA,
    EVENT_ID_CONSTRAINT,
    SCHEMA_VERSION,
    lock_key,
    migrate,
)
from rewind.storage.postgres_sql import COPY_TYPES, Statements

__all__ = ["DURABLE_COMMIT_SETTINGS", "SCHEMA_VERSION", "PostgresStore"]

log = logging.getLogger("rewind.storage")


_TUPLES: RowFactory[TupleRow] = tuple_row
_EVENTS: RowFactory[RecordedEvent] = args_row(RecordedEvent)
"""Rows of the events table's columns, in order, as events, built straight from the values."""

DURABLE_COMMIT_SETTINGS = frozenset({"on", "remote_write", "remote_apply", "local"})
"""Values of ``synchronous_commit`` under which a commit has reached the disk when it returns."""

_IDLE_IN_APPEND = "30s"

_MAX_BIGINT = 2**63 - 1


def _clamp(number: int) -> int:
    """``number`` within bigint: beyond it every bound means the same."""
    return max(-_MAX_BIGINT, min(number, _MAX_BIGINT))


def _to_event(row: TupleRow) -> RecordedEvent:
    return RecordedEvent(*row)


class PostgresStore(EventStore):
    """Events in one schema of a PostgreSQL database; see the module docstring."""

    kind = "postgresql"
    durable = True
    commits_wait_on_others = True
    announces_commits = True

    def __init__(self, conninfo: str, *, schema: str = DEFAULT_SCHEMA) -> None:
        self.schema = schema
        try:
            given = conninfo_to_dict(conninfo)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"bad PostgreSQL URL: {one_line(exc)}") from None
        defaults = {key: value for key, value in CONNECTION_DEFAULTS.items() if key not in given}
        self._conninfo = make_conninfo(conninfo, **defaults)
        self._sql = Statements(schema)
        self._lock_key = lock_key(schema)
        self._closed = False
        self._channel = notify_channel(schema)
        self._writer = Link(self._connect_writer)
        self._reader = Link(self._connect)
        self._listener = CommitListener(self._connect_listener, self._channel)
        try:
            db, _ = self._writer.get()
            migrate(db, schema)
            self._reader.get()
            self._listener.fileno()  # opened now, so the first commits are heard
        except psycopg.Error as exc:
            self.close()
            raise StoreUnavailableError(
                f"cannot prepare schema {schema!r}: {one_line(exc)}"
            ) from None
        except BaseException:
            self.close()
            raise

    # Connections -----------------------------------------------------------------

    def _connect(self) -> Connection:
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL: {one_line(exc)}") from None

    def _connect_listener(self) -> Connection:
        # Named apart, so the listening session can be told from the others.
        name = conninfo_to_dict(self._conninfo).get("application_name") or "rewind"
        try:
            return psycopg.connect(
                self._conninfo, autocommit=True, application_name=f"{name} listener"
            )
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"cannot connect to PostgreSQL: {one_line(exc)}") from None

    def _connect_writer(self) -> Connection:
        db = self._connect()
        try:
            self._prepare_writer(db)
        except psycopg.Error as exc:
            db.close()
            raise StoreUnavailableError(
                f"cannot prepare the writing session: {one_line(exc)}"
            ) from None
        except BaseException:
            db.close()
            raise
        return db

    def _prepare_writer(self, db: Connection) -> None:
        """Refuse a session whose commits would not be durable when they return; set it up."""
        setting = show(db, "synchronous_commit")
        if setting not in DURABLE_COMMIT_SETTINGS:
            raise StoreUnavailableError(
                f"synchronous_commit is {setting!r} for this connection, so acknowledged events "
                "could be lost in a crash; set it to 'on' (ALTER ROLE … SET synchronous_commit "
                "= on, or in postgresql.conf)"
            )
        encoding = show(db, "server_encoding")
        if encoding != "UTF8":
            raise StoreUnavailableError(
                f"the database's encoding is {encoding}; Rewind needs a UTF8 database"
            )
        fsync = show(db, "fsync")
        if fsync != "on":
            log.warning("PostgreSQL runs with fsync=%s: commits may be lost in an OS crash", fsync)
        if show(db, "idle_in_transaction_session_timeout") == "0":
            # A server frozen or cut off in the middle of an append would hold
            # the append lock, and stall every server, until PostgreSQL noticed
            # the dead connection; this bounds that. An append never idles
            # inside its transaction for more than moments.
            db.execute(f"SET idle_in_transaction_session_timeout = '{_IDLE_IN_APPEND}'")
        log.info(
            "PostgreSQL %s, schema %r: synchronous_commit=%s",
            db.info.parameter_status("server_version") or "?",
            self.schema,
            setting,
        )

    # Appending -------------------------------------------------------------------

    def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        self._check_open()
        db, fresh = self._writer.get()
        try:
            return self._append_once(db, requests)
        except Lost:
            # The connection was gone before the transaction could commit, so
            # nothing is stored: a connection that had been idle (PostgreSQL
            # restarted meanwhile) gets one more try on a new one.
            self._writer.drop()
            if fresh:
                raise
        except CommitUnknown as unknown:
            self._writer.drop()
            return self._settle(unknown)
        db, _ = self._writer.get()
        try:
            return self._append_once(db, requests)
        except Lost:
            self._writer.drop()
            raise
        except CommitUnknown as unknown:
            self._writer.drop()
            return self._settle(unknown)

    def _append_once(self, db: Connection, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        """One append on ``db``: one transaction, or two when a client-chosen id is known."""
        try:
            return self._transaction(db, requests, look_up_ids=False)
        except _KnownId:
            # An id of the group is stored already: a re-send or a conflict,
            # which only looking the ids up tells apart. That is rare (a
            # client retrying), so only then are they looked up.
            return self._transaction(db, requests, look_up_ids=True)

    def _transaction(
        self, db: Connection, requests: Sequence[AppendRequest], *, look_up_ids: bool
    ) -> list[AppendResult]:
        """One append transaction on ``db``."""
        committing = False
        try:
            with db.cursor() as cursor, db.cursor() as heads_cursor:
                problems = [_name_problem(request) for request in requests]
                streams = list(
                    {r.stream for r, p in zip(requests, problems, strict=True) if p is None}
                )
                # One round trip. The lock comes first, in a statement of its
                # own: each statement's snapshot is taken when it starts, and
                # the reads after it must see the last holder's commit.
                with db.pipeline():
                    cursor.execute("BEGIN")
                    cursor.execute(self._sql.lock, self._lock_key)
                    cursor.execute(self._sql.last_commit)
                    heads_cursor.execute(self._sql.stream_heads, (streams,))
                last = cursor.fetchone()
                heads = {
                    name: -1 if head is None else head for name, head in heads_cursor.fetchall()
                }
                results, new_events = self._decide(
                    cursor,
                    requests,
                    problems,
                    (0, 0) if last is None else last,
                    heads,
                    look_up_ids=look_up_ids,
                )
                if new_events:
                    with cursor.copy(self._sql.copy) as copy:
                        copy.set_types(COPY_TYPES)
                        for event in new_events:
                            copy.write_row(event)
                committing = True
                if new_events:
                    # Delivered at the commit, in the same round trip: one
                    # notification per transaction, however many events.
                    with db.pipeline():
                        cursor.execute(
                            self._sql.notify, (self._channel, str(new_events[-1].position))
                        )
                        cursor.execute("COMMIT")
                else:
                    cursor.execute("COMMIT")
        except psycopg.Error as exc:
            lost = connection_lost(exc, db)
            # An error PostgreSQL reported (it has a SQLSTATE) means the
            # statement failed and the transaction with it. One raised by the
            # driver itself while COMMIT was on its way (a pipeline cut off
            # mid-flight: "cannot exit pipeline mode while busy") says nothing
            # about the commit: only asking can tell.
            if committing and (lost or exc.sqlstate is None):
                raise CommitUnknown(exc, results, new_events[0] if new_events else None) from exc
            if not lost:
                roll_back(db)
            if not look_up_ids and _is_known_id(exc):
                raise _KnownId from exc
            raise append_failure(exc, lost=lost) from exc
        except BaseException:
            roll_back(db)
            raise
        return results

    def _settle(self, unknown: CommitUnknown) -> list[AppendResult]:
        """Whether a COMMIT whose reply was lost took place, asked on a new connection.

        Stored: the append succeeded. Not stored: it failed, and nothing was.
        PostgreSQL out of reach: the outcome stays unknown, and the error says so.
        """
        if unknown.probe is None:
            return unknown.results  # it stored nothing new, so either way it is done
        try:
            db, _ = self._writer.get()
            with db.cursor() as cursor:
                cursor.execute("BEGIN")
                # Once the lock is ours, the lost transaction has ended, one way or the other.
                cursor.execute(self._sql.lock, self._lock_key)
                rows = cursor.execute(
                    self._sql.stored_events, ([unknown.probe.event_id],), binary=True
                ).fetchall()
                cursor.execute("COMMIT")
        except (StorageError, psycopg.Error) as exc:
            self._writer.drop()
            raise StorageError(
                f"the connection to PostgreSQL was lost during COMMIT ({unknown.message}) "
                f"and it cannot be asked again ({one_line(exc)}): whether this append was "
                "stored is unknown; sending it again with the same event ids is safe"
            ) from None
        # Compared whole: the same id stored by someone else since would differ.
        if [_to_event(row) for row in rows] == [unknown.probe]:
            log.warning("the connection to PostgreSQL was lost during a COMMIT that succeeded")
            return unknown.results
        raise StoreUnavailableError(
            f"the connection to PostgreSQL was lost during COMMIT ({unknown.message}), and "
            "the transaction did not commit; nothing was stored"
        )

    def _decide(
        self,
        cursor: psycopg.Cursor[TupleRow],
        requests: Sequence[AppendRequest],
        problems: Sequence[AppendRejectedError | None],
        last: tuple[int, int],
        heads: dict[str, int],
        *,
        look_up_ids: bool,
    ) -> tuple[list[AppendResult], list[RecordedEvent]]:
        """Decide every request under the lock: results, and the events to insert.

        ``last`` is the head position and its commit time, ``heads`` the last
        version of every stream the requests name (-1: none), as stored.

        Without ``look_up_ids`` client-chosen ids are taken to be new, and
        looked up only when a request carrying them is refused. An id taken
        for new that is not makes the insert fail on the unique index, and
        the caller starts over with ``look_up_ids``.
        """
        now = time.time_ns() // 1000
        last_position, last_recorded_at = last
        usable = [r for r, problem in zip(requests, problems, strict=True) if problem is None]
        stored: dict[int, RecordedEvent] = {}

        def decide() -> tuple[list[AppendResult], list[RecordedEvent]]:
            group = GroupCommit(
                last_position=last_position,
                # Never earlier than the last commit, so time order is position
                # order even when servers' clocks disagree.
                recorded_at_us=max(now, last_recorded_at),
                stream_head=heads.__getitem__,
                stored_events=stored,
            )
            results = [
                group.add(request) if problem is None else problem
                for request, problem in zip(requests, problems, strict=True)
            ]
            return results, group.new_events

        if not look_up_ids:
            results, new_events = decide()
            # A refused request with ids may be a re-send, which is accepted
            # whatever it expects: only the stored ids can tell.
            if not any(
                isinstance(result, AppendRejectedError) and problem is None and _has_ids(request)
                for request, problem, result in zip(requests, problems, results, strict=True)
            ):
                return results, new_events
        ids = list({e.event_id for r in usable for e in r.events if e.event_id is not None})
        for row in cursor.execute(self._sql.stored_events, (ids,), binary=True):
            event = _to_event(row)
            stored[event.event_id.int] = event
        return decide()

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
        self._check_open()
        types = None if event_types is None else [t for t in event_types if "\x00" not in t]
        if limit <= 0 or types == [] or (stream_prefix and "\x00" in stream_prefix):
            return []  # nothing can match (PostgreSQL text holds no NUL)
        sql = self._sql.read_all(
            backwards=backwards, prefix=bool(stream_prefix), types=types is not None
        )
        params: list[Any] = [_clamp(after), _MAX_BIGINT if through is None else _clamp(through)]
        if stream_prefix:
            params.append(stream_prefix)
        if types is not None:
            params.append(types)
        params.append(_clamp(limit))
        return self._read(sql, params, _EVENTS)

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        limit: int,
        backwards: bool = False,
    ) -> list[RecordedEvent]:
        self._check_open()
        if limit <= 0 or "\x00" in stream:
            return []
        if backwards:
            top = _MAX_BIGINT if from_version is None else _clamp(from_version)
            return self._read(self._sql.stream_backwards, (stream, top, _clamp(limit)), _EVENTS)
        bottom = _clamp(from_version or 0)
        return self._read(self._sql.stream_forwards, (stream, bottom, _clamp(limit)), _EVENTS)

    def position_of(self, event_id: uuid.UUID) -> int | None:
        rows = self._read(self._sql.position_of, (event_id,), _TUPLES)
        return int(rows[0][0]) if rows else None

    def position_at(self, timestamp_us: int) -> int | None:
        rows = self._read(self._sql.position_at, (_clamp(timestamp_us),), _TUPLES)
        return int(rows[0][0]) if rows else None

    def last_event(self) -> RecordedEvent | None:
        events = self._read(self._sql.last_event, (), _EVENTS)
        return events[0] if events else None

    def stream_info(self, stream: str) -> StreamInfo | None:
        if "\x00" in stream:
            self._check_open()
            return None
        rows = self._read(self._sql.stream_info, (stream,), _TUPLES)
        return StreamInfo(*rows[0]) if rows else None

    def list_streams(self, *, after: str | None = None, limit: int) -> list[StreamInfo]:
        self._check_open()
        if limit <= 0:
            return []
        if after is None:
            rows = self._read(self._sql.list_streams_from_start, (_clamp(limit),), _TUPLES)
        else:
            # No name holds NUL, and NUL sorts below every other character, so
            # the names above ``after`` are those above its part before a NUL.
            bound = after.partition("\x00")[0]
            rows = self._read(self._sql.list_streams, (bound, _clamp(limit)), _TUPLES)
        return [StreamInfo(*row) for row in rows]

    def _read(self, sql: str, params: Sequence[Any], rows: RowFactory[RowT]) -> list[RowT]:
        """Run one read statement, on a fresh connection if the last one was lost."""
        self._check_open()
        db, fresh = self._reader.get()
        try:
            return fetch(db, sql, params, rows)
        except psycopg.Error as exc:
            if not connection_lost(exc, db):
                raise StorageError(f"read failed: {one_line(exc)}") from exc
            self._reader.drop()
            if fresh:
                raise StoreUnavailableError(f"read failed: {one_line(exc)}") from exc
        # A read changes nothing, so trying it again on a new connection is safe.
        db, _ = self._reader.get()
        try:
            return fetch(db, sql, params, rows)
        except psycopg.Error as exc:
            if connection_lost(exc, db):
                self._reader.drop()
                raise StoreUnavailableError(f"read failed: {one_line(exc)}") from exc
            raise StorageError(f"read failed: {one_line(exc)}") from exc

    # Hearing of other servers' commits -----------------------------------------------

    def commit_wakeup_fd(self) -> int | None:
        if self._closed:
            return None
        return self._listener.fileno()

    def take_commit_wakeups(self, after: int) -> bool:
        if self._closed:
            return False
        return self._listener.take(after)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._listener.close()
            self._reader.drop()
            self._writer.drop()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")


class _KnownId(Exception):
    """The group inserted an event id that is stored already; nothing was stored."""


def _is_known_id(error: psycopg.Error) -> bool:
    return (
        isinstance(error, psycopg.errors.UniqueViolation)
        and error.diag.constraint_name == EVENT_ID_CONSTRAINT
    )


def _name_problem(request: AppendRequest) -> AppendRejectedError | None:
    """Why PostgreSQL cannot hold a request's names (its text holds no NUL)."""
    if "\x00" in request.stream:
        return AppendRejectedError(f"stream {request.stream!r}: a name cannot contain NUL")
    for event in request.events:
        if "\x00" in event.event_type:
            return AppendRejectedError(f"event type {event.event_type!r} contains NUL")
    return None


def _has_ids(request: AppendRequest) -> bool:
    return any(event.event_id is not None for event in request.events)
