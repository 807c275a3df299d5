"""Rewind v2 requests: typed classes, the server's parser and the client's encoders.

:func:`parse_request` turns a request body (the frames after the envelope)
into one of the request classes, or a :class:`BadRequest` that says which
error code and message to answer with. It never raises. The ``encode_*``
functions build the frames a client sends; they raise :class:`ValueError`
for values the protocol cannot carry.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rewind.model import (
    ANY_VERSION,
    NO_STREAM,
    STREAM_EXISTS,
    AppendRequest,
    NewEvent,
    event_id_from_bytes,
)
from rewind.protocol.v2 import wire
from rewind.protocol.v2.wire import END, I63_MAX, NO_LIMIT, ErrorCode, StartKind

DEFAULT_BATCH_SIZE = 500
"""Events per batch a client asks for unless told otherwise."""
DEFAULT_CREDIT = 4
"""Batches in flight a client allows unless told otherwise."""

_EXPECTED_VERSION_CONSTANTS = (ANY_VERSION, NO_STREAM, STREAM_EXISTS)


@dataclass(frozen=True, slots=True)
class Append:
    """APPEND: events for one stream, committed together if the stream is as expected."""

    request_id: int
    stream: str
    events: tuple[NewEvent, ...]
    expected_version: int = ANY_VERSION
    """:data:`~rewind.model.ANY_VERSION`, ``NO_STREAM``, ``STREAM_EXISTS`` or a version."""

    def as_append_request(self) -> AppendRequest:
        """The store append this request stands for."""
        return AppendRequest(self.stream, self.events, self.expected_version)


@dataclass(frozen=True, slots=True)
class ReadStream:
    """READ_STREAM: one stream's events by version, in batches under flow control."""

    request_id: int
    stream: str
    from_version: int | None = 0
    """First version to return (inclusive); ``None`` starts from the stream's end."""
    backwards: bool = False
    max_count: int | None = None
    """Most events the whole read returns; ``None`` for no limit."""
    batch_size: int = DEFAULT_BATCH_SIZE
    credit: int = DEFAULT_CREDIT
    packed: bool = False
    """Whether each EVENTS batch carries its events packed into one frame."""


@dataclass(frozen=True, slots=True)
class AtTime:
    """A READ_ALL start given as a commit time, in microseconds since the Unix epoch."""

    timestamp_us: int


@dataclass(frozen=True, slots=True)
class ReadAll:
    """READ_ALL: the global order by position, optionally filtered, in batches."""

    request_id: int
    start: int | AtTime | None = 0
    """A position (inclusive), a time, or ``None`` for the end of the log."""
    backwards: bool = False
    max_count: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    credit: int = DEFAULT_CREDIT
    stream_prefix: str = ""
    """Only streams whose names start with this; empty for every stream."""
    event_types: frozenset[str] | None = None
    """Only events of these types; ``None`` for every type."""
    packed: bool = False
    """Whether each EVENTS batch carries its events packed into one frame."""


@dataclass(frozen=True, slots=True)
class Credit:
    """CREDIT: let the open read ``request_id`` send ``grant`` more batches."""

    request_id: int
    grant: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """CANCEL: stop the open read ``request_id``."""

    request_id: int


@dataclass(frozen=True, slots=True)
class StreamInfoRequest:
    """STREAM_INFO: what the store knows about one stream."""

    request_id: int
    stream: str


@dataclass(frozen=True, slots=True)
class ListStreams:
    """LIST_STREAMS: up to ``limit`` stream names after ``after``, in name order."""

    request_id: int
    after: str = ""
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Ping:
    """PING: is the server there?"""

    request_id: int


