"""What the PostgreSQL store does beyond the conformance suite, against a real server.

Its schema and migrations, the durability check, one global order across
several stores sharing a schema, and what lost connections, an unknown COMMIT
outcome and server-side failures turn into. Each test works in a schema of
its own (see :mod:`tests.postgres_support`).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from rewind.errors import (
    AppendRejectedError,
    StorageError,
    StorageFullError,
    StoreUnavailableError,
)
from rewind.model import AppendRequest, NewEvent, RecordedEvent
from rewind.storage import open_store
from rewind.storage.base import AppendResult, EventStore
from rewind.storage.postgres import PostgresStore
from rewind.storage.postgres_connection import CommitUnknown
from rewind.storage.postgres_schema import SCHEMA_VERSION
from tests import postgres_support
from tests.postgres_support import sql, store_url


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_support.fresh_schema("u") as name:
        yield name


@pytest.fixture
def url(schema: str) -> str:
    # The schema's name as application name singles out this test's sessions.
    return store_url(schema, application_name=schema)


@pytest.fixture
def store(url: str) -> Iterator[EventStore]:
    opened = open_store(url)
    yield opened
    opened.close()


def one(stream: str, *payloads: bytes, ids: bool = False) -> AppendRequest:
    return AppendRequest(
        stream, tuple(NewEvent(p, uuid.uuid4() if ids else None) for p in payloads)
    )


def accepted(result: AppendResult) -> tuple[RecordedEvent, ...]:
    assert not isinstance(result, AppendRejectedError), result
    return result


def terminate_sessions(application_name: str) -> int:
    """End every session of ``application_name`` from outside, as a restart would."""
    rows = sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (application_name,),
    )
    return len(rows)


# Schema ---------------------------------------------------------------------------------


def test_a_fresh_schema_is_created_and_stamped(store: EventStore, schema: str) -> None:
    assert sql(f'SELECT version FROM "{schema}".schema_version') == [(SCHEMA_VERSION,)]
    tables = sql("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,))
    assert tables == [("events",), ("schema_version",)]


def test_an_older_schema_is_migrated_on_open(url: str, schema: str) -> None:
    """A schema stamped with an older version gets the missing migrations, in order."""
    sql(f'CREATE SCHEMA "{schema}"')
    sql(f'CREATE TABLE "{schema}".schema_version (version integer NOT NULL)')
    sql(f'INSERT INTO "{schema}".schema_version VALUES (0)')
    with open_store(url) as store:
        accepted(store.append([one("s", b"x")])[0])
    assert sql(f'SELECT version FROM "{schema}".schema_version') == [(SCHEMA_VERSION,)]


def test_a_newer_schema_version_is_refused(url: str, schema: str) -> None:
    open_store(url).close()
    sql(f'UPDATE "{schema}".schema_version SET version = %s', (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreUnavailableError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_store(url)


def test_a_schema_holding_other_tables_is_refused(url: str, schema: str) -> None:
    sql(f'CREATE SCHEMA "{schema}"')
    sql(f'CREATE TABLE "{schema}".orders (id integer)')
    with pytest.raises(StoreUnavailableError, match="holds tables but is not a Rewind store"):
        open_store(url)


def test_servers_starting_together_create_the_schema_once(url: str, schema: str) -> None:
    opened: list[EventStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(open_store(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert errors == []
        assert len(opened) == 4
        assert sql(f'SELECT version FROM "{schema}".schema_version') == [(SCHEMA_VERSION,)]
    finally:
        for each in opened:
            each.close()


def test_two_schemas_are_two_stores(schema: str) -> None:
    with postgres_support.fresh_schema("v") as other:
        first, second = open_store(store_url(schema)), open_store(store_url(other))
        try:
            first.append([one("s", b"a", b"b")])
            second.append([one("s", b"c")])
            assert [e.data for e in first.read_all(limit=10)] == [b"a", b"b"]
            assert [(e.position, e.data) for e in second.read_all(limit=10)] == [(1, b"c")]
        finally:
            first.close()
            second.close()


# Durability -----------------------------------------------------------------------------


def test_synchronous_commit_off_is_refused(schema: str) -> None:
    url = store_url(schema, options="-c%20synchronous_commit%3Doff")
    with pytest.raises(StoreUnavailableError, match="synchronous_commit is 'off'") as raised:
        open_store(url)
    assert "ALTER ROLE" in str(raised.value)


@pytest.mark.parametrize("setting", ["local", "remote_write", "remote_apply"])
def test_other_synchronous_settings_are_durable_enough(schema: str, setting: str) -> None:
    with open_store(store_url(schema, options=f"-c%20synchronous_commit%3D{setting}")) as store:
        accepted(store.append([one("s", b"x")])[0])


def _writer_setting(store: EventStore, name: str) -> str:
    assert isinstance(store, PostgresStore)
    writer, _ = store._writer.get()
    [[value]] = writer.execute(f"SHOW {name}").fetchall()
    return str(value)


def test_a_writer_stuck_inside_an_append_cannot_hold_the_lock_for_long(
    store: EventStore, schema: str
) -> None:
    """A writing session idle inside its transaction (its server frozen or cut off) is ended
    by PostgreSQL after 30 s, which frees the lock; an operator's own value stays."""
    assert _writer_setting(store, "idle_in_transaction_session_timeout") == "30s"
    own = store_url(schema, options="-c%20idle_in_transaction_session_timeout%3D5min")
    with open_store(own) as other:
        assert _writer_setting(other, "idle_in_transaction_session_timeout") == "5min"


