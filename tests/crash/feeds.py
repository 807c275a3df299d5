"""Listening to a server's feeds across kills and restarts.

A SUB socket reconnects by itself when the server comes back on the same
port, so one collector per feed hears every incarnation of the server
(except what is broadcast before its subscription reaches the new one).
A catch-up subscriber reads the log as a client application would, filling
whatever the feed missed from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import zmq

from rewind.client import Client
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


class CatchUpSubscriber(threading.Thread):
    """A reader that follows the whole log through a catch-up subscription, across kills.

    It uses :meth:`rewind.client.Client.subscribe` with a short timeout and
    many retries, as an application's read model would. Each time the
    subscription ends (after a second without events) it subscribes again
    from the position after the last one delivered, until :meth:`stop`.
    """

    def __init__(self, query_endpoint: str, v2_streaming_endpoint: str) -> None:
        super().__init__(name="catch-up", daemon=True)
        self.query_endpoint = query_endpoint
        self.v2_streaming_endpoint = v2_streaming_endpoint
        self.events: list[RecordedEvent] = []
        self.subscriptions = 0
        self.failure: str | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        client = Client(
            self.query_endpoint,
            v2_streaming_endpoint=self.v2_streaming_endpoint,
            timeout=0.5,
            retries=40,
            context=context,
        )
        try:
            while not self._stopping.is_set():
                self.subscriptions += 1
                start = self.events[-1].position + 1 if self.events else 1
                with client.subscribe(from_position=start, idle_timeout=1.0) as subscription:
                    for event in subscription:
                        self.events.append(event)
                        if self._stopping.is_set():
                            break
        except Exception as exc:
            self.failure = f"{self.name}: {exc!r}"
        finally:
            client.close()
            context.destroy(linger=0)

    def stop(self) -> None:
        """Stop after the current subscription ends."""
        self._stopping.set()
        self.join(10)

    def snapshot(self) -> list[RecordedEvent]:
        """The events delivered so far."""
        return list(self.events)
