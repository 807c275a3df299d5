"""The PostgreSQL store's commit announcements: one NOTIFY per committed append
transaction, on its schema's channel, heard through :meth:`commit_wakeup_fd`."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from rewind.model import ANY_VERSION, AppendRequest, NewEvent
from rewind.storage import open_store
from rewind.storage.base import EventStore
from rewind.storage.memory import MemoryStore
from rewind.storage.postgres_listen import notify_channel
from tests import postgres_support
from tests.postgres_support import store_url


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_support.fresh_schema("n") as name:
        yield name


@pytest.fixture
def stores(schema: str) -> Iterator[tuple[EventStore, EventStore]]:
    first = open_store(store_url(schema))
    second = open_store(store_url(schema))
    yield first, second
    first.close()
    second.close()


def _request(stream: str, *payloads: bytes, expected_version: int = ANY_VERSION) -> AppendRequest:
    return AppendRequest(stream, tuple(NewEvent(p) for p in payloads), expected_version)


def _readable(store: EventStore, timeout_s: float) -> bool:
    fd = store.commit_wakeup_fd()
    assert fd is not None
    ready, _, _ = select.select([fd], [], [], timeout_s)
    return bool(ready)


@contextmanager
def _listening(channel: str) -> Iterator[psycopg.Connection[Any]]:
    with postgres_support.admin() as db:
        db.execute(f'LISTEN "{channel}"')
        yield db


def test_one_notification_per_transaction_naming_the_new_head(schema: str) -> None:
    with open_store(store_url(schema)) as store, _listening(notify_channel(schema)) as db:
        store.append([_request("a", b"1", b"2"), _request("b", b"3"), _request("c", b"4")])
        # Refused: nothing is stored, and nothing is announced.
        store.append([_request("a", b"5", expected_version=7)])
        notices = list(db.notifies(timeout=0.5))
    assert [n.payload for n in notices] == ["4"]


def test_the_other_store_hears_a_commit_and_its_own_costs_no_read(
    stores: tuple[EventStore, EventStore],
) -> None:
    first, second = stores
    second.take_commit_wakeups(0)  # the fresh connection's "may have missed some"
    assert not second.take_commit_wakeups(0)
    first.append([_request("a", b"1", b"2")])
    assert _readable(second, 2.0)
    assert second.take_commit_wakeups(0)  # position 2 is news to a reader at 0
    first.append([_request("a", b"3")])
    assert _readable(second, 2.0)
    assert not second.take_commit_wakeups(3)  # a reader at 3 has seen it
    # The writer hears itself too; a caller that broadcast position 3 reads nothing.
    first.take_commit_wakeups(0)
    assert not first.take_commit_wakeups(3)


def test_stores_in_other_schemas_are_not_woken(schema: str) -> None:
    with (
        postgres_support.fresh_schema("o") as other,
        open_store(store_url(schema)) as writer,
        open_store(store_url(other)) as elsewhere,
    ):
        elsewhere.take_commit_wakeups(0)
        writer.append([_request("a", b"1")])
        time.sleep(0.3)
        assert not elsewhere.take_commit_wakeups(0)
    assert notify_channel(schema) != notify_channel(other)
    assert len(notify_channel("x" * 63).encode()) <= 63


def test_a_closed_store_and_other_backends_offer_no_wakeups(schema: str) -> None:
    store = open_store(store_url(schema))
    assert store.commit_wakeup_fd() is not None
    store.close()
    assert store.commit_wakeup_fd() is None
    assert not store.take_commit_wakeups(0)
    with MemoryStore() as memory:
        assert memory.commit_wakeup_fd() is None
        assert not memory.take_commit_wakeups(0)
