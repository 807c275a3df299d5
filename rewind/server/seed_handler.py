"""Serving the seed protocol's requests from a store."""

from __future__ import annotations

from rewind.model import AppendRequest, NewEvent, RecordedEvent
from rewind.protocol import seed
from rewind.storage.base import EventStore


def publish_request(request: seed.Publish, stream: str) -> AppendRequest:
    """The store append a seed PUBLISH stands for."""
    return AppendRequest(stream=stream, events=(NewEvent(data=request.data),))


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
