"""Rewind v2 replies: typed classes, the server's encoders and the client's decoder.

The server builds reply frames with the ``encode_*`` functions, mostly
straight from the store's records; the client turns any reply back into a
typed value with :func:`decode_reply`, which raises
:class:`~rewind.protocol.v2.wire.ProtocolError` for frames that break the
protocol. :func:`encode_reply` encodes any typed reply, so that
``decode_reply(encode_reply(r)) == r``.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rewind.model import RecordedEvent, StreamInfo, event_id_from_bytes
from rewind.protocol.v2 import wire
from rewind.protocol.v2.requests import BadRequest
from rewind.protocol.v2.wire import EndReason, ErrorCode, ProtocolError


@dataclass(frozen=True, slots=True)
class Appended:
    """APPENDED: the events of an append are committed at these positions."""

    request_id: int
    first_position: int
    last_position: int
    last_version: int
    """Version of the append's last event: the one to expect in the next append."""
    recorded_at_us: int
    event_ids: tuple[uuid.UUID, ...]
    """Ids of the appended events, in request order (server-assigned where none was sent)."""

    @property
    def first_version(self) -> int:
        """Version of the append's first event."""
        return self.last_version - len(self.event_ids) + 1


@dataclass(frozen=True, slots=True)
class EventBatch:
    """EVENTS: one batch of a read; the read continues until its :class:`ReadEnd`."""

    request_id: int
    events: tuple[RecordedEvent, ...]
    packed: bool = False
    """Whether the batch came, or goes, packed into one frame (the read asked for it)."""


@dataclass(frozen=True, slots=True)
class ReadEnd:
    """END: a read is over; ``cursor`` continues it in the same direction."""

    request_id: int
    reason: EndReason
    cursor: int
    """Pass as start (READ_ALL) or from version (READ_STREAM) to continue."""
    count: int
    """Events the read returned in all."""


@dataclass(frozen=True, slots=True)
class StreamInfoReply:
    """STREAM_INFO: one stream's state; a stream that does not exist is not an error."""

    request_id: int
    exists: bool
    last_version: int
    """-1 when the stream does not exist."""
    event_count: int
    first_position: int
    """0 when the stream does not exist."""
    last_position: int


@dataclass(frozen=True, slots=True)
class StreamList:
    """STREAMS: a page of stream names; ``more`` means ask again after the last one."""

    request_id: int
    streams: tuple[str, ...]
    more: bool


@dataclass(frozen=True, slots=True)
class Pong:
    """PONG: the answer to PING."""

    request_id: int


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """INFO: what the server is, what it holds, and the limits clients must respect."""

    request_id: int
    server_version: str
    storage_kind: str
    protocols: tuple[str, ...]
    head_position: int
    """Position of the newest event; 0 for an empty store."""
    server_time_us: int
    durable: bool
    max_batch_size: int
    max_credit: int
    max_append_events: int
    max_message_bytes: int
    """0 when the server sets no limit."""
    max_event_bytes: int
    max_stream_name_bytes: int
    write_failure: str | None = None
    """Why the server stopped accepting appends; ``None`` while it accepts them."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """ERROR: the request failed; ``code`` is stable, ``message`` is for people.

    ``code`` is an :class:`~rewind.protocol.v2.wire.ErrorCode` when the client
    knows it, else the plain number (newer servers may add codes).
    """

    request_id: int
    code: int
    message: str
    detail: int = 0
    """WRONG_EXPECTED_VERSION: the stream's actual version; LIMIT_EXCEEDED: the limit."""

    @property
    def actual_version(self) -> int | None:
        """The stream's actual last version, for a WRONG_EXPECTED_VERSION error."""
        return self.detail if self.code == ErrorCode.WRONG_EXPECTED_VERSION else None


Reply = (
    Appended | EventBatch | ReadEnd | StreamInfoReply | StreamList | Pong | ServerInfo | ErrorReply
)


# Encoding (server side) --------------------------------------------------------


def encode_appended(request_id: int, events: Sequence[RecordedEvent]) -> list[bytes]:
    """The APPENDED reply for the events one append stored (in order, at least one)."""
    if not events:
        raise ValueError("an append stores at least one event")
    first, last = events[0], events[-1]
    header = wire.APPENDED_HEADER.pack(
        request_id, first.position, last.position, last.version, last.recorded_at_us
    )
    return [
        wire.MARKER,
        wire.APPENDED,
        header,
        b"".join(event.event_id.bytes for event in events),
    ]


