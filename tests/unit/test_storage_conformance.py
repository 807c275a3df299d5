"""One behaviour for every storage backend: the conformance suite.

Each test runs against every backend. ``reopen`` gives the test the same store
after a restart where the backend has one (SQLite reopens its file; the memory
store has nothing to reopen and hands back the same object).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewind.errors import (
    AppendRejectedError,
    EventIdConflictError,
    StorageError,
    WrongExpectedVersionError,
)
from rewind.model import (
    ANY_VERSION,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    NewEvent,
    RecordedEvent,
    StreamInfo,
)
from rewind.storage import open_store
from rewind.storage.base import AppendResult, EventStore
from tests import postgres_support


class Backend:
    """Opens, and reopens, one store of one kind; :meth:`close` also removes it."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.schema: str | None = None
        if kind == "memory":
            self.url = "memory:"
        elif kind == "postgresql":
            # A schema of its own, so no two tests (or runs) share events.
            self.schema = postgres_support.unique_schema(directory.name[-20:])
            self.url = postgres_support.store_url(self.schema)
        else:
            self.url = f"sqlite:{directory / 'events.db'}"
        self.store: EventStore = open_store(self.url)

    def reopen(self) -> EventStore:
        if self.kind != "memory":
            self.store.close()
            self.store = open_store(self.url)
        return self.store

    def close(self) -> None:
        self.store.close()
        if self.schema is not None:
            postgres_support.drop_schema(self.schema)


BACKENDS = ["memory", "sqlite", "postgresql"]


def require(kind: str) -> str:
    """``kind``, once its backend is known to be usable here (or the test skips)."""
    if kind == "postgresql":
        postgres_support.require_postgres()
    return kind


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    opened = Backend(require(request.param), tmp_path)
    yield opened
    opened.close()


def one(stream: str, *payloads: bytes, **fields: str | bytes) -> AppendRequest:
    return AppendRequest(stream, tuple(NewEvent(data=p, **fields) for p in payloads))  # type: ignore[arg-type]


def with_ids(stream: str, *payloads: bytes, expected: int = ANY_VERSION) -> AppendRequest:
    """An append whose events carry client-chosen ids, as a retrying client sends them."""
    events = tuple(NewEvent(data=p, event_id=uuid.uuid4()) for p in payloads)
    return AppendRequest(stream, events, expected)


def accepted(result: AppendResult) -> tuple[RecordedEvent, ...]:
    assert not isinstance(result, AppendRejectedError), result
    return result


def everything(store: EventStore) -> list[RecordedEvent]:
    return store.read_all(limit=1_000_000)


def test_an_empty_store_has_nothing(backend: Backend) -> None:
    store = backend.store
    assert store.last_event() is None
    assert store.read_all(limit=10) == []
    assert store.position_of(uuid.uuid1()) is None


def test_a_store_that_offers_a_commit_wakeup_socket_says_it_announces_commits(
    backend: Backend,
) -> None:
    """The server waits on its request socket alone only for stores that never announce."""
    store = backend.store
    store.append([AppendRequest("wakeup", (NewEvent(b"x"),))])
    if store.commit_wakeup_fd() is not None:
        assert store.announces_commits


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


@pytest.mark.parametrize("sizes", [(63, 1), (64,), (65, 127), (200, 3, 1)])
def test_groups_of_any_size_store_every_event_in_order(
    backend: Backend, sizes: tuple[int, ...]
) -> None:
    # Sizes around 64 and its powers of two: SQLite inserts in chunks of those.
    requests = [
        with_ids(f"s{index}", *[b"%d" % n for n in range(size)]) for index, size in enumerate(sizes)
    ]
    results = backend.store.append(requests)
    flat = [e for result in results for e in accepted(result)]
    assert [(e.stream, e.data) for e in flat] == [
        (request.stream, event.data) for request in requests for event in request.events
    ]
    assert [e.event_id for e in flat] == [e.event_id for r in requests for e in r.events]
    assert backend.reopen().read_all(limit=1000) == flat


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


def test_a_closed_store_refuses_work(backend: Backend) -> None:
    backend.store.close()
    with pytest.raises(StorageError):
        backend.store.append([one("s", b"x")])
    with pytest.raises(StorageError):
        backend.store.read_all(limit=1)
    backend.store.close()  # idempotent


# Group commit: each request accepted or refused on its own -----------------------------


def test_a_refused_request_stores_nothing_and_leaves_the_others_alone(backend: Backend) -> None:
    store = backend.store
    first, refused, last = store.append(
        [one("a", b"1"), AppendRequest("b", (NewEvent(b"2"),), 5), one("c", b"3")]
    )
    assert isinstance(refused, WrongExpectedVersionError)
    assert [(e.position, e.stream) for e in accepted(first) + accepted(last)] == [
        (1, "a"),
        (2, "c"),
    ]
    assert everything(backend.reopen()) == [*accepted(first), *accepted(last)]
    assert backend.store.stream_info("b") is None


