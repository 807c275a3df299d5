"""Broadcasting committed events on the streaming (PUB) sockets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import zmq

from rewind.model import RecordedEvent
from rewind.protocol.seed import encode_stream_message


class SeedFeed:
    """The seed protocol's stream: ``[event id, previous event id, data]`` per event.

    The previous id chains every message to the one before it in the global
    log, including across restarts, so a subscriber can detect dropped messages.
    """

    def __init__(self, socket: zmq.Socket[bytes], last_event_id: uuid.UUID | None) -> None:
        self._socket = socket
        self._previous_id = last_event_id

    def broadcast(self, events: Sequence[RecordedEvent]) -> None:
        """Send committed events, in commit order. Never blocks: PUB drops at its HWM."""
        for event in events:
            self._socket.send_multipart(
                encode_stream_message(event.event_id, self._previous_id, event.data),
                copy=False,
            )
            self._previous_id = event.event_id
