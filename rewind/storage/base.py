"""The interface every storage backend implements.

Backends convert their driver's exceptions into :mod:`rewind.errors` types at
this boundary, so the server never sees ``sqlite3`` or ``psycopg`` errors.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import TypeAlias

from rewind.errors import AppendRejectedError
from rewind.model import AppendRequest, RecordedEvent, StreamInfo

AppendResult: TypeAlias = tuple[RecordedEvent, ...] | AppendRejectedError
"""What one request of a group commit came to: its stored events, or why it was refused."""


class EventStore(ABC):
    """An append-only log of events, ordered by global position.

    Positions start at 1 and grow by one per event in commit order. Stream
    versions start at 0 and grow by one per event within a stream. Commit
    timestamps never decrease as positions grow. Event ids are unique.

    One thread may append while another reads: a read sees every append that
    returned before it started, and never part of one.
    """

    kind: str
    """Short backend name (``memory``, ``sqlite``) for logs and server info."""

    durable: bool
    """Whether a returned :meth:`append` survives a crash of the process."""

    commits_wait_on_others: bool = False
    """Whether a commit can wait on other machines or processes (network, shared locks).

    The server then never commits on its own loop, where such a wait (a
    database out of reach, another server holding the append lock) would
    hold up every other request too.
    """

    announces_commits: bool = False
    """Whether :meth:`commit_wakeup_fd` can ever give a socket to watch.

    The server then keeps polling it alongside its request socket; for a
    store that never announces, it may wait on the request socket alone.
    """

    write_failure: str | None = None
    """Why the store stopped accepting appends, or ``None`` while it accepts them.

    A store that cannot know what an I/O error left on disk stops writing
    (raising :class:`~rewind.errors.WritesStoppedError`) instead of guessing;
    reads go on. A full disk is not such an error: it only refuses the commit
    (:class:`~rewind.errors.StorageFullError`).
    """

    @abstractmethod
    def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        """Commit a group of requests in one transaction; each is accepted or refused alone.

        The result has one entry per request, in order: the events it stored,
        or the :class:`~rewind.errors.AppendRejectedError` saying why it
        stored nothing. Requests are decided in order, each seeing what the
        earlier accepted ones of the group stored.

        * A request whose events all carry ids that are already stored, in its
          stream, at consecutive versions, in the same order and with the same
          data, type and metadata, is a re-send: it stores nothing and returns
          the original events, whatever its expected version.
        * Otherwise, an id that is already stored (or that appears twice in
          the request) refuses it with :class:`~rewind.errors.EventIdConflictError`.
        * Otherwise its ``expected_version`` must hold against the stream's
          last version, or it is refused with
          :class:`~rewind.errors.WrongExpectedVersionError`.

        Events without an id get a fresh one (:data:`~rewind.model.new_event_id`).
        Either the whole group is committed (durably, for a durable store)
        before this returns, or :class:`~rewind.errors.StorageError` is raised
        and nothing is: :class:`~rewind.errors.StorageFullError` when space
        ran out, :class:`~rewind.errors.WritesStoppedError` when the store
        stopped writing (see :attr:`write_failure`).
        """

    @abstractmethod
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
        """Return up to ``limit`` events with ``after < position <= through``.

        Forwards in ascending position order; ``backwards`` in descending
        order, from ``through`` down. ``through=None`` means no upper bound.
        ``stream_prefix`` keeps only events of streams whose name starts with
        it; ``event_types`` keeps only events of those types (an empty
        collection keeps none). ``limit`` counts the events returned, that is
        after filtering.
        """

    @abstractmethod
    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        limit: int,
        backwards: bool = False,
    ) -> list[RecordedEvent]:
        """Return up to ``limit`` events of one stream, in version order.

        Forwards: versions ``>= from_version`` (``None``: from 0), ascending.
        Backwards: versions ``<= from_version`` (``None``: from the last),
        descending. An unknown stream has no events.
        """

    @abstractmethod
    def position_of(self, event_id: uuid.UUID) -> int | None:
        """Return the global position of ``event_id``, or ``None`` if it is not stored."""

    @abstractmethod
    def position_at(self, timestamp_us: int) -> int | None:
        """Return the position of the first event committed at or after ``timestamp_us``.

        ``None`` when every event was committed earlier (or there is none).
        """

    @abstractmethod
    def last_event(self) -> RecordedEvent | None:
        """Return the event with the highest position, or ``None`` for an empty store."""

    @abstractmethod
    def stream_info(self, stream: str) -> StreamInfo | None:
        """Return what is known about ``stream``, or ``None`` if it has no events."""

    @abstractmethod
    def list_streams(self, *, after: str | None = None, limit: int) -> list[StreamInfo]:
        """Return up to ``limit`` streams with names greater than ``after``, by name.

        Page through every stream by passing the last name of one page as
        ``after`` of the next.
        """

    def commit_wakeup_fd(self) -> int | None:
        """A socket that turns readable when another writer may have committed, or ``None``.

        For stores several servers share: the server watches it and calls
        :meth:`take_commit_wakeups` when it is readable, instead of waiting
        for its next poll. The socket may change (a connection opened
        again), so the caller asks again after each turn; ``None`` means
        there is none (now, or ever: the default), and polling must do.
        """
        return None

    def take_commit_wakeups(self, after: int) -> bool:
        """Without blocking, take what arrived on :meth:`commit_wakeup_fd`.

        ``True`` when a commit beyond position ``after`` was announced, or
        announcements may have been missed; the caller should then read what
        is new. ``False`` when nothing it has not seen was announced.
        """
        return False

    @abstractmethod
    def close(self) -> None:
        """Release the store's resources. Idempotent."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
