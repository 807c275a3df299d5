"""The client's error tree, in one place.

* :class:`ClientError` — base of everything the :class:`~rewind.client.Client` raises.
* :class:`ServerError` — the server answered ``ERROR``; ``reason`` says why. Also
  a :class:`~rewind.client.QueryException`, so legacy handlers keep working.
* :class:`RequestTimeout` — no reply within the timeout. For a publish this
  means the outcome is unknown: the event may or may not be stored.
* :class:`ProtocolError` — the server's reply broke the protocol.
"""

from __future__ import annotations

from rewind.client.legacy import QueryException


class ClientError(Exception):
    """Base class of the errors :class:`~rewind.client.Client` raises."""


class ServerError(ClientError, QueryException):
    """The server answered with ``ERROR``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestTimeout(ClientError, TimeoutError):
    """The server did not answer in time."""


class ProtocolError(ClientError):
    """The server's reply does not follow the protocol."""
