"""The Rewind v2 live feed: one PUB message per committed event.

A message is the six event frames (see :func:`~rewind.protocol.v2.wire.encode_event`)
with the stream name first, so a SUB socket selects a stream or a category by
subscribing to a name prefix. First frames that start with NUL are reserved
for control messages; no stream name can start with NUL, so stream and
category subscribers never receive them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewind.model import RecordedEvent
from rewind.protocol.v2 import wire
from rewind.protocol.v2.wire import ProtocolError

CONTROL_PREFIX = b"\x00"
"""First byte of every reserved control topic."""


def encode_feed_message(event: RecordedEvent) -> list[bytes]:
    """The feed message broadcasting one committed event."""
    return wire.encode_event(event)


def is_control_message(frames: Sequence[bytes]) -> bool:
    """Whether a feed message is a (reserved) control message rather than an event."""
    return bool(frames) and frames[0][:1] == CONTROL_PREFIX


def decode_feed_message(frames: Sequence[bytes]) -> RecordedEvent | None:
    """Decode a feed message; ``None`` for a control message, which a subscriber skips.

    Raises :class:`~rewind.protocol.v2.wire.ProtocolError` for anything else
    that is not an event message.
    """
    if is_control_message(frames):
        return None
    if len(frames) != wire.EVENT_FRAMES:
        raise ProtocolError(f"feed message has {len(frames)} frames, expected {wire.EVENT_FRAMES}")
    return wire.decode_event(frames)


def subscription_topic(prefix: str = "") -> bytes:
    """The SUB subscription for a stream, a category prefix, or ``""`` for everything.

    A stream's topic also matches longer names that start with it, so a
    single-stream subscriber keeps only messages for which
    :func:`is_stream` holds.
    """
    problem = wire.name_problem(prefix, allow_empty=True)
    if problem is not None:
        raise ValueError(f"invalid subscription prefix: {problem}")
    return prefix.encode("utf-8")


def is_stream(frames: Sequence[bytes], stream: str) -> bool:
    """Whether a feed message belongs to exactly ``stream`` (not merely a longer name)."""
    return bool(frames) and frames[0] == stream.encode("utf-8")
