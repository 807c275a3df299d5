"""The group committer: inline commits when idle, the writer thread otherwise, never overlapping."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rewind.model import AppendRequest, NewEvent, RecordedEvent
from rewind.server.writer import CommittedBatch, ThreadedCommitter
from rewind.storage.sqlite import SQLiteStore


@dataclass(frozen=True)
class Item:
    request: AppendRequest


def _items(stream: str, count: int) -> list[Item]:
    return [
        Item(AppendRequest(stream, (NewEvent(f"{stream}-{index}".encode()),)))
        for index in range(count)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "events.db")
    yield store
    store.close()


@pytest.fixture
def committer(store: SQLiteStore) -> Iterator[ThreadedCommitter[Item]]:
    committer: ThreadedCommitter[Item] = ThreadedCommitter(store)
    yield committer
    committer.close()


def _wait_for(committer: ThreadedCommitter[Item], items: int) -> list[CommittedBatch[Item]]:
    done: list[CommittedBatch[Item]] = []
    for _ in range(100):
        done += committer.take_completed()
        if sum(len(batch.items) for batch in done) >= items:
            return done
        committer.wait(timeout=0.1)
    raise AssertionError(f"only {len(done)} batches completed")


def _positions(batch: CommittedBatch[Item]) -> list[int]:
    assert batch.error is None
    positions = []
    for result in batch.results:
        assert isinstance(result, tuple)
        positions += [event.position for event in result if isinstance(event, RecordedEvent)]
    return positions


def test_an_idle_committer_commits_inline_on_the_callers_thread(
    committer: ThreadedCommitter[Item], store: SQLiteStore
) -> None:
    assert committer.submit(_items("a", 3), inline=True)
    # The batch is ready at once: nothing went through the writer thread.
    (batch,) = committer.take_completed()
    assert _positions(batch) == [1, 2, 3]
    assert [event.data for event in store.read_all(limit=10)] == [b"a-0", b"a-1", b"a-2"]


def test_inline_waits_its_turn_behind_a_commit_under_way(
    committer: ThreadedCommitter[Item], store: SQLiteStore
) -> None:
    # Another connection holds the write lock, so the writer thread's commit
    # stays under way until it is released.
    blocker = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        assert not committer.submit(_items("first", 2), inline=False)
        # Not inline while the thread has work: it queues behind it instead.
        assert not committer.submit(_items("second", 2), inline=True)
        assert committer.take_completed() == []
    finally:
        threading.Timer(0.2, blocker.rollback).start()
    # Whether the thread took both together or one after the other, the
    # second batch's events come after the first's.
    batches = _wait_for(committer, 4)
    positions = [position for batch in batches for position in _positions(batch)]
    assert positions == [1, 2, 3, 4]
    assert [event.stream for event in store.read_all(limit=10)] == ["first"] * 2 + ["second"] * 2
    blocker.close()


class SharedStore(SQLiteStore):
    """An SQLite store declaring that its commits can wait on others, as PostgreSQL's do."""

    commits_wait_on_others = True


def test_a_store_whose_commits_wait_on_others_always_commits_on_the_thread(
    tmp_path: Path,
) -> None:
    store = SharedStore(tmp_path / "events.db")
    committer: ThreadedCommitter[Item] = ThreadedCommitter(store)
    try:
        assert not committer.submit(_items("a", 2), inline=True)
        (batch,) = _wait_for(committer, 2)
        assert _positions(batch) == [1, 2]
    finally:
        committer.close()
        store.close()
