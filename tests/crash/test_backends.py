"""The PostgreSQL backend's final check finds each broken invariant it looks for."""

from __future__ import annotations

import uuid

import pytest

from rewind.model import RecordedEvent
from rewind.storage.postgres_schema import migrate, quote_identifier
from tests import postgres_support
from tests.crash.backends import PostgresSchema


def _events() -> list[RecordedEvent]:
    streams = ["a", "b", "a", "a"]
    versions = [0, 0, 1, 2]
    return [
        RecordedEvent(
            position,
            uuid.uuid4(),
            stream,
            version,
            1_700_000_000_000_000 + position,
            "t",
            b"",
            b"data %d" % position,
        )
        for position, (stream, version) in enumerate(zip(streams, versions, strict=True), 1)
    ]


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (None, None),
        ("DELETE FROM {s}.events WHERE position = 4", "differ from the 4 events read"),
        ("UPDATE {s}.events SET position = 9 WHERE position = 4", "without gaps"),
        ("UPDATE {s}.events SET version = 5 WHERE position = 4", "versions do not run"),
        ("UPDATE {s}.events SET recorded_at = 1 WHERE position = 4", "times decrease"),
        ("UPDATE {s}.events SET data = 'x' WHERE position = 2", "differ from the 4 events"),
        ("UPDATE {s}.schema_version SET version = 0", "schema_version holds [0]"),
    ],
)
def test_the_postgres_check_finds_what_is_broken(tamper: str | None, problem: str | None) -> None:
    events = _events()
    with postgres_support.fresh_schema("crashcheck") as schema:
        s = quote_identifier(schema)
        with postgres_support.admin() as db:
            migrate(db, schema)
            for event in events:
                db.execute(
                    f"INSERT INTO {s}.events (position, event_id, stream, version, "
                    "recorded_at, event_type, metadata, data) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    tuple(event),
                )
            if tamper is not None:
                db.execute(tamper.format(s=s))
        problems = PostgresSchema(schema).check_stored(events)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in text for text in problems), problems
