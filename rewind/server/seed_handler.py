"""Serving the seed protocol's requests."""

from __future__ import annotations

from rewind.errors import AppendRejectedError, StorageError
from rewind.model import ANY_VERSION, AppendRequest, NewEvent, RecordedEvent
from rewind.protocol import seed
from rewind.server.actions import Action, Commit, Read, Reply
from rewind.storage.base import AppendResult, EventStore

_new_tuple = tuple.__new__


def handle(request: seed.SeedRequest, default_stream: str) -> Action:
    """The action a seed request stands for."""
    if isinstance(request, seed.Publish):
        return publish(request.data, default_stream)
    if isinstance(request, seed.Query):
        query = request
        return Read(lambda store: answer_query(store, query))
    return Reply(seed.encode_error(request.reason))


def publish(data: bytes, default_stream: str) -> Commit:
    """The action of ``PUBLISH <data>``: append the event to the default stream."""
    # NewEvent(data) and AppendRequest(stream, events) without their Python
    # __new__ frames (defaults spelled out): this runs for every PUBLISH.
    event = _new_tuple(NewEvent, (data, None, "", b""))
    append = _new_tuple(AppendRequest, (default_stream, (event,), ANY_VERSION))
    return _new_tuple(Commit, (append, _published))


def _published(outcome: AppendResult | StorageError) -> list[bytes]:
    if isinstance(outcome, tuple):  # stored: the common case, and the cheapest check
        return seed.encode_published()
    if isinstance(outcome, StorageError):
        return seed.encode_error(f"not stored: {outcome}")
    if isinstance(outcome, AppendRejectedError):
        return seed.encode_error(str(outcome))
    return seed.encode_published()


def answer_query(store: EventStore, query: seed.Query) -> list[bytes]:
    """Run a seed QUERY against the store and return its reply frames."""
    after = 0
    through: int | None = None
    if query.from_id is not None:
        found = store.position_of(query.from_id)
        if found is None:
            return seed.encode_error(f"unknown from event id {query.from_id}")
        after = found
    if query.to_id is not None:
        through = store.position_of(query.to_id)
        if through is None:
            return seed.encode_error(f"unknown to event id {query.to_id}")
        if through < after:
            return seed.encode_error(seed.from_after_to_reason(query.from_id, query.to_id))
    events: list[RecordedEvent] = store.read_all(
        after=after, through=through, limit=seed.QUERY_PAGE_SIZE
    )
    return seed.encode_query_reply(
        ((event.event_id, event.data) for event in events),
        page_full=len(events) == seed.QUERY_PAGE_SIZE,
    )
