"""Server lifecycle and the ZeroMQ loop.

One thread owns every socket. Each turn of the loop drains the requests
already waiting on the ROUTER socket and hands their appends to the committer
(see :mod:`rewind.server.writer`); when a commit completes, its events are
broadcast and its writers answered, never before. Replies leave in the order
the requests arrived; a read runs only once every append that arrived before
it is committed, so a client never reads less than it has been told is stored.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import zmq

from rewind.errors import AppendRejectedError, RewindError, StorageError
from rewind.model import AppendRequest, RecordedEvent
from rewind.protocol import seed
from rewind.protocol.envelope import split_envelope
from rewind.server import transport
from rewind.server.config import ServerConfig
from rewind.server.feeds import SeedFeed
from rewind.server.seed_handler import answer_query, publish_request
from rewind.server.writer import CommittedBatch, Committer, committer_for
from rewind.storage import open_store
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")

MAX_REQUESTS_PER_TURN = 1024
"""Bound on requests drained per loop turn, so one flood cannot starve replies."""

LINGER_MS = 2000
"""How long closing sockets may spend flushing replies already queued."""

POLL_INTERVAL_MS = 1000


class StartupError(RewindError):
    """The server cannot start; the message says why in one line."""


@dataclass(slots=True)
class Reply:
    """A place in the reply queue, filled in when the answer is known.

    Replies leave in the order their requests arrived, so a client that
    pipelines requests on one connection can match them up by order. A read's
    answer is computed only when it reaches the head of the queue, that is
    once every append that arrived before it has been committed.
    """

    routing: tuple[bytes, ...]
    frames: list[bytes] | None = None
    read: Callable[[EventStore], list[bytes]] | None = None


@dataclass(frozen=True, slots=True)
class PendingAppend:
    """An append on its way to the store, with the reply waiting for its outcome."""

    request: AppendRequest
    reply: Reply
    encode: Callable[[tuple[RecordedEvent, ...]], list[bytes]]


def _published(_events: tuple[RecordedEvent, ...]) -> list[bytes]:
    return seed.encode_published()


class Server:
    """A Rewind server: :meth:`startup`, :meth:`serve_forever`, :meth:`shutdown`."""

    def __init__(self, config: ServerConfig, *, context: zmq.Context[Any] | None = None) -> None:
        self.config = config
        self._context = context or zmq.Context.instance()
        self._store: EventStore | None = None
        self._committer: Committer[PendingAppend] | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._publisher: zmq.Socket[bytes] | None = None
        self._feed: SeedFeed | None = None
        self._stop_requested = False
        self._wakeup_reader: socket.socket | None = None
        self._wakeup_writer: socket.socket | None = None
        self._pending: list[PendingAppend] = []
        self._replies: deque[Reply] = deque()
        self._appends_in_flight = 0
        self.query_endpoints: list[str] = []
        self.streaming_endpoints: list[str] = []

    # Lifecycle -----------------------------------------------------------------

    def startup(self) -> None:
        """Bind every socket and open the store; raise :class:`StartupError` on failure.

        Sockets are bound first, so an endpoint in use is reported without
        creating a store file; requests that arrive meanwhile simply queue.
        """
        try:
            self._router = self._context.socket(zmq.ROUTER)
            # A reply to a vanished peer must fail loudly (and be dropped by
            # us), never block the loop or vanish silently into a full queue.
            self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._router.setsockopt(zmq.LINGER, LINGER_MS)
            self.query_endpoints = self._bind(self._router, self.config.query_bind_endpoints)
            self._publisher = self._context.socket(zmq.PUB)
            self._publisher.setsockopt(zmq.LINGER, LINGER_MS)
            self.streaming_endpoints = self._bind(
                self._publisher, self.config.streaming_bind_endpoints
            )
            try:
                self._store = open_store(self.config.storage)
            except RewindError as exc:
                raise StartupError(f"storage {self.config.storage}: {exc}") from None
            last = self._store.last_event()
        except BaseException:
            self.shutdown()
            raise
        self._feed = SeedFeed(self._publisher, None if last is None else last.event_id)
        self._committer = committer_for(self._store)
        if not self._store.durable:
            log.warning("storage is memory: — events are NOT kept; they vanish when Rewind stops")
        durability = "durable" if self._store.durable else "NOT durable"
        log.info(
            "Rewind ready: query endpoint %s; streaming endpoint %s; storage %s (%s)",
            ", ".join(self.query_endpoints),
            ", ".join(self.streaming_endpoints),
            self.config.storage,
            durability,
        )

    def _bind(self, sock: zmq.Socket[bytes], endpoints: Sequence[str]) -> list[str]:
        bound = []
        for endpoint in endpoints:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"cannot bind {endpoint}: {reason}") from None
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        return bound

    def install_signal_handlers(self) -> None:
        """Make SIGINT and SIGTERM stop the loop gracefully, waking it at once."""
        self._wakeup_reader, self._wakeup_writer = socket.socketpair()
        self._wakeup_reader.setblocking(False)
        self._wakeup_writer.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_writer.fileno(), warn_on_full_buffer=False)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            self._stop_requested = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current turn (safe from a signal handler)."""
        self._stop_requested = True

    def serve_forever(self) -> None:
        """Serve until a stop is requested, then finish and answer every accepted append."""
        assert self._router is not None and self._committer is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        if self._wakeup_reader is not None:
            poller.register(self._wakeup_reader, zmq.POLLIN)
        commits = self._committer.wakeup_fd
        if commits is not None:
            poller.register(commits, zmq.POLLIN)
        while not self._stop_requested:
            ready = dict(poller.poll(POLL_INTERVAL_MS))
            if self._router in ready:
                self._serve_waiting_requests()
            if commits in ready:
                self._finish_commits()
            if self._wakeup_reader is not None and self._wakeup_reader.fileno() in ready:
                self._drain_wakeup()
        self._finish_in_flight()
        log.info("stopped serving")

    def _finish_in_flight(self) -> None:
        assert self._committer is not None
        self._submit_pending()
        while self._appends_in_flight:
            self._committer.wait(timeout=1.0)
            self._finish_commits()

    def shutdown(self) -> None:
        """Close committer, sockets and store. Safe to call more than once."""
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        for sock in (self._router, self._publisher):
            if sock is not None and not sock.closed:
                sock.close()
        self._router = self._publisher = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._wakeup_writer is not None:
            signal.set_wakeup_fd(-1)
            self._wakeup_writer.close()
            self._wakeup_writer = None
        if self._wakeup_reader is not None:
            self._wakeup_reader.close()
            self._wakeup_reader = None

    def _drain_wakeup(self) -> None:
        assert self._wakeup_reader is not None
        try:
            while self._wakeup_reader.recv(512):
                pass
        except BlockingIOError:
            pass

    # Request handling ------------------------------------------------------------

    def _serve_waiting_requests(self) -> None:
        router = self._router
        assert router is not None
        # The poller said a message is waiting, so the first receive needs no check.
        for _ in range(MAX_REQUESTS_PER_TURN):
            try:
                frames = transport.receive(router)
            except zmq.Again:
                break
            self._handle(frames)
            if not transport.has_message(router):
                break
        self._submit_pending()
        self._send_ready_replies()

    def _handle(self, frames: list[bytes]) -> None:
        envelope = split_envelope(frames, seed.is_command)
        request = seed.parse_request(envelope.body)
        reply = Reply(envelope.routing)
        self._replies.append(reply)
        if isinstance(request, seed.Publish):
            self._pending.append(
                PendingAppend(
                    publish_request(request, self.config.default_stream), reply, _published
                )
            )
        elif isinstance(request, seed.Query):
            query = request
            reply.read = lambda store: answer_query(store, query)
            # Appends that arrived before this read must commit before it runs.
            self._submit_pending()
        else:
            log.info("bad request: %s", request.reason)
            reply.frames = seed.encode_error(request.reason)

    def _submit_pending(self) -> None:
        if not self._pending:
            return
        assert self._committer is not None
        pending, self._pending = self._pending, []
        self._appends_in_flight += len(pending)
        self._committer.submit(pending)
        if self._committer.wakeup_fd is None:
            self._finish_commits()

    def _finish_commits(self) -> None:
        assert self._committer is not None
        for batch in self._committer.take_completed():
            self._finish_batch(batch)
            self._appends_in_flight -= len(batch.items)
        self._send_ready_replies()

    def _finish_batch(self, batch: CommittedBatch[PendingAppend]) -> None:
        assert self._feed is not None
        if batch.error is not None:
            log.error("commit of %d appends failed: %s", len(batch.items), batch.error)
            failure = seed.encode_error(f"not stored: {batch.error}")
            for item in batch.items:
                item.reply.frames = failure
            return
        # Durable now: tell the world; the writers' replies follow in order.
        for result in batch.results:
            if not isinstance(result, AppendRejectedError):
                self._feed.broadcast(result)
        for item, result in zip(batch.items, batch.results, strict=True):
            if isinstance(result, AppendRejectedError):
                item.reply.frames = seed.encode_error(str(result))
            else:
                item.reply.frames = item.encode(result)

    def _send_ready_replies(self) -> None:
        replies = self._replies
        while replies:
            head = replies[0]
            if head.read is not None:
                # Every reply ahead of this read has gone out, so every append
                # that arrived before it is committed: the read sees them all.
                head.frames = self._answer_read(head.read)
            elif head.frames is None:
                return
            replies.popleft()
            assert head.frames is not None
            self._send(head.routing, head.frames)

    def _answer_read(self, read: Callable[[EventStore], list[bytes]]) -> list[bytes]:
        assert self._store is not None
        try:
            return read(self._store)
        except StorageError as exc:
            log.error("read failed: %s", exc)
            return seed.encode_error(f"storage failure: {exc}")

    def _send(self, routing: tuple[bytes, ...], frames: list[bytes]) -> None:
        assert self._router is not None
        try:
            transport.send(self._router, [*routing, *frames])
        except zmq.Again:
            log.warning("dropped a reply: the peer's queue is full")
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            log.info("dropped a reply: the peer has gone")


def run(config: ServerConfig) -> None:
    """Start a server with signal handling and serve until SIGINT/SIGTERM."""
    server = Server(config)
    try:
        server.startup()
        server.install_signal_handlers()
        server.serve_forever()
    finally:
        server.shutdown()
