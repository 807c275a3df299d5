"""The conformance suite's long game: random histories checked against a list.

A state machine appends (fresh events, re-sends, reused ids, right and wrong
expected versions, several requests per group), reads in every way a store
offers, and reopens the store, on every backend. After every step the whole
store must equal a model that is nothing but a list of the events accepted so
far, decided by the rules written out plainly below.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rewind.errors import AppendRejectedError, EventIdConflictError, WrongExpectedVersionError
from rewind.model import (
    ANY_VERSION,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    NewEvent,
    RecordedEvent,
    StreamInfo,
)
from rewind.storage.base import AppendResult
from tests.unit.test_storage_conformance import Backend, require

# Shrinking a failing history replays it thousands of times; give it room to
# finish and report the smallest one rather than time out.
pytestmark = pytest.mark.timeout(600)

STREAMS = ["a", "b", "c-1", "c-2", "c%", "c_"]
PREFIXES = [None, "", "c", "c-", "c%", "c_", "a", "z"]
TYPES = ["", "Opened", "Closed"]
UNKNOWN_ID = uuid.UUID(int=2**128 - 1)  # ids given here count up from 1


class Resend:
    """The model's verdict: the request re-sends these stored events."""

    def __init__(self, events: tuple[RecordedEvent, ...]) -> None:
        self.events = events


class Fresh:
    """The model's verdict: the request stores new events after version ``head``."""

    def __init__(self, head: int) -> None:
        self.head = head


Verdict = Resend | Fresh | type[EventIdConflictError] | WrongExpectedVersionError


class FreshShape(NamedTuple):
    """A new append: its stream, which events get ids, their contents, its expectation."""

    stream: str
    ids: str
    events: list[tuple[bytes, str, bytes]]
    expect: str


class ResendShape(NamedTuple):
    """A re-send of (part of) an earlier accepted append that carried ids."""

    pick: int
    start: int
    length: int
    expect: str


class ReuseShape(NamedTuple):
    """A stored id sent again: unchanged, or with another field, stream or company."""

    pick: int
    change: str
    stream: str


RequestShape = FreshShape | ResendShape | ReuseShape

# Mostly expectations that hold, so that histories grow; wrong ones too.
EXPECTATIONS = ["any", "any", "any", "right", "right", "no stream", "exists", "ahead", "behind"]
fresh_shapes = st.builds(
    FreshShape,
    stream=st.sampled_from(STREAMS),
    ids=st.sampled_from(["none", "none", "all", "all", "some", "twice"]),
    events=st.lists(
        st.tuples(st.binary(max_size=4), st.sampled_from(TYPES), st.sampled_from([b"", b"m"])),
        max_size=3,
    ),
    expect=st.sampled_from(EXPECTATIONS),
)
request_shapes = st.one_of(
    fresh_shapes,
    fresh_shapes,
    fresh_shapes,
    st.builds(
        ResendShape,
        pick=st.integers(0, 100),
        start=st.integers(0, 2),
        length=st.integers(1, 3),
        expect=st.sampled_from(EXPECTATIONS),
    ),
    st.builds(
        ReuseShape,
        pick=st.integers(0, 100),
        change=st.sampled_from(["data", "type", "metadata", "stream", "extra", "same"]),
        stream=st.sampled_from(STREAMS),
    ),
)
groups = st.lists(request_shapes, min_size=1, max_size=4)


