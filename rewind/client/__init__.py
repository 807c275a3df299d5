"""Clients for Rewind.

:class:`Client` speaks Rewind v2 (streams, expected versions, streamed reads,
catch-up subscriptions) and the seed protocol (``publish``, ``query``,
``follow``); :class:`rewind.aio.AsyncClient` is its asyncio twin. The errors
of both are described in :mod:`rewind.client.errors`.

The module functions :func:`publish_event`, :func:`query_events`,
:func:`yield_events_after` and :class:`QueryException` keep the names,
arguments and behaviour of the ``rewind-client`` 0.3 package.
"""

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
from rewind.client.legacy import QueryException, publish_event, query_events, yield_events_after
from rewind.client.models import AppendResult, EventData, ServerInfo
from rewind.client.readers import EventReader, Subscription
from rewind.client.reads import ReadEnd
from rewind.client.sync import Client, Event
from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS, RecordedEvent, StreamInfo

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "BadRequest",
    "Client",
    "ClientError",
    "CurveKeys",
    "Event",
    "EventData",
    "EventIdConflict",
    "EventReader",
    "Forbidden",
    "LimitExceeded",
    "ProtocolError",
    "QueryException",
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
    "Subscription",
    "WrongExpectedVersion",
    "publish_event",
    "query_events",
    "yield_events_after",
]
