"""Broadcasting committed events on the streaming (PUB) sockets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import zmq

from rewind.model import RecordedEvent
from rewind.protocol.seed import format_event_id
from rewind.protocol.v2 import encode_feed_message
from rewind.server.transport import send


class SeedFeed:
    """The seed protocol's stream: ``[event id, previous event id, data]`` per event.

    The previous id chains every message to the one before it in the global
    log, including across restarts, so a subscriber can detect dropped messages.
    """

    def __init__(self, socket: zmq.Socket[Any], last_event_id: uuid.UUID | None) -> None:
        self._socket = socket
        self._previous_id = b"" if last_event_id is None else format_event_id(last_event_id)

    def broadcast(self, events: Sequence[RecordedEvent]) -> None:
        """Send committed events, in commit order. Never blocks: PUB drops at its HWM."""
        for event in events:
            event_id = format_event_id(event.event_id)
            send(self._socket, (event_id, self._previous_id, event.data))
            self._previous_id = event_id


class V2Feed:
    """The v2 live feed: six frames per event, the stream name first for SUB prefixes."""

    def __init__(self, socket: zmq.Socket[Any]) -> None:
        self._socket = socket

    def broadcast(self, events: Sequence[RecordedEvent]) -> None:
        """Send committed events, in commit order. Never blocks: PUB drops at its HWM."""
        for event in events:
            send(self._socket, encode_feed_message(event))


class Feeds:
    """Every streaming socket the server has, fed the same committed events, once each.

    An idempotent re-send of an append returns events stored earlier; they
    were broadcast when first committed, so only positions beyond the last
    broadcast one go out.
    """

    def __init__(self, seed_feed: SeedFeed, v2_feed: V2Feed, head_position: int) -> None:
        self._feeds = (seed_feed, v2_feed)
        self._head = head_position

    def broadcast(self, events: Sequence[RecordedEvent]) -> None:
        """Broadcast newly committed events on every feed, in commit order."""
        fresh = [event for event in events if event.position > self._head]
        if not fresh:
            return
        self._head = fresh[-1].position
        for feed in self._feeds:
            feed.broadcast(fresh)
