"""The records a store keeps and hands back.

Events carry their global position (1, 2, 3… in commit order across every
stream), their stream name and version within that stream (0, 1, 2…), so the
seed protocol's single log and per-stream protocols read the same rows.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import NamedTuple

DEFAULT_STREAM = "default"
"""The stream that seed-protocol PUBLISH appends to unless configured otherwise."""

# 100-nanosecond intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


class _TimeUUIDGenerator:
    """Type 1 UUIDs without a system call or lock file per id.

    ``uuid.uuid1()`` may consult libuuid's clock file on every call, which costs
    more than the rest of a publish. Here the node is random (with the
    multicast bit set, as RFC 9562 asks for random nodes) and the clock
    sequence is random per process, so ids differ across processes and
    restarts; within a process the timestamp strictly increases, so no two ids
    are equal even when the clock stands still or steps back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_timestamp = 0
        node = secrets.randbits(48) | (1 << 40)
        clock_seq = secrets.randbits(14)
        self._low_bits = (0x8000 | clock_seq) << 48 | node  # variant 10xx

    def next_id(self) -> uuid.UUID:
        """A fresh id, later than every id this generator made before."""
        lock = self._lock
        lock.acquire()  # half the cost of a with statement, which shows per event
        try:
            timestamp = time.time_ns() // 100 + _UUID_EPOCH_OFFSET
            if timestamp <= self._last_timestamp:
                timestamp = self._last_timestamp + 1
            self._last_timestamp = timestamp
        finally:
            lock.release()
        # The high 64 bits: time_low, time_mid, then the version and time_hi.
        high = (
            (timestamp & 0xFFFFFFFF) << 32
            | (timestamp >> 16) & 0xFFFF0000
            | (timestamp >> 48) & 0x0FFF
            | 0x1000
        )
        return _uuid_from_int(high << 64 | self._low_bits)


_new_object = object.__new__
# The slots' own setters: object.__setattr__ would look each name up first.
_set_int = vars(uuid.UUID)["int"].__set__
_set_is_safe = vars(uuid.UUID)["is_safe"].__set__
_UNKNOWN_SAFETY = uuid.SafeUUID.unknown


def _uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to fit 128 bits, in under half the time.

    ``UUID``'s constructor checks its arguments in Python, which costs more
    than the rest of decoding an event. The fields are set the way ``UUID``
    sets them when it is unpickled.
    """
    event_id = _new_object(uuid.UUID)
    _set_int(event_id, value)
    _set_is_safe(event_id, _UNKNOWN_SAFETY)
    return event_id


def event_id_from_bytes(raw: bytes) -> uuid.UUID:
    """``uuid.UUID(bytes=raw)`` for exactly 16 bytes (ids from the store or the wire)."""
    return _uuid_from_int(int.from_bytes(raw))


# A bound method: calling an instance would go through its type's __call__ slot.
new_event_id = _TimeUUIDGenerator().next_id
"""Return a fresh server-assigned event id: a type 1 UUID, as the seed names."""


class NewEvent(NamedTuple):
    """An event as a writer hands it over, before it has a position.

    Without an ``event_id`` the store assigns a fresh one (:data:`new_event_id`).
    """

    data: bytes
    event_id: uuid.UUID | None = None
    event_type: str = ""
    metadata: bytes = b""


ANY_VERSION = -2
"""Expected version: append whatever the stream's state."""
NO_STREAM = -1
"""Expected version: the stream must not exist yet (it has no events)."""
STREAM_EXISTS = -4
"""Expected version: the stream must already have at least one event."""
# Any value >= 0 means: the stream's last version must be exactly this.


class AppendRequest(NamedTuple):
    """Events to append to one stream, atomically, if the stream is as expected."""

    stream: str
    events: tuple[NewEvent, ...]
    expected_version: int = ANY_VERSION
    """:data:`ANY_VERSION`, :data:`NO_STREAM`, :data:`STREAM_EXISTS` or an exact version."""


class StreamInfo(NamedTuple):
    """What a store knows about one stream. Versions are contiguous, so the
    event count is ``last_version + 1``."""

    stream: str
    last_version: int
    first_position: int
    last_position: int

    @property
    def event_count(self) -> int:
        """Number of events in the stream."""
        return self.last_version + 1


class RecordedEvent(NamedTuple):
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
