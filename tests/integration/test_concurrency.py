"""Many concurrent clients: every event stored once, per-client order kept, stream complete."""

from __future__ import annotations

import threading

from tests.integration.helpers import (
    Context,
    Publisher,
    Streamed,
    Subscriber,
    assert_chain,
    join_all,
    open_req,
    query_all,
)
from tests.support import ServerProcess

CLIENTS = 16
EVENTS_PER_CLIENT = 200


def test_sixteen_concurrent_publishers(server: ServerProcess, zmq_context: Context) -> None:
    """16 REQ clients publishing at once: QUERY holds each event exactly once, in each
    client's order, and a subscriber saw that same sequence with an unbroken chain.

    On both backends: SQLite commits what waits in groups, memory one request at a time.
    """
    req = open_req(zmq_context, server.query_endpoint)
    # No receive limit: the test reads while writers run, and must not drop anything.
    sub = Subscriber(zmq_context, server.streaming_endpoint, rcvhwm=0)
    warm = sub.warm_up(req)

    barrier = threading.Barrier(CLIENTS)
    writers = [
        Publisher(
            zmq_context,
            server.query_endpoint,
            f"client-{index:02d}",
            EVENTS_PER_CLIENT,
            start_barrier=barrier,
        )
        for index in range(CLIENTS)
    ]
    streamed: list[Streamed] = []
    for writer in writers:
        writer.start()
    try:
        for _ in range(CLIENTS * EVENTS_PER_CLIENT):
            streamed.append(sub.receive(10_000))
    finally:
        join_all(writers, timeout=60)
    for writer in writers:
        assert writer.error is None, writer.error
        assert writer.acked == [writer.payload(i) for i in range(EVENTS_PER_CLIENT)]
    assert sub.quiet_for(200), "the stream carried more events than were published"

    events = query_all(req, warm[-1].id)
    stored = [data for _, data in events]
    assert len(stored) == CLIENTS * EVENTS_PER_CLIENT
    assert len(set(stored)) == len(stored), "an event was stored twice"
    for writer in writers:
        mine = [data for data in stored if data.startswith(f"{writer.tag}-".encode())]
        assert mine == writer.acked, f"{writer.tag}'s events are missing or out of order"
    assert len({event_id for event_id, _ in events}) == len(events)

    assert [(message.id, message.data) for message in streamed] == events
    assert_chain(streamed, warm[-1].id)


def test_concurrent_readers_and_writers(server: ServerProcess, zmq_context: Context) -> None:
    """Queries running alongside publishes always see a prefix of the final log."""
    writers = [
        Publisher(zmq_context, server.query_endpoint, f"rw-{index}", 150) for index in range(4)
    ]
    snapshots: list[list[tuple[bytes, bytes]]] = []
    for writer in writers:
        writer.start()
    try:
        reader = open_req(zmq_context, server.query_endpoint)
        for _ in range(15):
            snapshots.append(query_all(reader))
    finally:
        join_all(writers)
    for writer in writers:
        assert writer.error is None, writer.error
    final = query_all(open_req(zmq_context, server.query_endpoint))
    assert len(final) == 4 * 150
    for snapshot in snapshots:
        assert snapshot == final[: len(snapshot)]
