"""The records a store keeps and hands back.

Events carry their global position (1, 2, 3… in commit order across every
stream), their stream name and version within that stream (0, 1, 2…), so the
seed protocol's single log and per-stream protocols read the same rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

DEFAULT_STREAM = "default"
"""The stream that seed-protocol PUBLISH appends to unless configured otherwise."""


def new_event_id() -> uuid.UUID:
    """Return a fresh server-assigned event id (a type 1 UUID, as the seed names)."""
    return uuid.uuid1()


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event as a writer hands it over, before it has a position."""

    data: bytes
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_type: str = ""
    metadata: bytes = b""


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """Events to append to one stream, atomically."""

    stream: str
    events: tuple[NewEvent, ...]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the store holds it, after commit."""

    position: int
    event_id: uuid.UUID
    stream: str
    version: int
    recorded_at_us: int
    """Commit time in microseconds since the Unix epoch."""
    event_type: str
    metadata: bytes
    data: bytes
