"""The crash harness's checks catch each kind of damage (no server involved).

A check that cannot fail proves nothing, so each rule is shown here to
reject a store that breaks it, and to accept a store that keeps it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from rewind.model import RecordedEvent
from tests.crash.checks import (
    SeedFeedChecker,
    StoreChecker,
    SubscriptionChecker,
    V2FeedChecker,
    check_store,
)
from tests.crash.ledger import Ack, Kind, Ledger, Op, Outcome, event_data

T0 = 1_700_000_000_000_000


def make_op(
    ledger: Ledger,
    op_id: str,
    stream: str,
    count: int,
    outcome: Outcome = Outcome.ACKED,
    *,
    kind: Kind | None = None,
    own_ids: bool = False,
) -> Op:
    tags = tuple(f"{op_id}.{index}" for index in range(count))
    return ledger.add(
        Op(
            op_id=op_id,
            kind=kind or (Kind.APPEND if count == 1 else Kind.BATCH),
            stream=stream,
            tags=tags,
            data=tuple(event_data(tag, 3) for tag in tags),
            event_ids=tuple(uuid.uuid4() if own_ids else None for _ in tags),
            expected_version=-2,
            started=0.0,
            outcome=outcome,
        )
    )


class Store:
    """Builds a store's events op by op, acknowledging as the server would."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.heads: dict[str, int] = {}

    def store(self, op: Op, *, indexes: Sequence[int] | None = None, ack: bool = True) -> None:
        first = len(self.events) + 1
        for index in range(len(op.tags)) if indexes is None else indexes:
            version = self.heads.get(op.stream, -1) + 1
            self.heads[op.stream] = version
            self.events.append(
                RecordedEvent(
                    position=len(self.events) + 1,
                    event_id=op.event_ids[index] or uuid.uuid4(),
                    stream=op.stream,
                    version=version,
                    recorded_at_us=T0 + first,
                    event_type=op.kind.value,
                    metadata=b"",
                    data=op.data[index],
                )
            )
        if ack and op.outcome is Outcome.ACKED:
            stored = self.events[first - 1 :]
            op.ack = Ack(
                first_position=first,
                last_position=len(self.events),
                last_version=stored[-1].version,
                event_ids=tuple(event.event_id for event in stored),
                recorded_at_us=T0 + first,
            )


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


def verdict_of(ledger: Ledger, events: Sequence[RecordedEvent]) -> list[str]:
    return check_store(events, ledger.ops(), ledger.sender_of).problems


def healthy(ledger: Ledger) -> Store:
    store = Store()
    store.store(make_op(ledger, "a.1", "s", 1))
    store.store(make_op(ledger, "a.2", "s", 3, own_ids=True))
    store.store(make_op(ledger, "p.1", "default", 1, kind=Kind.PUBLISH), ack=False)
    store.store(make_op(ledger, "u.1", "t", 2, Outcome.UNKNOWN))
    make_op(ledger, "u.2", "t", 2, Outcome.UNKNOWN)
    make_op(ledger, "r.1", "t", 2, Outcome.REFUSED)
    store.store(make_op(ledger, "a.3", "t", 2))
    return store


def test_a_healthy_store_passes(ledger: Ledger) -> None:
    store = healthy(ledger)
    verdict = check_store(store.events, ledger.ops(), ledger.sender_of)
    assert verdict.ok, verdict.describe()
    assert (verdict.stored_events, verdict.acked_events) == (9, 7)
    assert (verdict.unknown_ops_stored, verdict.unknown_ops_absent) == (1, 1)


def test_a_lost_acknowledged_event_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    store.store(make_op(ledger, "lost", "s", 1))
    problems = verdict_of(ledger, store.events[:-1])
    assert problems == ["lost (append, 1 events) acknowledged, not stored"]


def test_a_duplicate_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    op = make_op(ledger, "dup", "s", 1, Outcome.UNKNOWN)
    store.store(op)
    store.store(op)
    verdict = check_store(store.events, ledger.ops(), ledger.sender_of)
    assert verdict.duplicate_events == 1
    assert "dup.0 stored 2 times (positions 10, 11)" in verdict.problems


def test_an_event_never_sent_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    stranger = make_op(Ledger(), "x", "s", 1)
    store.store(stranger)
    assert any("stored but never sent" in p for p in verdict_of(ledger, store.events))


def test_a_partial_batch_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    store.store(make_op(ledger, "half", "s", 4, Outcome.UNKNOWN), indexes=[0, 1])
    assert verdict_of(ledger, store.events) == ["half (batch) partly stored: 2 of 4 events"]


def test_an_interleaved_batch_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    batch = make_op(ledger, "split", "s", 2)
    other = make_op(ledger, "other", "s", 1, Outcome.UNKNOWN)
    store.store(batch, indexes=[0], ack=False)
    store.store(other)
    store.store(batch, indexes=[1], ack=False)
    assert any("split: events not consecutive" in p for p in verdict_of(ledger, store.events))


