"""Storage backends, chosen by URL.

``memory:`` keeps events in process memory; ``sqlite:PATH`` keeps them in an
SQLite file (relative paths are relative to the working directory);
``postgresql://user@host:port/database`` (or ``postgres://…``) keeps them in a
PostgreSQL database, in the schema ``?schema=NAME`` names (``rewind`` by
default). A driver is imported only when its backend is chosen.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from rewind.errors import ConfigError
from rewind.storage.base import EventStore

__all__ = ["EventStore", "StorageURL", "open_store", "parse_storage_url"]

_SCHEMES = "memory:, sqlite:PATH or postgresql://USER@HOST:PORT/DATABASE"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class StorageURL:
    """A parsed ``--storage`` value.

    For PostgreSQL, ``conninfo`` is the URL handed to the driver (without
    Rewind's own ``schema`` parameter) and ``schema`` the schema to use.
    """

    kind: str
    path: Path | None = None
    conninfo: str | None = None
    schema: str | None = None

    def __str__(self) -> str:
        if self.conninfo is not None:
            # Logged in the ready line, so a password never appears in it.
            separator = "&" if "?" in self.conninfo else "?"
            schema = urllib.parse.quote(self.schema or "", safe="")
            return _without_password(f"{self.conninfo}{separator}schema={schema}")
        return f"{self.kind}:{self.path}" if self.path is not None else f"{self.kind}:"


def parse_storage_url(url: str) -> StorageURL:
    """Parse a storage URL, raising :class:`ConfigError` naming what is wrong."""
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise ConfigError(f"storage URL {url!r} has no scheme; use {_SCHEMES}")
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
    if scheme in _POSTGRES_SCHEMES:
        return _parse_postgres_url(url, rest)
    raise ConfigError(f"storage URL {url!r}: unknown scheme {scheme!r}; use {_SCHEMES}")


def _parse_postgres_url(url: str, rest: str) -> StorageURL:
    """Split Rewind's ``schema`` parameter off a PostgreSQL URL.

    Everything else (hosts, ports, database, ``sslmode``, ``connect_timeout``,
    ``application_name``…) is the driver's to read; it names any mistake when
    the store is opened.
    """
    from rewind.storage.postgres_schema import DEFAULT_SCHEMA, schema_problem

    shown = _without_password(url)
    if not rest.startswith("//"):
        raise ConfigError(f"storage URL {shown!r}: expected postgresql://USER@HOST:PORT/DATABASE")
    base, _, query = rest.partition("?")
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigError(f"storage URL {shown!r}: bad query string: {exc}") from None
    schemas = [value for key, value in pairs if key == "schema"]
    if len(schemas) > 1:
        raise ConfigError(f"storage URL {shown!r}: schema is given {len(schemas)} times")
    schema = schemas[0] if schemas else DEFAULT_SCHEMA
    problem = schema_problem(schema)
    if problem is not None:
        raise ConfigError(f"storage URL {shown!r}: schema {schema!r} {problem}")
    others = urllib.parse.urlencode(
        [(key, value) for key, value in pairs if key != "schema"], quote_via=urllib.parse.quote
    )
    conninfo = f"postgresql:{base}" + (f"?{others}" if others else "")
    return StorageURL("postgresql", conninfo=conninfo, schema=schema)


# user:password@ in the authority, and a password=… query parameter.
_PASSWORD_IN_AUTHORITY = re.compile(r"^([a-z]+://[^/?#@:]*):[^/?#@]*@")
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*")


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    url = _PASSWORD_IN_AUTHORITY.sub(r"\1:***@", url)
    return _PASSWORD_PARAMETER.sub(r"\1***", url)


def open_store(url: StorageURL | str) -> EventStore:
    """Open the store a URL names, creating it if needed."""
    parsed = parse_storage_url(url) if isinstance(url, str) else url
    if parsed.kind == "memory":
        from rewind.storage.memory import MemoryStore

        return MemoryStore()
    if parsed.kind == "postgresql":
        from rewind.storage.postgres import PostgresStore

        assert parsed.conninfo is not None and parsed.schema is not None
        return PostgresStore(parsed.conninfo, schema=parsed.schema)
    from rewind.storage.sqlite import SQLiteStore

    assert parsed.path is not None
    return SQLiteStore(parsed.path)
