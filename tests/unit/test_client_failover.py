"""Failover decisions without I/O: endpoint lists, round robin, and a subscription
moving to another server's feed."""

from __future__ import annotations

import logging
import uuid

import pytest

from rewind.client.endpoints import Endpoints, parse_endpoints
from rewind.client.reads import ReadEnd
from rewind.client.subscription import CatchUp, Verdict
from rewind.model import RecordedEvent
from rewind.protocol import v2


def _event(position: int) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        event_id=uuid.uuid4(),
        stream="s",
        version=position - 1,
        recorded_at_us=1,
        event_type="",
        metadata=b"",
        data=b"%d" % position,
    )


def test_endpoints_come_as_a_string_a_list_or_comma_separated() -> None:
    assert parse_endpoints("tcp://a:1") == ("tcp://a:1",)
    assert parse_endpoints("tcp://a:1, tcp://b:1") == ("tcp://a:1", "tcp://b:1")
    assert parse_endpoints(["tcp://a:1", "tcp://b:1,tcp://c:1"]) == (
        "tcp://a:1",
        "tcp://b:1",
        "tcp://c:1",
    )
    for bad in ("", "tcp://a:1,", [], ["tcp://a:1", ""]):
        with pytest.raises(ValueError, match="empty endpoint"):
            parse_endpoints(bad)


def test_failover_goes_round_robin_and_the_new_endpoint_stays_current(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoints = Endpoints(["tcp://a:1", "tcp://b:1", "tcp://c:1"])
    assert endpoints.current == "tcp://a:1"
    with caplog.at_level(logging.WARNING, "rewind.client"):
        assert endpoints.fail_over("no reply") == "tcp://b:1"
    assert "no reply from tcp://a:1, failing over to tcp://b:1" in caplog.text
    assert endpoints.current == "tcp://b:1"
    assert endpoints.fail_over("UNAVAILABLE") == "tcp://c:1"
    assert endpoints.fail_over("no reply") == "tcp://a:1"
    assert endpoints.failovers == 3

    single = Endpoints("tcp://a:1")
    assert single.fail_over("no reply") == "tcp://a:1"
    assert not single.several and single.failovers == 0


def test_feeds_are_one_per_server_or_one_for_all() -> None:
    endpoints = Endpoints("tcp://a:1,tcp://b:1")
    feeds = endpoints.feeds(["tcp://a:2", "tcp://b:2"], "feed endpoint")
    assert endpoints.feed(feeds) == "tcp://a:2"
    endpoints.fail_over("no reply")
    assert endpoints.feed(feeds) == "tcp://b:2"
    assert endpoints.feed(endpoints.feeds("tcp://x:2", "feed endpoint")) == "tcp://x:2"
    with pytest.raises(ValueError, match="3 feed endpoints for 2 query endpoints"):
        endpoints.feeds("tcp://a:2,tcp://b:2,tcp://c:2", "feed endpoint")


def test_a_switched_feed_is_refilled_from_the_store_without_loss_or_duplicate() -> None:
    catch_up = CatchUp()
    catch_up.on_history_end(ReadEnd(v2.EndReason.DONE, 1, 0))
    # Server A's feed delivers 1..3, then A dies; 4 and 5 are committed through B
    # while nobody listens to B's feed.
    for position in (1, 2, 3):
        assert catch_up.on_feed_event(_event(position)) is Verdict.DELIVER
    catch_up.on_feed_switched()
    assert catch_up.reading
    assert catch_up.history().start == 4
    delivered = [e.position for e in map(_event, (4, 5)) if catch_up.on_history_event(e)]
    catch_up.on_history_end(ReadEnd(v2.EndReason.DONE, 6, 2))
    assert delivered == [4, 5]
    # B's feed may still carry what the store read delivered: skipped, not repeated.
    assert catch_up.on_feed_event(_event(5)) is Verdict.SKIP
    assert catch_up.on_feed_event(_event(6)) is Verdict.DELIVER
    # The new SUB socket may have joined after the read: the next quiet spell reads again.
    assert catch_up.on_quiet()
