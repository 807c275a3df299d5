"""Clients for Rewind.

The module functions :func:`publish_event`, :func:`query_events`,
:func:`yield_events_after` and :class:`QueryException` keep the names,
arguments and behaviour of the ``rewind-client`` 0.3 package. :class:`Client`
is the friendlier interface; its errors are described in
:mod:`rewind.client.errors`.
"""

from rewind.client.errors import ClientError, ProtocolError, RequestTimeout, ServerError
from rewind.client.legacy import QueryException, publish_event, query_events, yield_events_after
from rewind.client.sync import Client, Event

__all__ = [
    "Client",
    "ClientError",
    "Event",
    "ProtocolError",
    "QueryException",
    "RequestTimeout",
    "ServerError",
    "publish_event",
    "query_events",
    "yield_events_after",
]
