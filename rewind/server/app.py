"""Server lifecycle and the ZeroMQ loop.

One thread owns every socket. Each turn of the loop drains the requests
already waiting on the ROUTER socket, turns each into an action (see
:mod:`rewind.server.actions`) and hands appends on (see
:mod:`rewind.server.appends`), to be committed in groups. When a commit
completes, its writers are answered and its events broadcast, never before.
A lone append to a store that commits inline (memory) is committed and
answered on the spot.

Replies on one connection leave in the order its requests arrived; a read
runs only once every append that arrived before it on that connection is
committed, so a client never reads less than it has been told is stored.
Streamed reads (v2 reads, Gorewind QUERY) then send their messages a few at
a time per turn (see :mod:`rewind.server.streamed_reads`), so no client can
monopolise the loop.

Between turns the loop polls every socket that may need it (the writer's
wake-up, the feeds' subscriptions, the store's commit announcements, the
signal wake-up), or, while only a request can need it, waits on the ROUTER
alone, which costs a synchronous client less per request.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import zmq

from rewind.errors import RewindError, StorageError
from rewind.protocol import dispatch, gorewind, seed, v2
from rewind.protocol.envelope import split_envelope
from rewind.server import gorewind_handler, seed_handler, transport, v2_handler
from rewind.server.actions import Action, CancelRead, Commit, GrantCredit, Read, Reply
from rewind.server.appends import Appends
from rewind.server.config import ServerConfig
from rewind.server.feeds import Feeds, SeedFeed, V2Feed
from rewind.server.limits import Limits
from rewind.server.open_reads import OpenReads
from rewind.server.other_writers import OtherWriters
from rewind.server.reply_queue import MAX_QUEUED_REPLIES, PendingAppend, Routing, Slot
from rewind.server.security import CurveSecurity
from rewind.server.sockets import ServerSockets, StartupError
from rewind.server.streamed_reads import StreamedReads
from rewind.server.writer import Committer, committer_for
from rewind.storage import open_store
from rewind.storage.base import EventStore

log = logging.getLogger("rewind.server")

MAX_REQUESTS_PER_TURN = 1024
"""Bound on requests drained per loop turn, so one flood cannot starve replies."""

POLL_INTERVAL_MS = 100
"""Longest the loop sleeps (closing idle reads, reopening the store's listening connection)."""
READ_ACTIVITY_S = 0.1
"""How long after a read request the loop still counts as serving reads.

While it does, commits go to the writer thread, so reads are not held up by
a transaction waiting for the disk (a client paging through history sends
its next read within this time).
"""
BLOCKED_RETRY_MS = 10
"""How soon to retry a streamed read, or a reply, whose client's queue was full."""

# Makes a PendingAppend without the NamedTuple's Python __new__ frame: one per append.
_new_tuple = tuple.__new__
_BAD_REQUESTS = (seed.BadRequest, gorewind.BadRequest, v2.BadRequest)


class Server:
    """A Rewind server: :meth:`startup`, :meth:`serve_forever`, :meth:`shutdown`."""

    def __init__(self, config: ServerConfig, *, context: zmq.Context[Any] | None = None) -> None:
        self.config = config
        self._limits = Limits.from_config(config)
        self._context = context or zmq.Context.instance()
        self._store: EventStore | None = None
        self._committer: Committer[PendingAppend] | None = None
        self._appends: Appends | None = None
        self._sockets: ServerSockets | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._feeds: Feeds | None = None
        self._security: CurveSecurity | None = None
        self._facts: v2_handler.ServerFacts | None = None
        self._stop_requested = False
        self._dropped_requests = 0
        self._wakeup_reader: socket.socket | None = None
        self._wakeup_writer: socket.socket | None = None
        self._queues: dict[Routing, deque[Slot]] = {}
        self._reads = OpenReads(config.read_idle_timeout)
        self._streamed: StreamedReads | None = None
        self._other_writers: OtherWriters | None = None
        self._reading_until = 0.0
        self._stalled: set[Routing] = set()
        """Connections whose next reply found the peer's queue full."""
        self.query_endpoints: list[str] = []
        self.streaming_endpoints: list[str] = []
        self.v2_streaming_endpoints: list[str] = []

    # Lifecycle -----------------------------------------------------------------

    def startup(self) -> None:
        """Bind every socket and open the store; raise :class:`StartupError` on failure.

        Sockets are bound first, so an endpoint in use is reported without
        creating a store file; requests that arrive meanwhile simply queue.
        """
        try:
            self._sockets = ServerSockets(self.config, self._context)
            self._router = self._sockets.router
            # Bounds each wait of _wait_for_requests; other receives never block.
            self._router.setsockopt(zmq.RCVTIMEO, POLL_INTERVAL_MS)
            self._security = self._sockets.security
            self.query_endpoints = self._sockets.query_endpoints
            self.streaming_endpoints = self._sockets.streaming_endpoints
            self.v2_streaming_endpoints = self._sockets.v2_streaming_endpoints
            try:
                self._store = open_store(self.config.storage)
            except RewindError as exc:
                raise StartupError(f"storage {self.config.storage}: {exc}") from None
            last = self._store.last_event()
        except BaseException:
            self.shutdown()
            raise
        self._feeds = Feeds(
            SeedFeed(self._sockets.seed_publisher),
            V2Feed(self._sockets.v2_publisher),
            head=last,
        )
        self._facts = v2_handler.ServerFacts(
            storage_kind=self._store.kind, durable=self._store.durable, limits=self._limits
        )
        self._committer = committer_for(self._store)
        self._appends = Appends(
            self._store,
            self._committer,
            self._feeds,
            flush=self._flush,
            answer_now=self._answer_now,
        )
        self._other_writers = OtherWriters(
            self._store, self._feeds, self.config.feed_poll_interval_ms
        )
        self._streamed = StreamedReads(
            self._reads,
            self._store,
            self._sockets.router,
            send=self._send,
            release=self._flush,
            forget=self._forget_queue,
        )
        if not self._store.durable:
            log.warning("storage is memory: — events are NOT kept; they vanish when Rewind stops")
        durability = "durable" if self._store.durable else "NOT durable"
        log.info(
            "Rewind ready: query endpoint %s; streaming endpoint %s; v2 streaming endpoint %s; "
            "storage %s (%s)",
            ", ".join(self.query_endpoints),
            ", ".join(self.streaming_endpoints),
            ", ".join(self.v2_streaming_endpoints),
            self.config.storage,
            durability,
        )

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
        assert self._appends is not None and self._streamed is not None
        appends, streamed = self._appends, self._streamed
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        if self._wakeup_reader is not None:
            poller.register(self._wakeup_reader, zmq.POLLIN)
        commits = self._committer.wakeup_fd
        if commits is not None:
            poller.register(commits, zmq.POLLIN)
        assert self._sockets is not None
        publishers = self._sockets.publishers
        for publisher in publishers:
            poller.register(publisher, zmq.POLLIN)  # subscriptions coming and going
        assert self._other_writers is not None
        other_writers = self._other_writers
        other_writers.watch(poller)
        while not self._stop_requested:
            if self._only_a_request_can_need_the_loop():
                self._wait_for_requests()
                continue
            if streamed.busy:
                timeout = 0
            elif streamed.blocked or self._stalled:
                timeout = BLOCKED_RETRY_MS
            else:
                timeout = POLL_INTERVAL_MS
            ready = dict(poller.poll(timeout))
            if self._router in ready:
                self._serve_waiting_requests()
            if commits in ready:
                appends.finish()
            if self._wakeup_reader is not None and self._wakeup_reader.fileno() in ready:
                self._drain_wakeup()
            if self._feeds is not None and any(p in ready for p in publishers):
                self._feeds.update_subscriptions()
            if self._stalled:
                self._retry_stalled()
            if self._reads:
                streamed.pump()
                streamed.close_idle()
            other_writers.after_poll(ready)
            other_writers.watch(poller)
        self._finish_in_flight()
        log.info("stopped serving")

    def _only_a_request_can_need_the_loop(self) -> bool:
        assert self._store is not None and self._appends is not None
        return not (
            self._appends.in_flight or self._reads or self._stalled or self._store.announces_commits
        )

    def _wait_for_requests(self) -> None:
        """Wait on the request socket alone, then serve every request that came.

        Used while nothing else can need the loop: no commit under way on the
        writer thread, no streamed read, no stalled reply, and a store that
        never announces other writers' commits on a socket. Waiting on one
        socket costs less than polling several, which shows on every request
        of a synchronous client. What else may need doing is looked at after
        each request and each timed-out wait: other writers' commits (by
        time), and a stop (its signal handler sets a flag). The feeds look
        for new subscriptions themselves before they broadcast (at most every
        :data:`~rewind.server.feeds.SUBSCRIPTION_CHECK_S`), and at each
        timed-out wait.
        """
        router, store = self._router, self._store
        assert router is not None and store is not None
        assert self._feeds is not None and self._other_writers is not None
        try:
            frames, user_id = self._receive_request(router, 0)
        except zmq.Again:
            self._feeds.update_subscriptions()
            self._other_writers.after_poll({})
            return
        ready = self._handle(frames, user_id)
        if ready is not None:
            self._flush(ready)
        # Appends to a store that waits on a disk commit in groups: take
        # whatever else waits first. Asking costs a system call, which a
        # store without a disk to share would gain nothing from.
        if store.durable and transport.has_message(router):
            self._serve_waiting_requests()
        else:
            self._submit_pending()
        self._other_writers.after_poll({})

    def _finish_in_flight(self) -> None:
        assert self._committer is not None and self._appends is not None
        self._submit_pending()
        while self._appends.in_flight:
            self._committer.wait(timeout=1.0)
            self._appends.finish()

    def shutdown(self) -> None:
        """Close committer, sockets and store. Safe to call more than once."""
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        if self._sockets is not None:
            self._sockets.close()
            self._sockets = None
        self._router = None
        self._security = None
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

    # Requests ------------------------------------------------------------------------

    def _receive_request(
        self, router: zmq.Socket[bytes], flags: int = transport.NOBLOCK
    ) -> tuple[list[bytes], str | None]:
        """The next request and, with CURVE on, its sender's User-Id; ``zmq.Again`` if none."""
        if self._security is not None:
            return transport.receive_with_user_id(router, flags)
        return transport.receive_routed(router, flags), None

    def _serve_waiting_requests(self) -> None:
        router = self._router
        assert router is not None
        # Receiving until ZeroMQ says the queue is empty costs one exception
        # per turn; asking first whether a message waits would cost a call
        # per message.
        for _ in range(MAX_REQUESTS_PER_TURN):
            try:
                frames, user_id = self._receive_request(router)
            except zmq.Again:
                break
            # Answer what is ready at once rather than at the end of the turn: a
            # turn of up to MAX_REQUESTS_PER_TURN reads takes long, and a PING that
            # ZeroMQ's fair queueing took early must not wait for all of them.
            # Only the queue that got the request can have a new head ready; the
            # others move when their commit completes or their read ends.
            ready = self._handle(frames, user_id)
            if ready is not None:
                self._flush(ready)
        self._submit_pending()

    def _action_for(self, body: Sequence[bytes], user_id: str | None = None) -> Action:
        request = dispatch.parse_request(body)
        if isinstance(request, _BAD_REQUESTS):
            log.info("bad request: %s", request.reason)
        if user_id is not None and self._security is not None:
            refused = self._security.refusal(request, user_id)
            if refused is not None:
                return Reply(refused)
        if isinstance(request, seed.SeedRequest):
            return seed_handler.handle(request, self.config.default_stream)
        if isinstance(request, gorewind.GorewindRequest):
            return gorewind_handler.handle(request)
        assert self._facts is not None
        return v2_handler.handle(request, self._facts)

    def _handle(self, frames: list[bytes], user_id: str | None = None) -> Routing | None:
        """Queue the request's reply slot (or act on its read).

        Returns the connection whose reply queue may now have a reply ready
        to send, or ``None`` when it cannot: an append that waits for its
        commit, or one answered on the spot. ``user_id`` is the peer's ZAP
        User-Id when CURVE is on (it says whether the peer may append),
        ``None`` when it is off.
        """
        if len(frames) == 4 and frames[2] == b"PUBLISH" and not frames[1] and user_id is None:
            # The commonest request: a REQ client's seed PUBLISH (its identity,
            # the delimiter, then a two-frame body), which is all that
            # split_envelope and the dispatcher would find.
            routing: Routing = (frames[0], b"")
            data = frames[3]
            publish = seed_handler.publish(data, self.config.default_stream)
            # One event, on the default stream, whose name the configuration
            # keeps within its limit: only the event's size can break a limit.
            if len(data) <= self._limits.max_event_bytes:
                return self._append(routing, publish)
            action: Action = publish  # refused below, in the general check's words
        else:
            envelope = split_envelope(frames, dispatch.is_command)
            routing = envelope.routing
            action = self._action_for(envelope.body, user_id)
        if isinstance(action, Commit):  # the most common action first
            refused = self._limits.check_append(action.request)
            if refused is None:
                return self._append(routing, action)
            log.info("refused an append: %s", refused)
            action = Reply(action.encode(refused))
        elif isinstance(action, GrantCredit):
            assert self._streamed is not None
            self._streamed.grant(routing, action)
            return routing
        elif isinstance(action, CancelRead):
            self._cancel(routing, action)
            return routing
        slot = self._take_slot(routing)
        if slot is None:
            return routing
        if isinstance(action, Reply):
            slot.frames = action.frames
        else:
            if isinstance(action, Read):
                slot.read = action.run
            else:
                slot.start = action
            self._reading_until = time.monotonic() + READ_ACTIVITY_S
            # Appends that arrived before this read must be on their way first.
            self._submit_pending()
        return routing

    def _append(self, routing: Routing, commit: Commit) -> Routing | None:
        """Commit an append within the limits at once, or queue it for the next group.

        Returns ``None`` (see :meth:`_handle`) unless the request was dropped.
        """
        appends = self._appends
        assert appends is not None
        if routing not in self._queues and appends.may_commit_at_once():
            appends.commit_at_once(routing, commit)
            return None
        slot = self._take_slot(routing)
        if slot is None:
            return routing
        appends.add(_new_tuple(PendingAppend, (commit.request, routing, slot, commit.encode)))
        # Nothing behind this slot can go before it, and whatever was ready
        # ahead of it went when it became ready.
        return None

    def _take_slot(self, routing: Routing) -> Slot | None:
        """A new slot at the back of a connection's reply queue; ``None`` if the queue is full.

        A request that finds its connection's queue full is dropped unread.
        """
        queue = self._queues.get(routing)
        if queue is None:
            queue = self._queues[routing] = deque()
        elif len(queue) >= MAX_QUEUED_REPLIES:
            self._dropped_requests += 1
            if self._dropped_requests % MAX_QUEUED_REPLIES == 1:
                log.warning(
                    "dropped a request: %d wait on its connection already (%d dropped so far)",
                    len(queue),
                    self._dropped_requests,
                )
            return None
        slot = Slot()
        queue.append(slot)
        return slot

    def _cancel(self, routing: Routing, cancel: CancelRead) -> None:
        assert self._streamed is not None
        if self._streamed.cancel(routing, cancel.request_id):
            return
        ended = v2.encode_end(cancel.request_id, v2.EndReason.CANCELLED, 0, 0)
        for slot in self._queues.get(routing, ()):
            if slot.start is not None and slot.start.request_id == cancel.request_id:
                # Still waiting behind earlier appends: it ends before it starts.
                slot.start = None
                slot.frames = ended
                return
        # Nothing open under that id: answer as if it had ended just now.
        self._send(routing, ended)

    def _flush(self, routing: Routing) -> None:
        """Send the replies at the head of a connection's queue that are ready.

        A reply the peer's queue has no room for stays at the head and is
        tried again shortly (:meth:`_retry_stalled`): a reply, above all the
        acknowledgement of a stored append, is never dropped because its
        client reads slowly. The client's later requests wait behind it, up
        to :data:`MAX_QUEUED_REPLIES`; beyond that they are dropped unread.
        """
        queue = self._queues.get(routing)
        while queue:
            slot = queue[0]
            if slot.session is not None:
                if not slot.session.finished:
                    return
            elif slot.start is not None:
                start, slot.start = slot.start, None
                assert self._streamed is not None
                opened = self._streamed.open(routing, start)
                if isinstance(opened, list):
                    slot.frames = opened
                elif opened.blocks_connection:
                    slot.session = opened
                    return
                else:
                    slot.frames = []
            elif slot.read is not None:
                read, slot.read = slot.read, None
                slot.frames = self._run_read(read)
            elif slot.frames is None:
                return  # waiting for its commit
            if slot.frames and not self._deliver(routing, slot.frames):
                return
            queue.popleft()
        self._queues.pop(routing, None)

    def _deliver(self, routing: Routing, frames: list[bytes]) -> bool:
        """Send a queued reply; ``False`` if the peer's queue is full (it stays queued)."""
        if not self._try_send(routing, frames):
            self._stall(routing)
            return False
        if self._stalled:
            self._stalled.discard(routing)
        return True

    def _stall(self, routing: Routing) -> None:
        """Hold a connection's replies: the peer's queue has no room for the next one."""
        if routing not in self._stalled:
            self._stalled.add(routing)
            log.warning("replies wait: the peer's queue is full (a client reads slowly)")

    def _retry_stalled(self) -> None:
        """Try again to send the replies that found their peer's queue full."""
        for routing in list(self._stalled):
            if routing in self._queues:
                self._flush(routing)
            else:
                self._stalled.discard(routing)  # the connection was forgotten

    def _run_read(self, read: Callable[[EventStore], list[bytes]]) -> list[bytes]:
        assert self._store is not None
        try:
            return read(self._store)
        except StorageError as exc:
            log.error("read failed: %s", exc)
            return seed.encode_error(f"storage failure: {exc}")

    def _forget_queue(self, routing: Routing) -> None:
        """Drop a connection's queued replies: its peer has gone."""
        self._queues.pop(routing, None)

    def _submit_pending(self) -> None:
        appends = self._appends
        assert appends is not None
        if appends.waiting():
            # Inline while nothing is being read: see rewind.server.writer.
            reading = bool(self._reads) or time.monotonic() < self._reading_until
            appends.submit(inline=not reading)

    def _answer_now(self, routing: Routing, frames: list[bytes]) -> None:
        """Send a reply that has no place in the reply queue, or queue it if it must wait.

        Only a connection with no reply queued is answered at once, so it
        cannot be one whose replies stalled: a sent reply leaves nothing to
        clear.
        """
        if not self._try_send(routing, frames):
            self._stall(routing)
            self._queues.setdefault(routing, deque()).append(Slot(frames))

    def _send(self, routing: Routing, frames: list[bytes]) -> None:
        """Send what ends or refuses a streamed read, outside the reply queue.

        If the peer's queue is full, the message is dropped with a log line
        (the client's read then times out).
        """
        if not self._try_send(routing, frames):
            log.warning("dropped the end of a streamed read: the peer's queue is full")

    def _try_send(self, routing: Routing, frames: list[bytes]) -> bool:
        """Send a message; ``False`` if the peer's queue is full and nothing was sent.

        A peer that has gone counts as sent: there is no one to send it to.
        """
        assert self._router is not None
        try:
            transport.send_routed(self._router, routing, frames)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            log.info("dropped a reply: the peer has gone")
        return True


def run(config: ServerConfig) -> None:
    """Start a server with signal handling and serve until SIGINT/SIGTERM."""
    server = Server(config)
    try:
        server.startup()
        server.install_signal_handlers()
        server.serve_forever()
    finally:
        server.shutdown()
