"""Streamed reads in the server's loop: opening them, credit, cancelling, and sending.

A streamed read (a v2 read, a Gorewind ``QUERY``) sends its messages a few
at a time per turn of the loop (:data:`MESSAGES_PER_READ_PER_TURN`), so no
client can monopolise the loop, and stops while its client's queue is full.
:class:`~rewind.server.open_reads.OpenReads` keeps the book of open reads and
its bounds; this module drives them. The loop owns the reply queues: it asks
here to open a read whose turn has come, and it is called back to send what
ends a read and to release a connection's queue when a read that held it ends.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Any

import zmq

from rewind.errors import StorageError
from rewind.protocol import gorewind, v2
from rewind.server import transport, v2_handler
from rewind.server.actions import GrantCredit, StartRead
from rewind.server.open_reads import OpenReads, Routing
from rewind.server.reads import ReadSession, V2Read
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")

MESSAGES_PER_READ_PER_TURN = 32
"""Messages one streamed read may send per loop turn before others get a go."""


class StreamedReads:
    """Drives the open reads in ``reads`` for the loop.

    After each call, :attr:`busy` says whether some read can send more at
    once (the loop should not sleep), and :attr:`blocked` whether some read
    found its client's queue full (the loop should try again soon).
    """

    def __init__(
        self,
        reads: OpenReads,
        store: EventStore,
        router: zmq.Socket[Any],
        *,
        send: Callable[[Routing, list[bytes]], None],
        release: Callable[[Routing], None],
        forget: Callable[[Routing], None],
    ) -> None:
        """``send`` sends what ends or refuses a read, outside the reply queue;
        ``release`` lets a connection's queued replies go on once a read that
        held them has ended; ``forget`` drops a connection whose peer has gone."""
        self._reads = reads
        self._store = store
        self._router = router
        self._send = send
        self._release = release
        self._forget = forget
        self.busy = False
        self.blocked = False

    def open(self, routing: Routing, start: StartRead) -> ReadSession | list[bytes]:
        """Open a read whose turn has come: its session, or a whole reply (an error, say)."""
        refused = self._reads.refusal(routing, start.request_id)
        if refused is not None:
            return refused
        try:
            opened = start.open(self._store)
        except StorageError as exc:
            log.error("read failed: %s", exc)
            return _storage_failure(start.request_id, exc)
        if isinstance(opened, list):
            return opened
        opened.routing = routing
        self._reads.add(opened)
        self.busy = True
        return opened

    def grant(self, routing: Routing, credit: GrantCredit) -> None:
        """Give an open v2 read more credit; one granted beyond the bound ends it."""
        read = self._reads.v2_read(routing, credit.request_id)
        if read is None:
            return  # the read has ended already: nothing to grant
        if not read.grant(credit.grant):
            self.end(read)
            self._send(
                routing,
                v2.encode_error(
                    read.request_id,
                    v2.ErrorCode.LIMIT_EXCEEDED,
                    f"at most {v2_handler.MAX_CREDIT} batches of credit",
                    v2_handler.MAX_CREDIT,
                ),
            )
        else:
            self.busy = True

    def cancel(self, routing: Routing, request_id: int) -> bool:
        """Cancel an open v2 read (it sends its end next); ``False`` if none is open."""
        read = self._reads.v2_read(routing, request_id)
        if read is None:
            return False
        read.cancel()
        self.busy = True
        return True

    def pump(self) -> None:
        """Let every open read send a few messages."""
        busy = blocked = False
        for session in self._reads:
            for _ in range(MESSAGES_PER_READ_PER_TURN):
                try:
                    message = session.next_message(self._store)
                except StorageError as exc:
                    log.error("read failed: %s", exc)
                    self.end(session)
                    request_id = session.request_id if isinstance(session, V2Read) else None
                    self._send(session.routing, _storage_failure(request_id, exc))
                    break
                if message is None:
                    break
                try:
                    transport.send_routed(self._router, session.routing, message)
                except zmq.Again:
                    blocked = True
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != errno.EHOSTUNREACH:
                        raise
                    self._forget_connection(session.routing)
                    break
                session.sent()
                if session.finished:
                    self.end(session)
                    break
            else:
                busy = True
        self.busy = busy
        self.blocked = blocked

    def close_idle(self) -> None:
        """End the reads idle beyond the timeout, telling their clients."""
        for session, error in self._reads.idle():
            log.info("closed a streamed read idle for over %d s", self._reads.idle_timeout_s)
            self.end(session)
            self._send(session.routing, error)

    def end(self, session: ReadSession) -> None:
        """Forget an ended read; the replies queued behind it may go on."""
        self._reads.remove(session)
        session.finished = True
        if session.blocks_connection:
            self._release(session.routing)

    def _forget_connection(self, routing: Routing) -> None:
        log.info("dropped a streamed read: the peer has gone")
        for session in self._reads.on_connection(routing):
            session.blocks_connection = False
            self.end(session)
        self._forget(routing)


def _storage_failure(request_id: int | None, error: StorageError) -> list[bytes]:
    """The error that ends a read the store failed: v2 if it has a request id, else Gorewind."""
    if request_id is not None:
        return v2_handler.encode_storage_failure(request_id, error)
    return gorewind.encode_error(f"storage failure: {error}")
