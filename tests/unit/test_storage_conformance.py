"""One behaviour for every storage backend: the conformance suite.

Each test runs against every backend. ``reopen`` gives the test the same store
after a restart where the backend has one (SQLite reopens its file; the memory
store has nothing to reopen and hands back the same object).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewind.errors import StorageError
from rewind.model import AppendRequest, NewEvent, RecordedEvent
from rewind.storage import open_store
from rewind.storage.base import EventStore


class Backend:
    """Opens, and reopens, one store of one kind."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.url = "memory:" if kind == "memory" else f"sqlite:{directory / 'events.db'}"
        self.store: EventStore = open_store(self.url)

    def reopen(self) -> EventStore:
        if self.kind != "memory":
            self.store.close()
            self.store = open_store(self.url)
        return self.store


BACKENDS = ["memory", "sqlite"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(request.param, tmp_path)
    yield opened
    opened.store.close()


def one(stream: str, *payloads: bytes, **fields: str | bytes) -> AppendRequest:
    return AppendRequest(stream, tuple(NewEvent(data=p, **fields) for p in payloads))  # type: ignore[arg-type]


def test_an_empty_store_has_nothing(backend: Backend) -> None:
    store = backend.store
    assert store.last_event() is None
    assert store.read_all(limit=10) == []
    assert store.position_of(uuid.uuid1()) is None


def test_events_without_an_id_get_a_fresh_type_1_uuid(backend: Backend) -> None:
    [stored] = backend.store.append([one("s", b"a", b"b")])
    assert all(event.event_id.version == 1 for event in stored)
    assert stored[0].event_id != stored[1].event_id


def test_positions_start_at_one_and_versions_at_zero(backend: Backend) -> None:
    [stored] = backend.store.append([one("orders", b"a", b"b")])
    assert [(e.position, e.version, e.stream) for e in stored] == [
        (1, 0, "orders"),
        (2, 1, "orders"),
    ]


def test_every_field_round_trips(backend: Backend) -> None:
    event = NewEvent(
        data=b"\x00\xffpayload",
        event_id=uuid.uuid1(),
        event_type="OrderPlaced",
        metadata=b"\x01meta",
    )
    [[stored]] = backend.store.append([AppendRequest("orders-1", (event,))])
    assert (stored.event_id, stored.data, stored.event_type, stored.metadata) == (
        event.event_id,
        event.data,
        event.event_type,
        event.metadata,
    )
    assert stored.recorded_at_us > 1_700_000_000_000_000
    assert backend.reopen().read_all(limit=1) == [stored]


def test_one_call_commits_many_requests_in_order(backend: Backend) -> None:
    results = backend.store.append([one("a", b"1"), one("b", b"2", b"3"), one("a", b"4")])
    flat = [e for batch in results for e in batch]
    assert [e.position for e in flat] == [1, 2, 3, 4]
    assert [(e.stream, e.version) for e in flat] == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    assert backend.store.read_all(limit=10) == flat


def test_versions_continue_across_calls_and_reopen(backend: Backend) -> None:
    backend.store.append([one("a", b"1", b"2")])
    store = backend.reopen()
    [[third]] = store.append([one("a", b"3")])
    assert (third.position, third.version) == (3, 2)


def test_read_all_bounds(backend: Backend) -> None:
    [stored] = backend.store.append([one("s", *[bytes([i]) for i in range(10)])])
    store = backend.store
    assert store.read_all(after=3, limit=100) == list(stored[3:])
    assert store.read_all(after=3, through=6, limit=100) == list(stored[3:6])
    assert store.read_all(after=3, through=6, limit=2) == list(stored[3:5])
    assert store.read_all(after=6, through=6, limit=100) == []
    assert store.read_all(after=6, through=3, limit=100) == []
    assert store.read_all(after=10, limit=100) == []
    assert store.read_all(limit=0) == []


def test_position_of_finds_every_event(backend: Backend) -> None:
    [stored] = backend.store.append([one("s", b"x", b"y", b"z")])
    store = backend.reopen()
    for event in stored:
        assert store.position_of(event.event_id) == event.position


def test_last_event_is_the_highest_position(backend: Backend) -> None:
    backend.store.append([one("a", b"1"), one("b", b"2")])
    last = backend.reopen().last_event()
    assert last is not None and (last.position, last.data) == (2, b"2")


def test_a_duplicate_event_id_rejects_the_whole_commit(backend: Backend) -> None:
    store = backend.store
    [[first]] = store.append([one("s", b"first")])
    duplicate = NewEvent(data=b"again", event_id=first.event_id)
    with pytest.raises(StorageError):
        store.append([one("s", b"innocent"), AppendRequest("s", (duplicate,))])
    assert store.read_all(limit=10) == [first]
    [[after]] = store.append([one("s", b"next")])
    assert (after.position, after.version) == (2, 1)


def test_a_closed_store_refuses_work(backend: Backend) -> None:
    backend.store.close()
    with pytest.raises(StorageError):
        backend.store.append([one("s", b"x")])
    with pytest.raises(StorageError):
        backend.store.read_all(limit=1)
    backend.store.close()  # idempotent


appends = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]), st.lists(st.binary(max_size=8), min_size=1, max_size=4)
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.parametrize("kind", BACKENDS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(commits=st.lists(appends, max_size=6), reopen_after=st.sets(st.integers(0, 6)))
def test_the_store_behaves_like_a_list(
    kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    commits: list[list[tuple[str, list[bytes]]]],
    reopen_after: set[int],
) -> None:
    """Whatever is appended reads back as the plain list model predicts, across reopens."""
    backend = Backend(kind, tmp_path_factory.mktemp(kind))
    model: list[tuple[str, int, bytes]] = []
    versions: dict[str, int] = {}
    try:
        for index, commit in enumerate(commits):
            backend.store.append([one(stream, *payloads) for stream, payloads in commit])
            for stream, payloads in commit:
                for payload in payloads:
                    versions[stream] = versions.get(stream, -1) + 1
                    model.append((stream, versions[stream], payload))
            if index in reopen_after:
                backend.reopen()
        stored: list[RecordedEvent] = []
        while batch := backend.store.read_all(after=len(stored), limit=7):
            stored.extend(batch)
        assert [(e.stream, e.version, e.data) for e in stored] == model
        assert [e.position for e in stored] == list(range(1, len(model) + 1))
        assert len({e.event_id for e in stored}) == len(stored)
    finally:
        backend.store.close()
