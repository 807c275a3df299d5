"""A store that lives in process memory: for tests and experiments only.

It is also the plainest statement of what a store does: a list of events in
position order, a list per stream in version order, and a dict by id.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Sequence

from rewind.errors import StorageError
from rewind.model import ANY_VERSION, AppendRequest, RecordedEvent, StreamInfo, new_event_id
from rewind.storage.base import AppendResult, EventStore
from rewind.storage.group import GroupCommit

# Makes a RecordedEvent without the NamedTuple's Python __new__ frame: one per event.
_new_tuple = tuple.__new__


class MemoryStore(EventStore):
    """Keeps every event in lists and dicts; everything is gone when the process ends."""

    kind = "memory"
    durable = False

    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []  # position p is at index p - 1
        self._streams: dict[str, list[RecordedEvent]] = {}  # version v is at index v
        self._stream_names: list[str] = []  # sorted, for paging through streams
        # Keyed by the ids' integer values, as GroupCommit wants them (an int hashes in C).
        self._by_id: dict[int, RecordedEvent] = {}
        self._closed = False
        # Readers and the writer may be different threads; a lock keeps a
        # reader from seeing half of an append.
        self._lock = threading.Lock()

    def append(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        lock = self._lock
        lock.acquire()  # not a with statement: this is the cost of every append
        try:
            self._check_open()
            events = self._events
            now = time.time_ns() // 1000
            last_at = events[-1].recorded_at_us if events else 0
            # Never earlier than the last commit, so time order is position order.
            recorded_at_us = now if now > last_at else last_at
            by_id, streams = self._by_id, self._streams
            new_events: Sequence[RecordedEvent]
            lone = requests[0] if len(requests) == 1 else None
            if (
                lone is not None
                and lone.expected_version == ANY_VERSION
                and len(lone.events) == 1
                and lone.events[0].event_id is None
            ):
                # One event, whose id is assigned here, under no condition: it
                # cannot be refused, so GroupCommit has nothing to decide.
                new = lone.events[0]
                stream = streams.get(lone.stream)
                new_events = (
                    _new_tuple(
                        RecordedEvent,
                        (
                            len(events) + 1,
                            new_event_id(),
                            lone.stream,
                            0 if stream is None else len(stream),
                            recorded_at_us,
                            new.event_type,
                            new.metadata,
                            new.data,
                        ),
                    ),
                )
                results: list[AppendResult] = [new_events]
            else:
                group = GroupCommit(
                    last_position=len(events),
                    recorded_at_us=recorded_at_us,
                    stream_head=self._stream_head,
                    stored_events=by_id,
                )
                results = [group.add(request) for request in requests]
                new_events = group.new_events
            # Inline rather than a call per event: this is most of an append's work.
            for event in new_events:
                events.append(event)
                by_id[event.event_id.int] = event
                stream = streams.get(event.stream)
                if stream is None:
                    stream = streams[event.stream] = []
                    bisect.insort(self._stream_names, event.stream)
                stream.append(event)
            return results
        finally:
            lock.release()

    def _stream_head(self, stream: str) -> int:
        return len(self._streams.get(stream, ())) - 1

    def read_all(
        self,
        *,
        after: int = 0,
        through: int | None = None,
        limit: int,
        backwards: bool = False,
        stream_prefix: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        with self._lock:
            self._check_open()
            if limit <= 0 or (event_types is not None and not event_types):
                return []
            start = max(after, 0)
            end = len(self._events) if through is None else min(through, len(self._events))
            indexes = range(end - 1, start - 1, -1) if backwards else range(start, end)
            events: Iterable[RecordedEvent] = (self._events[index] for index in indexes)
            if stream_prefix:
                events = (event for event in events if event.stream.startswith(stream_prefix))
            if event_types is not None:
                types = frozenset(event_types)
                events = (event for event in events if event.event_type in types)
            return list(itertools.islice(events, limit))

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        limit: int,
        backwards: bool = False,
    ) -> list[RecordedEvent]:
        with self._lock:
            self._check_open()
            events = self._streams.get(stream, [])
            if limit <= 0:
                return []
            if backwards:
                last = len(events) - 1
                top = last if from_version is None else min(from_version, last)
                if top < 0:
                    return []
                return events[max(top - limit + 1, 0) : top + 1][::-1]
            start = 0 if from_version is None else max(from_version, 0)
            return events[start : start + limit]

    def position_of(self, event_id: uuid.UUID) -> int | None:
        with self._lock:
            self._check_open()
            event = self._by_id.get(event_id.int)
            return None if event is None else event.position

    def position_at(self, timestamp_us: int) -> int | None:
        with self._lock:
            self._check_open()
            # Commit times never decrease with position, so the list is sorted by them too.
            index = bisect.bisect_left(
                self._events, timestamp_us, key=lambda event: event.recorded_at_us
            )
            return index + 1 if index < len(self._events) else None

    def last_event(self) -> RecordedEvent | None:
        with self._lock:
            self._check_open()
            return self._events[-1] if self._events else None

    def stream_info(self, stream: str) -> StreamInfo | None:
        with self._lock:
            self._check_open()
            return self._info(stream) if stream in self._streams else None

    def list_streams(self, *, after: str | None = None, limit: int) -> list[StreamInfo]:
        with self._lock:
            self._check_open()
            names = self._stream_names
            start = 0 if after is None else bisect.bisect_right(names, after)
            return [self._info(name) for name in names[start : start + max(limit, 0)]]

    def _info(self, stream: str) -> StreamInfo:
        events = self._streams[stream]
        return StreamInfo(
            stream=stream,
            last_version=len(events) - 1,
            first_position=events[0].position,
            last_position=events[-1].position,
        )

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")
