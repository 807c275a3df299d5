"""The PostgreSQL store's listening connection: it hears other servers' commits.

Every append transaction that stores events sends one ``NOTIFY`` on the
schema's channel (see :func:`notify_channel`), carrying the new head
position; PostgreSQL delivers it when, and only if, the transaction commits.
:class:`CommitListener` keeps one autocommit connection that ``LISTEN``\\ s on
that channel, and whose socket the server's loop watches, so a server learns
of another's commit as soon as it is visible instead of at its next poll.

Notifications are a shortcut, never the only way: a listener that lost its
connection (and may have missed some) says so once it is back, and the
server goes on polling the store at a slower pace in any case.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import psycopg
from psycopg.rows import TupleRow

from rewind.errors import StorageError
from rewind.storage.postgres_schema import quote_identifier

__all__ = ["MAX_RECONNECT_INTERVAL_S", "RECONNECT_INTERVAL_S", "CommitListener", "notify_channel"]

log = logging.getLogger("rewind.storage")

Connection = psycopg.Connection[TupleRow]

RECONNECT_INTERVAL_S = 1.0
"""Time before the first attempt to open a lost listening connection again."""

MAX_RECONNECT_INTERVAL_S = 30.0
"""Longest time between two attempts: each failed one doubles the wait up to this.

An attempt runs on the server's loop and may block it for up to the connect
timeout when the host does not answer, so a long outage must not cost that often.
"""

_UNKNOWN_POSITION = 2**63 - 1
"""What a notification whose payload is not a position stands for: anything may be new."""


def notify_channel(schema: str) -> str:
    """The notification channel of ``schema``'s store.

    Derived from the schema, so servers on stores in other schemas of the
    same database are not woken; hashed, because a channel name is limited
    to 63 bytes and a schema name may use all of them.
    """
    return "rewind_commits_" + hashlib.sha256(schema.encode("utf-8")).hexdigest()[:24]


class CommitListener:
    """One connection listening for the commits of one schema's store.

    Used by one thread (the server's loop). :meth:`fileno` opens the
    connection when there is none (waiting :data:`RECONNECT_INTERVAL_S`
    after a loss, and twice as long after each failed attempt);
    :meth:`take` reads what arrived without blocking.
    """

    def __init__(self, connect: Callable[[], Connection], channel: str) -> None:
        self._connect = connect
        self._listen = f"LISTEN {quote_identifier(channel)}"
        self._db: Connection | None = None
        self._retry_at = 0.0
        self._retry_delay = RECONNECT_INTERVAL_S
        self._missed = False
        self._down_reported = False
        self._closed = False

    def fileno(self) -> int | None:
        """The socket to watch for notifications, or ``None`` while there is no connection."""
        if self._db is None and not self._closed and time.monotonic() >= self._retry_at:
            self._open()
        return None if self._db is None else self._db.fileno()

    def take(self, after: int) -> bool:
        """Drain the notifications that arrived; whether one announced a position past ``after``.

        Also ``True`` once after the connection was (re)opened, since
        commits made while there was none were not announced to it.
        """
        db = self._db
        if db is not None:
            newest = 0
            try:
                db.pgconn.consume_input()
                while (notice := db.pgconn.notifies()) is not None:
                    newest = max(newest, _position(notice.extra))
                if db.pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the connection is closed")
            except psycopg.Error as exc:
                log.warning(
                    "lost the connection listening for other servers' commits (%s); "
                    "polling the store until it is back",
                    " ".join(str(exc).split()) or type(exc).__name__,
                )
                self._drop()
                return True  # what arrived before the loss may be unread
            if newest > after:
                self._missed = False
                return True
        missed, self._missed = self._missed, False
        return missed

    def close(self) -> None:
        """Close the connection for good."""
        self._closed = True
        self._drop()

    def _open(self) -> None:
        db: Connection | None = None
        try:
            db = self._connect()
            db.execute(self._listen)
        except (StorageError, psycopg.Error) as exc:
            if db is not None:
                db.close()
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, MAX_RECONNECT_INTERVAL_S)
            if not self._down_reported:
                self._down_reported = True
                log.warning(
                    "cannot listen for other servers' commits (%s); polling the store meanwhile",
                    " ".join(str(exc).split()) or type(exc).__name__,
                )
            return
        if self._down_reported:
            self._down_reported = False
            log.info("listening for other servers' commits again")
        self._db = db
        self._missed = True
        self._retry_delay = RECONNECT_INTERVAL_S

    def _drop(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()
        self._retry_at = time.monotonic() + RECONNECT_INTERVAL_S
        self._down_reported = True


def _position(payload: bytes) -> int:
    try:
        return int(payload)
    except ValueError:
        return _UNKNOWN_POSITION
