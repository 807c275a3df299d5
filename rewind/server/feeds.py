"""Broadcasting committed events on the streaming sockets.

The sockets are ZeroMQ ``XPUB`` sockets: they behave as ``PUB`` towards
subscribers, and also tell the server which topics are subscribed. A feed
that nobody subscribes to skips encoding and sending altogether, which is a
large share of a small append's cost; events sent to no subscriber would be
dropped by ZeroMQ anyway. A subscriber that joins meanwhile misses the
events before its subscription arrived, exactly as with a plain ``PUB``
socket (ZeroMQ's "slow joiner"), and the clients fill such gaps from the store.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import zmq

from rewind.errors import StorageError
from rewind.model import RecordedEvent
from rewind.protocol.seed import format_event_id
from rewind.protocol.v2 import encode_feed_message
from rewind.server.transport import has_message, send
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")

CATCH_UP_BATCH = 1000
"""Events read from the store per query when catching up with other writers."""

SUBSCRIPTION_CHECK_S = 0.002
"""Longest a broadcast goes on without first taking new subscriptions.

Asking a socket whether a subscription waits costs a system call (ZeroMQ
processes its pending commands first), a sizeable share of a small append's
cost when asked for every commit. The loop takes subscriptions whenever it
polls the sockets too; one that waiting on requests alone kept it from
seeing is taken at the next broadcast this long after the last look.
"""

_monotonic = time.monotonic
_SUBSCRIBE = 1
_UNSUBSCRIBE = 0


class Subscriptions:
    """The topics subscribed on one XPUB socket, from the messages it delivers.

    Without ``XPUB_VERBOSE`` the socket reports a topic once, when its first
    subscriber subscribes, and again when its last one unsubscribes or
    disconnects, so a set of topics is an exact account.
    """

    def __init__(self, socket: zmq.Socket[Any]) -> None:
        self.socket = socket
        self._topics: set[bytes] = set()
        self.any = False
        """Whether anyone subscribes to anything on the socket."""

    def update(self) -> None:
        """Take every subscription message waiting on the socket."""
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not message:
                continue
            if message[0] == _SUBSCRIBE:
                self._topics.add(message[1:])
            elif message[0] == _UNSUBSCRIBE:
                self._topics.discard(message[1:])
            self.any = bool(self._topics)


class SeedFeed:
    """The seed protocol's stream: ``[event id, previous event id, data]`` per event.

    The previous id chains every message to the one before it in the global
    log, including across restarts and while nobody listens, so a subscriber
    can detect dropped messages; :class:`Feeds` keeps that chain.
    """

    def __init__(self, socket: zmq.Socket[Any]) -> None:
        self.subscriptions = Subscriptions(socket)

    def broadcast(self, events: Sequence[RecordedEvent], previous: uuid.UUID | None) -> None:
        """Send committed events, in commit order, the first chained to ``previous``.

        Never blocks: XPUB drops at its HWM.
        """
        if not self.subscriptions.any:
            return
        sock = self.subscriptions.socket
        previous_id = b"" if previous is None else format_event_id(previous)
        for event in events:
            event_id = format_event_id(event.event_id)
            send(sock, (event_id, previous_id, event.data))
            previous_id = event_id


class V2Feed:
    """The v2 live feed: six frames per event, the stream name first for SUB prefixes."""

    def __init__(self, socket: zmq.Socket[Any]) -> None:
        self.subscriptions = Subscriptions(socket)

    def broadcast(self, events: Sequence[RecordedEvent]) -> None:
        """Send committed events, in commit order. Never blocks: XPUB drops at its HWM."""
        if not self.subscriptions.any:
            return
        sock = self.subscriptions.socket
        for event in events:
            send(sock, encode_feed_message(event))


class Feeds:
    """Every streaming socket the server has, fed every committed event once, in log order.

    Events this server committed are broadcast as their commit completes.
    Other writers may share the store (several servers on one database, or
    on one SQLite file): their events are read from the store and broadcast
    in their place in the global log, before any later event, either when
    a local commit lands beyond a gap or when :meth:`catch_up` is called
    (the server does so periodically). So every server's feeds carry the
    same sequence: the global log, in position order, without gaps.

    An idempotent re-send of an append returns events stored earlier; they
    were broadcast when first committed, so only positions beyond the last
    broadcast one go out.
    """

    __slots__ = (
        "_head",
        "_head_id",
        "_listened",
        "_next_subscription_check",
        "_seed_feed",
        "_subscriptions",
        "_v2_feed",
    )

    def __init__(self, seed_feed: SeedFeed, v2_feed: V2Feed, *, head: RecordedEvent | None) -> None:
        """``head`` is the last event stored before the server started (``None`` if none)."""
        self._seed_feed = seed_feed
        self._v2_feed = v2_feed
        self._subscriptions = (seed_feed.subscriptions, v2_feed.subscriptions)
        self._head = 0 if head is None else head.position
        # The seed feed chains each message to the event before it.
        self._head_id = None if head is None else head.event_id
        self._listened = False
        """Whether any feed has a subscriber: if not, a broadcast only moves the head."""
        self._next_subscription_check = 0.0

    @property
    def head(self) -> int:
        """Position of the last event broadcast (0 before any)."""
        return self._head

    def broadcast(self, store: EventStore, events: Sequence[RecordedEvent]) -> None:
        """Broadcast newly committed events on every feed, after any that precede them.

        ``events`` are what one commit's appends returned, in order: an event
        at or before a position already broadcast (a re-send's, which may
        repeat one earlier in the same list) is skipped.
        """
        head = self._head
        if events and events[0].position == head + 1 and events[-1].position == head + len(events):
            # The usual case: the commit's own events, following the last broadcast.
            self._send(events)
            return
        fresh = []
        for event in events:
            if event.position > head:
                fresh.append(event)
                head = event.position
        if not fresh:
            return
        if fresh[0].position > self._head + 1:
            # Someone else committed in between: their events go out first.
            try:
                self.catch_up(store, through=fresh[0].position - 1)
            except StorageError as exc:
                # Sending ours now would skip theirs; the next catch-up sends both, in order.
                log.warning("could not read other writers' events for the feeds: %s", exc)
                return
        self._send(fresh)

    def catch_up(self, store: EventStore, *, through: int | None = None) -> None:
        """Broadcast what other writers committed after the last broadcast event.

        Raises :class:`~rewind.errors.StorageError` if the store cannot be read;
        nothing is skipped then, the next call starts where this one stopped.
        """
        while True:
            events = store.read_all(after=self._head, through=through, limit=CATCH_UP_BATCH)
            if not events:
                return
            self._send(events)
            if len(events) < CATCH_UP_BATCH:
                return

    def update_subscriptions(self) -> None:
        """Take the subscription messages waiting on every feed socket."""
        self._next_subscription_check = _monotonic() + SUBSCRIPTION_CHECK_S
        for subscriptions in self._subscriptions:
            subscriptions.update()
        self._listened = any(subscriptions.any for subscriptions in self._subscriptions)

    def _send(self, events: Sequence[RecordedEvent]) -> None:
        previous = self._head_id
        last = events[-1]
        self._head = last.position
        self._head_id = last.event_id
        now = _monotonic()
        if now >= self._next_subscription_check:
            # The loop may not have polled the sockets since a subscriber came.
            self._next_subscription_check = now + SUBSCRIPTION_CHECK_S
            for subscriptions in self._subscriptions:
                if has_message(subscriptions.socket):
                    subscriptions.update()
            self._listened = any(subscriptions.any for subscriptions in self._subscriptions)
        # Nobody listening is the common case of a bare server, and the
        # cheapest: no feed is looked at.
        if self._listened:
            self._seed_feed.broadcast(events, previous)
            self._v2_feed.broadcast(events)