def encode_events(
    request_id: int, events: Iterable[RecordedEvent], *, packed: bool = False
) -> list[bytes]:
    """An EVENTS batch (at least one event; the caller sizes it to the read's batch).

    ``packed`` puts the events into one frame, for a read that asked for that.
    """
    if packed:
        count, frame = wire.encode_packed_events(events)
        if count == 0:
            raise ValueError("a batch holds at least one event")
        return [wire.MARKER, wire.EVENTS, wire.EVENTS_HEADER.pack(request_id, count), frame]
    frames = [wire.MARKER, wire.EVENTS, b""]
    count = 0
    for event in events:
        frames.extend(wire.encode_event(event))
        count += 1
    if count == 0:
        raise ValueError("a batch holds at least one event")
    frames[2] = wire.EVENTS_HEADER.pack(request_id, count)
    return frames


def encode_end(request_id: int, reason: EndReason, cursor: int, count: int) -> list[bytes]:
    """The END reply that closes a read."""
    header = wire.pack(wire.END_HEADER, request_id, reason, cursor, count)
    return [wire.MARKER, wire.END_WORD, header]


def encode_stream_info(request_id: int, info: StreamInfo | None) -> list[bytes]:
    """The STREAM_INFO reply; ``None`` for a stream that does not exist."""
    if info is None:
        header = wire.STREAM_INFO_HEADER.pack(request_id, 0, -1, 0, 0, 0)
    else:
        header = wire.STREAM_INFO_HEADER.pack(
            request_id,
            1,
            info.last_version,
            info.event_count,
            info.first_position,
            info.last_position,
        )
    return [wire.MARKER, wire.STREAM_INFO, header]


def encode_streams(request_id: int, streams: Sequence[str], *, more: bool) -> list[bytes]:
    """The STREAMS reply: a page of names, and whether more may follow."""
    header = wire.STREAMS_HEADER.pack(request_id, len(streams), int(more))
    return [wire.MARKER, wire.STREAMS, header, *(name.encode("utf-8") for name in streams)]


def encode_pong(request_id: int) -> list[bytes]:
    """The PONG reply."""
    return [wire.MARKER, wire.PONG, wire.REQUEST_ID.pack(request_id)]


def encode_info(
    request_id: int,
    *,
    server_version: str,
    storage_kind: str,
    protocols: Sequence[str],
    head_position: int,
    server_time_us: int,
    durable: bool,
    write_failure: str | None,
    max_batch_size: int,
    max_credit: int,
    max_append_events: int,
    max_message_bytes: int,
    max_event_bytes: int,
    max_stream_name_bytes: int,
) -> list[bytes]:
    """The INFO reply."""
    header = wire.pack(
        wire.INFO_HEADER,
        request_id,
        head_position,
        server_time_us,
        int(durable),
        int(write_failure is None),
        max_batch_size,
        max_credit,
        max_append_events,
        max_message_bytes,
        max_event_bytes,
        max_stream_name_bytes,
    )
    return [
        wire.MARKER,
        wire.INFO,
        header,
        server_version.encode("utf-8"),
        storage_kind.encode("utf-8"),
        (write_failure or "").encode("utf-8"),
        *(name.encode("utf-8") for name in protocols),
    ]


def encode_error(request_id: int, code: int, message: str, detail: int = 0) -> list[bytes]:
    """An ERROR reply; the message is sent as UTF-8."""
    header = wire.pack(wire.ERROR_HEADER, request_id, code, detail)
    # backslashreplace keeps a message with stray surrogates sendable and readable.
    return [wire.MARKER, wire.ERROR, header, message.encode("utf-8", errors="backslashreplace")]


def encode_bad_request(bad: BadRequest) -> list[bytes]:
    """The ERROR reply to a request :func:`~rewind.protocol.v2.parse_request` refused."""
    return encode_error(bad.request_id, bad.code, bad.reason, bad.detail)