def test_later_requests_of_a_group_see_the_earlier_ones(backend: Backend) -> None:
    results = backend.store.append(
        [
            AppendRequest("s", (NewEvent(b"1"),), NO_STREAM),
            AppendRequest("s", (NewEvent(b"2"),), 0),
            AppendRequest("s", (NewEvent(b"3"), NewEvent(b"4")), 1),
            AppendRequest("s", (NewEvent(b"late"),), NO_STREAM),
            AppendRequest("s", (NewEvent(b"5"),), 3),
        ]
    )
    refused = results.pop(3)
    assert isinstance(refused, WrongExpectedVersionError) and refused.actual == 3
    stored = [e for result in results for e in accepted(result)]
    assert [(e.position, e.version, e.data) for e in stored] == [
        (1, 0, b"1"),
        (2, 1, b"2"),
        (3, 2, b"3"),
        (4, 3, b"4"),
        (5, 4, b"5"),
    ]


@pytest.mark.parametrize(
    ("existing", "expected", "holds"),
    [
        (0, ANY_VERSION, True),
        (2, ANY_VERSION, True),
        (0, NO_STREAM, True),
        (2, NO_STREAM, False),
        (0, STREAM_EXISTS, False),
        (2, STREAM_EXISTS, True),
        (2, 1, True),
        (2, 0, False),
        (2, 2, False),
        (0, 0, False),
    ],
)
def test_expected_versions(backend: Backend, existing: int, expected: int, holds: bool) -> None:
    """``existing`` events are in the stream first, so its last version is ``existing - 1``."""
    store = backend.store
    if existing:
        store.append([one("s", *[b"x"] * existing), one("other", b"y")])
    [result] = store.append([AppendRequest("s", (NewEvent(b"new"),), expected)])
    if holds:
        assert accepted(result)[0].version == existing
    else:
        assert isinstance(result, WrongExpectedVersionError)
        assert (result.stream, result.expected, result.actual) == ("s", expected, existing - 1)
        assert len(everything(store)) == existing + (1 if existing else 0)


def test_an_expected_version_that_means_nothing_is_refused(backend: Backend) -> None:
    [result] = backend.store.append([AppendRequest("s", (NewEvent(b"x"),), -3)])
    assert isinstance(result, AppendRejectedError)
    assert everything(backend.store) == []


def test_an_empty_append_only_checks_the_expected_version(backend: Backend) -> None:
    store = backend.store
    store.append([one("s", b"x")])
    fine, wrong = store.append([AppendRequest("s", (), 0), AppendRequest("s", (), NO_STREAM)])
    assert fine == ()
    assert isinstance(wrong, WrongExpectedVersionError) and wrong.actual == 0
    assert len(everything(store)) == 1


# Idempotent appends --------------------------------------------------------------------


def test_a_resent_append_returns_the_original_events_and_stores_nothing(
    backend: Backend,
) -> None:
    store = backend.store
    request = with_ids("s", b"1", b"2", expected=NO_STREAM)
    [original] = store.append([request])
    store.append([one("s", b"later"), one("t", b"other")])
    # The expectation no longer holds, which does not matter for a re-send.
    assert store.append([request]) == [original]
    assert backend.reopen().append([request]) == [original]
    assert backend.store.append([request._replace(expected_version=7)]) == [original]
    assert len(everything(backend.store)) == 4


def test_resending_part_of_an_append_returns_that_part(backend: Backend) -> None:
    request = with_ids("s", b"1", b"2", b"3")
    [original] = backend.store.append([request])
    [again] = backend.store.append([request._replace(events=request.events[1:])])
    assert again == accepted(original)[1:]


def test_a_resend_within_one_group_returns_the_events_stored_by_the_first(
    backend: Backend,
) -> None:
    request = with_ids("s", b"1", b"2")
    first, second, third = backend.store.append([request, one("t", b"x"), request])
    assert accepted(first) == accepted(third)
    assert [e.position for e in accepted(first) + accepted(second)] == [1, 2, 3]
    assert len(everything(backend.store)) == 3


def _reuse(request: AppendRequest, index: int, **changes: object) -> AppendRequest:
    events = list(request.events)
    events[index] = events[index]._replace(**changes)
    return request._replace(events=tuple(events))


