"""The v2 requests with a single reply, without I/O: building them, reading their replies.

Each operation is a small object: :meth:`frames` builds the request for a
request id (the same content on every retry, so an append retried after a
lost reply is recognised by the server), :meth:`result` turns the reply
into the value the client returns or raises the matching exception. The
synchronous and asyncio clients differ only in how they wait.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from rewind.client.errors import ProtocolError, error_from_reply
from rewind.client.models import AppendResult, EventData, ServerInfo, to_new_event
from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS, NewEvent, StreamInfo
from rewind.protocol import v2

__all__ = [
    "AppendOperation",
    "InfoOperation",
    "ListStreamsOperation",
    "PingOperation",
    "StreamInfoOperation",
    "check_expected_version",
]

DEFAULT_PAGE_SIZE = 100
"""Stream names per LIST_STREAMS request unless told otherwise."""


def check_expected_version(expected_version: int) -> int:
    """``expected_version`` if it is one of the constants or a version >= 0."""
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(f"expected_version must be an int, not {type(expected_version).__name__}")
    if expected_version < 0 and expected_version not in (ANY_VERSION, NO_STREAM, STREAM_EXISTS):
        raise ValueError(
            f"expected_version {expected_version} is none of ANY_VERSION, NO_STREAM, "
            "STREAM_EXISTS or a version >= 0"
        )
    return expected_version


def _unexpected(reply: v2.Reply, what: str) -> ProtocolError:
    return ProtocolError(f"unexpected {type(reply).__name__} reply to {what}")


@dataclass(frozen=True, slots=True)
class AppendOperation:
    """APPEND of events that all carry ids, so that every retry is idempotent."""

    stream: str
    events: tuple[NewEvent, ...]
    expected_version: int

    @classmethod
    def build(
        cls, stream: str, events: Iterable[EventData | bytes], expected_version: int
    ) -> AppendOperation:
        """Check the arguments and give every event an id, once, before anything is sent."""
        if isinstance(events, bytes | bytearray | memoryview | EventData):
            raise TypeError("events must be a sequence of bytes or EventData, not a single event")
        new_events = tuple(to_new_event(event) for event in events)
        operation = cls(stream, new_events, check_expected_version(expected_version))
        operation.frames(1)  # the encoder's checks (name, count), before the first send
        return operation

    def frames(self, request_id: int) -> list[bytes]:
        """The APPEND request."""
        return v2.encode_append_request(request_id, self.stream, self.events, self.expected_version)

    def result(self, reply: v2.Reply) -> AppendResult:
        """The append's result, or the exception its ``ERROR`` stands for."""
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(
                reply, stream=self.stream, expected_version=self.expected_version
            )
        if not isinstance(reply, v2.Appended):
            raise _unexpected(reply, "APPEND")
        sent: tuple[uuid.UUID | None, ...] = tuple(event.event_id for event in self.events)
        if reply.event_ids != sent:
            raise ProtocolError("APPENDED names other event ids than the append sent")
        return AppendResult(
            stream=self.stream,
            first_position=reply.first_position,
            last_position=reply.last_position,
            last_version=reply.last_version,
            event_ids=reply.event_ids,
            recorded_at_us=reply.recorded_at_us,
        )


@dataclass(frozen=True, slots=True)
class StreamInfoOperation:
    """STREAM_INFO of one stream."""

    stream: str

    def frames(self, request_id: int) -> list[bytes]:
        """The STREAM_INFO request."""
        return v2.encode_stream_info_request(request_id, self.stream)

    def result(self, reply: v2.Reply) -> StreamInfo | None:
        """The stream's state, ``None`` if it does not exist."""
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(reply, stream=self.stream)
        if not isinstance(reply, v2.StreamInfoReply):
            raise _unexpected(reply, "STREAM_INFO")
        if not reply.exists:
            return None
        return StreamInfo(
            self.stream, reply.last_version, reply.first_position, reply.last_position
        )


@dataclass(frozen=True, slots=True)
class ListStreamsOperation:
    """One LIST_STREAMS page: names after ``after``."""

    after: str
    limit: int = DEFAULT_PAGE_SIZE

    def frames(self, request_id: int) -> list[bytes]:
        """The LIST_STREAMS request."""
        return v2.encode_list_streams_request(request_id, after=self.after, limit=self.limit)

    def result(self, reply: v2.Reply) -> tuple[tuple[str, ...], bool]:
        """The page's names, and whether more may follow."""
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(reply)
        if not isinstance(reply, v2.StreamList):
            raise _unexpected(reply, "LIST_STREAMS")
        if reply.more and not reply.streams:
            # Asking again after the same name would loop for ever.
            raise ProtocolError("STREAMS says more but names no stream")
        return reply.streams, reply.more


@dataclass(frozen=True, slots=True)
class PingOperation:
    """PING."""

    def frames(self, request_id: int) -> list[bytes]:
        """The PING request."""
        return v2.encode_ping_request(request_id)

    def result(self, reply: v2.Reply) -> None:
        """Nothing, if the reply is a PONG."""
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(reply)
        if not isinstance(reply, v2.Pong):
            raise _unexpected(reply, "PING")


@dataclass(frozen=True, slots=True)
class InfoOperation:
    """INFO."""

    def frames(self, request_id: int) -> list[bytes]:
        """The INFO request."""
        return v2.encode_info_request(request_id)

    def result(self, reply: v2.Reply) -> ServerInfo:
        """What the server says about itself."""
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(reply)
        if not isinstance(reply, v2.ServerInfo):
            raise _unexpected(reply, "INFO")
        return ServerInfo(
            server_version=reply.server_version,
            storage_kind=reply.storage_kind,
            protocols=reply.protocols,
            head_position=reply.head_position,
            server_time_us=reply.server_time_us,
            durable=reply.durable,
            max_batch_size=reply.max_batch_size,
            max_credit=reply.max_credit,
            max_append_events=reply.max_append_events,
            max_message_bytes=reply.max_message_bytes,
            max_event_bytes=reply.max_event_bytes,
            max_stream_name_bytes=reply.max_stream_name_bytes,
            write_failure=reply.write_failure,
        )


def list_streams_start(after: str | None) -> str:
    """The ``after`` of the first LIST_STREAMS page."""
    return "" if after is None else after
