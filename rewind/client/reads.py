"""Streamed reads without I/O: what to send, what a reply means, where a read stands.

A :class:`ReadState` follows one logical read (``read_stream`` or
``read_all``) across any number of READ requests: if a connection is lost in
the middle, :meth:`ReadState.request` asks again from just after the last
event delivered, for the events still owed, so the caller sees each event
once. The synchronous and asyncio clients drive it with their own sockets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from rewind.client.errors import ProtocolError, error_from_reply
from rewind.client.models import timestamp_us
from rewind.model import RecordedEvent
from rewind.protocol import v2

__all__ = ["ReadEnd", "ReadSpec", "ReadState", "read_all_spec", "read_stream_spec"]

CREDIT_WINDOW = v2.DEFAULT_CREDIT
"""Batches a read lets the server send ahead of the consumer."""


@dataclass(frozen=True, slots=True)
class ReadSpec:
    """One read as the caller asked for it.

    ``stream`` set: READ_STREAM, ``start`` is a version. ``stream`` ``None``:
    READ_ALL, ``start`` is a position or a time. ``start`` ``None`` means the
    end (backwards: the newest event).
    """

    stream: str | None
    start: int | v2.AtTime | None
    backwards: bool = False
    max_count: int | None = None
    batch_size: int = v2.DEFAULT_BATCH_SIZE
    credit: int = CREDIT_WINDOW
    stream_prefix: str = ""
    event_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        # Check everything the encoder would refuse now, not at the first send.
        self.frames(1, self.start, self.max_count)

    def frames(
        self, request_id: int, start: int | v2.AtTime | None, max_count: int | None
    ) -> list[bytes]:
        """The READ request for this spec, from ``start`` for at most ``max_count`` events."""
        if self.stream is not None:
            if isinstance(start, v2.AtTime):
                raise ValueError("a stream read starts at a version, not a time")
            return v2.encode_read_stream_request(
                request_id,
                self.stream,
                from_version=start,
                backwards=self.backwards,
                max_count=max_count,
                batch_size=self.batch_size,
                credit=self.credit,
                packed=True,
            )
        return v2.encode_read_all_request(
            request_id,
            start=start,
            backwards=self.backwards,
            max_count=max_count,
            batch_size=self.batch_size,
            credit=self.credit,
            stream_prefix=self.stream_prefix,
            event_types=self.event_types,
            packed=True,
        )


@dataclass(frozen=True, slots=True)
class ReadEnd:
    """How a read ended.

    ``cursor`` continues it in the same direction: pass it as ``from_version``
    (stream reads) or ``from_position`` (``read_all``) of a new read. Forward
    over a filtered ``read_all`` it lies past every event the server examined,
    not just past the last one returned.
    """

    reason: v2.EndReason
    cursor: int
    count: int
    """Events the read delivered in all."""


class ReadState:
    """Where one logical read stands.

    Feed it every reply with :meth:`on_reply`; it returns the events to
    deliver and raises the client's exceptions for ``ERROR`` replies. After
    an ``END`` :attr:`end` is set.
    """

    def __init__(self, spec: ReadSpec) -> None:
        self.spec = spec
        self._start = spec.start
        self._remaining = spec.max_count
        self.delivered = 0
        self.end: ReadEnd | None = None
        self.requests = 0
        """READ requests sent for this read so far (more than one after a resume)."""

    @property
    def finished(self) -> bool:
        """Whether the read is over (an ``END``, or nothing left to ask for)."""
        return self.end is not None

    def can_continue(self) -> bool:
        """Whether another READ request is needed; if not, the read is over and
        :attr:`end` is set."""
        if self.end is None and self._remaining == 0:
            self._finish(v2.EndReason.MAX_COUNT)
        # Backwards past the first event there is nothing left to ask for.
        floor = 0 if self.spec.stream is not None else 1
        if (
            self.end is None
            and self.spec.backwards
            and isinstance(self._start, int)
            and self._start < floor
        ):
            self._finish(v2.EndReason.DONE)
        return self.end is None

    def request(self, request_id: int) -> list[bytes]:
        """The READ request continuing this read from just after the last event delivered."""
        self.requests += 1
        return self.spec.frames(request_id, self._start, self._remaining)

    def _finish(self, reason: v2.EndReason) -> None:
        cursor = self._start if isinstance(self._start, int) else 0
        self.end = ReadEnd(reason, cursor, self.delivered)

    def on_reply(self, reply: v2.Reply) -> tuple[RecordedEvent, ...]:
        """Take one reply to the current READ request; return the events it delivers."""
        if isinstance(reply, v2.EventBatch):
            return self._on_batch(reply.events)
        if isinstance(reply, v2.ReadEnd):
            if reply.reason == v2.EndReason.CANCELLED:
                # Only this client cancels, and it stops listening first.
                raise ProtocolError("the server cancelled a read nobody cancelled")
            cursor = reply.cursor
            self.end = ReadEnd(reply.reason, cursor, self.delivered)
            return ()
        if isinstance(reply, v2.ErrorReply):
            raise error_from_reply(reply, stream=self.spec.stream or "")
        raise ProtocolError(f"unexpected {type(reply).__name__} reply to a read")

    def _on_batch(self, events: Iterable[RecordedEvent]) -> tuple[RecordedEvent, ...]:
        batch = tuple(events)
        if self._remaining is not None:
            if len(batch) > self._remaining:
                raise ProtocolError("the server sent more events than max_count allows")
            self._remaining -= len(batch)
        self.delivered += len(batch)
        last = batch[-1]
        step = -1 if self.spec.backwards else 1
        key = last.version if self.spec.stream is not None else last.position
        self._start = key + step
        return batch


# Arguments of the public read methods -------------------------------------------


def read_stream_spec(
    stream: str,
    *,
    from_version: int | None,
    backwards: bool,
    max_count: int | None,
    batch_size: int,
) -> ReadSpec:
    """The read ``read_stream`` stands for; ``from_version=None`` is the start in the
    direction of reading (version 0 forward, the last version backwards)."""
    if from_version is None and not backwards:
        from_version = 0
    return ReadSpec(
        stream=stream,
        start=from_version,
        backwards=backwards,
        max_count=max_count,
        batch_size=batch_size,
    )


def read_all_spec(
    *,
    from_position: int | None,
    since: datetime | int | None,
    backwards: bool,
    max_count: int | None,
    stream_prefix: str | None,
    event_types: Iterable[str] | None,
    batch_size: int,
) -> ReadSpec:
    """The read ``read_all`` stands for; without ``from_position`` or ``since`` it starts
    at the first event (forward) or the newest (backwards)."""
    start: int | v2.AtTime | None
    if since is not None:
        if from_position is not None:
            raise ValueError("give from_position or since, not both")
        start = v2.AtTime(timestamp_us(since))
    elif from_position is None:
        start = None if backwards else 0
    else:
        start = from_position
    types: frozenset[str] | None = None
    if event_types is not None:
        if isinstance(event_types, str):
            raise TypeError("event_types is a collection of types, not a single str")
        types = frozenset(event_types)
    return ReadSpec(
        stream=None,
        start=start,
        backwards=backwards,
        max_count=max_count,
        batch_size=batch_size,
        stream_prefix=stream_prefix or "",
        event_types=types,
    )
