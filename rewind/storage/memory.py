"""A store that lives in process memory: for tests and experiments only."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

from rewind.errors import StorageError
from rewind.model import AppendRequest, RecordedEvent, new_event_id
from rewind.storage.base import EventStore


class MemoryStore(EventStore):
    """Keeps every event in a list; everything is gone when the process ends."""

    kind = "memory"
    durable = False

    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []
        self._positions: dict[uuid.UUID, int] = {}
        self._stream_heads: dict[str, int] = {}
        self._closed = False
        # Readers and the writer may be different threads; a lock keeps a
        # reader from seeing half of an append.
        self._lock = threading.Lock()

    def append(self, requests: Sequence[AppendRequest]) -> list[tuple[RecordedEvent, ...]]:
        with self._lock:
            return self._append(requests)

    def _append(self, requests: Sequence[AppendRequest]) -> list[tuple[RecordedEvent, ...]]:
        self._check_open()
        recorded_at = time.time_ns() // 1000
        position = len(self._events)
        # Only the streams this call touches; committed into _stream_heads at the end.
        heads: dict[str, int] = {}
        seen: set[uuid.UUID] = set()
        results: list[tuple[RecordedEvent, ...]] = []
        for request in requests:
            version = heads.get(request.stream, self._stream_heads.get(request.stream, -1))
            stored = []
            for event in request.events:
                event_id = event.event_id or new_event_id()
                if event_id in self._positions or event_id in seen:
                    # Same rule as the SQL backends' unique index: all or nothing.
                    raise StorageError(f"event id {event_id} is already stored")
                seen.add(event_id)
                position += 1
                version += 1
                stored.append(
                    RecordedEvent(
                        position=position,
                        event_id=event_id,
                        stream=request.stream,
                        version=version,
                        recorded_at_us=recorded_at,
                        event_type=event.event_type,
                        metadata=event.metadata,
                        data=event.data,
                    )
                )
            heads[request.stream] = version
            results.append(tuple(stored))
        for batch in results:
            for recorded in batch:
                self._events.append(recorded)
                self._positions[recorded.event_id] = recorded.position
        self._stream_heads.update(heads)
        return results

    def read_all(
        self, *, after: int = 0, through: int | None = None, limit: int
    ) -> list[RecordedEvent]:
        self._check_open()
        with self._lock:
            end = len(self._events) if through is None else min(through, len(self._events))
            start = max(after, 0)
            return self._events[start : max(start, min(end, start + limit))]

    def position_of(self, event_id: uuid.UUID) -> int | None:
        self._check_open()
        return self._positions.get(event_id)

    def last_event(self) -> RecordedEvent | None:
        self._check_open()
        with self._lock:
            return self._events[-1] if self._events else None

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")
