"""The interface every storage backend implements.

Backends convert their driver's exceptions into :mod:`rewind.errors` types at
this boundary, so the server never sees ``sqlite3`` or ``psycopg`` errors.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence

from rewind.model import AppendRequest, RecordedEvent


class EventStore(ABC):
    """An append-only log of events, ordered by global position.

    Positions start at 1 and grow by one per event in commit order. Stream
    versions start at 0 and grow by one per event within a stream.

    One thread may append while another reads: a read sees every append that
    returned before it started, and never part of one.
    """

    kind: str
    """Short backend name (``memory``, ``sqlite``) for logs and server info."""

    durable: bool
    """Whether a returned :meth:`append` survives a crash of the process."""

    @abstractmethod
    def append(self, requests: Sequence[AppendRequest]) -> list[tuple[RecordedEvent, ...]]:
        """Commit every request in one transaction and return what was stored.

        The result has one tuple per request, in order. Events without an id
        get a fresh one (:data:`~rewind.model.new_event_id`). Either everything is
        committed (durably, for a durable store) before this returns, or
        :class:`~rewind.errors.StorageError` is raised and nothing is.
        """

    @abstractmethod
    def read_all(
        self, *, after: int = 0, through: int | None = None, limit: int
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events with ``after < position <= through``, in order.

        ``through=None`` means no upper bound.
        """

    @abstractmethod
    def position_of(self, event_id: uuid.UUID) -> int | None:
        """Return the global position of ``event_id``, or ``None`` if it is not stored."""

    @abstractmethod
    def last_event(self) -> RecordedEvent | None:
        """Return the event with the highest position, or ``None`` for an empty store."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources. Idempotent."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