@pytest.mark.parametrize(
    "variant",
    ["data", "event_type", "metadata", "stream", "extra new event", "event without id", "order"],
)
def test_reusing_a_stored_id_any_other_way_is_a_conflict(backend: Backend, variant: str) -> None:
    store = backend.store
    request = with_ids("s", b"1", b"2")
    [original] = store.append([request])
    if variant == "stream":
        reused = request._replace(stream="elsewhere")
    elif variant == "extra new event":
        reused = request._replace(events=(*request.events, NewEvent(b"3", uuid.uuid4())))
    elif variant == "event without id":
        reused = request._replace(events=(*request.events, NewEvent(b"3")))
    elif variant == "order":
        reused = request._replace(events=request.events[::-1])
    else:
        reused = _reuse(request, 1, **{variant: "changed" if variant == "event_type" else b"!"})
    innocent, refused = store.append([one("t", b"x"), reused])
    assert isinstance(refused, EventIdConflictError)
    assert refused.event_id in {str(e.event_id) for e in request.events}
    assert everything(store) == [*accepted(original), *accepted(innocent)]


def test_ids_at_versions_that_are_not_consecutive_are_a_conflict(backend: Backend) -> None:
    store = backend.store
    first, second = with_ids("s", b"1"), with_ids("s", b"3")
    store.append([first, one("s", b"2"), second])
    joined = first._replace(events=first.events + second.events)
    [result] = store.append([joined])
    assert isinstance(result, EventIdConflictError)


def test_one_id_twice_in_an_append_refuses_only_that_append(backend: Backend) -> None:
    event = NewEvent(b"1", uuid.uuid4())
    before, refused, after = backend.store.append(
        [one("s", b"a"), AppendRequest("s", (event, event)), one("s", b"b")]
    )
    assert isinstance(refused, EventIdConflictError)
    assert refused.event_id == str(event.event_id)
    assert [e.version for e in accepted(before) + accepted(after)] == [0, 1]
    assert backend.store.position_of(event.event_id) is None


def test_an_id_reused_later_in_the_same_group_refuses_only_the_later_append(
    backend: Backend,
) -> None:
    request = with_ids("s", b"1")
    first, refused = backend.store.append([request, _reuse(request, 0, data=b"other")])
    assert isinstance(refused, EventIdConflictError)
    assert everything(backend.store) == list(accepted(first))


# Reads ---------------------------------------------------------------------------------


def test_read_all_backwards(backend: Backend) -> None:
    [stored] = backend.store.append([one("s", *[bytes([i]) for i in range(10)])])
    store = backend.store
    events = accepted(stored)
    assert store.read_all(limit=3, backwards=True) == list(events[::-1][:3])
    assert store.read_all(after=2, through=6, limit=100, backwards=True) == list(events[2:6][::-1])
    assert store.read_all(after=2, through=6, limit=2, backwards=True) == [events[5], events[4]]
    assert store.read_all(after=6, through=6, limit=100, backwards=True) == []
    assert store.read_all(through=100, limit=1, backwards=True) == [events[-1]]


def test_read_all_filters_by_stream_prefix_taking_wildcards_literally(backend: Backend) -> None:
    names = ["a%b", "a_b", "axb", "a%", "ab", "b", "a", "é-1", "éa", "\U0010ffff", "z\U0010ffff"]
    results = backend.store.append([one(name, name.encode()) for name in names])
    stored = [accepted(result)[0] for result in results]

    def streams(prefix: str, **options: Any) -> list[str]:
        options.setdefault("limit", 100)
        events = backend.store.read_all(stream_prefix=prefix, **options)
        return [e.stream for e in events]

    assert streams("a%") == ["a%b", "a%"]
    assert streams("a_") == ["a_b"]
    assert streams("a") == ["a%b", "a_b", "axb", "a%", "ab", "a"]
    assert streams("é") == ["é-1", "éa"]
    assert streams("\U0010ffff") == ["\U0010ffff"]
    assert streams("z") == ["z\U0010ffff"]
    assert streams("") == names
    assert streams("nothing") == []
    assert streams("a", backwards=True) == ["a", "ab", "a%", "axb", "a_b", "a%b"]
    assert streams("a", after=2, through=5, limit=2) == ["axb", "a%"]
    assert backend.store.read_all(limit=2, stream_prefix="a") == stored[:2]


def test_read_all_filters_by_event_type(backend: Backend) -> None:
    store = backend.store
    store.append(
        [
            AppendRequest("o-1", (NewEvent(b"1", event_type="Placed"), NewEvent(b"2"))),
            AppendRequest("p-1", (NewEvent(b"3", event_type="Paid"),)),
            AppendRequest("o-2", (NewEvent(b"4", event_type="Paid"),)),
        ]
    )

    def data(**options: Any) -> list[bytes]:
        return [e.data for e in store.read_all(limit=100, **options)]

    assert data(event_types={"Paid"}) == [b"3", b"4"]
    assert data(event_types=["Paid", "Placed"], backwards=True) == [b"4", b"3", b"1"]
    assert data(event_types={""}) == [b"2"]
    assert data(event_types=set()) == []
    assert data(event_types={"Paid"}, stream_prefix="o-") == [b"4"]
    assert [e.data for e in store.read_all(limit=1, event_types={"Paid"})] == [b"3"]


