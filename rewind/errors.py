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


class UnknownEventError(RewindError):
    """An event id was given that the store does not hold."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"unknown event id {event_id}")
        self.event_id = event_id
