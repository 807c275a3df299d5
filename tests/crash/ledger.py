"""What the crash harness's clients sent, and what the server told them.

Every write the load clients make is an :class:`Op` in a :class:`Ledger`.
Every event carries a unique tag at the front of its data, so an event read
back from the store names the op (and the index within the op) it came from,
whoever assigned its id.
"""

from __future__ import annotations

import enum
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

SEED_STREAM = "default"
"""The stream seed-protocol PUBLISH appends to (the server's default)."""

TAG_END = b"|"
"""Ends the tag at the front of every event's data; padding follows it."""


class Kind(enum.Enum):
    """How an op was sent."""

    PUBLISH = "publish"
    """Seed protocol PUBLISH over REQ: one event, no id, no position in the reply."""
    APPEND = "append"
    """Rewind v2 APPEND of one event."""
    BATCH = "batch"
    """Rewind v2 APPEND of several events, all or none."""


class Outcome(enum.Enum):
    """What the sender knows about an op."""

    PENDING = "pending"
    """Not answered yet."""
    ACKED = "acked"
    """Answered as stored: every event must be in the store, exactly once."""
    REFUSED = "refused"
    """Answered as not stored (wrong expected version): no event may be in the store."""
    UNKNOWN = "unknown"
    """No answer (timed out): the events may be stored, all of them or none."""


@dataclass(frozen=True, slots=True)
class Ack:
    """Where the server said an acknowledged v2 append's events are."""

    first_position: int
    last_position: int
    last_version: int
    event_ids: tuple[uuid.UUID, ...]
    recorded_at_us: int


@dataclass(slots=True)
class Op:
    """One write request: its events (by tag), its target, and what became of it."""

    op_id: str
    kind: Kind
    stream: str
    tags: tuple[str, ...]
    data: tuple[bytes, ...]
    """Each event's data, as sent (a re-send must repeat it exactly)."""
    event_ids: tuple[uuid.UUID | None, ...]
    """Ids the harness chose itself (``None``: the client or server picks one)."""
    expected_version: int
    started: float
    """Wall-clock time (``time.time()``) when the op was first sent."""
    finished: float | None = None
    outcome: Outcome = Outcome.PENDING
    ack: Ack | None = None
    resent: bool = False
    """Re-sent by the harness after the client gave up, with the same event ids."""


def tag_of(data: bytes) -> str | None:
    """The tag at the front of an event's data; ``None`` if it carries none."""
    tag, found, _ = data.partition(TAG_END)
    if not found:
        return None
    try:
        return tag.decode("ascii")
    except UnicodeDecodeError:
        return None


def event_data(tag: str, padding: int) -> bytes:
    """An event's data: its tag, the end mark, then ``padding`` filler bytes."""
    return tag.encode("ascii") + TAG_END + b"." * padding


@dataclass
class Ledger:
    """Every op of a run, safe to add to from several threads."""

    _ops: dict[str, Op] = field(default_factory=dict)
    _by_tag: dict[str, tuple[Op, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> Op:
        """Record ``op`` before it is sent."""
        with self._lock:
            if op.op_id in self._ops:
                raise ValueError(f"op id {op.op_id} used twice")
            self._ops[op.op_id] = op
            for index, tag in enumerate(op.tags):
                if tag in self._by_tag:
                    raise ValueError(f"tag {tag} used twice")
                self._by_tag[tag] = (op, index)
        return op

    def sender_of(self, tag: str) -> tuple[Op, int] | None:
        """The op that sent ``tag``, and the event's index within it."""
        with self._lock:
            return self._by_tag.get(tag)

    def ops(self) -> list[Op]:
        """Every op so far, in the order they were added."""
        with self._lock:
            return list(self._ops.values())

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops())

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)