def test_a_stored_refused_append_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    store.store(make_op(ledger, "no", "s", 1, Outcome.REFUSED))
    assert verdict_of(ledger, store.events) == ["no was refused but 1 of its events are stored"]


def test_wrong_acknowledged_positions_are_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    op = make_op(ledger, "moved", "s", 1)
    store.store(op)
    assert op.ack is not None
    op.ack = Ack(3, 3, op.ack.last_version, op.ack.event_ids, op.ack.recorded_at_us)
    assert any(
        "moved: acknowledged at positions 3..3" in p for p in verdict_of(ledger, store.events)
    )


def test_a_gap_in_positions_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    gap = [event._replace(position=event.position + 1) for event in store.events[5:]]
    problems = verdict_of(ledger, store.events[:5] + gap)
    assert "position 7 found where 6 belongs" in problems


def test_a_gap_in_versions_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    events = list(store.events)
    events[1] = events[1]._replace(version=5)
    assert any(
        "stream 's': version 5 at position 2, expected 1" in p for p in verdict_of(ledger, events)
    )


def test_a_wrong_stream_or_id_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    events = list(store.events)
    events[2] = events[2]._replace(event_id=uuid.uuid4())
    events[7] = events[7]._replace(stream="s")
    problems = verdict_of(ledger, events)
    assert any(p.startswith("a.2.1 stored with id") for p in problems)
    assert any(p.startswith("a.3.0 stored in stream 's'") for p in problems)


def test_checking_in_steps_equals_checking_at_once(ledger: Ledger) -> None:
    store = healthy(ledger)
    checker = StoreChecker(ledger.sender_of)
    checker.add(store.events[:4])
    checker.add(store.events[4:])
    assert checker.check(ledger.ops()).ok
    assert checker.head == len(store.events)


def test_later_damage_to_an_op_judged_before_is_caught(ledger: Ledger) -> None:
    store = healthy(ledger)
    late = make_op(ledger, "late", "s", 1, Outcome.UNKNOWN)
    store.store(late)
    checker = StoreChecker(ledger.sender_of)
    checker.add(store.events)
    assert checker.check(ledger.ops()).ok
    # A copy of it turns up later: the op is judged again.
    store.store(late)
    checker.add(store.events[-1:])
    assert checker.check(ledger.ops()).duplicate_events == 1
    # An op whose outcome changes is judged again too.
    ledger.ops()[3].outcome = Outcome.REFUSED  # u.1, stored
    assert "u.1 was refused but 2 of its events are stored" in checker.check(ledger.ops()).problems


def feed_message(
    event: RecordedEvent, previous: RecordedEvent | None
) -> tuple[bytes, bytes, bytes]:
    previous_id = b"" if previous is None else str(previous.event_id).encode()
    return str(event.event_id).encode(), previous_id, event.data


def test_the_seed_feed_check(ledger: Ledger) -> None:
    events = healthy(ledger).events
    checker = StoreChecker(ledger.sender_of)
    checker.add(events)
    good = [feed_message(events[0], None), feed_message(events[3], events[2])]
    assert SeedFeedChecker().check(good, checker, final=True).ok
    broken_chain = [feed_message(events[3], events[1])]
    assert not SeedFeedChecker().check(broken_chain, checker, final=True).ok
    backwards = [feed_message(events[3], events[2]), feed_message(events[1], events[0])]
    assert not SeedFeedChecker().check(backwards, checker, final=True).ok
    unknown = [(str(uuid.uuid4()).encode(), b"", b"x")]
    waiting = SeedFeedChecker()
    assert waiting.check(unknown, checker, final=False).ok
    assert waiting.checked == 0
    assert not waiting.check(unknown, checker, final=True).ok


def test_the_v2_feed_check(ledger: Ledger) -> None:
    events = healthy(ledger).events
    checker = StoreChecker(ledger.sender_of)
    checker.add(events)
    assert V2FeedChecker().check([events[1], events[4]], checker, final=True).ok
    changed = events[4]._replace(data=b"other")
    assert not V2FeedChecker().check([changed], checker, final=True).ok
    twice = [events[4], events[4]]
    assert not V2FeedChecker().check(twice, checker, final=True).ok
    beyond = events[4]._replace(position=99)
    assert not V2FeedChecker().check([beyond], checker, final=True).ok


def test_the_subscription_check(ledger: Ledger) -> None:
    events = healthy(ledger).events
    checker = StoreChecker(ledger.sender_of)
    checker.add(events)
    assert SubscriptionChecker().check(events, checker, final=True).ok
    partial = SubscriptionChecker()
    assert partial.check(events[:4], checker, final=False).ok
    assert not partial.check(events[:4], checker, final=True).ok  # did not reach the end
    skipped = events[:3] + events[4:]
    assert not SubscriptionChecker().check(skipped, checker, final=True).ok
    repeated = events[:4] + events[3:]
    assert not SubscriptionChecker().check(repeated, checker, final=False).ok