@dataclass(frozen=True, slots=True)
class InfoRequest:
    """INFO: server version, protocols, storage kind, head position and limits."""

    request_id: int


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that cannot be served, and the ``ERROR`` reply it gets.

    ``request_id`` is 0 when the request's id could not be read.
    """

    request_id: int
    code: ErrorCode
    reason: str
    detail: int = 0


Request = (
    Append
    | ReadStream
    | ReadAll
    | Credit
    | Cancel
    | StreamInfoRequest
    | ListStreams
    | Ping
    | InfoRequest
)


# Parsing (server side) ---------------------------------------------------------


class _Bad(Exception):
    """Raised inside the parsers; :func:`parse_request` turns it into a BadRequest."""

    def __init__(self, reason: str, code: ErrorCode = ErrorCode.BAD_REQUEST, detail: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.detail = detail


def parse_request(body: Sequence[bytes]) -> Request | BadRequest:
    """Decode a v2 request body; never raises."""
    if not body:
        return BadRequest(0, ErrorCode.BAD_REQUEST, "empty message")
    request_id = peek_request_id(body)
    marker = body[0]
    if marker != wire.MARKER:
        if wire.is_marker(marker):
            return BadRequest(
                request_id,
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {printable(marker)} is not supported; this server speaks "
                f"{wire.MARKER.decode()}",
            )
        return BadRequest(
            request_id,
            ErrorCode.BAD_REQUEST,
            f"not a Rewind v2 request: first frame is {printable(marker)}",
        )
    if len(body) < 3:
        return BadRequest(
            request_id,
            ErrorCode.BAD_REQUEST,
            f"a request needs at least 3 frames (marker, command, header), got {len(body)}",
        )
    parser = _PARSERS.get(bytes(body[1]))
    if parser is None:
        return BadRequest(
            request_id, ErrorCode.UNKNOWN_COMMAND, f"unknown command {printable(body[1])}"
        )
    try:
        return parser(body)
    except _Bad as bad:
        return BadRequest(request_id, bad.code, bad.reason, bad.detail)


def peek_request_id(body: Sequence[bytes]) -> int:
    """The request id in the first 8 bytes of the header frame, or 0 if there is none."""
    if len(body) >= 3 and len(body[2]) >= wire.REQUEST_ID.size:
        (request_id,) = wire.REQUEST_ID.unpack_from(body[2])
        return int(request_id)
    return 0


printable = wire.printable


def _header(body: Sequence[bytes], layout: struct.Struct, command: str) -> tuple[int, ...]:
    header = body[2]
    if len(header) != layout.size:
        raise _Bad(f"{command} header must be {layout.size} bytes, got {len(header)}")
    return _header_values(layout.unpack(header))


def _header_values(values: tuple[int, ...]) -> tuple[int, ...]:
    if values[0] == 0:
        raise _Bad("request id 0 is reserved")
    return values


def _read_header(
    body: Sequence[bytes], layout: struct.Struct, command: str
) -> tuple[tuple[int, ...], bool]:
    """A read's header values, and whether its optional flags byte asks for packed batches."""
    header = body[2]
    if len(header) == layout.size:
        return _header_values(layout.unpack(header)), False
    if len(header) != layout.size + wire.READ_FLAGS.size:
        raise _Bad(
            f"{command} header must be {layout.size} bytes, or "
            f"{layout.size + wire.READ_FLAGS.size} with read flags, got {len(header)}"
        )
    (flags,) = wire.READ_FLAGS.unpack_from(header, layout.size)
    if flags & ~wire.READ_PACKED:
        raise _Bad(f"unknown read flags {flags:#04x}")
    return _header_values(layout.unpack_from(header)), bool(flags & wire.READ_PACKED)


def _frame_count(body: Sequence[bytes], expected: int, command: str, layout: str) -> None:
    if len(body) != expected:
        raise _Bad(f"{command} takes {expected} frames ({layout}), got {len(body)}")


def _name(frame: bytes, what: str, *, allow_empty: bool = False) -> str:
    try:
        return wire.decode_name(frame, allow_empty=allow_empty)
    except wire.InvalidName as exc:
        raise _Bad(f"invalid {what}: {exc}") from None


def _direction(value: int) -> bool:
    if value not in (0, 1):
        raise _Bad(f"direction must be 0 (forward) or 1 (backward), got {value}")
    return value == 1


def _start(value: int, what: str) -> int | None:
    if value == END:
        return None
    if value > I63_MAX:
        raise _Bad(f"{what} {value} is out of range")
    return value


def _max_count(value: int) -> int | None:
    if value == NO_LIMIT:
        return None
    if value > I63_MAX:
        raise _Bad(f"max count {value} is out of range")
    return value


def _at_least_one(value: int, what: str) -> int:
    if value < 1:
        raise _Bad(f"{what} must be at least 1")
    return value


