"""Serving the Gorewind dialect: PUBLISH and QUERY on named streams."""

from __future__ import annotations

import uuid

from rewind.errors import AppendRejectedError, StorageError
from rewind.model import AppendRequest, NewEvent
from rewind.protocol import gorewind
from rewind.server.actions import Action, Commit, Reply, StartRead
from rewind.server.reads import GorewindQuery, ReadSession, fetch_stream_range
from rewind.storage.base import AppendResult, EventStore


def handle(request: gorewind.GorewindRequest) -> Action:
    """The action a Gorewind request stands for."""
    if isinstance(request, gorewind.Publish):
        append = AppendRequest(request.stream, (NewEvent(data=request.data),))
        return Commit(append, _published)
    if isinstance(request, gorewind.Query):
        query = request
        return StartRead(lambda store: _open_query(store, query))
    return Reply(gorewind.encode_error(request.reason))


def _published(outcome: AppendResult | StorageError) -> list[bytes]:
    if isinstance(outcome, StorageError):
        return gorewind.encode_error(f"not stored: {outcome}")
    if isinstance(outcome, AppendRejectedError):
        return gorewind.encode_error(str(outcome))
    return gorewind.encode_published(outcome[0].event_id)


def _version_in_stream(store: EventStore, stream: str, event_id: uuid.UUID) -> int | None:
    position = store.position_of(event_id)
    if position is None:
        return None
    found = store.read_all(after=position - 1, through=position, limit=1)
    return found[0].version if found and found[0].stream == stream else None


def _open_query(store: EventStore, query: gorewind.Query) -> ReadSession | list[bytes]:
    after = -1
    through: int | None = None
    if query.from_id is not None:
        version = _version_in_stream(store, query.stream, query.from_id)
        if version is None:
            return gorewind.encode_error(
                gorewind.unknown_id_reason("from", query.from_id, query.stream)
            )
        after = version
    if query.to_id is not None:
        through = _version_in_stream(store, query.stream, query.to_id)
        if through is None:
            return gorewind.encode_error(
                gorewind.unknown_id_reason("to", query.to_id, query.stream)
            )
        if through < after:
            assert query.from_id is not None
            return gorewind.encode_error(gorewind.from_after_to_reason(query.from_id, query.to_id))
    return GorewindQuery(routing=(), fetch=fetch_stream_range(query.stream, after, through))
