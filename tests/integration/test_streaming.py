"""The streaming (PUB) socket: three frames per event, after commit, chained by previous id."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import (
    Context,
    Publisher,
    Subscriber,
    assert_chain,
    assert_error,
    assert_event_id,
    join_all,
    last_id,
    numbered,
    open_req,
    publish,
    publish_all,
    query_all,
    request,
    storage_url,
    wait_for,
)
from tests.support import ServerProcess

ATTEMPTS = 5
"""Scenarios that must catch the very first broadcast are retried this often."""


def test_stream_carries_id_previous_id_and_data(
    server: ServerProcess, zmq_context: Context
) -> None:
    """Each event is streamed as [id, previous id, data], chained, matching QUERY's order."""
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    warm = sub.warm_up(req)
    data = numbered("streamed", 30)
    publish_all(req, data)
    messages = sub.receive_many(len(data))
    assert [message.data for message in messages] == data
    for message in messages:
        assert_event_id(message.id)
        assert_event_id(message.previous)
    assert_chain(messages, warm[-1].id)
    assert query_all(req, warm[-1].id) == [(message.id, message.data) for message in messages]
    assert sub.quiet_for(100), "more messages were streamed than events published"


def test_warm_up_messages_are_chained_too(server: ServerProcess, zmq_context: Context) -> None:
    """Every streamed message names the event stored just before it, per QUERY."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_all(req, numbered("before-subscribing", 5))
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    warm = sub.warm_up(req)
    publish_all(req, numbered("after", 5))
    messages = [*warm, *sub.receive_many(5)]
    stored_ids = [event_id for event_id, _ in query_all(req)]
    for message in messages:
        position = stored_ids.index(message.id)
        assert position > 0
        assert message.previous == stored_ids[position - 1]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_first_event_ever_has_empty_previous_id(
    backend: str, tmp_path: Path, zmq_context: Context
) -> None:
    """On a fresh store the first event's previous id is empty; the second names the first."""
    for attempt in range(ATTEMPTS):
        storage = storage_url(backend, tmp_path / f"attempt-{attempt}")
        with ServerProcess(storage) as server:
            sub = Subscriber(zmq_context, server.streaming_endpoint)
            req = open_req(zmq_context, server.query_endpoint)
            publish_all(req, [b"first", b"second"])
            if not sub.sock.poll(2000):
                continue
            first = sub.receive()
            if first.data != b"first":
                # The subscription went live too late to see the first event; try afresh.
                continue
            second = sub.receive()
            assert first.previous == b""
            assert (second.previous, second.data) == (first.id, b"second")
            assert query_all(req) == [(first.id, b"first"), (second.id, b"second")]
            return
    raise AssertionError(f"the first broadcast was never caught in {ATTEMPTS} attempts")


def test_previous_id_chains_across_restart(
    sqlite_server: ServerProcess, zmq_context: Context
) -> None:
    """After a restart the first new event's previous id is the last id stored before it."""
    req = open_req(zmq_context, sqlite_server.query_endpoint)
    publish_all(req, numbered("before-restart", 5))
    for attempt in range(ATTEMPTS):
        before = last_id(open_req(zmq_context, sqlite_server.query_endpoint))
        query_endpoint = sqlite_server.query_endpoint
        sqlite_server.restart()
        assert sqlite_server.query_endpoint == query_endpoint, "restart moved the endpoint"
        sub = Subscriber(zmq_context, sqlite_server.streaming_endpoint)
        req = open_req(zmq_context, sqlite_server.query_endpoint)
        marker = f"after-restart-{attempt}".encode()
        publish(req, marker)
        if sub.sock.poll(2000):
            message = sub.receive()
            if message.data == marker:
                assert message.previous == before
                assert query_all(req, before) == [(message.id, marker)]
                return
        sub.close()
    raise AssertionError(f"the first broadcast after restart was never caught in {ATTEMPTS} tries")


def test_streamed_events_are_already_committed(server: ServerProcess, zmq_context: Context) -> None:
    """An event arriving on the stream can be queried at once: it was committed first."""
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    sub.warm_up(req)
    writer = Publisher(zmq_context, server.query_endpoint, "committed", 100)
    writer.start()
    reader = open_req(zmq_context, server.query_endpoint)
    try:
        for _ in range(100):
            message = sub.receive()
            reply = request(reader, [b"QUERY", message.previous, message.id])
            assert reply == [message.id, message.data, b"END"], reply
    finally:
        writer.stop.set()
        join_all([writer])
    assert writer.error is None, writer.error


def test_every_subscriber_sees_the_same_sequence(
    server: ServerProcess, zmq_context: Context
) -> None:
    """Several subscribers receive identical, complete sequences."""
    req = open_req(zmq_context, server.query_endpoint)
    subscribers = [Subscriber(zmq_context, server.streaming_endpoint) for _ in range(4)]
    for sub in subscribers:
        sub.warm_up(req, strict=False)
    publish(req, b"marker")
    data = numbered("fan-out", 40)
    publish_all(req, data)
    sequences = []
    for sub in subscribers:
        for _ in range(500):
            if sub.receive().data == b"marker":
                break
        sequences.append(sub.receive_many(len(data)))
    assert [message.data for message in sequences[0]] == data
    for sequence in sequences[1:]:
        assert sequence == sequences[0]


def test_failed_requests_are_not_streamed(server: ServerProcess, zmq_context: Context) -> None:
    """Errors and queries put nothing on the stream; the next event still chains on."""
    req = open_req(zmq_context, server.query_endpoint)
    sub = Subscriber(zmq_context, server.streaming_endpoint)
    warm = sub.warm_up(req)
    assert_error(request(req, [b"PUBLISH"]))
    assert_error(request(req, [b"BOGUS", b"x"]))
    query_all(req)
    assert sub.quiet_for(200)
    publish(req, b"next")
    message = sub.receive()
    assert (message.previous, message.data) == (warm[-1].id, b"next")


def test_subscriber_connected_mid_stream_chains_from_the_log(
    server: ServerProcess, zmq_context: Context
) -> None:
    """A late subscriber's first message points at the event stored before it."""
    req = open_req(zmq_context, server.query_endpoint)
    writer = Publisher(zmq_context, server.query_endpoint, "mid", 20_000)
    writer.start()
    try:
        assert wait_for(lambda: len(writer.acked) >= 10, 10), "the writer did not get going"
        sub = Subscriber(zmq_context, server.streaming_endpoint)
        messages = sub.receive_many(20)
    finally:
        writer.stop.set()
        join_all([writer])
    assert writer.error is None, writer.error
    events = query_all(req)
    ids = [event_id for event_id, _ in events]
    start = ids.index(messages[0].id)
    assert messages[0].previous == (ids[start - 1] if start else b"")
    assert_chain(messages[1:], messages[0].id)
    assert [(m.id, m.data) for m in messages] == events[start : start + 20]
