"""Serving Rewind v2 requests."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rewind import __version__
from rewind.errors import (
    EventIdConflictError,
    LimitExceededError,
    StorageError,
    StorageFullError,
    WritesStoppedError,
    WrongExpectedVersionError,
)
from rewind.protocol import v2
from rewind.protocol.dispatch import PROTOCOLS
from rewind.protocol.v2 import ErrorCode
from rewind.server.actions import Action, CancelRead, Commit, GrantCredit, Read, Reply, StartRead
from rewind.server.limits import Limits
from rewind.server.reads import (
    ReadSession,
    V2Read,
    fetch_all_backward,
    fetch_all_forward,
    fetch_stream,
)
from rewind.storage.base import AppendResult, EventStore

MAX_BATCH_SIZE = 10_000
"""Largest batch a read may ask for; more would make single messages too big."""
MAX_CREDIT = 1_024
"""Largest outstanding credit per read."""
MAX_LIST_STREAMS = 1_000
"""Most names in one LIST_STREAMS page."""


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What INFO reports about the running server."""

    storage_kind: str
    durable: bool
    limits: Limits


def handle(request: v2.Request | v2.BadRequest, facts: ServerFacts) -> Action:
    """The action a v2 request stands for."""
    match request:
        case v2.BadRequest():
            return Reply(v2.encode_bad_request(request))
        case v2.Append():
            request_id = request.request_id
            return Commit(
                request.as_append_request(), lambda outcome: _appended(request_id, outcome)
            )
        case v2.ReadStream() | v2.ReadAll():
            refused = _check_read_limits(request)
            if refused is not None:
                return Reply(refused)
            read = request
            return StartRead(lambda store: _open_read(store, read), request.request_id)
        case v2.Credit():
            return GrantCredit(request.request_id, request.grant)
        case v2.Cancel():
            return CancelRead(request.request_id)
        case v2.StreamInfoRequest():
            info = request
            return Read(
                lambda store: v2.encode_stream_info(info.request_id, store.stream_info(info.stream))
            )
        case v2.ListStreams():
            listing = request
            return Read(lambda store: _list_streams(store, listing))
        case v2.Ping():
            return Reply(v2.encode_pong(request.request_id))
        case v2.InfoRequest():
            request_id = request.request_id
            return Read(lambda store: _info(store, request_id, facts))
    raise AssertionError(f"unhandled v2 request {request!r}")  # pragma: no cover


def encode_storage_failure(request_id: int, error: StorageError) -> list[bytes]:
    """The reply to a request the store failed, with the code that says what to do next."""
    if isinstance(error, StorageFullError):
        code = ErrorCode.STORAGE_FULL
    elif isinstance(error, WritesStoppedError):
        code = ErrorCode.UNAVAILABLE
    else:
        code = ErrorCode.STORAGE_FAILURE
    return v2.encode_error(request_id, code, str(error))


def _limit(request_id: int, what: str, limit: int) -> list[bytes]:
    return v2.encode_error(request_id, ErrorCode.LIMIT_EXCEEDED, f"at most {limit} {what}", limit)


def _appended(request_id: int, outcome: AppendResult | StorageError) -> list[bytes]:
    if isinstance(outcome, WrongExpectedVersionError):
        return v2.encode_error(
            request_id, ErrorCode.WRONG_EXPECTED_VERSION, str(outcome), outcome.actual
        )
    if isinstance(outcome, EventIdConflictError):
        return v2.encode_error(request_id, ErrorCode.EVENT_ID_CONFLICT, str(outcome))
    if isinstance(outcome, LimitExceededError):
        return v2.encode_error(request_id, ErrorCode.LIMIT_EXCEEDED, str(outcome), outcome.limit)
    if isinstance(outcome, StorageError):
        return encode_storage_failure(request_id, outcome)
    if isinstance(outcome, Exception):
        return encode_storage_failure(request_id, StorageError(str(outcome)))
    return v2.encode_appended(request_id, outcome)


def _check_read_limits(read: v2.ReadStream | v2.ReadAll) -> list[bytes] | None:
    if read.batch_size > MAX_BATCH_SIZE:
        return _limit(read.request_id, "events per batch", MAX_BATCH_SIZE)
    if read.credit > MAX_CREDIT:
        return _limit(read.request_id, "batches of credit", MAX_CREDIT)
    return None


def _head(store: EventStore) -> int:
    last = store.last_event()
    return 0 if last is None else last.position


def _open_read(store: EventStore, read: v2.ReadStream | v2.ReadAll) -> ReadSession | list[bytes]:
    if isinstance(read, v2.ReadStream):
        info = store.stream_info(read.stream)
        if info is None:
            return v2.encode_error(
                read.request_id, ErrorCode.NOT_FOUND, f"stream {read.stream!r} does not exist"
            )
        if read.from_version is None:
            start = info.last_version if read.backwards else info.last_version + 1
        else:
            start = read.from_version
        fetch = fetch_stream(read.stream, start, read.backwards)
    else:
        prefix = read.stream_prefix or None
        types = read.event_types
        if isinstance(read.start, v2.AtTime):
            at = store.position_at(read.start.timestamp_us)
            if read.backwards:
                start = _head(store) if at is None else at - 1
            else:
                start = (_head(store) + 1) if at is None else at
        elif read.start is None:
            start = _head(store) if read.backwards else _head(store) + 1
        else:
            start = read.start
        if read.backwards:
            fetch = fetch_all_backward(start, prefix, types)
        else:
            fetch = fetch_all_forward(max(start, 1) - 1, prefix, types)
    return V2Read(
        routing=(),
        request_id=read.request_id,
        fetch=fetch,
        batch_size=read.batch_size,
        credit=read.credit,
        max_count=read.max_count,
        cursor=start,
        credit_limit=MAX_CREDIT,
        packed=read.packed,
    )


def _list_streams(store: EventStore, listing: v2.ListStreams) -> list[bytes]:
    limit = min(listing.limit, MAX_LIST_STREAMS)
    found = store.list_streams(after=listing.after or None, limit=limit + 1)
    names = [info.stream for info in found[:limit]]
    return v2.encode_streams(listing.request_id, names, more=len(found) > limit)


def _info(store: EventStore, request_id: int, facts: ServerFacts) -> list[bytes]:
    limits = facts.limits
    return v2.encode_info(
        request_id,
        server_version=__version__,
        storage_kind=facts.storage_kind,
        protocols=PROTOCOLS,
        head_position=_head(store),
        server_time_us=time.time_ns() // 1000,
        durable=facts.durable,
        write_failure=store.write_failure,
        max_batch_size=MAX_BATCH_SIZE,
        max_credit=MAX_CREDIT,
        max_append_events=limits.max_append_events,
        max_message_bytes=limits.max_message_bytes,
        max_event_bytes=limits.max_event_bytes,
        max_stream_name_bytes=limits.max_stream_name_bytes,
    )
