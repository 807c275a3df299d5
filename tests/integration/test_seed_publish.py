"""Seed protocol PUBLISH on the query endpoint, byte for byte."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import zmq

from tests.integration.helpers import (
    Context,
    Subscriber,
    open_req,
    publish,
    query_all,
    receive,
    request,
    storage_url,
)
from tests.support import ServerProcess

PAYLOADS = {
    "text": b"hello, world",
    "empty": b"",
    "all-bytes": bytes(range(256)),
    "nul-and-newlines": b"\x00\n\r\n\x00END\x00",
    "looks-like-a-reply": b"PUBLISHED",
    "looks-like-end": b"END",
    "looks-like-error": b"ERROR not really",
}


def test_publish_replies_exactly_published(server: ServerProcess, zmq_context: Context) -> None:
    """A PUBLISH is answered with exactly one frame, ``PUBLISHED``."""
    req = open_req(zmq_context, server.query_endpoint)
    assert request(req, [b"PUBLISH", b"event"]) == [b"PUBLISHED"]


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for the payload cases; each looks only at its own event."""
    storage = storage_url(request.param, tmp_path_factory.mktemp("payloads"))
    with ServerProcess(storage) as process:
        yield process


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_round_trips_exactly(
    shared_server: ServerProcess, zmq_context: Context, name: str
) -> None:
    """Whatever bytes are published come back from QUERY and the stream unchanged."""
    data = PAYLOADS[name]
    req = open_req(zmq_context, shared_server.query_endpoint)
    sub = Subscriber(zmq_context, shared_server.streaming_endpoint)
    warm = sub.warm_up(req)
    publish(req, data)
    streamed = sub.receive()
    assert streamed.data == data
    assert streamed.previous == warm[-1].id
    assert query_all(req, warm[-1].id) == [(streamed.id, data)]


def test_one_megabyte_event_round_trips(server: ServerProcess, zmq_context: Context) -> None:
    """A 1 MB binary event is stored and returned byte for byte."""
    data = os.urandom(1024 * 1024)
    req = open_req(zmq_context, server.query_endpoint)
    publish(req, data)
    publish(req, b"after")
    events = query_all(req)
    assert [payload for _, payload in events] == [data, b"after"]


def test_published_event_is_queryable_at_once(server: ServerProcess, zmq_context: Context) -> None:
    """Once PUBLISHED arrives, another client's QUERY already sees the event."""
    writer = open_req(zmq_context, server.query_endpoint)
    reader = open_req(zmq_context, server.query_endpoint)
    for index in range(20):
        data = f"event-{index}".encode()
        publish(writer, data)
        assert query_all(reader)[-1][1] == data


def test_dealer_with_empty_delimiter_gets_enveloped_reply(
    server: ServerProcess, zmq_context: Context
) -> None:
    """A DEALER imitating REQ (empty delimiter first) gets ``["", "PUBLISHED"]``."""
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.query_endpoint)
    assert request(dealer, [b"", b"PUBLISH", b"from a dealer"]) == [b"", b"PUBLISHED"]
    reply = request(dealer, [b"", b"QUERY", b"", b""])
    assert reply[0] == b""
    assert reply[2:] == [b"from a dealer", b"END"]


def test_dealer_can_pipeline_requests(server: ServerProcess, zmq_context: Context) -> None:
    """A DEALER may send several PUBLISHes before reading; each gets its own reply, in order."""
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.query_endpoint)
    for index in range(50):
        dealer.send_multipart([b"", b"PUBLISH", f"pipelined-{index}".encode()])
    for _ in range(50):
        assert dealer.poll(5000), "missing reply"
        assert dealer.recv_multipart() == [b"", b"PUBLISHED"]
    req = open_req(zmq_context, server.query_endpoint)
    assert [data for _, data in query_all(req)] == [f"pipelined-{i}".encode() for i in range(50)]


def test_bare_dealer_query_with_open_bounds(server: ServerProcess, zmq_context: Context) -> None:
    """A DEALER sending no delimiter gets a plain reply; empty bounds are not a delimiter."""
    req = open_req(zmq_context, server.query_endpoint)
    publish(req, b"stored")
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.query_endpoint)
    reply = request(dealer, [b"QUERY", b"", b""])
    assert reply[1:] == [b"stored", b"END"], reply
    assert request(dealer, [b"PUBLISH", b""]) == [b"PUBLISHED"]
    assert [data for _, data in query_all(req)] == [b"stored", b""]


def test_pipelined_query_sees_earlier_publishes(
    server: ServerProcess, zmq_context: Context
) -> None:
    """A QUERY sent right behind PUBLISHes on the same connection already sees them, and
    the replies come back in request order."""
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.query_endpoint)
    dealer.send_multipart([b"", b"PUBLISH", b"first"])
    dealer.send_multipart([b"", b"PUBLISH", b"second"])
    dealer.send_multipart([b"", b"QUERY", b"", b""])
    replies = [receive(dealer) for _ in range(3)]
    assert replies[0] == [b"", b"PUBLISHED"]
    assert replies[1] == [b"", b"PUBLISHED"]
    body = replies[2][1:]
    assert replies[2][0] == b""
    assert len(body) == 5
    assert (body[1], body[3], body[4]) == (b"first", b"second", b"END")


def test_pipelined_replies_keep_request_order(server: ServerProcess, zmq_context: Context) -> None:
    """A DEALER that pipelines mixed requests gets the replies in the order it sent them,
    the only way it can tell which reply answers which request."""
    dealer = zmq_context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(server.query_endpoint)
    for trial in range(20):
        dealer.send_multipart([b"", b"PUBLISH", f"a-{trial}".encode()])
        dealer.send_multipart([b"", b"BOGUS"])
        dealer.send_multipart([b"", b"PUBLISH", f"b-{trial}".encode()])
        dealer.send_multipart([b"", b"QUERY", b"", b""])
        dealer.send_multipart([b"", b"PUBLISH", f"c-{trial}".encode()])
        replies = [receive(dealer) for _ in range(5)]
        kinds = [
            "published"
            if reply[1:] == [b"PUBLISHED"]
            else "error"
            if reply[1].startswith(b"ERROR ")
            else "events"
            for reply in replies
        ]
        assert kinds == ["published", "error", "published", "events", "published"], trial
