"""Storage backends, chosen by URL.

``memory:`` keeps events in process memory; ``sqlite:PATH`` keeps them in an
SQLite file (relative paths are relative to the working directory). A driver
is imported only when its backend is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rewind.errors import ConfigError
from rewind.storage.base import EventStore

__all__ = ["EventStore", "StorageURL", "open_store", "parse_storage_url"]


@dataclass(frozen=True, slots=True)
class StorageURL:
    """A parsed ``--storage`` value."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path is not None else f"{self.kind}:"


def parse_storage_url(url: str) -> StorageURL:
    """Parse a storage URL, raising :class:`ConfigError` naming what is wrong."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise ConfigError(f"storage URL {url!r} has no scheme; use memory: or sqlite:PATH")
    if scheme == "memory":
        if rest:
            raise ConfigError(f"storage URL {url!r}: memory: takes no path")
        return StorageURL("memory")
    if scheme == "sqlite":
        # Accept sqlite:///abs/path as well as sqlite:relative/path.
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise ConfigError(f"storage URL {url!r}: sqlite: needs a file path")
        return StorageURL("sqlite", Path(path).expanduser().absolute())
    raise ConfigError(f"storage URL {url!r}: unknown scheme {scheme!r}; use memory: or sqlite:PATH")


def open_store(url: StorageURL | str) -> EventStore:
    """Open the store a URL names, creating it if needed."""
    parsed = parse_storage_url(url) if isinstance(url, str) else url
    if parsed.kind == "memory":
        from rewind.storage.memory import MemoryStore

        return MemoryStore()
    from rewind.storage.sqlite import SQLiteStore

    assert parsed.path is not None
    return SQLiteStore(parsed.path)
