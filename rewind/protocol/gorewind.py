"""The Gorewind dialect: the seed's multi-stream successor, on the same request socket.

Requests (after the envelope; clients are DEALERs that send the delimiter):

* ``PUBLISH <stream> <data>`` → ``PUBLISHED``, ``<event id>``
* ``QUERY <stream> <from id> <to id>`` → one message ``EVENT``, id, data per
  event, then one message ``END``. ``from`` is exclusive, ``to`` inclusive,
  both ids of events in that stream; empty means unbounded.
* Anything wrong → one message of one frame, ``ERROR <reason>`` (UTF-8).

Event ids are the seed's 36-character UUID text. The frame counts (3 and 4)
differ from the seed's (2 and 3), which is how :mod:`rewind.protocol.dispatch`
tells the dialects apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from rewind.protocol import seed
from rewind.protocol.v2.wire import InvalidName, decode_name, printable

PUBLISH = b"PUBLISH"
QUERY = b"QUERY"
PUBLISHED = b"PUBLISHED"
EVENT = b"EVENT"
END = b"END"
ERROR = b"ERROR"

PUBLISH_FRAMES = 3
"""Frames in a Gorewind PUBLISH body: command, stream, data."""
QUERY_FRAMES = 4
"""Frames in a Gorewind QUERY body: command, stream, from id, to id."""


@dataclass(frozen=True, slots=True)
class Publish:
    """``PUBLISH <stream> <data>``: append one event to a stream."""

    stream: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Query:
    """``QUERY <stream> <from> <to>``: the stream's events after ``from_id`` up to ``to_id``."""

    stream: str
    from_id: uuid.UUID | None
    to_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A request that cannot be served; ``reason`` goes into the ``ERROR`` reply."""

    reason: str


GorewindRequest = Publish | Query | BadRequest


def is_request(body: Sequence[bytes]) -> bool:
    """Whether a body has a Gorewind command word and that command's frame count."""
    if not body:
        return False
    command = body[0]
    return (command == PUBLISH and len(body) == PUBLISH_FRAMES) or (
        command == QUERY and len(body) == QUERY_FRAMES
    )


def parse_request(body: Sequence[bytes]) -> GorewindRequest:
    """Decode a Gorewind request body (the frames after the envelope); never raises."""
    if not body or (len(body) == 1 and not body[0]):
        return BadRequest("empty message")
    command = body[0]
    if command == PUBLISH:
        if len(body) != PUBLISH_FRAMES:
            return BadRequest(f"PUBLISH takes 2 frames (stream, event), got {len(body) - 1}")
    elif command == QUERY:
        if len(body) != QUERY_FRAMES:
            return BadRequest(f"QUERY takes 3 frames (stream, from id, to id), got {len(body) - 1}")
    else:
        return BadRequest(f"unknown command {printable(command, 60)}")
    try:
        stream = decode_name(body[1])
    except InvalidName as exc:
        return BadRequest(f"invalid stream name: {exc}")
    if command == PUBLISH:
        return Publish(stream, body[2])
    ids: list[uuid.UUID | None] = []
    for which, frame in (("from", body[2]), ("to", body[3])):
        if not frame:
            ids.append(None)
            continue
        parsed = seed.parse_event_id(frame)
        if parsed is None:
            return BadRequest(unknown_id_reason(which, printable(frame, 60), stream))
        ids.append(parsed)
    return Query(stream, ids[0], ids[1])


def unknown_id_reason(which: str, event_id: uuid.UUID | str, stream: str) -> str:
    """The reason for a QUERY bound (``which`` is ``from`` or ``to``) not in the stream."""
    return f"unknown {which} event id {event_id} in stream {stream}"


def from_after_to_reason(from_id: uuid.UUID, to_id: uuid.UUID) -> str:
    """The reason for a QUERY whose ``from`` event comes after its ``to`` event."""
    return seed.from_after_to_reason(from_id, to_id)


# Replies (server side) ---------------------------------------------------------


def encode_published(event_id: uuid.UUID) -> list[bytes]:
    """The reply to a committed PUBLISH: ``PUBLISHED`` and the new event's id."""
    return [PUBLISHED, seed.format_event_id(event_id)]


def encode_event(event_id: uuid.UUID, data: bytes) -> list[bytes]:
    """One message of a QUERY result."""
    return [EVENT, seed.format_event_id(event_id), data]


def encode_end() -> list[bytes]:
    """The message that closes a QUERY result."""
    return [END]


def encode_error(reason: str) -> list[bytes]:
    """A one-frame ``ERROR <reason>`` message, the reason in UTF-8."""
    return [ERROR + b" " + reason.encode("utf-8", errors="backslashreplace")]


# Client side -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    """``PUBLISHED``: the event is committed under ``event_id``."""

    event_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Event:
    """``EVENT``: one event of a QUERY result."""

    event_id: uuid.UUID
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """``END``: the QUERY result is complete."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``ERROR``: the request failed; for a QUERY, no more messages follow."""

    reason: str


GorewindReply = Published | Event | End | ErrorReply


def encode_publish_request(stream: str, data: bytes) -> list[bytes]:
    """Frames of a Gorewind PUBLISH (without the delimiter)."""
    return [PUBLISH, stream.encode("utf-8"), data]


def encode_query_request(
    stream: str, from_id: uuid.UUID | None = None, to_id: uuid.UUID | None = None
) -> list[bytes]:
    """Frames of a Gorewind QUERY (without the delimiter); ``None`` means unbounded."""
    return [
        QUERY,
        stream.encode("utf-8"),
        b"" if from_id is None else seed.format_event_id(from_id),
        b"" if to_id is None else seed.format_event_id(to_id),
    ]


def encode_reply(reply: GorewindReply) -> list[bytes]:
    """Frames of any typed reply message (the inverse of :func:`decode_reply`)."""
    match reply:
        case Published():
            return encode_published(reply.event_id)
        case Event():
            return encode_event(reply.event_id, reply.data)
        case End():
            return encode_end()
        case ErrorReply():
            return encode_error(reply.reason)
    raise TypeError(f"not a Gorewind reply: {reply!r}")


def decode_reply(frames: Sequence[bytes]) -> GorewindReply:
    """Decode one reply message; raises :class:`ValueError` if it breaks the dialect."""
    if len(frames) == 1 and (frames[0] == ERROR or frames[0].startswith(ERROR + b" ")):
        reason = frames[0][len(ERROR) + 1 :].decode("utf-8", errors="replace")
        return ErrorReply(reason)
    if list(frames) == [END]:
        return End()
    if len(frames) == 2 and frames[0] == PUBLISHED:
        return Published(_event_id(frames[1]))
    if len(frames) == 3 and frames[0] == EVENT:
        return Event(_event_id(frames[1]), frames[2])
    shown = [printable(frame) for frame in frames[:4]]
    raise ValueError(f"not a Gorewind reply: {shown}")


def _event_id(frame: bytes) -> uuid.UUID:
    parsed = seed.parse_event_id(frame)
    if parsed is None:
        raise ValueError(f"not an event id: {printable(frame)}")
    return parsed
