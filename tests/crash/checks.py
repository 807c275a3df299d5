"""Checking a store's contents against what the clients sent and were told.

No I/O here: the checkers take the events read back (in position order),
the ledger's ops and the messages the feeds delivered, and return a
:class:`Verdict` listing every broken rule in words, with counts for the
run's figures. The store and the feeds grow from cycle to cycle, so each
checker takes only what is new since its last check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewind.model import RecordedEvent
from tests.crash.ledger import SEED_STREAM, Kind, Op, Outcome, tag_of

MAX_PROBLEMS_SHOWN = 25

SenderOf = Callable[[str], "tuple[Op, int] | None"]


@dataclass
class Verdict:
    """What a check found: problems in words, and counts."""

    problems: list[str] = field(default_factory=list)
    stored_events: int = 0
    acked_events: int = 0
    lost_events: int = 0
    """Acknowledged events missing from the store."""
    duplicate_events: int = 0
    """Extra copies of events stored more than once."""
    unknown_ops_stored: int = 0
    """Ops without an answer whose events turned out to be stored."""
    unknown_ops_absent: int = 0
    """Ops without an answer whose events are not stored."""

    def problem(self, text: str) -> None:
        """Note one broken rule."""
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        """Whether every rule held."""
        return not self.problems

    def describe(self) -> str:
        """The problems, one per line (at most :data:`MAX_PROBLEMS_SHOWN`)."""
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        return "\n".join(shown + ([f"... and {more} more"] if more > 0 else []))


class StoreChecker:
    """The store as read so far, in position order, checked as it grows.

    :meth:`add` takes the next events read (positions continuing from the
    last one) and checks what can be seen from the events alone: positions
    1..N without a gap, each stream's versions 0..k in position order, and
    every event carrying a tag some op sent, in that op's stream, with the
    op's own id if it chose one. :meth:`check` then judges every op against
    everything added so far.
    """

    def __init__(self, sender_of: SenderOf) -> None:
        self.sender_of = sender_of
        self.events: list[RecordedEvent] = []
        self.by_id: dict[bytes, RecordedEvent] = {}
        """Events by canonical id text, as the seed feed names them."""
        self._heads: dict[str, int] = {}
        self._found: dict[str, dict[int, list[RecordedEvent]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._problems: list[str] = []
        self._touched: set[str] = set()
        """Ops that got events since the last :meth:`check`."""
        self._judged: dict[str, tuple[Outcome, Verdict]] = {}
        """Each op's verdict, and the outcome it was judged with."""

    @property
    def head(self) -> int:
        """Position of the last event added; 0 if none."""
        return len(self.events)

    def event_at(self, position: int) -> RecordedEvent | None:
        """The event added at ``position``, if any."""
        return self.events[position - 1] if 1 <= position <= len(self.events) else None

    def add(self, events: Sequence[RecordedEvent]) -> None:
        """Take the next events of the store, in position order."""
        for event in events:
            expected = len(self.events) + 1
            if event.position != expected:
                self._problems.append(f"position {event.position} found where {expected} belongs")
            self.events.append(event)
            self.by_id[str(event.event_id).encode("ascii")] = event
            version = self._heads.get(event.stream, -1) + 1
            if event.version != version:
                self._problems.append(
                    f"stream {event.stream!r}: version {event.version} at position "
                    f"{event.position}, expected {version}"
                )
            self._heads[event.stream] = event.version
            self._index(event)

    def _index(self, event: RecordedEvent) -> None:
        tag = tag_of(event.data)
        sender = None if tag is None else self.sender_of(tag)
        if sender is None:
            self._problems.append(
                f"position {event.position}: stored but never sent (data {event.data[:40]!r})"
            )
            return
        op, index = sender
        if event.stream != op.stream:
            self._problems.append(
                f"{tag} stored in stream {event.stream!r}, sent to {op.stream!r} "
                f"(position {event.position})"
            )
        chosen = op.event_ids[index]
        if chosen is not None and event.event_id != chosen:
            self._problems.append(f"{tag} stored with id {event.event_id}, sent with {chosen}")
        self._found[op.op_id][index].append(event)
        self._touched.add(op.op_id)

    def check(self, ops: Sequence[Op]) -> Verdict:
        """Judge every op against the events added so far.

        No tag is stored twice; every op is stored all or nothing, its
        events at consecutive positions and versions; every acknowledged op
        is stored where its answer said; no refused op is stored.
        """
        # An op is judged again only when its outcome or its stored events
        # changed: over hundreds of cycles the ledger grows long.
        for op in ops:
            judged = self._judged.get(op.op_id)
            if judged is None or judged[0] is not op.outcome or op.op_id in self._touched:
                alone = Verdict()
                _check_op(op, self._found.get(op.op_id, {}), alone)
                self._judged[op.op_id] = (op.outcome, alone)
        self._touched.clear()
        verdict = Verdict(problems=list(self._problems), stored_events=len(self.events))
        for _, alone in self._judged.values():
            verdict.problems.extend(alone.problems)
            verdict.acked_events += alone.acked_events
            verdict.lost_events += alone.lost_events
            verdict.duplicate_events += alone.duplicate_events
            verdict.unknown_ops_stored += alone.unknown_ops_stored
            verdict.unknown_ops_absent += alone.unknown_ops_absent
        return verdict


