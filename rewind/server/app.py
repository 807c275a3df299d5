"""Server lifecycle and the ZeroMQ loop.

One thread owns every socket and the store. Each turn of the loop drains the
requests already waiting on the ROUTER socket, commits every append among them
in one transaction (group commit), and only then replies and broadcasts. Reads
that arrive behind appends from the same turn wait for that commit, so a
client never reads less than it has already been told is stored.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import zmq

from rewind.errors import RewindError, StorageError
from rewind.model import AppendRequest, RecordedEvent
from rewind.protocol import seed
from rewind.protocol.envelope import split_envelope
from rewind.server import transport
from rewind.server.config import ServerConfig
from rewind.server.feeds import SeedFeed
from rewind.server.seed_handler import answer_query, publish_request
from rewind.storage import open_store
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")

MAX_REQUESTS_PER_TURN = 1024
"""Bound on requests drained per loop turn, so one flood cannot starve replies."""

LINGER_MS = 2000
"""How long closing sockets may spend flushing replies already queued."""


class StartupError(RewindError):
    """The server cannot start; the message says why in one line."""


@dataclass(slots=True)
class _PendingAppend:
    routing: tuple[bytes, ...]
    request: AppendRequest
    reply: Callable[[tuple[RecordedEvent, ...]], list[bytes]]


def _published(_events: tuple[RecordedEvent, ...]) -> list[bytes]:
    return seed.encode_published()


class Server:
    """A Rewind server: :meth:`startup`, :meth:`serve_forever`, :meth:`shutdown`."""

    def __init__(self, config: ServerConfig, *, context: zmq.Context[Any] | None = None) -> None:
        self.config = config
        self._context = context or zmq.Context.instance()
        self._store: EventStore | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._publisher: zmq.Socket[bytes] | None = None
        self._feed: SeedFeed | None = None
        self._stop_requested = False
        self._wakeup_reader: socket.socket | None = None
        self._wakeup_writer: socket.socket | None = None
        self._pending: list[_PendingAppend] = []
        self.query_endpoints: list[str] = []
        self.streaming_endpoints: list[str] = []

    # Lifecycle -----------------------------------------------------------------

    def startup(self) -> None:
        """Open the store and bind every socket; raise :class:`StartupError` on failure."""
        try:
            self._store = open_store(self.config.storage)
        except RewindError as exc:
            raise StartupError(f"storage {self.config.storage}: {exc}") from None
        if not self._store.durable:
            log.warning("storage is memory: — events are NOT kept; they vanish when Rewind stops")
        try:
            last = self._store.last_event()
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
        except BaseException:
            self.shutdown()
            raise
        self._feed = SeedFeed(self._publisher, None if last is None else last.event_id)
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
                raise StartupError(f"cannot bind {endpoint}: {exc.strerror}") from None
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
        """Serve until a stop is requested; in-flight appends are committed and answered."""
        assert self._router is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        if self._wakeup_reader is not None:
            poller.register(self._wakeup_reader, zmq.POLLIN)
        while not self._stop_requested:
            ready = dict(poller.poll(timeout=1000))
            if self._wakeup_reader is not None and self._wakeup_reader.fileno() in ready:
                self._drain_wakeup()
            if self._router in ready:
                self._serve_waiting_requests()
        log.info("stopped serving")

    def shutdown(self) -> None:
        """Close sockets and store. Safe to call more than once."""
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
        assert self._router is not None
        router = self._router
        for _ in range(MAX_REQUESTS_PER_TURN):
            if not transport.has_message(router):
                break
            self._handle(transport.receive(router))
        self._commit_pending()

    def _handle(self, frames: list[bytes]) -> None:
        envelope = split_envelope(frames, seed.is_command)
        request = seed.parse_request(envelope.body)
        if isinstance(request, seed.Publish):
            self._pending.append(
                _PendingAppend(
                    envelope.routing,
                    publish_request(request, self.config.default_stream),
                    _published,
                )
            )
        elif isinstance(request, seed.Query):
            self._commit_pending()
            assert self._store is not None
            try:
                reply = answer_query(self._store, request)
            except StorageError as exc:
                log.error("query failed: %s", exc)
                reply = seed.encode_error(f"storage failure: {exc}")
            self._send(envelope.routing, reply)
        else:
            log.info("bad request: %s", request.reason)
            self._send(envelope.routing, seed.encode_error(request.reason))

    def _commit_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        assert self._store is not None and self._feed is not None
        try:
            results = self._store.append([item.request for item in pending])
        except StorageError as exc:
            log.error("commit of %d appends failed: %s", len(pending), exc)
            for item in pending:
                self._send(item.routing, seed.encode_error(f"not stored: {exc}"))
            return
        # Durable now: tell the world, then the writers.
        for events in results:
            self._feed.broadcast(events)
        for item, events in zip(pending, results, strict=True):
            self._send(item.routing, item.reply(events))

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
