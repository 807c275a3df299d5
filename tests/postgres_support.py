"""A PostgreSQL server for tests: reachability, and a schema of its own per test.

Tests find the server at ``REWIND_TEST_POSTGRES_URL`` (default: the local
``postgresql://postgres@127.0.0.1:5432/test``). Each test gets a schema with a
name no other test (or test run) uses, and drops it afterwards, so tests never
see each other's events. Without a reachable server they skip, or fail in
strict mode (:func:`tests.support.skip_or_fail`).
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tests.support import skip_or_fail

if TYPE_CHECKING:
    import psycopg

URL_ENV = "REWIND_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    """The URL of the test database, without a schema."""
    return os.environ.get(URL_ENV, DEFAULT_URL)


@functools.cache
def _unreachable() -> str | None:
    """Why no test database can be used, or ``None`` when it can; asked once per run."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        with psycopg.connect(base_url(), connect_timeout=3) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {base_url()} ({' '.join(str(exc).split())}); set {URL_ENV}"
    return None


def require_postgres() -> None:
    """Skip (or, in strict mode, fail) the calling test when PostgreSQL cannot be used."""
    reason = _unreachable()
    if reason is not None:
        skip_or_fail(reason)


def admin() -> psycopg.Connection[Any]:
    """A new autocommit connection to the test database, for setting up and checking."""
    import psycopg

    return psycopg.connect(base_url(), autocommit=True)


def sql(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a new connection; its rows, if it returns any."""
    with admin() as db:
        cursor = db.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def unique_schema(label: str = "t") -> str:
    """A schema name no other test or run uses."""
    return f"rewind_test_{label}_{os.getpid()}_{secrets.token_hex(4)}"


def store_url(schema: str, **params: str) -> str:
    """The storage URL of ``schema`` in the test database, with extra URL parameters."""
    query = "&".join(f"{key}={value}" for key, value in {"schema": schema, **params}.items())
    separator = "&" if "?" in base_url() else "?"
    return f"{base_url()}{separator}{query}"


def drop_schema(schema: str) -> None:
    """Remove ``schema`` and everything in it, if it exists."""
    with admin() as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_schema(label: str = "t") -> Iterator[str]:
    """A new schema name for one test, dropped afterwards; skips without PostgreSQL."""
    require_postgres()
    schema = unique_schema(label)
    try:
        yield schema
    finally:
        drop_schema(schema)


@contextmanager
def login_role(*, connection_limit: int | None = None) -> Iterator[str]:
    """A login role of the test's own that may create a schema; dropped afterwards.

    Its name is also the name of the schema it will create, removed with it.
    """
    require_postgres()
    name = unique_schema("role")
    database = sql("SELECT current_database()")[0][0]
    limit = "" if connection_limit is None else f" CONNECTION LIMIT {connection_limit}"
    sql(f'CREATE ROLE "{name}" LOGIN{limit}')
    sql(f'GRANT CREATE ON DATABASE "{database}" TO "{name}"')
    try:
        yield name
    finally:
        sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        sql(f'REVOKE CREATE ON DATABASE "{database}" FROM "{name}"')
        sql(f'DROP ROLE "{name}"')
