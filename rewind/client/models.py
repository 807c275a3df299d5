"""Values the v2 client methods take and return.

:class:`~rewind.model.RecordedEvent` (what reads and subscriptions yield) and
:class:`~rewind.model.StreamInfo` come from :mod:`rewind.model`, shared with
the server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from rewind.model import NewEvent, new_event_id

__all__ = ["AppendResult", "EventData", "ServerInfo", "timestamp_us", "to_datetime"]


@dataclass(frozen=True, slots=True)
class EventData:
    """An event to append: data, and optionally a type, metadata and an id.

    Without an ``id`` the client assigns one before sending, so that a retry
    after a lost reply is recognised by the server instead of storing the
    event twice. Give an ``id`` yourself when the same logical event may be
    appended again from elsewhere (for instance after a crash).
    """

    data: bytes
    type: str = ""
    metadata: bytes = b""
    id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append's events were stored.

    The events have consecutive positions ``first_position`` to
    ``last_position`` and consecutive versions ``first_version`` to
    ``last_version``; ``last_version`` is the expected version for the
    stream's next append.
    """

    stream: str
    first_position: int
    last_position: int
    last_version: int
    event_ids: tuple[uuid.UUID, ...]
    """The events' ids, in the order they were given."""
    recorded_at_us: int
    """Commit time, in microseconds since the Unix epoch."""

    @property
    def first_version(self) -> int:
        """Version of the append's first event."""
        return self.last_version - len(self.event_ids) + 1

    @property
    def recorded_at(self) -> datetime:
        """Commit time as an aware UTC datetime."""
        return to_datetime(self.recorded_at_us)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server is, what it holds, and the limits it sets for clients."""

    server_version: str
    storage_kind: str
    """For instance ``sqlite`` or ``memory``."""
    protocols: tuple[str, ...]
    """Protocols served on the request socket, e.g. ``("RWD2", "gorewind", "seed")``."""
    head_position: int
    """Position of the newest event; 0 for an empty store."""
    server_time_us: int
    durable: bool
    max_batch_size: int
    max_credit: int
    max_append_events: int
    max_message_bytes: int
    """Largest frame the server accepts; 0 when it sets no limit."""
    max_event_bytes: int
    """Largest event (data, metadata and type together)."""
    max_stream_name_bytes: int
    write_failure: str | None = None
    """Why the server stopped accepting appends; ``None`` while it accepts them."""

    @property
    def accepts_writes(self) -> bool:
        """Whether the server accepts appends (it stops after a storage I/O error)."""
        return self.write_failure is None

    @property
    def server_time(self) -> datetime:
        """The server's clock when it answered, as an aware UTC datetime."""
        return to_datetime(self.server_time_us)


def to_datetime(timestamp: int) -> datetime:
    """Microseconds since the Unix epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(timestamp // 1_000_000, UTC).replace(
        microsecond=timestamp % 1_000_000
    )


def timestamp_us(moment: datetime | int) -> int:
    """Microseconds since the Unix epoch for a datetime (naive means UTC) or an int."""
    if isinstance(moment, int):
        if moment < 0:
            raise ValueError(f"a time before 1970 cannot be read from: {moment}")
        return moment
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime or microseconds, not {type(moment).__name__}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    # Integer arithmetic: a float timestamp loses microseconds for today's dates.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if micros < 0:
        raise ValueError(f"a time before 1970 cannot be read from: {moment.isoformat()}")
    return micros


def to_new_event(event: EventData | bytes) -> NewEvent:
    """The store-level event for an append, with an id assigned if it had none."""
    if isinstance(event, bytes | bytearray | memoryview):
        return NewEvent(bytes(event), new_event_id())
    if not isinstance(event, EventData):
        raise TypeError(f"an event is bytes or EventData, not {type(event).__name__}")
    if not isinstance(event.data, bytes | bytearray | memoryview):
        raise TypeError(f"event data must be bytes, not {type(event.data).__name__}")
    if not isinstance(event.metadata, bytes | bytearray | memoryview):
        raise TypeError(f"event metadata must be bytes, not {type(event.metadata).__name__}")
    return NewEvent(
        bytes(event.data),
        event.id if event.id is not None else new_event_id(),
        event.type,
        bytes(event.metadata),
    )
