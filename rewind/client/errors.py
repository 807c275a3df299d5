"""The client's error tree, in one place.

Everything :class:`~rewind.client.Client` and :class:`~rewind.aio.AsyncClient`
raise on purpose derives from :class:`ClientError`::

    ClientError
    ├── ServerError            the server answered ERROR; .reason, .code, .detail
    │   ├── BadRequest         the server could not parse or serve the request as sent
    │   ├── WrongExpectedVersion   an append's expected version did not match;
    │   │                          .actual_version is the stream's real last version
    │   ├── EventIdConflict    an event id is stored already with other content
    │   ├── StreamNotFound     read_stream of a stream that does not exist
    │   ├── StorageFailure     the store failed; an append stored nothing
    │   │   └── StorageFull    the server's disk is full; retry once space is freed
    │   ├── LimitExceeded      a server limit was exceeded; .limit says which value
    │   └── ServerUnavailable  the server is shutting down, or stopped accepting
    │                          appends after a storage I/O error
    ├── RequestTimeout         no reply in time, after the retries (also a TimeoutError)
    └── ProtocolError          the server's reply broke the protocol

* :class:`ServerError` is also a :class:`~rewind.client.QueryException`, so
  handlers written for the legacy functions keep working. Seed-protocol errors
  (``publish``, ``query``, ``follow``) are plain :class:`ServerError` with
  ``code`` ``None``; Rewind v2 errors carry the protocol's numeric ``code``
  (:class:`~rewind.protocol.v2.ErrorCode`) and the subclass that matches it. A
  code this client does not know yet is a plain :class:`ServerError`.
* :class:`RequestTimeout` from the seed ``publish`` means the outcome is
  unknown. A v2 ``append`` has already been retried with the same event ids,
  which is safe; after a timeout, calling ``append`` again with the same
  :class:`~rewind.client.EventData` ids is safe too.
* Invalid arguments (a stream name with NUL, an expected version of -3, ...)
  raise :class:`ValueError` or :class:`TypeError` before anything is sent.
"""

from __future__ import annotations

from rewind.client.legacy import QueryException
from rewind.protocol.v2 import ErrorCode, ErrorReply

__all__ = [
    "BadRequest",
    "ClientError",
    "EventIdConflict",
    "LimitExceeded",
    "ProtocolError",
    "RequestTimeout",
    "ServerError",
    "ServerUnavailable",
    "StorageFailure",
    "StorageFull",
    "StreamNotFound",
    "WrongExpectedVersion",
]


class ClientError(Exception):
    """Base class of the errors the Rewind clients raise."""


class ServerError(ClientError, QueryException):
    """The server answered with ``ERROR``.

    ``reason`` is the server's explanation, for people. For Rewind v2 replies
    ``code`` is the stable error code and ``detail`` its numeric detail; both
    are ``None``/0 for the seed protocol.
    """

    def __init__(self, reason: str, *, code: int | None = None, detail: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.detail = detail


class BadRequest(ServerError):
    """The server refused the request as malformed, unknown or of another protocol version.

    The client only sends well-formed requests, so this usually means the
    server is older or newer than the client.
    """


class WrongExpectedVersion(ServerError):
    """An append's expected version did not match the stream; nothing was stored.

    ``actual_version`` is the stream's last version when the server checked
    (-1: the stream does not exist); retrying with it as the expected version
    is the usual answer to a concurrent writer.
    """

    def __init__(
        self,
        reason: str,
        *,
        actual_version: int,
        stream: str = "",
        expected_version: int | None = None,
        code: int | None = ErrorCode.WRONG_EXPECTED_VERSION,
    ) -> None:
        super().__init__(reason, code=code, detail=actual_version)
        self.actual_version = actual_version
        self.stream = stream
        self.expected_version = expected_version


class EventIdConflict(ServerError):
    """An event id of the append is stored already with other content; nothing was stored.

    Re-sending an identical append is not a conflict (it succeeds with the
    original positions); reusing an id for other data, type, metadata or
    stream is.
    """


class StreamNotFound(ServerError):
    """The stream to read does not exist (it has no events)."""

    def __init__(self, reason: str, *, stream: str = "", code: int | None = None) -> None:
        super().__init__(reason, code=ErrorCode.NOT_FOUND if code is None else code)
        self.stream = stream


class StorageFailure(ServerError):
    """The server's store failed; for an append, nothing was stored."""


class StorageFull(StorageFailure):
    """The server's disk is full; nothing was stored. Appends work again once space is freed."""


class LimitExceeded(ServerError):
    """A server or protocol limit was exceeded; ``limit`` is the limit's value."""

    @property
    def limit(self) -> int:
        """The limit that was exceeded (events per append, credit, ...)."""
        return self.detail


class ServerUnavailable(ServerError):
    """The server did not serve the request; retry later or elsewhere.

    It is shutting down, or (for an append) it stopped accepting appends after
    a storage I/O error; :meth:`~rewind.client.Client.server_info` says why.
    """


class Forbidden(ServerError):
    """The server's CURVE set-up lets this client key read and subscribe, not append."""


class RequestTimeout(ClientError, TimeoutError):
    """The server did not answer in time (after the retries the client makes)."""


class ProtocolError(ClientError):
    """The server's reply does not follow the protocol."""


_BY_CODE: dict[int, type[ServerError]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.UNKNOWN_COMMAND: BadRequest,
    ErrorCode.UNSUPPORTED_VERSION: BadRequest,
    ErrorCode.EVENT_ID_CONFLICT: EventIdConflict,
    ErrorCode.STORAGE_FAILURE: StorageFailure,
    ErrorCode.STORAGE_FULL: StorageFull,
    ErrorCode.LIMIT_EXCEEDED: LimitExceeded,
    ErrorCode.UNAVAILABLE: ServerUnavailable,
    ErrorCode.FORBIDDEN: Forbidden,
}


def error_from_reply(
    reply: ErrorReply, *, stream: str = "", expected_version: int | None = None
) -> ServerError:
    """The exception that stands for a v2 ``ERROR`` reply.

    ``stream`` and ``expected_version`` describe the request, for the
    exceptions that carry them.
    """
    code = reply.code
    if code == ErrorCode.WRONG_EXPECTED_VERSION:
        return WrongExpectedVersion(
            reply.message,
            actual_version=reply.detail,
            stream=stream,
            expected_version=expected_version,
        )
    if code == ErrorCode.NOT_FOUND:
        return StreamNotFound(reply.message, stream=stream)
    return _BY_CODE.get(code, ServerError)(reply.message, code=code, detail=reply.detail)
