"""The server's lean send and receive helpers, on real ZeroMQ sockets."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import zmq

from rewind.server import transport

_endpoints = itertools.count()


@pytest.fixture
def router() -> Iterator[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 2000)
    try:
        yield sock
    finally:
        context.destroy(linger=0)


def _bind(router: zmq.Socket[bytes]) -> str:
    endpoint = f"inproc://transport-{next(_endpoints)}"
    router.bind(endpoint)
    return endpoint


def _peer(router: zmq.Socket[bytes], kind: int) -> zmq.Socket[bytes]:
    endpoint = _bind(router)
    peer = router.context.socket(kind)
    peer.setsockopt(zmq.LINGER, 0)
    peer.connect(endpoint)
    return peer


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (zmq.REQ, [b"PUBLISH", b"event"]),
        (zmq.REQ, [b""]),
        (zmq.DEALER, [b"QUERY", b"", b""]),
        (zmq.DEALER, [b"x"]),
        (zmq.DEALER, [b"", b"", b"", b""]),
    ],
)
def test_receive_routed_returns_every_frame_after_the_routing_id(
    router: zmq.Socket[bytes], kind: int, body: list[bytes]
) -> None:
    peer = _peer(router, kind)
    peer.send_multipart(body)

    frames = transport.receive_routed(router, 0)

    delimiter = [b""] if kind == zmq.REQ else []
    assert frames[1:] == delimiter + body
    assert frames[0]  # the routing id ZeroMQ put in front
    # The whole message was taken: nothing of it is left for the next receive.
    with pytest.raises(zmq.Again):
        transport.receive_routed(router)


def test_receive_routed_takes_messages_one_at_a_time(router: zmq.Socket[bytes]) -> None:
    peer = _peer(router, zmq.DEALER)
    for index in range(3):
        peer.send_multipart([b"PUBLISH", b"event-%d" % index])

    received = [transport.receive_routed(router, 0)[1:] for _ in range(3)]

    assert received == [[b"PUBLISH", b"event-%d" % index] for index in range(3)]


def test_receive_routed_without_a_message_raises_again(router: zmq.Socket[bytes]) -> None:
    _bind(router)
    with pytest.raises(zmq.Again):
        transport.receive_routed(router)


@pytest.mark.parametrize(
    "reply",
    [[b"PUBLISHED"], [b"id", b"event", b"END"], [b""], [b"", b"x", b""]],
)
def test_send_routed_delivers_the_reply_whole_behind_the_envelope(
    router: zmq.Socket[bytes], reply: list[bytes]
) -> None:
    peer = _peer(router, zmq.REQ)
    peer.setsockopt(zmq.RCVTIMEO, 2000)
    peer.send_multipart([b"PING"])
    routing_id, delimiter, _ = transport.receive_routed(router, 0)

    transport.send_routed(router, (routing_id, delimiter), reply)

    # A REQ socket hands over only what follows the delimiter, all of it.
    assert peer.recv_multipart() == reply
