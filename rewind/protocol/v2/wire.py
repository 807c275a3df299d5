"""Rewind v2 wire basics shared by requests, replies and the feed.

Everything here is about bytes on the wire: the marker and command words,
the fixed-width header layouts, the stable error codes, the rules for names,
and the six frames that carry one event (in read batches and on the feed).
See the "Rewind v2" section of ``docs/protocol.md`` for the specification.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from enum import IntEnum

from rewind.model import RecordedEvent, event_id_from_bytes

MARKER = b"RWD2"
"""First frame of every v2 request and reply: protocol and version."""

_MARKER_SHAPE = re.compile(rb"RWD[0-9]+\Z")

U64_MAX = 2**64 - 1
I63_MAX = 2**63 - 1
"""Positions, versions, counts and times must fit in 63 bits (signed stores)."""

END = U64_MAX
"""Start sentinel on the wire: start from the end of the stream or the log."""
NO_LIMIT = U64_MAX
"""``max_count`` sentinel on the wire: return every event in range."""

MAX_NAME_BYTES = 1024
"""Longest stream name, event type or prefix, in UTF-8 bytes."""
MAX_TYPE_FILTER = 256
"""Most event types a READ_ALL may filter on."""
EVENT_ID_BYTES = 16

# Request command words.
APPEND = b"APPEND"
READ_STREAM = b"READ_STREAM"
READ_ALL = b"READ_ALL"
CREDIT = b"CREDIT"
CANCEL = b"CANCEL"
STREAM_INFO = b"STREAM_INFO"
LIST_STREAMS = b"LIST_STREAMS"
PING = b"PING"
INFO = b"INFO"

# Reply words (STREAM_INFO and INFO answer with their own command word).
APPENDED = b"APPENDED"
EVENTS = b"EVENTS"
END_WORD = b"END"
STREAMS = b"STREAMS"
PONG = b"PONG"
ERROR = b"ERROR"

# Header layouts, network byte order, no padding. Request ids always lead,
# so a reader can find the id of any request or reply without knowing its kind.
REQUEST_ID = struct.Struct("!Q")
APPEND_HEADER = struct.Struct("!QqI")  # id, expected version, event count
READ_STREAM_HEADER = struct.Struct("!QBQQII")  # id, direction, from, max, batch, credit
READ_ALL_HEADER = struct.Struct("!QBBQQIIH")  # ... start kind, start, ..., type count
CREDIT_HEADER = struct.Struct("!QI")  # id, grant
LIST_STREAMS_HEADER = struct.Struct("!QI")  # id, limit

APPENDED_HEADER = struct.Struct("!QQQQq")  # id, first pos, last pos, last version, time
EVENTS_HEADER = struct.Struct("!QI")  # id, count
END_HEADER = struct.Struct("!QBqQ")  # id, reason, next, count
STREAM_INFO_HEADER = struct.Struct("!QBqQQQ")  # id, exists, last v, count, first, last
STREAMS_HEADER = struct.Struct("!QIB")  # id, count, more
# id, head, time, durable, writable, max batch, max credit, max events per append,
# max message bytes, max event bytes, max stream name bytes
INFO_HEADER = struct.Struct("!QQqBBIIIQQI")
ERROR_HEADER = struct.Struct("!QHq")  # id, code, detail

EVENT_HEADER = struct.Struct("!QQq")  # position, version, commit time
EVENT_FRAMES = 6
"""Frames per event: stream, event header, id, type, metadata, data."""

READ_FLAGS = struct.Struct("!B")
"""The optional byte after a READ_STREAM or READ_ALL header."""
READ_PACKED = 0x01
"""Read flag: every EVENTS batch carries its events packed into one frame."""
# Before each packed event: position, version, commit time, id, then the byte
# lengths of stream name, type, metadata and data, which follow in that order.
PACKED_EVENT = struct.Struct("!QQq16sHHII")


class ErrorCode(IntEnum):
    """Stable numeric error codes of v2 ``ERROR`` replies."""

    BAD_REQUEST = 1
    UNKNOWN_COMMAND = 2
    UNSUPPORTED_VERSION = 3
    WRONG_EXPECTED_VERSION = 4
    EVENT_ID_CONFLICT = 5
    NOT_FOUND = 6
    STORAGE_FAILURE = 7
    LIMIT_EXCEEDED = 8
    UNAVAILABLE = 9
    STORAGE_FULL = 10
    FORBIDDEN = 11


class EndReason(IntEnum):
    """Why a read ended, as carried by its ``END`` reply."""

    DONE = 0
    MAX_COUNT = 1
    CANCELLED = 2


class StartKind(IntEnum):
    """How a READ_ALL start field is meant."""

    POSITION = 0
    TIMESTAMP = 1


class ProtocolError(ValueError):
    """A message from the server does not follow the v2 protocol."""


def is_marker(frame: bytes) -> bool:
    """Whether a frame looks like a v2-family marker (``RWD`` and digits), any version."""
    return _MARKER_SHAPE.match(frame) is not None


def name_problem(name: str, *, allow_empty: bool = False) -> str | None:
    """Why ``name`` cannot be a stream name (or type, or prefix); ``None`` if it can."""
    if not name:
        return None if allow_empty else "empty"
    if "\x00" in name:
        return "contains NUL"
    # Byte length is only needed when the characters could exceed the limit.
    if len(name) * 4 > MAX_NAME_BYTES and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None


class InvalidName(ValueError):
    """A name frame breaks the naming rules; the message says how."""


def decode_name(frame: bytes, *, allow_empty: bool = False) -> str:
    """Decode and check a name frame, raising :class:`InvalidName` if it is unusable."""
    if len(frame) > MAX_NAME_BYTES:
        # Checked before decoding so a huge frame costs nothing.
        raise InvalidName(f"longer than {MAX_NAME_BYTES} bytes")
    try:
        name = frame.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidName("not valid UTF-8") from None
    problem = name_problem(name, allow_empty=allow_empty)
    if problem is not None:
        raise InvalidName(problem)
    return name


def printable(frame: bytes, limit: int = 40) -> str:
    """A short, safe rendering of a frame for error messages."""
    text = frame[:limit].decode("ascii", errors="backslashreplace")
    return text + ("..." if len(frame) > limit else "")


# Events ------------------------------------------------------------------------


def encode_event(event: RecordedEvent) -> list[bytes]:
    """The six frames of one event, as in EVENTS batches and on the feed."""
    return [
        event.stream.encode("utf-8"),
        EVENT_HEADER.pack(event.position, event.version, event.recorded_at_us),
        event.event_id.bytes,
        event.event_type.encode("utf-8"),
        event.metadata,
        event.data,
    ]


def decode_event(frames: Sequence[bytes], start: int = 0) -> RecordedEvent:
    """Decode the six event frames at ``frames[start:start + 6]``.

    Raises :class:`ProtocolError` if they do not form an event.
    """
    if len(frames) < start + EVENT_FRAMES:
        raise ProtocolError("event is cut short")
    stream_frame, header, id_frame, type_frame, metadata, data = frames[
        start : start + EVENT_FRAMES
    ]
    stream = _event_name(stream_frame, allow_empty=False)
    event_type = _event_name(type_frame, allow_empty=True)
    if len(header) != EVENT_HEADER.size:
        raise ProtocolError(f"event header has {len(header)} bytes, expected {EVENT_HEADER.size}")
    if len(id_frame) != EVENT_ID_BYTES:
        raise ProtocolError(f"event id has {len(id_frame)} bytes, expected {EVENT_ID_BYTES}")
    position, version, recorded_at_us = EVENT_HEADER.unpack(header)
    return RecordedEvent(
        position=position,
        event_id=event_id_from_bytes(bytes(id_frame)),
        stream=stream,
        version=version,
        recorded_at_us=recorded_at_us,
        event_type=event_type,
        metadata=bytes(metadata),
        data=bytes(data),
    )


def encode_packed_events(events: Iterable[RecordedEvent]) -> tuple[int, bytes]:
    """The events of a packed batch as one frame, and how many it holds."""
    pack_event = PACKED_EVENT.pack
    names: dict[str, bytes] = {}  # a batch's events share a few streams and types
    parts: list[bytes] = []
    count = 0
    for event in events:
        stream = names.get(event.stream)
        if stream is None:
            stream = names[event.stream] = event.stream.encode("utf-8")
        event_type = names.get(event.event_type)
        if event_type is None:
            event_type = names[event.event_type] = event.event_type.encode("utf-8")
        parts += (
            pack_event(
                event.position,
                event.version,
                event.recorded_at_us,
                event.event_id.bytes,
                len(stream),
                len(event_type),
                len(event.metadata),
                len(event.data),
            ),
            stream,
            event_type,
            event.metadata,
            event.data,
        )
        count += 1
    return count, b"".join(parts)


def decode_packed_events(frame: bytes) -> list[RecordedEvent]:
    """The events of a packed batch frame, in order.

    Raises :class:`ProtocolError` if the frame is not a whole number of
    well-formed events.
    """
    data = bytes(frame)
    unpack_event = PACKED_EVENT.unpack_from
    fixed = PACKED_EVENT.size
    streams: dict[bytes, str] = {}
    types: dict[bytes, str] = {}
    events = []
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < fixed:
            raise ProtocolError(f"packed event at byte {offset} is cut short")
        position, version, recorded_at_us, raw_id, stream_len, type_len, meta_len, data_len = (
            unpack_event(data, offset)
        )
        offset += fixed
        stream_end = offset + stream_len
        type_end = stream_end + type_len
        meta_end = type_end + meta_len
        data_end = meta_end + data_len
        if data_end > end:
            raise ProtocolError(f"packed event at position {position} is cut short")
        stream = _packed_name(streams, data[offset:stream_end], allow_empty=False)
        event_type = _packed_name(types, data[stream_end:type_end], allow_empty=True)
        events.append(
            RecordedEvent(
                position,
                event_id_from_bytes(raw_id),
                stream,
                version,
                recorded_at_us,
                event_type,
                data[type_end:meta_end],
                data[meta_end:data_end],
            )
        )
        offset = data_end
    return events


def _packed_name(decoded: dict[bytes, str], raw: bytes, *, allow_empty: bool) -> str:
    """A stream name or type, checked once per batch (``decoded`` holds those seen)."""
    name = decoded.get(raw)
    if name is None:
        name = decoded[raw] = _event_name(raw, allow_empty=allow_empty)
    return name


def _event_name(raw: bytes, *, allow_empty: bool) -> str:
    """An event's stream name or type; :class:`ProtocolError` if it breaks the rules."""
    try:
        return decode_name(raw, allow_empty=allow_empty)
    except InvalidName as exc:
        raise ProtocolError(f"event name or type is {exc}") from None


def pack(layout: struct.Struct, *values: int) -> bytes:
    """Pack a header, turning out-of-range values into :class:`ValueError`."""
    try:
        return layout.pack(*values)
    except struct.error as exc:
        raise ValueError(f"value out of range for the header: {exc}") from None
