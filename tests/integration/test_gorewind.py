"""The Gorewind dialect against a real server: named streams on the seed socket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import zmq

from tests.integration.helpers import Context, Socket, open_req, publish, query_all
from tests.support import ServerProcess


@pytest.fixture
def dealer(server: ServerProcess, zmq_context: Context) -> Iterator[Socket]:
    sock = zmq_context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.query_endpoint)
    yield sock
    sock.close()


def send(dealer: Socket, *frames: bytes) -> None:
    dealer.send_multipart([b"", *frames])


def receive(dealer: Socket) -> list[bytes]:
    assert dealer.poll(5000), "no reply within 5 s"
    frames = dealer.recv_multipart()
    assert frames[0] == b"", "replies keep the delimiter"
    return frames[1:]


def gorewind_publish(dealer: Socket, stream: str, data: bytes) -> bytes:
    send(dealer, b"PUBLISH", stream.encode(), data)
    reply = receive(dealer)
    assert reply[0] == b"PUBLISHED" and len(reply) == 2, reply
    uuid.UUID(reply[1].decode())  # a canonical event id
    return reply[1]


def gorewind_query(
    dealer: Socket, stream: str, from_id: bytes = b"", to_id: bytes = b""
) -> list[tuple[bytes, bytes]]:
    """Every (id, data) of a QUERY, which streams one EVENT message per event, then END."""
    send(dealer, b"QUERY", stream.encode(), from_id, to_id)
    events: list[tuple[bytes, bytes]] = []
    while True:
        reply = receive(dealer)
        if reply == [b"END"]:
            return events
        assert reply[0] == b"EVENT" and len(reply) == 3, reply
        events.append((reply[1], reply[2]))


def test_streams_are_independent(dealer: Socket) -> None:
    a1 = gorewind_publish(dealer, "orders", b"a1")
    b1 = gorewind_publish(dealer, "users", b"b1")
    a2 = gorewind_publish(dealer, "orders", b"a2")
    assert gorewind_query(dealer, "orders") == [(a1, b"a1"), (a2, b"a2")]
    assert gorewind_query(dealer, "users") == [(b1, b"b1")]
    assert gorewind_query(dealer, "nobody") == []


def test_from_is_exclusive_and_to_inclusive(dealer: Socket) -> None:
    ids = [gorewind_publish(dealer, "s", b"%d" % i) for i in range(5)]
    assert [i for i, _ in gorewind_query(dealer, "s", ids[1], ids[3])] == ids[2:4]
    assert gorewind_query(dealer, "s", ids[2], ids[2]) == []


def test_a_query_longer_than_one_page_streams_every_event(dealer: Socket) -> None:
    ids = [gorewind_publish(dealer, "long", b"%d" % i) for i in range(450)]
    assert [i for i, _ in gorewind_query(dealer, "long")] == ids


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ((b"QUERY", b"s", b"not-an-id", b""), b"ERROR unknown from event id"),
        ((b"QUERY", b"s", b"", str(uuid.uuid1()).encode()), b"ERROR unknown to event id"),
        ((b"PUBLISH", b"", b"data"), b"ERROR invalid stream name"),
        ((b"PUBLISH", b"\xff\xfe", b"data"), b"ERROR invalid stream name"),
    ],
)
def test_errors_are_one_frame_and_the_server_keeps_serving(
    dealer: Socket, frames: tuple[bytes, ...], reason: bytes
) -> None:
    send(dealer, *frames)
    reply = receive(dealer)
    assert len(reply) == 1 and reply[0].startswith(reason), reply
    assert gorewind_query(dealer, "after-error") == []


def test_an_id_of_another_stream_is_unknown_here(dealer: Socket) -> None:
    other = gorewind_publish(dealer, "other", b"x")
    gorewind_publish(dealer, "mine", b"y")
    send(dealer, b"QUERY", b"mine", other, b"")
    assert receive(dealer)[0].startswith(b"ERROR unknown from event id")


def test_from_after_to_is_an_error(dealer: Socket) -> None:
    first = gorewind_publish(dealer, "s", b"1")
    second = gorewind_publish(dealer, "s", b"2")
    send(dealer, b"QUERY", b"s", second, first)
    assert receive(dealer)[0].startswith(b"ERROR from event id")


def test_pipelined_requests_are_answered_in_order(dealer: Socket) -> None:
    """A QUERY's EVENT messages are never interleaved with later replies. (The query
    may also see the later PUBLISH: reads are not snapshots.)"""
    for i in range(3):
        send(dealer, b"PUBLISH", b"pipe", b"%d" % i)
    send(dealer, b"QUERY", b"pipe", b"", b"")
    send(dealer, b"PUBLISH", b"pipe", b"late")
    assert [receive(dealer)[0] for _ in range(3)] == [b"PUBLISHED"] * 3
    streamed = []
    while (reply := receive(dealer)) != [b"END"]:
        assert reply[0] == b"EVENT", reply
        streamed.append(reply[2])
    assert streamed[:3] == [b"0", b"1", b"2"] and streamed[3:] in ([], [b"late"])
    assert receive(dealer)[0] == b"PUBLISHED"


def test_seed_and_gorewind_share_the_log(
    server: ServerProcess, dealer: Socket, zmq_context: Context
) -> None:
    """Seed PUBLISH goes to the default stream; seed QUERY covers every stream."""
    req = open_req(zmq_context, server.query_endpoint)
    publish(req, b"seed event")
    gorewind_publish(dealer, "named", b"named event")
    assert [data for _, data in gorewind_query(dealer, "default")] == [b"seed event"]
    assert [data for _, data in query_all(req)] == [b"seed event", b"named event"]
