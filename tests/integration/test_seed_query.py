"""Seed protocol QUERY: ranges, paging at 100 pairs, END, and event id format."""

from __future__ import annotations

from tests.integration.helpers import (
    PAGE_SIZE,
    Context,
    assert_event_id,
    numbered,
    open_req,
    publish_all,
    query_all,
    query_page,
    request,
)
from tests.support import ServerProcess


def test_empty_store_query_is_lone_end(server: ServerProcess, zmq_context: Context) -> None:
    """QUERY on an empty store answers exactly ``[b"END"]``."""
    req = open_req(zmq_context, server.query_endpoint)
    assert request(req, [b"QUERY", b"", b""]) == [b"END"]


def test_query_returns_pairs_in_publish_order(server: ServerProcess, zmq_context: Context) -> None:
    """An unbounded QUERY lists id/event pairs in publish order, then END."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("ordered", 10)
    publish_all(req, data)
    reply = request(req, [b"QUERY", b"", b""])
    assert len(reply) == 2 * len(data) + 1
    assert reply[-1] == b"END"
    assert reply[1:-1:2] == data
    for raw_id in reply[0:-1:2]:
        assert_event_id(raw_id)


def test_event_ids_are_unique_canonical_uuids(server: ServerProcess, zmq_context: Context) -> None:
    """Every event id is 36 ASCII characters of canonical UUID text, and no two are equal."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_all(req, numbered("id", 150))
    ids = [event_id for event_id, _ in query_all(req)]
    assert len(ids) == 150
    for event_id in ids:
        assert_event_id(event_id)
    assert len(set(ids)) == len(ids)


def test_from_is_exclusive_and_to_is_inclusive(server: ServerProcess, zmq_context: Context) -> None:
    """``QUERY a b`` returns the events after ``a`` up to and including ``b``."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("range", 10)
    publish_all(req, data)
    events = query_all(req)
    ids = [event_id for event_id, _ in events]
    assert request(req, [b"QUERY", ids[2], ids[6]]) == [
        *[frame for pair in events[3:7] for frame in pair],
        b"END",
    ]
    # Open upper bound: everything after "from".
    assert query_all(req, ids[7]) == events[8:]
    # Open lower bound: everything from the first event through "to".
    assert query_all(req, b"", ids[4]) == events[:5]
    # Both bounds at the ends.
    assert query_all(req, ids[0], ids[-1]) == events[1:]
    assert query_all(req, b"", ids[0]) == events[:1]
    assert request(req, [b"QUERY", ids[-1], b""]) == [b"END"]


def test_from_equal_to_to_is_lone_end(server: ServerProcess, zmq_context: Context) -> None:
    """``QUERY x x`` is an empty range: exactly ``[b"END"]``."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_all(req, numbered("same", 3))
    ids = [event_id for event_id, _ in query_all(req)]
    for event_id in ids:
        assert request(req, [b"QUERY", event_id, event_id]) == [b"END"]


def test_250_events_page_as_100_100_50(server: ServerProcess, zmq_context: Context) -> None:
    """250 events come back as two capped pages of 100 and a last page of 50 plus END."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("paged", 250)
    publish_all(req, data)

    first = request(req, [b"QUERY", b"", b""])
    assert len(first) == 2 * PAGE_SIZE
    assert first[1::2] == data[:100]
    second = request(req, [b"QUERY", first[-2], b""])
    assert len(second) == 2 * PAGE_SIZE
    assert second[1::2] == data[100:200]
    third = request(req, [b"QUERY", second[-2], b""])
    assert len(third) == 2 * 50 + 1
    assert third[-1] == b"END"
    assert third[1:-1:2] == data[200:]
    ids = first[0::2] + second[0::2] + third[0:-1:2]
    assert len(set(ids)) == 250


def test_exactly_100_events_is_a_capped_page_then_lone_end(
    server: ServerProcess, zmq_context: Context
) -> None:
    """Exactly 100 remaining events: a full page without END, then a lone END."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("hundred", 100)
    publish_all(req, data)
    reply = request(req, [b"QUERY", b"", b""])
    assert len(reply) == 200
    assert reply[1::2] == data
    assert request(req, [b"QUERY", reply[-2], b""]) == [b"END"]


def test_exactly_100_remaining_after_from(server: ServerProcess, zmq_context: Context) -> None:
    """The cap counts events after ``from``: 100 left is still a capped page."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("tail", 130)
    publish_all(req, data)
    ids = [event_id for event_id, _ in query_all(req)]
    page = query_page(req, ids[29])
    assert not page.ended
    assert [payload for _, payload in page.events] == data[30:]
    assert request(req, [b"QUERY", ids[-1], b""]) == [b"END"]


def test_upper_bound_is_respected_across_pages(server: ServerProcess, zmq_context: Context) -> None:
    """With ``to`` set, paging stops at ``to`` even when more events exist."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("bounded", 250)
    publish_all(req, data)
    ids = [event_id for event_id, _ in query_all(req)]

    first = query_page(req, b"", ids[149])
    assert not first.ended
    assert [payload for _, payload in first.events] == data[:100]
    second = query_page(req, first.events[-1][0], ids[149])
    assert second.ended
    assert [payload for _, payload in second.events] == data[100:150]
    # A bounded range of exactly 100 events is capped too; its continuation is empty.
    exact = query_page(req, ids[49], ids[149])
    assert not exact.ended
    assert [payload for _, payload in exact.events] == data[50:150]
    assert request(req, [b"QUERY", ids[149], ids[149]]) == [b"END"]