def _parse_append(body: Sequence[bytes]) -> Append:
    request_id, expected, count = _header(body, wire.APPEND_HEADER, "APPEND")
    if expected < 0 and expected not in _EXPECTED_VERSION_CONSTANTS:
        raise _Bad(
            f"expected version {expected} is none of -2 (any), -1 (no stream), "
            "-4 (stream exists) or a version >= 0"
        )
    _at_least_one(count, "APPEND event count")
    # The count comes from the client: compare before allocating anything for it.
    if len(body) != 4 + 4 * count:
        raise _Bad(
            f"APPEND of {count} event(s) takes {4 + 4 * count} frames "
            f"(marker, command, header, stream, then id, type, metadata, data per event), "
            f"got {len(body)}"
        )
    stream = _name(body[3], "stream name")
    events: list[NewEvent] = []
    seen: set[bytes] = set()
    # The events of one append mostly share a type or two: each is checked once.
    types: dict[bytes, str] = {}
    for index in range(count):
        id_frame, type_frame, metadata, data = body[4 + 4 * index : 8 + 4 * index]
        event_id: uuid.UUID | None = None
        if id_frame:
            if len(id_frame) != wire.EVENT_ID_BYTES:
                raise _Bad(f"event {index}: id must be 16 bytes or empty, got {len(id_frame)}")
            if id_frame in seen:
                raise _Bad(f"event {index}: id {uuid.UUID(bytes=bytes(id_frame))} appears twice")
            seen.add(id_frame)
            event_id = event_id_from_bytes(id_frame)
        event_type = types.get(type_frame)
        if event_type is None:
            event_type = types[type_frame] = _name(
                type_frame, f"event {index} type", allow_empty=True
            )
        events.append(NewEvent(data, event_id, event_type, metadata))
    return Append(request_id, stream, tuple(events), expected)


def _parse_read_stream(body: Sequence[bytes]) -> ReadStream:
    header, packed = _read_header(body, wire.READ_STREAM_HEADER, "READ_STREAM")
    request_id, direction, from_version, max_count, batch, credit = header
    _frame_count(body, 4, "READ_STREAM", "marker, command, header, stream")
    return ReadStream(
        request_id=request_id,
        stream=_name(body[3], "stream name"),
        from_version=_start(from_version, "from version"),
        backwards=_direction(direction),
        max_count=_max_count(max_count),
        batch_size=_at_least_one(batch, "batch size"),
        credit=_at_least_one(credit, "credit"),
        packed=packed,
    )


def _parse_read_all(body: Sequence[bytes]) -> ReadAll:
    header, packed = _read_header(body, wire.READ_ALL_HEADER, "READ_ALL")
    request_id, direction, start_kind, start, max_count, batch, credit, type_count = header
    if type_count > wire.MAX_TYPE_FILTER:
        raise _Bad(
            f"READ_ALL filters on at most {wire.MAX_TYPE_FILTER} event types, got {type_count}",
            ErrorCode.LIMIT_EXCEEDED,
            wire.MAX_TYPE_FILTER,
        )
    _frame_count(
        body, 4 + type_count, "READ_ALL", f"marker, command, header, prefix, {type_count} type(s)"
    )
    begin: int | AtTime | None
    if start_kind == StartKind.POSITION:
        begin = _start(start, "start position")
    elif start_kind == StartKind.TIMESTAMP:
        if start > I63_MAX:
            raise _Bad(f"start time {start} is out of range")
        begin = AtTime(start)
    else:
        raise _Bad(f"start kind must be 0 (position) or 1 (time), got {start_kind}")
    event_types = frozenset(
        _name(frame, "event type filter", allow_empty=True) for frame in body[4:]
    )
    return ReadAll(
        request_id=request_id,
        start=begin,
        backwards=_direction(direction),
        max_count=_max_count(max_count),
        batch_size=_at_least_one(batch, "batch size"),
        credit=_at_least_one(credit, "credit"),
        stream_prefix=_name(body[3], "stream prefix", allow_empty=True),
        event_types=event_types if type_count else None,
        packed=packed,
    )


def _parse_credit(body: Sequence[bytes]) -> Credit:
    request_id, grant = _header(body, wire.CREDIT_HEADER, "CREDIT")
    _frame_count(body, 3, "CREDIT", "marker, command, header")
    return Credit(request_id, _at_least_one(grant, "credit grant"))


def _parse_cancel(body: Sequence[bytes]) -> Cancel:
    (request_id,) = _header(body, wire.REQUEST_ID, "CANCEL")
    _frame_count(body, 3, "CANCEL", "marker, command, header")
    return Cancel(request_id)


def _parse_stream_info(body: Sequence[bytes]) -> StreamInfoRequest:
    (request_id,) = _header(body, wire.REQUEST_ID, "STREAM_INFO")
    _frame_count(body, 4, "STREAM_INFO", "marker, command, header, stream")
    return StreamInfoRequest(request_id, _name(body[3], "stream name"))


