"""PostgreSQL connections as :mod:`rewind.storage.postgres` uses them.

Opening a connection again after it is lost, telling a lost connection from
a failed statement, and turning driver errors into Rewind's storage errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import RowFactory, TupleRow

from rewind.errors import StorageError, StorageFullError, StoreUnavailableError
from rewind.model import RecordedEvent
from rewind.storage.base import AppendResult

Connection = psycopg.Connection[TupleRow]
RowT = TypeVar("RowT")

# Used unless the URL says otherwise: a server never hangs for long on a dead
# host, and Rewind's sessions are easy to find in pg_stat_activity.
CONNECTION_DEFAULTS = {"connect_timeout": "5", "application_name": "rewind"}

# SQLSTATEs of a lost or closing connection: class 08 (connection exception)
# and the server shutting down or restarting (57P01-57P03).
_CONNECTION_LOST_STATES = ("08", "57P01", "57P02", "57P03")
_DISK_FULL = "53100"


def one_line(error: BaseException) -> str:
    """A driver message on one line (libpq's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def connection_lost(error: psycopg.Error, db: Connection) -> bool:
    """Whether ``error`` means the connection is gone (rather than the statement failing)."""
    state = error.sqlstate or ""
    return db.broken or db.closed or state.startswith(_CONNECTION_LOST_STATES)


class Link:
    """One connection, used by one thread, opened again by the first call after it is lost."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._db: Connection | None = None

    def get(self) -> tuple[Connection, bool]:
        """The connection, and whether it was opened just now."""
        if self._db is not None and not self._db.closed:
            return self._db, False
        self._db = self._connect()
        return self._db, True

    def drop(self) -> None:
        """Close the connection (if it is not already gone); the next call opens another."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()


class Lost(StoreUnavailableError):
    """The connection was lost before the transaction could commit: nothing is stored."""


class CommitUnknown(Exception):
    """The connection was lost while COMMIT was under way: it may or may not have happened.

    ``probe`` is the first event the transaction inserted (``None`` if it
    inserted none); finding it stored, exactly so, means the commit happened.
    """

    def __init__(
        self, error: psycopg.Error, results: list[AppendResult], probe: RecordedEvent | None
    ) -> None:
        super().__init__(one_line(error))
        self.message = one_line(error)
        self.results = results
        self.probe = probe


def append_failure(error: psycopg.Error, *, lost: bool) -> StorageError:
    """The storage error a failed append transaction (that did not commit) stands for."""
    message = one_line(error)
    if lost:
        return Lost(f"PostgreSQL unreachable: {message}; nothing was stored")
    if error.sqlstate == _DISK_FULL:
        return StorageFullError(f"storage full: {message}; nothing was stored")
    return StorageError(f"append failed: {message}; nothing was stored")


def roll_back(db: Connection) -> None:
    """End a failed transaction; a connection that cannot is closed, and reopened later."""
    if db.closed or db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        db.execute("ROLLBACK")
    except psycopg.Error:
        db.close()


def fetch(db: Connection, sql: str, params: Sequence[Any], rows: RowFactory[RowT]) -> list[RowT]:
    """Run a query with binary results, its rows built by ``rows``."""
    with db.cursor(row_factory=rows) as cursor:
        return cursor.execute(sql, params, binary=True).fetchall()


def show(db: Connection, setting: str) -> str:
    """The value of a server setting, as ``SHOW`` gives it."""
    row = db.execute(f"SHOW {setting}").fetchone()
    return "" if row is None else str(row[0])
