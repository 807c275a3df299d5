"""Listening to a server's feeds across kills and restarts.

A SUB socket reconnects by itself when the server comes back on the same
port, so one collector per feed hears every incarnation of the server
(except what is broadcast before its subscription reaches the new one).
"""

from __future__ import annotations

import threading
from typing import Any

import zmq

from rewind.model import RecordedEvent
from rewind.protocol import seed
from rewind.protocol.v2 import decode_feed_message

POLL_MS = 100
RECEIVE_HWM = 1_000_000


class FeedCollector(threading.Thread):
    """Keeps every message a PUB endpoint sends until :meth:`stop`."""

    def __init__(self, endpoint: str, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.endpoint = endpoint
        self.messages: list[list[bytes]] = []
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._subscribed = threading.Event()

    def run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        sub = context.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(self.endpoint)
            self._subscribed.set()
            while not self._stopping.is_set():
                if sub.poll(POLL_MS, zmq.POLLIN):
                    while True:
                        try:
                            self.messages.append(sub.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
        except Exception as exc:
            self.failure = f"{self.name}: {exc!r}"
        finally:
            self._subscribed.set()
            sub.close()
            context.term()

    def started(self, timeout: float = 5.0) -> FeedCollector:
        """Start and wait until the socket is connected."""
        self.start()
        self._subscribed.wait(timeout)
        return self

    def stop(self) -> None:
        """Stop listening (what was received stays in :attr:`messages`)."""
        self._stopping.set()
        self.join(5)

    def snapshot(self) -> list[list[bytes]]:
        """The messages received so far."""
        return list(self.messages)


def seed_messages(messages: list[list[bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """Seed feed messages as ``(event id, previous id, data)``."""
    return [seed.decode_stream_message(frames) for frames in messages]


def v2_events(messages: list[list[bytes]]) -> list[RecordedEvent]:
    """The events of v2 feed messages (control messages are left out)."""
    events = [decode_feed_message(frames) for frames in messages]
    return [event for event in events if event is not None]
