"""Reads that send more than one message: v2 READ_STREAM/READ_ALL and Gorewind QUERY.

A read in progress keeps a cursor, never events: it fetches one batch from the
store just before sending it. A v2 read sends a batch only while it holds
credit from its client; a Gorewind QUERY has no flow control of its own, so
it sends a page per loop turn and waits whenever the client's queue is full.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from rewind.model import RecordedEvent
from rewind.protocol import gorewind, v2
from rewind.protocol.v2 import EndReason
from rewind.storage.base import EventStore

GOREWIND_PAGE = 200
"""Events a Gorewind QUERY reads from the store per page."""


@dataclass(frozen=True, slots=True)
class Page:
    """One store read: the events, whether the read is exhausted, and where to go on."""

    events: list[RecordedEvent]
    exhausted: bool
    cursor: int
    """The next start (inclusive) in the read's direction, past everything examined."""


Fetch = Callable[[EventStore, int], Page]
"""Reads the next page of at most the given number of events and moves the cursor."""


class ReadSession(ABC):
    """A streamed read bound to one client connection.

    The server asks for :meth:`next_message` and calls :meth:`sent` once it
    went out; a message that could not be sent (the client's queue is full)
    is asked for again and must be the same.
    """

    routing: tuple[bytes, ...]
    blocks_connection: bool
    """Whether later replies on the connection must wait until this read ends."""
    finished: bool
    last_progress: float
    """When (``time.monotonic``) the read last sent something or got credit."""

    @abstractmethod
    def next_message(self, store: EventStore) -> list[bytes] | None:
        """The next message to send, or ``None`` if nothing can be sent now."""

    @abstractmethod
    def sent(self) -> None:
        """The message last returned by :meth:`next_message` went out."""


@dataclass(eq=False)
class V2Read(ReadSession):
    """A v2 READ_STREAM or READ_ALL: one EVENTS per credit, then END."""

    routing: tuple[bytes, ...]
    request_id: int
    fetch: Fetch
    batch_size: int
    credit: int
    max_count: int | None
    cursor: int
    blocks_connection: bool = False
    finished: bool = False
    count: int = 0
    _pending: list[bytes] | None = None
    _pending_count: int = 0
    _end: tuple[EndReason, int] | None = None
    credit_limit: int = 1 << 16
    """Most outstanding credit the client may grant."""
    packed: bool = False
    """Whether batches go packed into one frame (the client asked for it)."""
    last_progress: float = field(default_factory=time.monotonic)

    def grant(self, credit: int) -> bool:
        """Add credit; ``False`` if it would exceed the limit."""
        if self.credit + credit > self.credit_limit:
            return False
        self.credit += credit
        self.last_progress = time.monotonic()
        return True

    def cancel(self) -> None:
        """End the read at the next message."""
        if not self.finished:
            self._end = (EndReason.CANCELLED, self.cursor)

    def next_message(self, store: EventStore) -> list[bytes] | None:
        if self._pending is not None:
            return self._pending
        if self.finished:
            return None
        if self._end is not None:
            reason, cursor = self._end
            self._pending = v2.encode_end(self.request_id, reason, cursor, self.count)
            self._pending_count = 0
            return self._pending
        remaining = None if self.max_count is None else self.max_count - self.count
        if remaining == 0:
            self._end = (EndReason.MAX_COUNT, self.cursor)
            return self.next_message(store)
        if self.credit < 1:
            return None
        wanted = self.batch_size if remaining is None else min(self.batch_size, remaining)
        page = self.fetch(store, wanted)
        self.cursor = page.cursor
        if page.exhausted:
            self._end = (EndReason.DONE, page.cursor)
        if not page.events:
            return self.next_message(store)
        self._pending = v2.encode_events(self.request_id, page.events, packed=self.packed)
        self._pending_count = len(page.events)
        return self._pending

    def sent(self) -> None:
        self.last_progress = time.monotonic()
        if self._pending_count:
            self.count += self._pending_count
            self.credit -= 1
        elif self._end is not None:
            self.finished = True
        self._pending = None
        self._pending_count = 0


