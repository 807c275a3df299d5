"""The rewind-client compatible functions against a real server."""

from __future__ import annotations

import uuid

import pytest
import zmq

from rewind.client import QueryException, publish_event, query_events, yield_events_after
from tests.integration.helpers import (
    Context,
    EventPair,
    Socket,
    Subscriber,
    numbered,
    open_req,
    query_all,
)
from tests.support import ServerProcess


def _next_batch(sub: Subscriber, req: Socket, last: bytes | None) -> list[EventPair]:
    """One call of ``yield_events_after``, only once a streamed message is waiting."""
    assert sub.sock.poll(5000, zmq.POLLIN), "nothing streamed within 5 s"
    return list(yield_events_after(sub.sock, req, last))


def test_publish_event_then_query_events(server: ServerProcess, zmq_context: Context) -> None:
    """publish_event stores bytes; query_events yields (id, data) pairs in order."""
    req = open_req(zmq_context, server.query_endpoint)
    data = [b"one", b"", b"\x00\xff"]
    for item in data:
        publish_event(req, item)
    events = list(query_events(req))
    assert [payload for _, payload in events] == data
    assert events == query_all(req)


def test_query_events_pages_through_250(server: ServerProcess, zmq_context: Context) -> None:
    """query_events follows capped pages to the end: all 250 events, once each, in order."""
    req = open_req(zmq_context, server.query_endpoint)
    data = numbered("legacy", 250)
    for item in data:
        publish_event(req, item)
    events = list(query_events(req))
    assert [payload for _, payload in events] == data
    assert len({event_id for event_id, _ in events}) == 250


def test_query_events_bounds(server: ServerProcess, zmq_context: Context) -> None:
    """``from_`` is exclusive and ``to`` inclusive, also across page boundaries."""
    req = open_req(zmq_context, server.query_endpoint)
    for item in numbered("bounds", 230):
        publish_event(req, item)
    events = query_all(req)
    ids = [event_id for event_id, _ in events]
    assert list(query_events(req, from_=ids[9])) == events[10:]
    assert list(query_events(req, to=ids[180])) == events[:181]
    assert list(query_events(req, ids[9], ids[220])) == events[10:221]
    assert list(query_events(req, ids[50], ids[50])) == []


@pytest.mark.parametrize(
    ("from_", "to"),
    [
        (str(uuid.uuid1()).encode(), None),
        (None, str(uuid.uuid1()).encode()),
        (b"garbage", None),
        (None, b"garbage"),
    ],
    ids=["unknown-from", "unknown-to", "garbage-from", "garbage-to"],
)
def test_query_events_raises_query_exception(
    server: ServerProcess, zmq_context: Context, from_: bytes | None, to: bytes | None
) -> None:
    """An id the server does not hold makes query_events raise QueryException."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_event(req, b"stored")
    with pytest.raises(QueryException):
        list(query_events(req, from_, to))
    # The socket is still usable afterwards.
    assert [data for _, data in query_events(req)] == [b"stored"]


def test_yield_events_after_without_gap(server: ServerProcess, zmq_context: Context) -> None:
    """With no gap, each call yields just the streamed event."""
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    start = last = sub.warm_up(req)[-1].id
    got: list[EventPair] = []
    for item in [b"a", b"b", b"c"]:
        publish_event(req, item)
        batch = _next_batch(sub, req, last)
        assert [data for _, data in batch] == [item]
        got.extend(batch)
        last = batch[-1][0]
    assert got == query_all(req, start)


def test_yield_events_after_fills_a_gap(server: ServerProcess, zmq_context: Context) -> None:
    """When the streamed event's previous id is not the caller's last id, the missed
    events come first (through QUERY), then the streamed one."""
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    last = sub.warm_up(req)[-1].id
    for item in [b"missed-1", b"missed-2", b"current"]:
        publish_event(req, item)
    # Lose the first two streamed messages, as a full high-water mark would.
    sub.receive_many(2)
    batch = _next_batch(sub, req, last)
    assert batch == query_all(req, last)
    assert [data for _, data in batch] == [b"missed-1", b"missed-2", b"current"]


def test_yield_events_after_recovers_from_high_water_mark(zmq_context: Context) -> None:
    """A subscriber with a tiny receive queue that falls far behind still ends up with
    every event exactly once, in order, by following the previous-id chain."""
    with ServerProcess("memory:") as server:
        _flood_and_follow(server, zmq_context)


def _flood_and_follow(server: ServerProcess, zmq_context: Context) -> None:
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint, rcvhwm=1)
    sub.sock.setsockopt(zmq.RCVBUF, 4096)
    first_last = last = sub.warm_up(req)[-1].id
    # Enough to overflow the socket queues and kernel buffers while nobody reads.
    payload = b"x" * 4000
    for index in range(3000):
        publish_event(req, b"%06d" % index + payload)
    got: list[EventPair] = []
    final_published = False
    calls = 0
    for _ in range(10_000):
        if not sub.sock.poll(300, zmq.POLLIN):
            # Whatever was dropped at the end can only be noticed through a new event.
            assert not final_published, "the final event was never streamed"
            publish_event(req, b"final")
            final_published = True
            continue
        calls += 1
        for event_id, data in yield_events_after(sub.sock, req, last):
            got.append((event_id, data))
            last = event_id
        if got and got[-1][1] == b"final":
            break
    assert got == query_all(req, first_last)
    assert len(got) == 3001
    assert calls < len(got), "nothing was dropped, so no gap was ever filled"
