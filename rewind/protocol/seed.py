"""The original Rewind request/reply and streaming protocol, byte for byte.

Requests (after the REQ envelope):

* ``PUBLISH <data>`` → ``PUBLISHED``
* ``QUERY <from id> <to id>`` → ``id, data, id, data, …`` (at most
  :data:`QUERY_PAGE_SIZE` pairs), plus a final ``END`` frame when the page was
  not full.
* Anything else → one frame ``ERROR <reason>``.

Streaming messages are ``[event id, previous event id, data]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

QUERY_PAGE_SIZE = 100
"""At most this many events go in one QUERY reply; a full page has no END frame."""

COMMANDS = frozenset({b"PUBLISH", b"QUERY"})
"""The command words a seed request starts with."""

PUBLISHED = b"PUBLISHED"
END = b"END"
ERROR = b"ERROR"


class Publish(NamedTuple):
    """``PUBLISH <data>``: append one event to the default stream."""

    data: bytes


class Query(NamedTuple):
    """``QUERY <from> <to>``: events after ``from_id`` up to and including ``to_id``."""

    from_id: uuid.UUID | None
    to_id: uuid.UUID | None


class BadRequest(NamedTuple):
    """A request that cannot be served; ``reason`` goes into the ``ERROR`` reply."""

    reason: str


SeedRequest = Publish | Query | BadRequest


def format_event_id(event_id: uuid.UUID) -> bytes:
    """Render an event id the way the seed protocol carries it: 36 ASCII characters."""
    return str(event_id).encode("ascii")


def parse_event_id(frame: bytes) -> uuid.UUID | None:
    """Parse an event id frame; ``None`` if it is not a UUID at all."""
    try:
        return uuid.UUID(frame.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def is_command(frame: bytes) -> bool:
    """Whether a frame is one of the seed protocol's command words."""
    return frame in COMMANDS


FROM_AFTER_TO = "comes after to event id"
"""Marks the reason of the error for a QUERY whose ``from`` is later than its ``to``."""


def from_after_to_reason(from_id: uuid.UUID | None, to_id: uuid.UUID | None) -> str:
    """The error reason for a QUERY whose ``from`` event comes after its ``to`` event."""
    return f"from event id {from_id} {FROM_AFTER_TO} {to_id}"


def _printable(frame: bytes, limit: int = 60) -> str:
    text = frame[:limit].decode("ascii", errors="backslashreplace")
    return text + ("..." if len(frame) > limit else "")


# Makes a Publish without the NamedTuple's Python __new__ frame: one per PUBLISH.
_new_tuple = tuple.__new__


def parse_request(body: Sequence[bytes]) -> SeedRequest:
    """Decode a request body (the frames after the envelope)."""
    if len(body) == 2 and body[0] == b"PUBLISH":
        return _new_tuple(Publish, (body[1],))  # the most common request, recognised first
    if not body or (len(body) == 1 and not body[0]):
        return BadRequest("empty message")
    command = body[0]
    if command == b"PUBLISH":
        return BadRequest(f"PUBLISH takes 1 frame (the event), got {len(body) - 1}")
    if command == b"QUERY":
        if len(body) != 3:
            return BadRequest(f"QUERY takes 2 frames (from id, to id), got {len(body) - 1}")
        ids: list[uuid.UUID | None] = []
        for name, frame in (("from", body[1]), ("to", body[2])):
            if not frame:
                ids.append(None)
                continue
            parsed = parse_event_id(frame)
            if parsed is None:
                return BadRequest(f"unknown {name} event id {_printable(frame)}")
            ids.append(parsed)
        return Query(ids[0], ids[1])
    return BadRequest(f"unknown command {_printable(command)}")


def encode_published() -> list[bytes]:
    """The reply to a committed PUBLISH."""
    return [PUBLISHED]


def encode_query_reply(
    events: Iterable[tuple[uuid.UUID, bytes]], *, page_full: bool
) -> list[bytes]:
    """A QUERY reply page; ``END`` is appended unless the page is full."""
    frames: list[bytes] = []
    for event_id, data in events:
        frames.append(format_event_id(event_id))
        frames.append(data)
    if not page_full:
        frames.append(END)
    return frames


def encode_error(reason: str) -> list[bytes]:
    """A one-frame ``ERROR <reason>`` reply; the reason is sent as ASCII, as the seed says."""
    return [ERROR + b" " + reason.encode("ascii", errors="backslashreplace")]


def encode_stream_message(
    event_id: uuid.UUID, previous_id: uuid.UUID | None, data: bytes
) -> list[bytes]:
    """A streaming-socket message; the previous id is empty only for the first event ever.

    (The server's feed builds the same frames while reusing each formatted id.)
    """
    previous = b"" if previous_id is None else format_event_id(previous_id)
    return [format_event_id(event_id), previous, data]


# Client side -----------------------------------------------------------------


class SeedReplyError(Exception):
    """The server answered ``ERROR``; ``reason`` is the text after it."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.reason = frame[len(ERROR) :].strip().decode("utf-8", errors="replace")
        super().__init__(self.reason or "error")


def encode_publish(data: bytes) -> list[bytes]:
    """Frames of a PUBLISH request."""
    return [b"PUBLISH", data]


def encode_query(from_id: bytes | None, to_id: bytes | None) -> list[bytes]:
    """Frames of a QUERY request; ``None`` means unbounded."""
    return [b"QUERY", from_id or b"", to_id or b""]


def check_published(frames: Sequence[bytes]) -> None:
    """Accept a PUBLISH reply or raise :class:`SeedReplyError` / :class:`ValueError`."""
    if list(frames) == [PUBLISHED]:
        return
    if frames and frames[0].startswith(ERROR):
        raise SeedReplyError(frames[0])
    raise ValueError(f"unexpected PUBLISH reply: {[_printable(f) for f in frames]}")


def decode_query_reply(frames: Sequence[bytes]) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Decode a QUERY reply into ``(events, done)``; ``done`` is true when ``END`` came.

    Raises :class:`SeedReplyError` for an ``ERROR`` reply and :class:`ValueError`
    for a reply that breaks the protocol.
    """
    if len(frames) == 1 and frames[0].startswith(ERROR):
        raise SeedReplyError(frames[0])
    done = len(frames) % 2 == 1
    if done and frames[-1] != END:
        raise ValueError("QUERY reply has an odd frame count but no END frame")
    pairs = frames[:-1] if done else frames
    events = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
    return events, done


def decode_stream_message(frames: Sequence[bytes]) -> tuple[bytes, bytes, bytes]:
    """Split a streaming message into ``(event id, previous id, data)``."""
    if len(frames) != 3:
        raise ValueError(f"streaming message has {len(frames)} frames, expected 3")
    return frames[0], frames[1], frames[2]
