"""Hearing of commits made by other writers sharing the store.

Several servers may share one store (PostgreSQL, or one SQLite file). Their
events must reach this server's feeds too, in their place in the global log.
The store may offer a socket that becomes readable when another writer
commits (PostgreSQL's LISTEN/NOTIFY); the feeds then catch up at once.
Whether or not it does, they also catch up every ``feed-poll-interval-ms``,
so a lost notification or a store without them delays events, never drops
them.
"""

from __future__ import annotations

import logging
import time

import zmq

from rewind.errors import StorageError
from rewind.server.feeds import Feeds
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")


class OtherWriters:
    """Keeps :class:`Feeds` level with the store's log, whoever wrote it."""

    def __init__(self, store: EventStore, feeds: Feeds, poll_interval_ms: int) -> None:
        self._store = store
        self._feeds = feeds
        self._poll_interval_s = poll_interval_ms / 1000
        self._next_catch_up = 0.0
        self._wakeup_fd: int | None = None

    def watch(self, poller: zmq.Poller) -> None:
        """Register the store's commit wake-up socket, which may change from turn to turn."""
        fd = self._store.commit_wakeup_fd()
        if fd == self._wakeup_fd:
            return
        if self._wakeup_fd is not None:
            poller.unregister(self._wakeup_fd)
        self._wakeup_fd = fd
        if fd is not None:
            poller.register(fd, zmq.POLLIN)
            # Commits made while nothing was listening were not announced.
            self._next_catch_up = 0.0

    def after_poll(self, ready: dict[object, int]) -> None:
        """Broadcast what other writers committed, if announced or due."""
        # Announcements of this server's own commits name positions the
        # feeds have sent already, and cost no read.
        announced = self._wakeup_fd is not None and self._wakeup_fd in ready
        if announced and self._store.take_commit_wakeups(self._feeds.head):
            self._next_catch_up = 0.0
        now = time.monotonic()
        if now < self._next_catch_up:
            return
        self._next_catch_up = now + self._poll_interval_s
        try:
            self._feeds.catch_up(self._store)
        except StorageError as exc:
            log.warning("could not read other writers' events for the feeds: %s", exc)
