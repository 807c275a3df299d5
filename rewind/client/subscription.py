"""Catch-up subscriptions without I/O: history, then live, no gap, no duplicate.

The technique (see "Catch-up subscriptions" in ``docs/protocol.md``):

1. Subscribe to the live feed first; its messages wait in the SUB socket's
   queue meanwhile.
2. Read history forward from the checkpoint until ``END``, delivering it.
3. Take the queued and then the live messages, skipping everything at or
   below the checkpoint. When the feed shows a gap (a message the feed
   dropped, for instance because the consumer was slower than the
   high-water mark), go back to step 2.

:class:`CatchUp` decides all of this; the synchronous and asyncio clients
only move messages between it and their sockets.

The checkpoint is a global position, except for a single-stream
subscription, where it is the stream's version (versions of one stream have
no holes, positions of one stream do). Gaps are visible on the whole-log
feed (each position is the previous one + 1) and on one stream's feed (each
version is the previous one + 1), but not on a category's feed, where
positions of other streams fall in between. A category subscription
therefore listens to the whole feed and filters by prefix itself: every
position passes by, so a dropped message is always noticed.

Two situations show no gap on the feed at all: the subscription reaching
the server a moment after the history read ended, and the last messages of
a burst being dropped. So once the feed has been quiet for a little while
after a read or after a message, the history is read once more from the
checkpoint (:meth:`CatchUp.on_quiet`); it usually finds nothing.
"""

from __future__ import annotations

import enum

from rewind.client.errors import ProtocolError
from rewind.client.reads import ReadEnd, ReadSpec
from rewind.model import RecordedEvent
from rewind.protocol import v2

__all__ = ["PROBE_INTERVAL", "QUIET_INTERVAL", "CatchUp", "Verdict"]

QUIET_INTERVAL = 0.5
"""Seconds of feed silence after which the history is checked once more."""

PROBE_INTERVAL = 1.0
"""With several servers: seconds of feed silence after which the client checks
that its server still answers (a stopped server's feed is silent too)."""


class Verdict(enum.Enum):
    """What to do with a feed message."""

    DELIVER = "deliver"
    SKIP = "skip"
    GAP = "gap"
    """Something is missing before it: read the history from the checkpoint."""


class CatchUp:
    """The decisions of one catch-up subscription.

    Exactly one of three shapes: the whole log (no ``stream``, no prefix),
    a category (``stream_prefix``), or one ``stream``. ``from_position``
    (log, category) and ``from_version`` (stream) name the first event to
    deliver, inclusive; by default everything from the beginning.
    """

    def __init__(
        self,
        *,
        from_position: int | None = None,
        stream: str | None = None,
        from_version: int | None = None,
        stream_prefix: str | None = None,
        batch_size: int = v2.DEFAULT_BATCH_SIZE,
    ) -> None:
        if stream is not None:
            if stream_prefix:
                raise ValueError("subscribe to a stream or to a prefix, not both")
            if from_position is not None:
                raise ValueError("a stream subscription starts at a version (from_version)")
            start = 0 if from_version is None else from_version
            self.topic = v2.subscription_topic(stream)
            if not stream:
                raise ValueError("invalid stream name: empty")
        else:
            if from_version is not None:
                raise ValueError("from_version needs a stream; use from_position for the log")
            start = 1 if from_position is None else max(from_position, 1)
            # Also for a category: only the whole feed shows every dropped message.
            self.topic = v2.subscription_topic("")
            # Checked here so a bad prefix fails at once, not at the first read.
            v2.subscription_topic(stream_prefix or "")
        if start < 0:
            raise ValueError(f"a subscription cannot start at {start}")
        self.stream = stream
        self.stream_prefix = stream_prefix or ""
        self.batch_size = batch_size
        self.checkpoint = start - 1
        """Stream subscriptions: last version delivered (-1: none). Otherwise the
        last position examined: every wanted event at or below it was delivered."""
        self.reading = True
        """Whether the history must be read now (at first, and after a gap)."""
        self.gaps = 0
        """How many times events missing from the live feed were read from the store:
        a jump in positions (versions), or a quiet-time check that found events."""
        self._quiet_check_due = True
        self._checking = False

    # Reading history ----------------------------------------------------------------

    def history(self) -> ReadSpec:
        """The read to run now: forward from just after the checkpoint to the end."""
        return ReadSpec(
            stream=self.stream,
            start=self.checkpoint + 1,
            batch_size=self.batch_size,
            stream_prefix=self.stream_prefix,
        )

    def on_history_event(self, event: RecordedEvent) -> bool:
        """Whether to deliver an event of the history read (not one delivered already)."""
        key = event.version if self.stream is not None else event.position
        if key <= self.checkpoint:
            return False
        self.checkpoint = key
        if self._checking:
            # A quiet-time check found events: the feed had lost them.
            self._checking = False
            self.gaps += 1
        return True

    def on_history_end(self, end: ReadEnd | None) -> None:
        """The history read is over (``None``: the stream does not exist yet)."""
        if end is not None and end.reason == v2.EndReason.DONE:
            # Forward, the cursor lies past everything the server examined,
            # including events the prefix filter left out.
            self.checkpoint = max(self.checkpoint, end.cursor - 1)
        self.reading = False
        self._checking = False

    # The live feed ------------------------------------------------------------------

    def wants(self, frames: list[bytes]) -> bool:
        """Whether a raw feed message concerns this subscription at all (cheap pre-check)."""
        if self.stream is not None:
            # The stream's topic also matches longer names that start with it.
            return v2.is_stream(frames, self.stream)
        return not v2.is_control_message(frames)

    def on_feed_event(self, event: RecordedEvent) -> Verdict:
        """Judge one live event; after ``GAP`` :attr:`reading` is set."""
        self._quiet_check_due = True
        key = event.version if self.stream is not None else event.position
        if key <= self.checkpoint:
            return Verdict.SKIP
        if key != self.checkpoint + 1:
            self.gaps += 1
            self.reading = True
            return Verdict.GAP
        self.checkpoint = key
        if self.stream_prefix and not event.stream.startswith(self.stream_prefix):
            return Verdict.SKIP
        return Verdict.DELIVER

    def on_feed_message(self, frames: list[bytes]) -> RecordedEvent | None:
        """Take one raw feed message; return the event to deliver, if any.

        After a gap :attr:`reading` is set. Raises the client's
        :class:`~rewind.client.ProtocolError` for a message that is not an
        event.
        """
        if not self.wants(frames):
            return None
        try:
            event = v2.decode_feed_message(frames)
        except v2.ProtocolError as exc:
            raise ProtocolError(f"feed message: {exc}") from None
        if event is None or self.on_feed_event(event) is not Verdict.DELIVER:
            return None
        return event

    def on_feed_switched(self) -> None:
        """The subscription now listens to another server's feed (the client failed over).

        That feed carries the same events at the same positions, but what was
        published while no feed was heard is missing: read the history from
        the checkpoint, and once more after the next quiet spell, because
        the new SUB socket may reach its server only after that read.
        """
        self.reading = True
        self._quiet_check_due = True
        self._checking = False

    def on_quiet(self) -> bool:
        """The feed was quiet for :data:`QUIET_INTERVAL`; return whether to read history.

        Reads once after the first history read and once after each spell of
        feed messages, never repeatedly while nothing happens.
        """
        if self._quiet_check_due:
            self._quiet_check_due = False
            self._checking = True
            self.reading = True
            return True
        return False
