"""The client's I/O-free decisions: reads that resume, catch-up subscriptions, routing."""

from __future__ import annotations

import struct
import uuid

import pytest

from rewind.client.connection import ConnectionReset, ReplyRouter
from rewind.client.errors import (
    EventIdConflict,
    LimitExceeded,
    ServerError,
    StreamNotFound,
    WrongExpectedVersion,
    error_from_reply,
)
from rewind.client.reads import ReadEnd, ReadSpec, ReadState, read_all_spec
from rewind.client.subscription import CatchUp, Verdict
from rewind.model import RecordedEvent
from rewind.protocol import v2


def _event(position: int, stream: str = "s", version: int | None = None) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        event_id=uuid.uuid4(),
        stream=stream,
        version=position - 1 if version is None else version,
        recorded_at_us=1,
        event_type="",
        metadata=b"",
        data=b"%d" % position,
    )


def _header(frames: list[bytes], layout: struct.Struct) -> tuple[int, ...]:
    # The clients ask for packed batches: the read flags byte follows the header.
    assert frames[2][layout.size :] == v2.wire.READ_FLAGS.pack(v2.wire.READ_PACKED)
    values: tuple[int, ...] = layout.unpack_from(frames[2])
    return values


# Reads -----------------------------------------------------------------------------------


def test_a_resumed_read_starts_after_the_last_event_for_what_is_still_owed() -> None:
    state = ReadState(ReadSpec(stream=None, start=0, max_count=10, batch_size=3))
    assert state.can_continue()
    first = _header(state.request(1), v2.wire.READ_ALL_HEADER)
    assert first[3:5] == (0, 10)  # start, max count
    delivered = state.on_reply(v2.EventBatch(1, (_event(4), _event(5), _event(6))))
    assert [e.position for e in delivered] == [4, 5, 6]
    # The connection is lost here; the read asks again.
    assert state.can_continue()
    again = _header(state.request(2), v2.wire.READ_ALL_HEADER)
    assert again[3:5] == (7, 7)
    assert state.requests == 2


def test_a_backward_stream_read_past_version_zero_is_over() -> None:
    state = ReadState(ReadSpec(stream="s", start=1, backwards=True))
    state.request(1)
    state.on_reply(v2.EventBatch(1, (_event(2, version=1), _event(1, version=0))))
    assert not state.can_continue()
    assert state.end is not None and state.end.count == 2


def test_end_and_errors() -> None:
    state = ReadState(ReadSpec(stream="s", start=0))
    state.request(1)
    assert state.on_reply(v2.ReadEnd(1, v2.EndReason.DONE, 17, 0)) == ()
    assert state.finished and state.end is not None and state.end.cursor == 17
    missing = ReadState(ReadSpec(stream="gone", start=0))
    with pytest.raises(StreamNotFound) as raised:
        missing.on_reply(v2.ErrorReply(1, v2.ErrorCode.NOT_FOUND, "no such stream"))
    assert raised.value.stream == "gone"


def test_read_all_arguments() -> None:
    spec = read_all_spec(
        from_position=None,
        since=None,
        backwards=True,
        max_count=None,
        stream_prefix=None,
        event_types=None,
        batch_size=10,
    )
    assert spec.start is None  # the newest event
    with pytest.raises(TypeError):
        read_all_spec(
            from_position=None,
            since=None,
            backwards=False,
            max_count=None,
            stream_prefix=None,
            event_types="Opened",
            batch_size=10,
        )
    with pytest.raises(ValueError):
        read_all_spec(
            from_position=None,
            since=None,
            backwards=False,
            max_count=None,
            stream_prefix="bad\x00",
            event_types=None,
            batch_size=10,
        )


# Catch-up --------------------------------------------------------------------------------


def test_whole_log_history_then_live_skips_duplicates_and_notices_gaps() -> None:
    catch_up = CatchUp()
    assert catch_up.topic == b""
    assert catch_up.reading and catch_up.history().start == 1
    for position in (1, 2, 3):
        assert catch_up.on_history_event(_event(position))
    catch_up.on_history_end(None)
    assert not catch_up.reading
    assert catch_up.on_feed_event(_event(2)) is Verdict.SKIP  # read from history already
    assert catch_up.on_feed_event(_event(4)) is Verdict.DELIVER
    assert catch_up.on_feed_event(_event(6)) is Verdict.GAP  # 5 was dropped
    assert catch_up.reading and catch_up.gaps == 1
    assert catch_up.history().start == 5
    assert catch_up.on_history_event(_event(5))
    assert catch_up.on_history_event(_event(6))
    catch_up.on_history_end(None)
    assert catch_up.on_feed_event(_event(6)) is Verdict.SKIP
    assert catch_up.on_feed_event(_event(7)) is Verdict.DELIVER