@dataclass(eq=False)
class GorewindQuery(ReadSession):
    """A Gorewind QUERY: one EVENT message per event, then END; nothing else in between."""

    routing: tuple[bytes, ...]
    fetch: Fetch
    blocks_connection: bool = True
    finished: bool = False
    _page: list[RecordedEvent] = field(default_factory=list)
    _exhausted: bool = False
    _pending: list[bytes] | None = None
    _pending_is_end: bool = False
    last_progress: float = field(default_factory=time.monotonic)

    def next_message(self, store: EventStore) -> list[bytes] | None:
        if self._pending is not None or self.finished:
            return self._pending
        if not self._page and not self._exhausted:
            page = self.fetch(store, GOREWIND_PAGE)
            self._page = page.events[::-1]  # popped from the end, so in order
            self._exhausted = page.exhausted
        if self._page:
            event = self._page.pop()
            self._pending = gorewind.encode_event(event.event_id, event.data)
        else:
            self._pending = gorewind.encode_end()
            self._pending_is_end = True
        return self._pending

    def sent(self) -> None:
        self.last_progress = time.monotonic()
        self.finished = self._pending_is_end
        self._pending = None


# Fetch functions -----------------------------------------------------------------------


def fetch_all_forward(after: int, prefix: str | None, types: frozenset[str] | None) -> Fetch:
    """Forward pages of the global log after ``after`` (exclusive), up to its head."""
    state = {"after": after}

    def fetch(store: EventStore, limit: int) -> Page:
        # The head is sampled first: everything up to it is examined by this
        # read, so a filtered read's cursor can move past non-matching events.
        head_event = store.last_event()
        upper = 0 if head_event is None else head_event.position
        events = store.read_all(
            after=state["after"],
            through=upper,
            limit=limit,
            stream_prefix=prefix,
            event_types=types,
        )
        exhausted = len(events) < limit
        last = events[-1].position if events else state["after"]
        state["after"] = upper if exhausted else last
        return Page(events, exhausted, state["after"] + 1)

    return fetch


def fetch_all_backward(through: int, prefix: str | None, types: frozenset[str] | None) -> Fetch:
    """Backward pages of the global log from ``through`` (inclusive) down."""
    state = {"through": through}

    def fetch(store: EventStore, limit: int) -> Page:
        events = store.read_all(
            through=state["through"],
            limit=limit,
            backwards=True,
            stream_prefix=prefix,
            event_types=types,
        )
        exhausted = len(events) < limit
        state["through"] = 0 if exhausted else events[-1].position - 1
        return Page(events, exhausted, state["through"])

    return fetch


def fetch_stream(stream: str, from_version: int, backwards: bool) -> Fetch:
    """Pages of one stream from ``from_version`` (inclusive), in either direction."""
    state = {"next": from_version}

    def fetch(store: EventStore, limit: int) -> Page:
        if state["next"] < 0:
            return Page([], True, -1)
        events = store.read_stream(
            stream, from_version=state["next"], limit=limit, backwards=backwards
        )
        exhausted = len(events) < limit
        if events:
            state["next"] = events[-1].version + (-1 if backwards else 1)
        elif backwards:
            state["next"] = -1
        return Page(events, exhausted, state["next"])

    return fetch


def fetch_stream_range(stream: str, after_version: int, through_version: int | None) -> Fetch:
    """Forward pages of one stream with ``after < version <= through`` (Gorewind QUERY)."""
    state = {"next": after_version + 1}

    def fetch(store: EventStore, limit: int) -> Page:
        if through_version is not None:
            limit = max(0, min(limit, through_version - state["next"] + 1))
            if limit == 0:
                return Page([], True, state["next"])
        events = store.read_stream(stream, from_version=state["next"], limit=limit)
        if events:
            state["next"] = events[-1].version + 1
        return Page(events, len(events) < limit or limit == 0, state["next"])

    return fetch