def check_store(events: Sequence[RecordedEvent], ops: Sequence[Op], sender_of: SenderOf) -> Verdict:
    """Check a whole store (``events`` in position order) against every op at once."""
    checker = StoreChecker(sender_of)
    checker.add(events)
    return checker.check(ops)


def _check_op(op: Op, found: dict[int, list[RecordedEvent]], verdict: Verdict) -> None:
    count = len(op.tags)
    if op.outcome is Outcome.ACKED:
        verdict.acked_events += count
    for index, copies in found.items():
        if len(copies) > 1:
            verdict.duplicate_events += len(copies) - 1
            positions = ", ".join(str(event.position) for event in copies)
            verdict.problem(f"{op.tags[index]} stored {len(copies)} times (positions {positions})")
    if not found:
        if op.outcome is Outcome.ACKED:
            verdict.lost_events += count
            verdict.problem(
                f"{op.op_id} ({op.kind.value}, {count} events) acknowledged, not stored"
            )
        elif op.outcome is Outcome.UNKNOWN:
            verdict.unknown_ops_absent += 1
        return
    if op.outcome is Outcome.REFUSED:
        verdict.problem(f"{op.op_id} was refused but {len(found)} of its events are stored")
        return
    if op.outcome is Outcome.UNKNOWN:
        verdict.unknown_ops_stored += 1
    if len(found) != count:
        missing = count - len(found)
        if op.outcome is Outcome.ACKED:
            verdict.lost_events += missing
        verdict.problem(
            f"{op.op_id} ({op.kind.value}) partly stored: {len(found)} of {count} events"
        )
        return
    stored = [found[index][0] for index in range(count)]
    first = stored[0]
    for offset, event in enumerate(stored):
        if event.position != first.position + offset or event.version != first.version + offset:
            verdict.problem(
                f"{op.op_id}: events not consecutive: "
                + ", ".join(f"{e.position}/v{e.version}" for e in stored)
            )
            break
    if op.outcome is Outcome.ACKED and op.ack is not None:
        _check_ack(op, stored, verdict)
    if op.kind is Kind.PUBLISH and first.stream != SEED_STREAM:
        verdict.problem(f"{op.op_id}: PUBLISH stored in stream {first.stream!r}")


def _check_ack(op: Op, stored: list[RecordedEvent], verdict: Verdict) -> None:
    ack = op.ack
    assert ack is not None
    where = (stored[0].position, stored[-1].position, stored[-1].version)
    told = (ack.first_position, ack.last_position, ack.last_version)
    if where != told:
        verdict.problem(
            f"{op.op_id}: acknowledged at positions {told[0]}..{told[1]} last version "
            f"{told[2]}, stored at {where[0]}..{where[1]} last version {where[2]}"
        )
    if tuple(event.event_id for event in stored) != ack.event_ids:
        verdict.problem(f"{op.op_id}: acknowledged ids differ from the stored ones")
    chosen = [event_id for event_id in op.event_ids if event_id is not None]
    if chosen and tuple(chosen) != ack.event_ids:
        verdict.problem(f"{op.op_id}: acknowledged ids differ from the ids sent")
    if stored[0].recorded_at_us != ack.recorded_at_us:
        verdict.problem(
            f"{op.op_id}: acknowledged commit time {ack.recorded_at_us}, "
            f"stored {stored[0].recorded_at_us}"
        )


