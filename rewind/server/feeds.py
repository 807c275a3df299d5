"""Broadcasting committed events on the streaming (PUB) sockets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import zmq

from rewind.model import RecordedEvent
from rewind.protocol.seed import format_event_id
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
