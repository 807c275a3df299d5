"""Listening to a server's feeds across kills and restarts.

A SUB socket reconnects by itself when the server comes back on the same
port, so one collector per feed hears every incarnation of the server
(except what is broadcast before its subscription reaches the new one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import zmq

from rewind.model import RecordedEvent
from rewind.protocol import seed
from rewind.protocol.v2 import decode_feed_message

ItemT = TypeVar("ItemT")

POLL_MS = 100
RECEIVE_HWM = 1_000_000


class FeedCollector(threading.Thread, Generic[ItemT]):
    """Keeps every message a PUB endpoint sends until :meth:`stop`, decoded as it comes.

    ``decode`` turns a message into the item kept, or ``None`` to skip it.
    """

    def __init__(
        self, endpoint: str, name: str, decode: Callable[[list[bytes]], ItemT | None]
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.endpoint = endpoint
        self.decode = decode
        self.messages: list[ItemT] = []
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
                            item = self.decode(sub.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        if item is not None:
                            self.messages.append(item)
        except Exception as exc:
            self.failure = f"{self.name}: {exc!r}"
        finally:
            self._subscribed.set()
            sub.close()
            context.term()

    def started(self, timeout: float = 5.0) -> FeedCollector[ItemT]:
        """Start and wait until the socket is connected."""
        self.start()
        self._subscribed.wait(timeout)
        return self

    def stop(self) -> None:
        """Stop listening (what was received stays in :attr:`messages`)."""
        self._stopping.set()
        self.join(5)

    def snapshot(self) -> list[ItemT]:
        """The messages received so far."""
        return list(self.messages)


def seed_feed(endpoint: str) -> FeedCollector[tuple[bytes, bytes, bytes]]:
    """A collector of seed feed messages as ``(event id, previous id, data)``."""
    return FeedCollector(endpoint, "seed-feed", seed.decode_stream_message)


def v2_feed(endpoint: str) -> FeedCollector[RecordedEvent]:
    """A collector of the v2 feed's events (control messages are left out)."""
    return FeedCollector(endpoint, "v2-feed", decode_feed_message)
