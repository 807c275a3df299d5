"""Parsing ``postgresql://`` storage URLs: no server needed."""

from __future__ import annotations

import pytest

from rewind.errors import ConfigError
from rewind.storage import StorageURL, parse_storage_url
from rewind.storage.postgres_schema import lock_key, quote_identifier


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_schemes_name_the_postgresql_backend(scheme: str) -> None:
    parsed = parse_storage_url(f"{scheme}://rewind@db.example:5433/events")
    assert parsed == StorageURL(
        "postgresql", conninfo="postgresql://rewind@db.example:5433/events", schema="rewind"
    )


def test_the_schema_parameter_is_rewinds_and_the_rest_goes_to_the_driver() -> None:
    parsed = parse_storage_url(
        "postgresql://u@h/db?sslmode=require&schema=tenant_7&application_name=api"
    )
    assert parsed.schema == "tenant_7"
    assert parsed.conninfo == "postgresql://u@h/db?sslmode=require&application_name=api"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h:5432/db",
        "postgresql:///db?schema=odd%20name&sslmode=require",
        "postgresql://u@h/db?options=-c%20synchronous_commit%3Don",
    ],
)
def test_what_the_ready_line_shows_parses_back_to_the_same_store(url: str) -> None:
    parsed = parse_storage_url(url)
    assert parse_storage_url(str(parsed)) == parsed


def test_a_schema_name_is_taken_literally() -> None:
    parsed = parse_storage_url("postgresql:///db?schema=Odd%20%22Name%22")
    assert parsed.schema == 'Odd "Name"'
    assert quote_identifier(parsed.schema) == '"Odd ""Name"""'


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql:db", "expected postgresql://USER@HOST:PORT/DATABASE"),
        ("postgresql://h/db?schema=", "schema '' is empty"),
        ("postgresql://h/db?schema=a&schema=b", "schema is given 2 times"),
        (f"postgresql://h/db?schema={'x' * 64}", "longer than 63 bytes"),
        ("postgresql://h/db?novalue", "bad query string"),
        ("mysql://h/db", "use memory:, sqlite:PATH or postgresql://"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match="storage URL") as raised:
        parse_storage_url(url)
    assert message in str(raised.value)


def test_passwords_never_show() -> None:
    parsed = parse_storage_url("postgresql://rewind:s3cret@h:5432/db?schema=x")
    assert "s3cret" not in str(parsed)
    assert str(parsed) == "postgresql://rewind:***@h:5432/db?schema=x"
    in_query = parse_storage_url("postgresql://h/db?password=s3cret&sslmode=require")
    assert str(in_query) == "postgresql://h/db?password=***&sslmode=require&schema=rewind"
    with pytest.raises(ConfigError) as raised:
        parse_storage_url("postgresql://rewind:s3cret@h/db?schema=")
    assert "s3cret" not in str(raised.value)


def test_each_schema_has_its_own_lock_and_every_server_computes_the_same() -> None:
    assert lock_key("rewind") == lock_key("rewind")
    assert lock_key("rewind") != lock_key("rewind_2")
    for schema in ("rewind", "x", "ünïcode", "a" * 63):
        first, second = lock_key(schema)
        assert first == 0x52574E44
        assert -(2**31) <= second < 2**31  # the two-int4 form of pg_advisory_xact_lock