def test_an_unreachable_server_is_named(schema: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:1/test?schema={schema}&connect_timeout=2"
    with pytest.raises(StoreUnavailableError, match="cannot connect to PostgreSQL"):
        open_store(url)


# One global order -----------------------------------------------------------------------


def test_concurrent_stores_keep_one_gap_free_order(url: str) -> None:
    """Three stores (three servers, as far as PostgreSQL can tell) append at once while a
    fourth polls the log: it must never see a position before every lower one."""
    writers = [open_store(url) for _ in range(3)]
    reader = open_store(url)
    stop = threading.Event()
    failures: list[str] = []
    acknowledged: list[RecordedEvent] = []
    seen: list[RecordedEvent] = []

    def write(store: EventStore, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for turn in range(40):
                group = [
                    one(rng.choice(["a", "b", f"own-{seed}"]), *[b"e"] * rng.randint(1, 5))
                    for _ in range(rng.randint(1, 4))
                ]
                for result in store.append(group):
                    acknowledged.extend(accepted(result))
                if turn % 7 == 0:
                    time.sleep(0.001)  # let the others overtake now and then
        except BaseException as exc:
            failures.append(f"writer {seed}: {exc!r}")

    def poll() -> None:
        while not stop.is_set() or len(seen) < len(acknowledged):
            batch = reader.read_all(after=len(seen), limit=1000)
            positions = [event.position for event in batch]
            expected = list(range(len(seen) + 1, len(seen) + 1 + len(batch)))
            if positions != expected:
                failures.append(f"after {len(seen)} the reader saw {positions[:5]}…")
                return
            seen.extend(batch)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(writers)]
    polling = threading.Thread(target=poll)
    polling.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stop.set()
    polling.join(60)
    try:
        assert failures == []
        assert sorted(acknowledged) == seen
        assert len(seen) > 200
        for stream in {event.stream for event in seen}:
            versions = [event.version for event in seen if event.stream == stream]
            assert versions == list(range(len(versions)))
        times = [event.recorded_at_us for event in seen]
        assert times == sorted(times)
    finally:
        for store in [*writers, reader]:
            store.close()


# Lost connections -----------------------------------------------------------------------


def test_a_lost_connection_is_replaced_by_the_next_call(store: EventStore, schema: str) -> None:
    accepted(store.append([one("s", b"before")])[0])
    assert store.last_event() is not None
    assert terminate_sessions(schema) == 2  # the writer's and the reader's
    # Both connections are gone; the next append and read open new ones.
    [after] = accepted(store.append([one("s", b"after")])[0])
    assert after.position == 2
    assert [e.data for e in store.read_all(limit=10)] == [b"before", b"after"]


@pytest.fixture
def role(schema: str) -> Iterator[str]:
    """A login role of the test's own, whose logins can be refused to fake an outage."""
    name = f"{schema}_role"
    database = sql("SELECT current_database()")[0][0]
    sql(f'CREATE ROLE "{name}" LOGIN')
    sql(f'GRANT CREATE ON DATABASE "{database}" TO "{name}"')
    try:
        yield name
    finally:
        sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        sql(f'REVOKE CREATE ON DATABASE "{database}" FROM "{name}"')
        sql(f'DROP ROLE "{name}"')


def test_calls_fail_while_postgresql_is_out_of_reach_and_succeed_after(
    schema: str, role: str
) -> None:
    with open_store(store_url(schema, user=role, application_name=schema)) as store:
        accepted(store.append([one("s", b"before")])[0])
        # An outage as the store sees it: its sessions end, and new ones are refused.
        sql(f'ALTER ROLE "{role}" NOLOGIN')
        terminate_sessions(schema)
        with pytest.raises(StoreUnavailableError, match="not permitted to log in"):
            store.append([one("s", b"during")])
        with pytest.raises(StoreUnavailableError):
            store.read_all(limit=10)
        sql(f'ALTER ROLE "{role}" LOGIN')
        [after] = accepted(store.append([one("s", b"after")])[0])
        assert after.position == 2
        assert [e.data for e in store.read_all(limit=10)] == [b"before", b"after"]


def _slow_commits(schema: str) -> None:
    """Make every COMMIT that inserted events take ten seconds (a deferred trigger)."""
    sql(
        f'CREATE FUNCTION "{schema}".slow() RETURNS trigger LANGUAGE plpgsql AS '
        "$$ BEGIN PERFORM pg_sleep(10); RETURN NULL; END $$"
    )
    sql(
        f'CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON "{schema}".events '
        f'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "{schema}".slow()'
    )


def _kill_during_commit(application_name: str, then: str | None = None) -> threading.Thread:
    """In the background: wait for a session to run COMMIT, run ``then``, kill the session."""

    def kill() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = sql(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'active' AND query = 'COMMIT'",
                (application_name,),
            )
            if rows:
                if then is not None:
                    sql(then)
                sql("SELECT pg_terminate_backend(%s)", (rows[0][0],))
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill)
    killer.start()
    return killer