def _parse_list_streams(body: Sequence[bytes]) -> ListStreams:
    request_id, limit = _header(body, wire.LIST_STREAMS_HEADER, "LIST_STREAMS")
    _frame_count(body, 4, "LIST_STREAMS", "marker, command, header, after")
    after = _name(body[3], "after name", allow_empty=True)
    return ListStreams(request_id, after, _at_least_one(limit, "limit"))


def _parse_ping(body: Sequence[bytes]) -> Ping:
    (request_id,) = _header(body, wire.REQUEST_ID, "PING")
    _frame_count(body, 3, "PING", "marker, command, header")
    return Ping(request_id)


def _parse_info(body: Sequence[bytes]) -> InfoRequest:
    (request_id,) = _header(body, wire.REQUEST_ID, "INFO")
    _frame_count(body, 3, "INFO", "marker, command, header")
    return InfoRequest(request_id)


_PARSERS: dict[bytes, Callable[[Sequence[bytes]], Request]] = {
    wire.APPEND: _parse_append,
    wire.READ_STREAM: _parse_read_stream,
    wire.READ_ALL: _parse_read_all,
    wire.CREDIT: _parse_credit,
    wire.CANCEL: _parse_cancel,
    wire.STREAM_INFO: _parse_stream_info,
    wire.LIST_STREAMS: _parse_list_streams,
    wire.PING: _parse_ping,
    wire.INFO: _parse_info,
}


# Encoding (client side) --------------------------------------------------------


def _check_name(name: str, what: str, *, allow_empty: bool = False) -> bytes:
    problem = wire.name_problem(name, allow_empty=allow_empty)
    if problem is not None:
        raise ValueError(f"invalid {what}: {problem}")
    return name.encode("utf-8")


def _check_request_id(request_id: int) -> None:
    if not 0 < request_id <= wire.U64_MAX:
        raise ValueError(f"request id must be between 1 and 2**64 - 1, got {request_id}")


def _wire_start(value: int | None, what: str) -> int:
    if value is None:
        return END
    if not 0 <= value <= I63_MAX:
        raise ValueError(f"{what} {value} is out of range")
    return value


def _wire_max_count(value: int | None) -> int:
    return NO_LIMIT if value is None else _wire_start(value, "max count")


def encode_append_request(
    request_id: int,
    stream: str,
    events: Iterable[NewEvent],
    expected_version: int = ANY_VERSION,
) -> list[bytes]:
    """Frames of an APPEND request."""
    _check_request_id(request_id)
    frames = [wire.MARKER, wire.APPEND, b"", _check_name(stream, "stream name")]
    count = 0
    for event in events:
        frames.append(b"" if event.event_id is None else event.event_id.bytes)
        frames.append(_check_name(event.event_type, "event type", allow_empty=True))
        frames.append(event.metadata)
        frames.append(event.data)
        count += 1
    if count == 0:
        raise ValueError("an append needs at least one event")
    if expected_version < 0 and expected_version not in _EXPECTED_VERSION_CONSTANTS:
        raise ValueError(f"expected version {expected_version} is not valid")
    frames[2] = wire.pack(wire.APPEND_HEADER, request_id, expected_version, count)
    return frames


def encode_read_stream_request(
    request_id: int,
    stream: str,
    *,
    from_version: int | None = 0,
    backwards: bool = False,
    max_count: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    credit: int = DEFAULT_CREDIT,
    packed: bool = False,
) -> list[bytes]:
    """Frames of a READ_STREAM request; ``from_version=None`` starts at the stream's end.

    ``packed`` asks for batches whose events are packed into one frame each.
    """
    _check_request_id(request_id)
    header = wire.pack(
        wire.READ_STREAM_HEADER,
        request_id,
        int(backwards),
        _wire_start(from_version, "from version"),
        _wire_max_count(max_count),
        _positive_u32(batch_size, "batch size"),
        _positive_u32(credit, "credit"),
    )
    return [
        wire.MARKER,
        wire.READ_STREAM,
        header + _read_flags(packed),
        _check_name(stream, "stream name"),
    ]


def _read_flags(packed: bool) -> bytes:
    # Without flags the header keeps its original size, which every server reads.
    return wire.READ_FLAGS.pack(wire.READ_PACKED) if packed else b""


