"""The feeds send each committed event once, in position order, over real XPUB/SUB sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from rewind.model import AppendRequest, NewEvent, RecordedEvent
from rewind.protocol.v2 import decode_feed_message
from rewind.server.feeds import SUBSCRIPTION_CHECK_S, Feeds, SeedFeed, V2Feed
from rewind.storage.memory import MemoryStore


class Wired:
    """Feeds on inproc XPUB sockets, a SUB on the v2 one, and a memory store."""

    def __init__(self, context: zmq.Context[Any], name: str) -> None:
        self.name = name
        self.store = MemoryStore()
        self.sockets: list[zmq.Socket[Any]] = []
        seed_socket, v2_socket = (self._bound(context, f"inproc://{name}-{kind}") for kind in "sv")
        self.feeds = Feeds(SeedFeed(seed_socket), V2Feed(v2_socket), head=None)
        self.subscriber = context.socket(zmq.SUB)
        self.sockets.append(self.subscriber)
        self.subscriber.setsockopt(zmq.RCVTIMEO, 2000)
        self.subscriber.connect(f"inproc://{name}-v")
        self.subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        # The feed learns of the subscription before it is sent anything.
        deadline = time.monotonic() + 5
        while not v2_socket.poll(10) and time.monotonic() < deadline:
            pass

    def _bound(self, context: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
        socket = context.socket(zmq.XPUB)
        self.sockets.append(socket)
        socket.bind(endpoint)
        return socket

    def append(self, stream: str, *data: bytes) -> tuple[RecordedEvent, ...]:
        [result] = self.store.append([AppendRequest(stream, tuple(NewEvent(d) for d in data))])
        assert isinstance(result, tuple)
        return result

    def received_positions(self) -> list[int]:
        positions = []
        while self.subscriber.poll(200):
            event = decode_feed_message(self.subscriber.recv_multipart())
            assert event is not None
            positions.append(event.position)
        return positions

    def close(self) -> None:
        for socket in self.sockets:
            socket.close(linger=0)


@pytest.fixture
def wired(request: pytest.FixtureRequest) -> Iterator[Wired]:
    context: zmq.Context[Any] = zmq.Context()
    wired = Wired(context, request.node.name)
    yield wired
    wired.close()
    context.term()


def test_a_commit_that_repeats_its_own_events_broadcasts_each_once(wired: Wired) -> None:
    first = wired.append("s", b"1", b"2")
    other = wired.append("t", b"3")
    # One commit's results: a re-send within the group returns the first append's events.
    wired.feeds.broadcast(wired.store, [*first, *other, *first])
    assert wired.received_positions() == [1, 2, 3]
    assert wired.feeds.head == 3


def test_a_resend_of_events_broadcast_earlier_sends_nothing(wired: Wired) -> None:
    first = wired.append("s", b"1")
    wired.feeds.broadcast(wired.store, first)
    fresh = wired.append("s", b"2")
    wired.feeds.broadcast(wired.store, [*first, *fresh])
    assert wired.received_positions() == [1, 2]


def test_a_resend_between_a_commits_new_events_is_skipped(wired: Wired) -> None:
    first = wired.append("s", b"1")
    wired.feeds.broadcast(wired.store, first)
    new = wired.append("t", b"2", b"3")
    # Starts right after the last broadcast, as a commit of only new events would.
    wired.feeds.broadcast(wired.store, [new[0], *first, new[1]])
    assert wired.received_positions() == [1, 2, 3]
    assert wired.feeds.head == 3


def test_events_another_writer_stored_in_between_go_out_first(wired: Wired) -> None:
    ours = wired.append("s", b"1")
    wired.feeds.broadcast(wired.store, ours)
    theirs = wired.append("t", b"2", b"3")  # committed by someone else: never broadcast by us
    later = wired.append("s", b"4")
    # A re-send of their events after our new one: the catch-up sends them, once, in order.
    wired.feeds.broadcast(wired.store, [*later, *theirs])
    assert wired.received_positions() == [1, 2, 3, 4]


def test_a_subscriber_that_joins_between_broadcasts_is_sent_the_next_one_after_the_interval(
    wired: Wired,
) -> None:
    first = wired.append("s", b"1")
    wired.feeds.broadcast(wired.store, first)  # the seed feed has no subscriber yet
    seed_socket = wired.sockets[0]
    late = seed_socket.context.socket(zmq.SUB)
    wired.sockets.append(late)
    late.connect(f"inproc://{wired.name}-s")
    late.setsockopt(zmq.SUBSCRIBE, b"")
    deadline = time.monotonic() + 5
    while not seed_socket.poll(10) and time.monotonic() < deadline:
        pass  # the subscription waits on the feed socket, not taken yet
    time.sleep(SUBSCRIPTION_CHECK_S)
    [second] = wired.append("s", b"2")
    wired.feeds.broadcast(wired.store, [second])
    assert late.poll(2000), "the late subscriber was sent nothing"
    assert late.recv_multipart() == [
        str(second.event_id).encode(),
        str(first[0].event_id).encode(),
        b"2",
    ]


def test_the_chain_runs_on_while_nobody_listens_and_a_first_subscriber_picks_it_up() -> None:
    context: zmq.Context[Any] = zmq.Context()
    try:
        seed_socket, v2_socket = (context.socket(zmq.XPUB) for _ in range(2))
        seed_socket.bind("inproc://unheard-s")
        v2_socket.bind("inproc://unheard-v")
        store = MemoryStore()
        stored = store.append([AppendRequest("s", (NewEvent(b"0"),))])[0]
        assert isinstance(stored, tuple)
        # Started on a store that already holds an event, with no subscriber on any feed.
        feeds = Feeds(SeedFeed(seed_socket), V2Feed(v2_socket), head=stored[0])
        unheard = []
        for data in (b"1", b"2"):
            [result] = store.append([AppendRequest("s", (NewEvent(data),))])
            assert isinstance(result, tuple)
            feeds.broadcast(store, result)
            unheard.extend(result)
        subscriber = context.socket(zmq.SUB)
        subscriber.connect("inproc://unheard-s")
        subscriber.setsockopt(zmq.SUBSCRIBE, b"")
        deadline = time.monotonic() + 5
        while not seed_socket.poll(10) and time.monotonic() < deadline:
            pass
        feeds.update_subscriptions()
        [result] = store.append([AppendRequest("s", (NewEvent(b"3"),))])
        assert isinstance(result, tuple)
        feeds.broadcast(store, result)
        assert subscriber.poll(2000), "the subscriber was sent nothing"
        # Chained to the last event broadcast unheard, not to the one before the start.
        assert subscriber.recv_multipart() == [
            str(result[0].event_id).encode(),
            str(unheard[-1].event_id).encode(),
            b"3",
        ]
        assert feeds.head == 4
    finally:
        context.destroy(linger=0)