def test_read_stream_both_ways(backend: Backend) -> None:
    store = backend.store
    store.append([one("s", b"0", b"1"), one("t", b"x"), one("s", b"2", b"3", b"4")])
    store = backend.reopen()

    def versions(**options: Any) -> list[int]:
        events = store.read_stream("s", **options)
        assert all(e.stream == "s" for e in events)
        return [e.version for e in events]

    assert versions(limit=100) == [0, 1, 2, 3, 4]
    assert versions(from_version=2, limit=2) == [2, 3]
    assert versions(from_version=9, limit=2) == []
    assert versions(limit=100, backwards=True) == [4, 3, 2, 1, 0]
    assert versions(from_version=3, limit=2, backwards=True) == [3, 2]
    assert versions(from_version=9, limit=2, backwards=True) == [4, 3]
    assert versions(from_version=0, limit=5, backwards=True) == [0]
    assert versions(limit=0) == []
    assert [e.data for e in store.read_stream("s", from_version=1, limit=2)] == [b"1", b"2"]
    assert store.read_stream("unknown", limit=10) == []
    assert store.read_stream("unknown", limit=10, backwards=True) == []


class FakeClock:
    """Stands in for the system clock, so tests choose the commit times."""

    def __init__(self, seconds: float) -> None:
        self.now_ns = int(seconds * 1e9)

    def __call__(self) -> int:
        return self.now_ns

    def set(self, seconds: float) -> None:
        self.now_ns = int(seconds * 1e9)


def test_commit_times_never_go_back_and_position_at_finds_them(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(2_000_000_000)
    monkeypatch.setattr(time, "time_ns", clock)
    store = backend.store
    store.append([one("s", b"1", b"2")])
    clock.set(2_000_000_010)
    store.append([one("s", b"3")])
    clock.set(1_999_999_000)  # the clock steps back
    store = backend.reopen()
    store.append([one("s", b"4")])
    times = [e.recorded_at_us for e in everything(store)]
    at_10 = 2_000_000_010_000_000
    assert times == [2_000_000_000_000_000, 2_000_000_000_000_000, at_10, at_10]
    assert store.position_at(0) == 1
    assert store.position_at(times[0]) == 1
    assert store.position_at(times[0] + 1) == 3
    assert store.position_at(at_10) == 3
    assert store.position_at(at_10 + 1) is None


def test_position_at_on_an_empty_store(backend: Backend) -> None:
    assert backend.store.position_at(0) is None


def test_stream_info(backend: Backend) -> None:
    store = backend.store
    assert store.stream_info("s") is None
    store.append([one("s", b"0"), one("t", b"x"), one("s", b"1", b"2")])
    store = backend.reopen()
    info = store.stream_info("s")
    assert info == StreamInfo(stream="s", last_version=2, first_position=1, last_position=4)
    assert info is not None and info.event_count == 3
    assert store.stream_info("t") == StreamInfo("t", 0, 2, 2)
    assert store.stream_info("") is None


def test_list_streams_pages_by_name(backend: Backend) -> None:
    store = backend.store
    names = ["b", "a", "c-2", "c-1", "", "d"]
    store.append([one(name, b"x") for name in names] + [one("a", b"y")])
    store = backend.reopen()
    listed = store.list_streams(limit=100)
    assert [info.stream for info in listed] == sorted(names)
    assert listed[1] == StreamInfo("a", 1, 2, 7)
    assert listed == [store.stream_info(name) for name in sorted(names)]
    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(len(names)):  # a paging bug must fail, not loop forever
        page = store.list_streams(after=after, limit=2)
        if not page:
            break
        pages.append([info.stream for info in page])
        after = page[-1].stream
    assert pages == [["", "a"], ["b", "c-1"], ["c-2", "d"]]
    assert [info.stream for info in store.list_streams(after="c", limit=10)] == ["c-1", "c-2", "d"]
    assert store.list_streams(after="d", limit=10) == []
    assert store.list_streams(limit=0) == []


def test_an_empty_store_lists_no_streams(backend: Backend) -> None:
    assert backend.store.list_streams(limit=10) == []
    assert backend.store.read_stream("s", limit=10) == []


appends = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]), st.lists(st.binary(max_size=8), min_size=1, max_size=4)
    ),
    min_size=1,
    max_size=5,
)


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return require(request.param)


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
        backend.close()
