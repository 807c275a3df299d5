"""The smallest end-to-end check: publish, query and stream through a real server."""

from __future__ import annotations

import zmq

from rewind.client import publish_event, query_events
from tests.support import ServerProcess


def test_publish_then_query_and_stream(
    server: ServerProcess, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    sub = zmq_context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(server.streaming_endpoint)
    req = zmq_context.socket(zmq.REQ)
    req.connect(server.query_endpoint)
    # Wait until the subscription is live, so the first broadcast is not lost.
    publish_event(req, b"warm-up")
    assert sub.poll(5000), "no broadcast within 5 s"
    warm_id, _, warm_data = sub.recv_multipart()
    assert warm_data == b"warm-up"

    publish_event(req, b"hello")
    assert sub.poll(5000)
    event_id, previous_id, data = sub.recv_multipart()
    assert (previous_id, data) == (warm_id, b"hello")
    assert list(query_events(req)) == [(warm_id, b"warm-up"), (event_id, b"hello")]
