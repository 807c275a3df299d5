"""Checking a store's contents against what the clients sent and were told.

Pure functions over data: the events read back (by position), the ledger's
ops, and the messages the feeds delivered. Each returns a :class:`Verdict`
listing every broken rule in words, with counts for the run's figures.
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


def check_store(events: Sequence[RecordedEvent], ops: Sequence[Op], sender_of: SenderOf) -> Verdict:
    """Check the whole store (``events`` in position order) against every op.

    The rules: positions are 1..N without a gap; each stream's versions are
    0..k in position order; every stored event carries a tag some op sent,
    in that op's stream (with the op's own id, if it chose one) and no tag is
    stored twice; every op is stored all or nothing, its events at
    consecutive positions and versions; every acknowledged op is stored
    where its answer said; no refused op is stored.
    """
    verdict = Verdict(stored_events=len(events))
    _check_numbering(events, verdict)
    found = _events_by_op(events, sender_of, verdict)
    for op in ops:
        _check_op(op, found.get(op.op_id, {}), verdict)
    return verdict


def _check_numbering(events: Sequence[RecordedEvent], verdict: Verdict) -> None:
    for expected, event in enumerate(events, start=1):
        if event.position != expected:
            verdict.problem(f"position {event.position} found where {expected} belongs")
            break
    heads: dict[str, int] = {}
    for event in events:
        expected = heads.get(event.stream, -1) + 1
        if event.version != expected:
            verdict.problem(
                f"stream {event.stream!r}: version {event.version} at position "
                f"{event.position}, expected {expected}"
            )
        heads[event.stream] = event.version


def _events_by_op(
    events: Sequence[RecordedEvent], sender_of: SenderOf, verdict: Verdict
) -> dict[str, dict[int, list[RecordedEvent]]]:
    """Stored events grouped by the op and index their tag names."""
    found: dict[str, dict[int, list[RecordedEvent]]] = defaultdict(lambda: defaultdict(list))
    for event in events:
        tag = tag_of(event.data)
        sender = None if tag is None else sender_of(tag)
        if sender is None:
            verdict.problem(
                f"position {event.position}: stored but never sent (data {event.data[:40]!r})"
            )
            continue
        op, index = sender
        if event.stream != op.stream:
            verdict.problem(
                f"{tag} stored in stream {event.stream!r}, sent to {op.stream!r} "
                f"(position {event.position})"
            )
        chosen = op.event_ids[index]
        if chosen is not None and event.event_id != chosen:
            verdict.problem(f"{tag} stored with id {event.event_id}, sent with {chosen}")
        found[op.op_id][index].append(event)
    return found


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


def check_seed_feed(
    messages: Sequence[tuple[bytes, bytes, bytes]],
    events: Sequence[RecordedEvent],
    *,
    final: bool,
) -> Verdict:
    """Check seed feed messages ``(id, previous id, data)`` against the store.

    Each must be a stored event with its data; its previous id must be the
    event at the position before (empty only for position 1), including the
    first message after a restart; positions must rise from message to
    message (commit order, nothing broadcast twice). Before the final check
    a message may name an event committed after ``events`` was read: it is
    skipped; in the final check every message must be in the store.
    """
    verdict = Verdict()
    by_id = {str(event.event_id).encode("ascii"): event for event in events}
    by_position = {event.position: event for event in events}
    last_position = 0
    for event_id, previous_id, data in messages:
        event = by_id.get(event_id)
        if event is None:
            if final:
                verdict.problem(f"seed feed broadcast {event_id!r}, which is not stored")
            continue
        if event.data != data:
            verdict.problem(f"seed feed: data of {event_id!r} differs from the store")
        before = by_position.get(event.position - 1)
        expected_previous = b"" if before is None else str(before.event_id).encode("ascii")
        if previous_id != expected_previous:
            verdict.problem(
                f"seed feed: {event_id!r} (position {event.position}) names previous id "
                f"{previous_id!r}, the store holds {expected_previous!r} before it"
            )
        if event.position <= last_position:
            verdict.problem(f"seed feed: position {event.position} broadcast after {last_position}")
        last_position = max(last_position, event.position)
    return verdict


def check_v2_feed(
    received: Sequence[RecordedEvent], events: Sequence[RecordedEvent], *, final: bool
) -> Verdict:
    """Check v2 feed events against the store: same event at the same position, rising.

    As in :func:`check_seed_feed`, events beyond what was read are skipped
    unless ``final``.
    """
    verdict = Verdict()
    by_position = {event.position: event for event in events}
    last_position = 0
    for event in received:
        stored = by_position.get(event.position)
        if stored is None:
            if final:
                verdict.problem(f"v2 feed broadcast position {event.position}, not stored")
            continue
        if stored != event:
            verdict.problem(f"v2 feed: position {event.position} differs from the store")
        if event.position <= last_position:
            verdict.problem(f"v2 feed: position {event.position} broadcast after {last_position}")
        last_position = max(last_position, event.position)
    return verdict