def test_a_commit_cut_off_is_checked_and_reported_as_not_stored(
    store: EventStore, schema: str
) -> None:
    """The session dies while its COMMIT is running a deferred trigger, so the transaction
    is rolled back; the store finds out on a new connection that nothing was stored."""
    _slow_commits(schema)
    request = one("s", b"x", b"y", ids=True)
    killer = _kill_during_commit(schema)
    with pytest.raises(StoreUnavailableError, match="did not commit; nothing was stored"):
        store.append([request])
    killer.join(10)
    sql(f'DROP TRIGGER slow ON "{schema}".events')
    assert store.read_all(limit=10) == []
    [stored] = store.append([request])
    assert [e.position for e in accepted(stored)] == [1, 2]


def test_a_commit_cut_off_while_postgresql_is_out_of_reach_has_an_unknown_outcome(
    schema: str, role: str
) -> None:
    """When the question whether the commit happened cannot be asked, the error says the
    outcome is unknown, and sending the append again with the same ids is safe."""
    with open_store(store_url(schema, user=role, application_name=schema)) as store:
        accepted(store.append([one("s", b"first")])[0])
        _slow_commits(schema)
        request = one("s", b"x", b"y", ids=True)
        killer = _kill_during_commit(schema, then=f'ALTER ROLE "{role}" NOLOGIN')
        with pytest.raises(StorageError, match="during COMMIT") as raised:
            store.append([request])
        killer.join(10)
        assert not isinstance(raised.value, StoreUnavailableError)  # not "nothing was stored"
        assert "whether this append was stored is unknown" in str(raised.value)
        assert "same event ids is safe" in str(raised.value)
        sql(f'ALTER ROLE "{role}" LOGIN')
        sql(f'DROP TRIGGER slow ON "{schema}".events')
        [stored] = store.append([request])
        [again] = store.append([request])
        assert accepted(stored) == accepted(again)
        assert [e.data for e in store.read_all(limit=10)] == [b"first", b"x", b"y"]


def test_settling_a_lost_commit_tells_stored_from_not_stored(store: EventStore) -> None:
    """Whether a COMMIT without a reply happened is read back from the store, the first
    inserted event compared whole (the same id stored otherwise since is not this commit)."""
    assert isinstance(store, PostgresStore)
    results = store.append([one("s", b"x", ids=True)])
    [[event]] = results
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    assert store._settle(CommitUnknown(lost, results, event)) == results
    elsewhere = event._replace(position=event.position + 1)
    with pytest.raises(StoreUnavailableError, match="did not commit; nothing was stored"):
        store._settle(CommitUnknown(lost, results, elsewhere))


def _failing_inserts(schema: str, errcode: str) -> None:
    sql(
        f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS '
        f"$$ BEGIN RAISE EXCEPTION 'refused by trigger' USING ERRCODE = '{errcode}'; END $$"
    )
    sql(
        f'CREATE TRIGGER refuse BEFORE INSERT ON "{schema}".events '
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
    )


@pytest.mark.parametrize(
    ("errcode", "error", "message"),
    [
        ("disk_full", StorageFullError, "storage full: refused by trigger"),
        ("P0001", StorageError, "append failed: refused by trigger"),
    ],
)
def test_a_failed_transaction_stores_nothing_and_the_store_goes_on(
    store: EventStore, schema: str, errcode: str, error: type[StorageError], message: str
) -> None:
    accepted(store.append([one("s", b"a")])[0])
    _failing_inserts(schema, errcode)
    with pytest.raises(error, match=message) as raised:
        store.append([one("s", b"b"), one("t", b"c")])
    assert not isinstance(raised.value, StoreUnavailableError)
    assert "nothing was stored" in str(raised.value)
    sql(f'DROP TRIGGER refuse ON "{schema}".events')
    [after] = accepted(store.append([one("s", b"d")])[0])
    assert (after.position, after.version) == (2, 1)


def test_names_postgresql_cannot_hold_are_refused_alone(store: EventStore) -> None:
    bad_stream, bad_type, good = store.append(
        [
            one("nul\x00stream", b"a"),
            AppendRequest("s", (NewEvent(b"b", event_type="T\x00"),)),
            one("s", b"c"),
        ]
    )
    assert isinstance(bad_stream, AppendRejectedError)
    assert isinstance(bad_type, AppendRejectedError)
    assert [e.position for e in accepted(good)] == [1]
    assert store.read_stream("nul\x00stream", limit=10) == []
    assert store.stream_info("s\x00") is None
    assert store.read_all(limit=10, stream_prefix="s\x00") == []
    assert store.read_all(limit=10, event_types=["\x00"]) == []
    assert [i.stream for i in store.list_streams(after="r\x00z", limit=10)] == ["s"]