class SeedFeedChecker:
    """Checks seed feed messages ``(id, previous id, data)`` against the store.

    Each must be a stored event with its data; its previous id must be the
    event at the position before (empty only for position 1), including the
    first message after a restart; positions must rise from message to
    message (commit order, nothing broadcast twice). Messages are checked
    once each, as they come: one naming an event the store has not shown
    yet waits for the next check, unless the check is ``final``.
    """

    def __init__(self) -> None:
        self.checked = 0
        self._last_position = 0

    def check(
        self, messages: Sequence[tuple[bytes, bytes, bytes]], store: StoreChecker, *, final: bool
    ) -> Verdict:
        """Check the messages not checked yet."""
        verdict = Verdict()
        while self.checked < len(messages):
            event_id, previous_id, data = messages[self.checked]
            event = store.by_id.get(event_id)
            if event is None and not final:
                break
            self.checked += 1
            if event is None:
                verdict.problem(f"seed feed broadcast {event_id!r}, which is not stored")
                continue
            if event.data != data:
                verdict.problem(f"seed feed: data of {event_id!r} differs from the store")
            before = store.event_at(event.position - 1)
            expected_previous = b"" if before is None else str(before.event_id).encode("ascii")
            if previous_id != expected_previous:
                verdict.problem(
                    f"seed feed: {event_id!r} (position {event.position}) names previous id "
                    f"{previous_id!r}, the store holds {expected_previous!r} before it"
                )
            if event.position <= self._last_position:
                verdict.problem(
                    f"seed feed: position {event.position} broadcast after {self._last_position}"
                )
            self._last_position = max(self._last_position, event.position)
        return verdict


class V2FeedChecker:
    """Checks v2 feed events: the stored event at that position, positions rising.

    Checked once each, like :class:`SeedFeedChecker`.
    """

    def __init__(self) -> None:
        self.checked = 0
        self._last_position = 0

    def check(
        self, received: Sequence[RecordedEvent], store: StoreChecker, *, final: bool
    ) -> Verdict:
        """Check the events not checked yet."""
        verdict = Verdict()
        while self.checked < len(received):
            event = received[self.checked]
            stored = store.event_at(event.position)
            if stored is None and not final:
                break
            self.checked += 1
            if stored is None:
                verdict.problem(f"v2 feed broadcast position {event.position}, not stored")
                continue
            if stored != event:
                verdict.problem(f"v2 feed: position {event.position} differs from the store")
            if event.position <= self._last_position:
                verdict.problem(
                    f"v2 feed: position {event.position} broadcast after {self._last_position}"
                )
            self._last_position = max(self._last_position, event.position)
        return verdict


class SubscriptionChecker:
    """Checks what a catch-up subscription delivered: the stored events 1..n, once each.

    Checked once each, like :class:`SeedFeedChecker`; in the ``final`` check
    the subscription must have delivered every stored event.
    """

    def __init__(self) -> None:
        self.checked = 0

    def check(
        self, delivered: Sequence[RecordedEvent], store: StoreChecker, *, final: bool
    ) -> Verdict:
        """Check the events not checked yet."""
        verdict = Verdict()
        while self.checked < len(delivered):
            event = delivered[self.checked]
            expected = self.checked + 1
            stored = store.event_at(expected)
            if stored is None and not final:
                break
            self.checked += 1
            if event.position != expected:
                verdict.problem(
                    f"subscription delivered position {event.position} where {expected} belongs"
                )
            elif stored is None:
                verdict.problem(f"subscription delivered position {expected}, not stored")
            elif stored != event:
                verdict.problem(f"subscription: position {expected} differs from the store")
        if final and len(delivered) != store.head:
            verdict.problem(
                f"subscription delivered {len(delivered)} events of the {store.head} stored"
            )
        return verdict