def encode_reply(reply: Reply) -> list[bytes]:
    """Frames of any typed reply (the inverse of :func:`decode_reply`)."""
    match reply:
        case Appended():
            if not reply.event_ids:
                raise ValueError("an append stores at least one event")
            header = wire.pack(
                wire.APPENDED_HEADER,
                reply.request_id,
                reply.first_position,
                reply.last_position,
                reply.last_version,
                reply.recorded_at_us,
            )
            ids = b"".join(event_id.bytes for event_id in reply.event_ids)
            return [wire.MARKER, wire.APPENDED, header, ids]
        case EventBatch():
            return encode_events(reply.request_id, reply.events, packed=reply.packed)
        case ReadEnd():
            return encode_end(reply.request_id, reply.reason, reply.cursor, reply.count)
        case StreamInfoReply():
            header = wire.pack(
                wire.STREAM_INFO_HEADER,
                reply.request_id,
                int(reply.exists),
                reply.last_version,
                reply.event_count,
                reply.first_position,
                reply.last_position,
            )
            return [wire.MARKER, wire.STREAM_INFO, header]
        case StreamList():
            return encode_streams(reply.request_id, reply.streams, more=reply.more)
        case Pong():
            return encode_pong(reply.request_id)
        case ServerInfo():
            return encode_info(
                reply.request_id,
                server_version=reply.server_version,
                storage_kind=reply.storage_kind,
                protocols=reply.protocols,
                head_position=reply.head_position,
                server_time_us=reply.server_time_us,
                durable=reply.durable,
                write_failure=reply.write_failure,
                max_batch_size=reply.max_batch_size,
                max_credit=reply.max_credit,
                max_append_events=reply.max_append_events,
                max_message_bytes=reply.max_message_bytes,
                max_event_bytes=reply.max_event_bytes,
                max_stream_name_bytes=reply.max_stream_name_bytes,
            )
        case ErrorReply():
            return encode_error(reply.request_id, reply.code, reply.message, reply.detail)
    raise TypeError(f"not a v2 reply: {reply!r}")


# Decoding (client side) --------------------------------------------------------


def decode_reply(frames: Sequence[bytes]) -> Reply:
    """Decode a v2 reply body (the frames after the delimiter).

    Raises :class:`~rewind.protocol.v2.wire.ProtocolError` if the frames are
    not a v2 reply.
    """
    if len(frames) < 3:
        raise ProtocolError(f"a reply has at least 3 frames, got {len(frames)}")
    if frames[0] != wire.MARKER:
        raise ProtocolError(f"reply marker is {wire.printable(frames[0])}, expected RWD2")
    decoder = _DECODERS.get(bytes(frames[1]))
    if decoder is None:
        raise ProtocolError(f"unknown reply {wire.printable(frames[1])}")
    return decoder(frames)


def _unpack(frames: Sequence[bytes], layout: struct.Struct, kind: str) -> tuple[int, ...]:
    header = frames[2]
    if len(header) != layout.size:
        raise ProtocolError(f"{kind} header has {len(header)} bytes, expected {layout.size}")
    values: tuple[int, ...] = layout.unpack(header)
    return values


def _exact_frames(frames: Sequence[bytes], expected: int, kind: str) -> None:
    if len(frames) != expected:
        raise ProtocolError(f"{kind} reply has {len(frames)} frames, expected {expected}")


def _text(frame: bytes, what: str) -> str:
    try:
        return bytes(frame).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not valid UTF-8") from None


def _decode_appended(frames: Sequence[bytes]) -> Appended:
    request_id, first, last, last_version, recorded_at = _unpack(
        frames, wire.APPENDED_HEADER, "APPENDED"
    )
    _exact_frames(frames, 4, "APPENDED")
    ids = frames[3]
    if not ids or len(ids) % wire.EVENT_ID_BYTES:
        raise ProtocolError(f"APPENDED ids frame has {len(ids)} bytes, not a multiple of 16")
    event_ids = tuple(
        event_id_from_bytes(bytes(ids[i : i + wire.EVENT_ID_BYTES]))
        for i in range(0, len(ids), wire.EVENT_ID_BYTES)
    )
    return Appended(request_id, first, last, last_version, recorded_at, event_ids)