def test_category_listens_to_everything_and_counts_filtered_positions() -> None:
    catch_up = CatchUp(stream_prefix="order-", from_position=10)
    assert catch_up.topic == b""
    assert catch_up.history().stream_prefix == "order-"
    assert catch_up.history().start == 10
    # The server examined up to position 20; nothing in it matched.
    catch_up.on_history_end(ReadEnd(v2.EndReason.DONE, 21, 0))
    assert catch_up.checkpoint == 20
    assert catch_up.on_feed_event(_event(21, stream="user-1")) is Verdict.SKIP
    assert catch_up.on_feed_event(_event(22, stream="order-1")) is Verdict.DELIVER
    assert catch_up.on_feed_event(_event(24, stream="user-1")) is Verdict.GAP
    assert catch_up.history().start == 23


def test_stream_subscription_works_in_versions_and_ignores_longer_names() -> None:
    catch_up = CatchUp(stream="acct-1", from_version=2)
    assert catch_up.topic == b"acct-1"
    assert catch_up.history().stream == "acct-1" and catch_up.history().start == 2
    catch_up.on_history_end(None)  # the stream does not exist yet
    longer = v2.encode_feed_message(_event(50, stream="acct-12", version=2))
    assert not catch_up.wants(longer)
    assert catch_up.on_feed_message(longer) is None
    mine = v2.encode_feed_message(_event(51, stream="acct-1", version=2))
    delivered = catch_up.on_feed_message(mine)
    assert delivered is not None and delivered.version == 2
    assert catch_up.on_feed_event(_event(60, stream="acct-1", version=4)) is Verdict.GAP


def test_quiet_checks_happen_once_per_spell_of_activity() -> None:
    catch_up = CatchUp()
    catch_up.on_history_end(None)
    assert catch_up.on_quiet()  # once after the first read
    catch_up.on_history_end(None)
    assert not catch_up.on_quiet()
    catch_up.on_feed_event(_event(1))
    assert catch_up.on_quiet()
    assert catch_up.on_history_event(_event(2))  # the check found a lost event
    assert catch_up.gaps == 1


def test_subscription_arguments() -> None:
    with pytest.raises(ValueError):
        CatchUp(stream="s", stream_prefix="p")
    with pytest.raises(ValueError):
        CatchUp(stream="s", from_position=3)
    with pytest.raises(ValueError):
        CatchUp(from_version=3)
    with pytest.raises(ValueError):
        CatchUp(stream="")


# Routing and errors --------------------------------------------------------------------------


def test_replies_are_routed_by_request_id_and_late_ones_dropped() -> None:
    router = ReplyRouter()
    first, second = router.register(), router.register()
    assert first != second
    assert router.route([b"", *v2.encode_pong(second)]) == second
    assert router.route([b"", *v2.encode_pong(first)]) == first
    assert router.take(first) == v2.encode_pong(first)
    router.discard(second)
    assert router.route([b"", *v2.encode_pong(second)]) is None
    assert router.route(v2.encode_pong(first)) is None  # no delimiter
    router.reset()
    with pytest.raises(ConnectionReset):
        router.take(first)
    assert router.register() > second  # ids are never reused


def test_error_replies_become_typed_exceptions() -> None:
    wrong = v2.ErrorReply(1, v2.ErrorCode.WRONG_EXPECTED_VERSION, "no", 7)
    raised = error_from_reply(wrong, stream="s", expected_version=3)
    assert isinstance(raised, WrongExpectedVersion)
    assert (raised.actual_version, raised.stream, raised.expected_version) == (7, "s", 3)
    conflict = error_from_reply(v2.ErrorReply(1, v2.ErrorCode.EVENT_ID_CONFLICT, "taken"))
    assert isinstance(conflict, EventIdConflict)
    limit = error_from_reply(v2.ErrorReply(1, v2.ErrorCode.LIMIT_EXCEEDED, "big", 100))
    assert isinstance(limit, LimitExceeded) and limit.limit == 100
    unknown = error_from_reply(v2.ErrorReply(1, 99, "new"))
    assert type(unknown) is ServerError and unknown.code == 99
