"""Appends on their way from the request socket to the store and back.

The server loop hands over each accepted append with its place in its
connection's reply queue. Appends gather until the loop submits them to the
committer as one group (see :mod:`rewind.server.writer`); once a group's
commit completes, its writers are answered and then its events broadcast,
never before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rewind.errors import StorageError, WritesStoppedError
from rewind.server.actions import Commit
from rewind.server.feeds import Feeds
from rewind.server.reply_queue import PendingAppend, Routing
from rewind.server.writer import CommittedBatch, Committer, append_or_error
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")


class Appends:
    """The appends accepted and not yet answered, and their commits.

    ``flush`` sends whatever a connection's reply queue has ready; it is
    called for every connection whose appends a commit answered.
    ``answer_now`` sends a reply that has no place in the queue (or gives it
    one, at the back, if the peer has no room for it yet).
    """

    def __init__(
        self,
        store: EventStore,
        committer: Committer[PendingAppend],
        feeds: Feeds,
        *,
        flush: Callable[[Routing], None],
        answer_now: Callable[[Routing, list[bytes]], None],
    ) -> None:
        self._store = store
        self._committer = committer
        self._feeds = feeds
        self._flush = flush
        self._answer_now = answer_now
        self._pending: list[PendingAppend] = []
        self.in_flight = 0
        """Appends submitted to the committer and not answered yet."""
        self._writes_stopped_reported = False

    def may_commit_at_once(self) -> bool:
        """Whether :meth:`commit_at_once` may be used now.

        For a store that does not wait for a disk (memory), while no other
        append waits, here or on the committer: nothing can then come
        before it in commit order. A durable store gains from grouping.
        """
        return not (self._store.durable or self._pending or self.in_flight)

    def waiting(self) -> bool:
        """Whether appends wait to be submitted."""
        return bool(self._pending)

    def add(self, append: PendingAppend) -> None:
        """Accept an append for the next group."""
        self._pending.append(append)

    def submit(self, *, inline: bool) -> None:
        """Hand every waiting append to the committer as one group.

        ``inline`` lets it commit on this thread (see
        :meth:`~rewind.server.writer.ThreadedCommitter.submit`); the writers
        are then answered before this returns.
        """
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self.in_flight += len(pending)
        if self._committer.submit(pending, inline=inline):
            self.finish()

    def commit_at_once(self, routing: Routing, append: Commit) -> None:
        """Commit one append outside any group, answer it, then broadcast its events.

        It takes no place in its connection's reply queue, whose bookkeeping
        would be most of a small append's cost: only while
        :meth:`may_commit_at_once` and while the connection waits for no
        earlier answer, so that nothing can come before it in reply order.
        """
        outcome = append_or_error(self._store, (append.request,))
        if isinstance(outcome, StorageError):
            self._report_failure(outcome, 1)
            self._answer_now(routing, append.encode(outcome))
            return
        result = outcome[0]
        self._answer_now(routing, append.encode(result))
        if isinstance(result, tuple):
            self._feeds.broadcast(self._store, result)

    def finish(self) -> None:
        """Answer the writers of every completed commit, then broadcast its events."""
        batches = self._committer.take_completed()
        if not batches:
            return
        touched: set[Routing] = set()
        for batch in batches:
            self._answer(batch)
            self.in_flight -= len(batch.items)
            touched.update([item.routing for item in batch.items])
        # Durable now. The writers hear first, then the subscribers: a writer
        # waits for its answer, which is what a synchronous client's rate
        # depends on, while a broadcast is a one-way message either way.
        for routing in touched:
            self._flush(routing)
        for batch in batches:
            events = [
                event for result in batch.results if isinstance(result, tuple) for event in result
            ]
            self._feeds.broadcast(self._store, events)

    def _answer(self, batch: CommittedBatch[PendingAppend]) -> None:
        if batch.error is not None:
            self._report_failure(batch.error, len(batch.items))
            for item in batch.items:
                item.slot.frames = item.encode(batch.error)
            return
        for item, result in zip(batch.items, batch.results, strict=True):
            item.slot.frames = item.encode(result)

    def _report_failure(self, error: StorageError, appends: int) -> None:
        if isinstance(error, WritesStoppedError):
            if not self._writes_stopped_reported:
                self._writes_stopped_reported = True
                log.critical("%s; reads go on, appends get ERROR", error)
        else:
            log.error("commit of %d appends failed: %s", appends, error)
