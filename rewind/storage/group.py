"""The rules of one group commit, shared by every backend.

A backend opens its transaction, hands :class:`GroupCommit` a view of what is
already stored (stream heads, events by id), feeds it the requests in order,
and then writes :attr:`GroupCommit.new_events`. Keeping the decisions here
means every backend accepts, refuses and re-sends exactly alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence

from rewind.errors import AppendRejectedError, EventIdConflictError, WrongExpectedVersionError
from rewind.model import (
    ANY_VERSION,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    RecordedEvent,
    new_event_id,
)
from rewind.storage.base import AppendResult

# RecordedEvent._make without its Python frame (or the keyword handling of
# RecordedEvent(...)): a group makes one per event stored.
_new_tuple = tuple.__new__


def expected_version_error(stream: str, expected: int, actual: int) -> AppendRejectedError | None:
    """Why a stream whose last version is ``actual`` (-1: no events) fails ``expected``.

    ``None`` when the expectation holds.
    """
    if expected == ANY_VERSION:
        return None
    if expected == NO_STREAM:
        holds = actual == -1
    elif expected == STREAM_EXISTS:
        holds = actual >= 0
    elif expected >= 0:
        holds = actual == expected
    else:
        return AppendRejectedError(f"stream {stream!r}: {expected} is not an expected version")
    return None if holds else WrongExpectedVersionError(stream, expected, actual)


def _is_resend(request: AppendRequest, stored: Sequence[RecordedEvent]) -> bool:
    """Whether ``stored`` is exactly what ``request`` would have stored, in order."""
    first_version = stored[0].version
    return all(
        old.stream == request.stream
        and old.version == first_version + offset
        and old.data == new.data
        and old.event_type == new.event_type
        and old.metadata == new.metadata
        for offset, (new, old) in enumerate(zip(request.events, stored, strict=True))
    )


def _conflict(request: AppendRequest, stored: RecordedEvent) -> EventIdConflictError:
    if stored.stream != request.stream:
        detail = f"in stream {stored.stream!r}"
    else:
        detail = (
            f"at version {stored.version} of stream {stored.stream!r}, "
            "and this append is not an exact re-send of stored events"
        )
    return EventIdConflictError(str(stored.event_id), detail)


def _repeated_id(ids: Sequence[uuid.UUID]) -> EventIdConflictError | None:
    """An id given to two events of one append: the second would collide with the first."""
    seen: set[uuid.UUID] = set()
    for event_id in ids:
        if event_id in seen:
            return EventIdConflictError(str(event_id), "earlier in this same append")
        seen.add(event_id)
    return None


class GroupCommit:
    """Decides, request by request, what one group commit stores.

    ``stream_head`` returns a stream's last stored version (-1 for none) and
    ``stored_events`` maps ids, by their integer value (:attr:`uuid.UUID.int`:
    an int hashes in C, a UUID in Python), to stored events: it holds every
    stored event among the group's ids (and may hold others), or nothing
    when the backend lets its unique index refuse a stored id instead; both
    describe the store as it was when the transaction began. Decisions then
    also take into account everything this group has accepted so far.
    """

    __slots__ = (
        "_added",
        "_heads",
        "_position",
        "_recorded_at_us",
        "_stored",
        "_stream_head",
        "new_events",
    )

    def __init__(
        self,
        *,
        last_position: int,
        recorded_at_us: int,
        stream_head: Callable[[str], int],
        stored_events: Mapping[int, RecordedEvent],
    ) -> None:
        self._position = last_position
        self._recorded_at_us = recorded_at_us
        self._stream_head = stream_head
        self._stored = stored_events
        self._heads: dict[str, int] = {}
        # Client-chosen ids this group stores, by their integer value too.
        self._added: dict[int, RecordedEvent] = {}
        self.new_events: list[RecordedEvent] = []
        """Every event the group stores, in position order."""

    def add(self, request: AppendRequest) -> AppendResult:
        """Decide ``request``: the events it stores (or re-sends), or why it is refused."""
        events = request.events
        chosen = []
        for event in events:  # a loop, not a comprehension: one call less per request
            if event.event_id is not None:
                chosen.append(event.event_id)
        if chosen:
            # Only requests carrying ids can be re-sends or collide, so the
            # common case (ids assigned here) never looks anything up.
            outcome = self._check_ids(request, chosen)
            if outcome is not None:
                return outcome
        stream = request.stream
        head = self._head(stream)
        if request.expected_version != ANY_VERSION:
            refusal = expected_version_error(stream, request.expected_version, head)
            if refusal is not None:
                return refusal
        position = self._position
        recorded_at_us = self._recorded_at_us
        stored = []
        for version, event in enumerate(events, start=head + 1):
            position += 1
            stored.append(
                _new_tuple(
                    RecordedEvent,
                    (
                        position,
                        event.event_id or new_event_id(),
                        stream,
                        version,
                        recorded_at_us,
                        event.event_type,
                        event.metadata,
                        event.data,
                    ),
                )
            )
        self._position = position
        self._heads[stream] = head + len(stored)
        self.new_events.extend(stored)
        if chosen:
            # Only an id a client chose can come back later in the group; an
            # id assigned here is new to everyone, so the common case skips this.
            added = self._added
            for recorded in stored:
                added[recorded.event_id.int] = recorded
        return tuple(stored)

    def _check_ids(self, request: AppendRequest, chosen: list[uuid.UUID]) -> AppendResult | None:
        """The re-send or conflict a request's ids amount to; ``None`` if they are all new."""
        added, stored = self._added, self._stored
        ids = [event_id.int for event_id in chosen]
        if (not added or added.keys().isdisjoint(ids)) and (
            not stored or stored.keys().isdisjoint(ids)
        ):
            return None if len(set(ids)) == len(ids) else _repeated_id(chosen)
        known = [event for event in map(self._find, chosen) if event is not None]
        if len(known) == len(request.events) and _is_resend(request, known):
            return tuple(known)
        return _conflict(request, known[0])

    def _find(self, event_id: uuid.UUID) -> RecordedEvent | None:
        key = event_id.int
        added = self._added.get(key)
        return added if added is not None else self._stored.get(key)

    def _head(self, stream: str) -> int:
        head = self._heads.get(stream)
        if head is None:
            head = self._heads[stream] = self._stream_head(stream)
        return head