class StoreMachine(RuleBasedStateMachine):
    kind: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix=f"rewind-{self.kind}-"))
        self.backend = Backend(self.kind, self.directory)
        self.model: list[RecordedEvent] = []
        self.sent_with_ids: list[AppendRequest] = []
        self.ids_given = 0

    def teardown(self) -> None:
        self.backend.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # The model ---------------------------------------------------------------------------

    def stream_events(self, stream: str) -> list[RecordedEvent]:
        return [e for e in self.model if e.stream == stream]

    def head(self, stream: str) -> int:
        return len(self.stream_events(stream)) - 1

    def verdict(self, request: AppendRequest) -> Verdict:
        ids = [e.event_id for e in request.events if e.event_id is not None]
        stored = {e.event_id: e for e in self.model}
        hits = [stored[event_id] for event_id in ids if event_id in stored]
        if hits:
            first = hits[0].version
            exact = (
                len(hits) == len(request.events)
                and [(h.stream, h.version) for h in hits]
                == [(request.stream, first + i) for i in range(len(hits))]
                and [(h.data, h.event_type, h.metadata) for h in hits]
                == [(e.data, e.event_type, e.metadata) for e in request.events]
            )
            return Resend(tuple(hits)) if exact else EventIdConflictError
        if len(set(ids)) < len(ids):
            return EventIdConflictError
        head = self.head(request.stream)
        expected = request.expected_version
        holds = {ANY_VERSION: True, NO_STREAM: head == -1, STREAM_EXISTS: head >= 0}.get(
            expected, expected == head
        )
        if not holds:
            return WrongExpectedVersionError(request.stream, expected, head)
        return Fresh(head)

    def check_and_record(self, request: AppendRequest, result: AppendResult) -> None:
        verdict = self.verdict(request)
        if isinstance(verdict, Resend):
            assert result == verdict.events
        elif verdict is EventIdConflictError:
            assert isinstance(result, EventIdConflictError), result
        elif isinstance(verdict, WrongExpectedVersionError):
            assert isinstance(result, WrongExpectedVersionError), result
            assert (result.stream, result.expected, result.actual) == (
                verdict.stream,
                verdict.expected,
                verdict.actual,
            )
        else:
            assert isinstance(verdict, Fresh)
            assert not isinstance(result, AppendRejectedError), result
            self.check_fresh(request, verdict.head, result)
            self.model.extend(result)
            if any(e.event_id is not None for e in request.events):
                self.sent_with_ids.append(request)

    def check_fresh(
        self, request: AppendRequest, head: int, stored: tuple[RecordedEvent, ...]
    ) -> None:
        known_ids = {e.event_id for e in self.model}
        last_time = self.model[-1].recorded_at_us if self.model else 0
        assert len(stored) == len(request.events)
        for offset, (new, event) in enumerate(zip(request.events, stored, strict=True)):
            assert event.position == len(self.model) + offset + 1
            assert (event.stream, event.version) == (request.stream, head + offset + 1)
            assert (event.data, event.event_type, event.metadata) == (
                new.data,
                new.event_type,
                new.metadata,
            )
            if new.event_id is not None:
                assert event.event_id == new.event_id
            else:
                assert event.event_id.version == 1 and event.event_id not in known_ids
            assert event.recorded_at_us >= last_time

    # Turning drawn shapes into requests ---------------------------------------------------

    def new_id(self) -> uuid.UUID:
        # Counted, not random, so that a failing run replays exactly.
        self.ids_given += 1
        return uuid.UUID(int=self.ids_given)

    def expectation(self, name: str, head: int) -> int:
        return {
            "any": ANY_VERSION,
            "no stream": NO_STREAM,
            "exists": STREAM_EXISTS,
            "right": head,
            "ahead": head + 1,
            "behind": max(head - 1, 0),
        }[name]

    def fresh(self, shape: FreshShape, heads: dict[str, int]) -> AppendRequest:
        events = [
            NewEvent(
                data=data,
                event_id=self.new_id()
                if shape.ids == "all" or (shape.ids == "some" and index % 2 == 0)
                else None,
                event_type=event_type,
                metadata=metadata,
            )
            for index, (data, event_type, metadata) in enumerate(shape.events)
        ]
        if shape.ids == "twice" and events:
            events.append(events[0]._replace(event_id=self.new_id()))
            events[0] = events[-1]
        # Heads as they will be if the group's earlier requests are accepted,
        # so that chains of exact expected versions within one group occur.
        head = heads.get(shape.stream, self.head(shape.stream))
        heads[shape.stream] = head + len(events)
        expected = self.expectation(shape.expect, head)
        return AppendRequest(shape.stream, tuple(events), expected)

    def resend(self, shape: ResendShape) -> AppendRequest:
        if not self.sent_with_ids:
            return AppendRequest(STREAMS[0], ())
        request = self.sent_with_ids[shape.pick % len(self.sent_with_ids)]
        start = min(shape.start, len(request.events) - 1)
        events = request.events[start : start + shape.length]
        expected = self.expectation(shape.expect, self.head(request.stream))
        return AppendRequest(request.stream, events, expected)

    def reuse(self, shape: ReuseShape) -> AppendRequest:
        """An id that is already stored, sent again the same or with something different."""
        if not self.model:
            return AppendRequest(STREAMS[0], ())
        old = self.model[shape.pick % len(self.model)]
        event = NewEvent(old.data, old.event_id, old.event_type, old.metadata)
        if shape.change == "data":
            return AppendRequest(old.stream, (event._replace(data=old.data + b"!"),))
        if shape.change == "type":
            return AppendRequest(old.stream, (event._replace(event_type=old.event_type + "!"),))
        if shape.change == "metadata":
            return AppendRequest(old.stream, (event._replace(metadata=old.metadata + b"!"),))
        if shape.change == "stream":
            return AppendRequest(shape.stream, (event,))
        if shape.change == "extra":
            return AppendRequest(old.stream, (event, NewEvent(b"extra", self.new_id())))
        return AppendRequest(old.stream, (event,))

    def request(self, shape: RequestShape, heads: dict[str, int]) -> AppendRequest:
        if isinstance(shape, ResendShape):
            return self.resend(shape)
        if isinstance(shape, ReuseShape):
            return self.reuse(shape)
        return self.fresh(shape, heads)

    # Rules -------------------------------------------------------------------------------

    @initialize(group=groups)
    def start_with_some_history(self, group: list[RequestShape]) -> None:
        self.append(group)

    @rule(group=groups)
    def append(self, group: list[RequestShape]) -> None:
        heads: dict[str, int] = {}
        requests = [self.request(shape, heads) for shape in group]
        results = self.backend.store.append(requests)
        assert len(results) == len(requests)
        # The model decides each request after the ones before it, as the store must.
        for request, result in zip(requests, results, strict=True):
            self.check_and_record(request, result)

    @rule(group=groups)
    def append_again(self, group: list[RequestShape]) -> None:
        """Appending twice as often as anything else lets histories grow."""
        self.append(group)

    @rule()
    def reopen(self) -> None:
        self.backend.reopen()

    @rule(
        after=st.integers(0, 60),
        through=st.none() | st.integers(0, 60),
        limit=st.integers(0, 8),
        backwards=st.booleans(),
        prefix=st.sampled_from(PREFIXES),
        types=st.none() | st.sets(st.sampled_from(TYPES)),
    )
    def read_all(
        self,
        after: int,
        through: int | None,
        limit: int,
        backwards: bool,
        prefix: str | None,
        types: set[str] | None,
    ) -> None:
        # Bounds near the store's size, where the edges are.
        after %= len(self.model) + 2
        through = None if through is None else through % (len(self.model) + 2)
        wanted = [
            e
            for e in self.model
            if after < e.position
            and (through is None or e.position <= through)
            and (not prefix or e.stream.startswith(prefix))
            and (types is None or e.event_type in types)
        ]
        if backwards:
            wanted.reverse()
        options: dict[str, Any] = {"stream_prefix": prefix, "event_types": types}
        got = self.backend.store.read_all(
            after=after, through=through, limit=limit, backwards=backwards, **options
        )
        assert got == wanted[:limit]

    @rule(
        stream=st.sampled_from([*STREAMS, "unknown"]),
        from_version=st.none() | st.integers(-1, 6),
        limit=st.integers(0, 5),
        backwards=st.booleans(),
    )
    def read_stream(
        self, stream: str, from_version: int | None, limit: int, backwards: bool
    ) -> None:
        events = self.stream_events(stream)
        if backwards:
            top = len(events) - 1 if from_version is None else from_version
            wanted = [e for e in reversed(events) if e.version <= top]
        else:
            wanted = [e for e in events if e.version >= (from_version or 0)]
        got = self.backend.store.read_stream(
            stream, from_version=from_version, limit=limit, backwards=backwards
        )
        assert got == wanted[:limit]

    def info(self, stream: str) -> StreamInfo | None:
        events = self.stream_events(stream)
        if not events:
            return None
        return StreamInfo(stream, events[-1].version, events[0].position, events[-1].position)

    @rule(
        stream=st.sampled_from([*STREAMS, "unknown"]),
        after=st.sampled_from([None, "", "b", "c", "c-1", "z"]),
        page=st.integers(1, 4),
    )
    def streams(self, stream: str, after: str | None, page: int) -> None:
        assert self.backend.store.stream_info(stream) == self.info(stream)
        names = sorted({e.stream for e in self.model if after is None or e.stream > after})
        listed: list[StreamInfo] = []
        cursor = after
        for _ in range(len(names) + 1):  # a paging bug must fail, not loop forever
            batch = self.backend.store.list_streams(after=cursor, limit=page)
            if not batch:
                break
            assert len(batch) <= page
            listed.extend(batch)
            cursor = batch[-1].stream
        assert listed == [self.info(name) for name in names]

    @rule(pick=st.integers(0, 100), shift=st.sampled_from([-1, 0, 1]))
    def positions(self, pick: int, shift: int) -> None:
        store = self.backend.store
        assert store.position_of(UNKNOWN_ID) is None
        if not self.model:
            assert store.position_at(0) is None
            return
        event = self.model[pick % len(self.model)]
        assert store.position_of(event.event_id) == event.position
        moment = event.recorded_at_us + shift
        later = [e.position for e in self.model if e.recorded_at_us >= moment]
        assert store.position_at(moment) == (later[0] if later else None)

    # Invariants --------------------------------------------------------------------------

    @invariant()
    def the_store_holds_exactly_the_model(self) -> None:
        store = self.backend.store
        stored = store.read_all(limit=10_000)
        assert stored == self.model
        assert store.last_event() == (self.model[-1] if self.model else None)

    @invariant()
    def positions_versions_ids_and_times_are_in_order(self) -> None:
        assert [e.position for e in self.model] == list(range(1, len(self.model) + 1))
        for stream in STREAMS:
            versions = [e.version for e in self.stream_events(stream)]
            assert versions == list(range(len(versions)))
        assert len({e.event_id for e in self.model}) == len(self.model)
        times = [e.recorded_at_us for e in self.model]
        assert times == sorted(times)


MACHINE_SETTINGS = settings(max_examples=30, stateful_step_count=30, deadline=None)


class MemoryStoreMachine(StoreMachine):
    kind = "memory"


class SQLiteStoreMachine(StoreMachine):
    kind = "sqlite"


class PostgresStoreMachine(StoreMachine):
    kind = "postgresql"


class TestPostgresStore(PostgresStoreMachine.TestCase):
    settings = MACHINE_SETTINGS

    def setUp(self) -> None:
        require("postgresql")


TestMemoryStore = MemoryStoreMachine.TestCase
TestMemoryStore.settings = MACHINE_SETTINGS
TestSQLiteStore = SQLiteStoreMachine.TestCase
TestSQLiteStore.settings = MACHINE_SETTINGS