def encode_read_all_request(
    request_id: int,
    *,
    start: int | AtTime | None = 0,
    backwards: bool = False,
    max_count: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    credit: int = DEFAULT_CREDIT,
    stream_prefix: str = "",
    event_types: Iterable[str] | None = None,
    packed: bool = False,
) -> list[bytes]:
    """Frames of a READ_ALL request; ``start=None`` starts at the end of the log.

    ``packed`` asks for batches whose events are packed into one frame each.
    """
    _check_request_id(request_id)
    if isinstance(start, AtTime):
        kind, start_value = StartKind.TIMESTAMP, _wire_start(start.timestamp_us, "start time")
    else:
        kind, start_value = StartKind.POSITION, _wire_start(start, "start position")
    types: list[bytes] = []
    if event_types is not None:
        # Sorted so that equal filters give equal bytes.
        types = [_check_name(t, "event type", allow_empty=True) for t in sorted(set(event_types))]
        if not types:
            raise ValueError("event_types must be None (every type) or name at least one type")
        if len(types) > wire.MAX_TYPE_FILTER:
            raise ValueError(f"at most {wire.MAX_TYPE_FILTER} event types, got {len(types)}")
    header = wire.pack(
        wire.READ_ALL_HEADER,
        request_id,
        int(backwards),
        kind,
        start_value,
        _wire_max_count(max_count),
        _positive_u32(batch_size, "batch size"),
        _positive_u32(credit, "credit"),
        len(types),
    )
    prefix = _check_name(stream_prefix, "stream prefix", allow_empty=True)
    return [wire.MARKER, wire.READ_ALL, header + _read_flags(packed), prefix, *types]


def _positive_u32(value: int, what: str) -> int:
    if not 1 <= value < 2**32:
        raise ValueError(f"{what} must be between 1 and 2**32 - 1, got {value}")
    return value


def encode_credit_request(request_id: int, grant: int) -> list[bytes]:
    """Frames of a CREDIT for the open read ``request_id``."""
    _check_request_id(request_id)
    header = wire.pack(wire.CREDIT_HEADER, request_id, _positive_u32(grant, "grant"))
    return [wire.MARKER, wire.CREDIT, header]


def _id_only(command: bytes, request_id: int) -> list[bytes]:
    _check_request_id(request_id)
    return [wire.MARKER, command, wire.REQUEST_ID.pack(request_id)]


def encode_cancel_request(request_id: int) -> list[bytes]:
    """Frames of a CANCEL for the open read ``request_id``."""
    return _id_only(wire.CANCEL, request_id)


def encode_stream_info_request(request_id: int, stream: str) -> list[bytes]:
    """Frames of a STREAM_INFO request."""
    return [*_id_only(wire.STREAM_INFO, request_id), _check_name(stream, "stream name")]


def encode_list_streams_request(
    request_id: int, *, after: str = "", limit: int = 100
) -> list[bytes]:
    """Frames of a LIST_STREAMS request; ``after=""`` asks for the first page."""
    _check_request_id(request_id)
    header = wire.pack(wire.LIST_STREAMS_HEADER, request_id, _positive_u32(limit, "limit"))
    after_frame = _check_name(after, "after name", allow_empty=True)
    return [wire.MARKER, wire.LIST_STREAMS, header, after_frame]


def encode_ping_request(request_id: int) -> list[bytes]:
    """Frames of a PING request."""
    return _id_only(wire.PING, request_id)


def encode_info_request(request_id: int) -> list[bytes]:
    """Frames of an INFO request."""
    return _id_only(wire.INFO, request_id)


def encode_request(request: Request) -> list[bytes]:
    """Frames of any typed request (the inverse of :func:`parse_request`)."""
    match request:
        case Append():
            return encode_append_request(
                request.request_id, request.stream, request.events, request.expected_version
            )
        case ReadStream():
            return encode_read_stream_request(
                request.request_id,
                request.stream,
                from_version=request.from_version,
                backwards=request.backwards,
                max_count=request.max_count,
                batch_size=request.batch_size,
                credit=request.credit,
                packed=request.packed,
            )
        case ReadAll():
            return encode_read_all_request(
                request.request_id,
                start=request.start,
                backwards=request.backwards,
                max_count=request.max_count,
                batch_size=request.batch_size,
                credit=request.credit,
                stream_prefix=request.stream_prefix,
                event_types=request.event_types,
                packed=request.packed,
            )
        case Credit():
            return encode_credit_request(request.request_id, request.grant)
        case Cancel():
            return encode_cancel_request(request.request_id)
        case StreamInfoRequest():
            return encode_stream_info_request(request.request_id, request.stream)
        case ListStreams():
            return encode_list_streams_request(
                request.request_id, after=request.after, limit=request.limit
            )
        case Ping():
            return encode_ping_request(request.request_id)
        case InfoRequest():
            return encode_info_request(request.request_id)
    raise TypeError(f"not a v2 request: {request!r}")