def _decode_events(frames: Sequence[bytes]) -> EventBatch:
    request_id, count = _unpack(frames, wire.EVENTS_HEADER, "EVENTS")
    if count == 0:
        raise ProtocolError("EVENTS batch holds no event")
    if len(frames) == 4:
        # Packed: never four frames otherwise, since an event takes six.
        packed = wire.decode_packed_events(frames[3])
        if len(packed) != count:
            raise ProtocolError(f"packed EVENTS says {count} events but holds {len(packed)}")
        return EventBatch(request_id, tuple(packed), packed=True)
    _exact_frames(frames, 3 + wire.EVENT_FRAMES * count, "EVENTS")
    events = tuple(
        wire.decode_event(frames, 3 + wire.EVENT_FRAMES * index) for index in range(count)
    )
    return EventBatch(request_id, events)


def _decode_end(frames: Sequence[bytes]) -> ReadEnd:
    request_id, reason, cursor, count = _unpack(frames, wire.END_HEADER, "END")
    _exact_frames(frames, 3, "END")
    try:
        end_reason = EndReason(reason)
    except ValueError:
        raise ProtocolError(f"unknown END reason {reason}") from None
    return ReadEnd(request_id, end_reason, cursor, count)


def _decode_stream_info(frames: Sequence[bytes]) -> StreamInfoReply:
    request_id, exists, last_version, count, first, last = _unpack(
        frames, wire.STREAM_INFO_HEADER, "STREAM_INFO"
    )
    _exact_frames(frames, 3, "STREAM_INFO")
    return StreamInfoReply(request_id, bool(exists), last_version, count, first, last)


def _decode_streams(frames: Sequence[bytes]) -> StreamList:
    request_id, count, more = _unpack(frames, wire.STREAMS_HEADER, "STREAMS")
    _exact_frames(frames, 3 + count, "STREAMS")
    names = tuple(_text(frame, "stream name") for frame in frames[3:])
    return StreamList(request_id, names, bool(more))


def _decode_pong(frames: Sequence[bytes]) -> Pong:
    (request_id,) = _unpack(frames, wire.REQUEST_ID, "PONG")
    _exact_frames(frames, 3, "PONG")
    return Pong(request_id)


def _decode_info(frames: Sequence[bytes]) -> ServerInfo:
    values = _unpack(frames, wire.INFO_HEADER, "INFO")
    (
        request_id,
        head,
        now,
        durable,
        writable,
        max_batch,
        max_credit,
        max_events,
        max_bytes,
        max_event_bytes,
        max_name_bytes,
    ) = values
    if len(frames) < 6:
        raise ProtocolError(f"INFO reply has {len(frames)} frames, expected at least 6")
    failure = _text(frames[5], "write status")
    return ServerInfo(
        request_id=request_id,
        server_version=_text(frames[3], "server version"),
        storage_kind=_text(frames[4], "storage kind"),
        protocols=tuple(_text(frame, "protocol name") for frame in frames[6:]),
        head_position=head,
        server_time_us=now,
        durable=bool(durable),
        max_batch_size=max_batch,
        max_credit=max_credit,
        max_append_events=max_events,
        max_message_bytes=max_bytes,
        max_event_bytes=max_event_bytes,
        max_stream_name_bytes=max_name_bytes,
        write_failure=None if writable else (failure or "writes stopped"),
    )


def _decode_error(frames: Sequence[bytes]) -> ErrorReply:
    request_id, code, detail = _unpack(frames, wire.ERROR_HEADER, "ERROR")
    _exact_frames(frames, 4, "ERROR")
    # A code from a newer server stays a plain number.
    known: int = ErrorCode(code) if code in _KNOWN_CODES else code
    # The message is for people: a stray bad byte should not hide the error itself.
    message = bytes(frames[3]).decode("utf-8", errors="replace")
    return ErrorReply(request_id, known, message, detail)


_KNOWN_CODES = frozenset(int(code) for code in ErrorCode)

_DECODERS: dict[bytes, Callable[[Sequence[bytes]], Reply]] = {
    wire.APPENDED: _decode_appended,
    wire.EVENTS: _decode_events,
    wire.END_WORD: _decode_end,
    wire.STREAM_INFO: _decode_stream_info,
    wire.STREAMS: _decode_streams,
    wire.PONG: _decode_pong,
    wire.INFO: _decode_info,
    wire.ERROR: _decode_error,
}
