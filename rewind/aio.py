"""The asyncio client for Rewind: ``from rewind.aio import AsyncClient``.

:class:`AsyncClient` has the methods of :class:`rewind.client.Client`'s
Rewind v2 part, awaited, with async iterators for reads and subscriptions.
Its errors are those of :mod:`rewind.client.errors`, re-exported here.
"""

from rewind.client.aio import AsyncClient, AsyncEventReader, AsyncSubscription
from rewind.client.curve import CurveKeys
from rewind.client.errors import (
    BadRequest,
    ClientError,
    EventIdConflict,
    Forbidden,
    LimitExceeded,
    ProtocolError,
    RequestTimeout,
    ServerError,
    ServerUnavailable,
    StorageFailure,
    StorageFull,
    StreamNotFound,
    WrongExpectedVersion,
)
from rewind.client.models import AppendResult, EventData, ServerInfo
from rewind.client.reads import ReadEnd
from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS, RecordedEvent, StreamInfo

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "AsyncClient",
    "AsyncEventReader",
    "AsyncSubscription",
    "BadRequest",
    "ClientError",
    "CurveKeys",
    "EventData",
    "EventIdConflict",
    "Forbidden",
    "LimitExceeded",
    "ProtocolError",
    "ReadEnd",
    "RecordedEvent",
    "RequestTimeout",
    "ServerError",
    "ServerInfo",
    "ServerUnavailable",
    "StorageFailure",
    "StorageFull",
    "StreamInfo",
    "StreamNotFound",
    "WrongExpectedVersion",
]
