"""The error tree shared by storage, server and configuration.

Every error Rewind raises on purpose derives from :class:`RewindError`, so a
caller can catch them all in one place while driver exceptions (sqlite3,
psycopg, zmq) never leak through the storage boundary.
"""

from __future__ import annotations


class RewindError(Exception):
    """Base class of every error Rewind raises on purpose."""


class ConfigError(RewindError):
    """A configuration value (flag, environment variable or file key) is unusable."""


class StorageError(RewindError):
    """The store could not complete an operation; nothing was acknowledged."""


class StoreUnavailableError(StorageError):
    """The store cannot be opened: wrong file, failed integrity check, bad URL."""


class StorageFullError(StorageError):
    """The disk (or the store's size limit) is full; nothing was stored.

    Appends succeed again as soon as space is freed: the store stays writable.
    """


class WritesStoppedError(StorageError):
    """The store stopped accepting writes after an I/O error it cannot reason about.

    A failed write or sync leaves unknown what reached the disk, so guessing
    could acknowledge what is not there. Reads continue; restart the server
    once the cause is fixed (and ``rewind verify`` passes).
    """


class UnknownEventError(RewindError):
    """An event id was given that the store does not hold."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"unknown event id {event_id}")
        self.event_id = event_id


class AppendRejectedError(RewindError):
    """One append of a group commit was refused; the others are unaffected."""


class WrongExpectedVersionError(AppendRejectedError):
    """The stream was not at the version the append expected.

    ``actual`` is the stream's last version, or -1 when the stream has no events.
    """

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, actual version {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class EventIdConflictError(AppendRejectedError):
    """An event id is already stored, but not as this append would store it.

    Re-sending an identical append is not a conflict: it succeeds again with
    the original positions. Reusing an id for other data, type, metadata,
    stream or version is.
    """

    def __init__(self, event_id: str, detail: str) -> None:
        super().__init__(f"event id {event_id} is already stored {detail}")
        self.event_id = event_id


class LimitExceededError(AppendRejectedError):
    """An append breaks a configured limit (size, event count, name length); nothing was stored.

    ``limit`` is the limit it broke, in the unit the message names.
    """

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
