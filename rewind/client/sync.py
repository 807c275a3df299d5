"""The synchronous client: the seed protocol's publish, query and follow, and Rewind v2."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import zmq

from rewind.client.connection import Connection, backoff, timeout_message
from rewind.client.curve import CurveKeys, prepare
from rewind.client.endpoints import EndpointList, Endpoints
from rewind.client.errors import ProtocolError, RequestTimeout, ServerError
from rewind.client.models import AppendResult, EventData, ServerInfo
from rewind.client.operations import (
    DEFAULT_PAGE_SIZE,
    AppendOperation,
    InfoOperation,
    ListStreamsOperation,
    PingOperation,
    StreamInfoOperation,
)
from rewind.client.readers import EventReader, Subscription
from rewind.client.reads import read_all_spec, read_stream_spec
from rewind.client.subscription import PROBE_INTERVAL, CatchUp
from rewind.client.waiting import wait_readable
from rewind.model import ANY_VERSION, StreamInfo
from rewind.protocol import seed, v2

log = logging.getLogger("rewind.client")

DEFAULT_QUERY_ENDPOINT = "tcp://127.0.0.1:9090"
DEFAULT_STREAMING_ENDPOINT = "tcp://127.0.0.1:9091"
DEFAULT_V2_STREAMING_ENDPOINT = "tcp://127.0.0.1:9092"


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the seed protocol delivers it: its id and its data."""

    id: str
    data: bytes


class Client:
    """A connection to a Rewind server: streams and the global log (Rewind v2), and
    the seed protocol's single log.

    Use it as a context manager (or call :meth:`close`)::

        with Client("tcp://127.0.0.1:9090") as client:
            client.append("account-1", [b"opened"], expected_version=NO_STREAM)
            for event in client.read_stream("account-1"):
                print(event.version, event.data)

    ``query_endpoint`` is the server's request socket, which serves both
    protocols; ``streaming_endpoint`` its seed-protocol feed (for
    :meth:`follow`) and ``v2_streaming_endpoint`` its v2 feed (for
    :meth:`subscribe`).

    ``timeout`` (seconds, ``None`` for no limit) bounds every wait for a reply.
    A request that times out is sent again ``retries`` times on a fresh
    socket, and a v2 read resumes from where it stood. :meth:`append` retries
    too, safely: every event carries an id chosen before the first attempt,
    so the server recognises a repeat and answers with the original
    positions. The seed :meth:`publish` is never retried, because the seed
    protocol cannot tell a retried publish from a new one: a
    :class:`RequestTimeout` from it means the event may or may not have been
    stored.

    A client is not thread-safe (nor are the ZeroMQ sockets under it): use
    one per thread. Its iterators share its connection, so other requests
    can be made while iterating.

    ``curve`` (:class:`~rewind.client.CurveKeys`) connects every socket of
    the client with CURVE, to a server that has it on.

    **Several servers.** Servers sharing one store (see "Several servers on
    one store" in ``docs/operations.md``) can all be given, as a list or one
    comma-separated string: ``Client(["tcp://a:9090", "tcp://b:9090"],
    v2_streaming_endpoint=["tcp://a:9092", "tcp://b:9092"])``, the feed
    endpoints (``streaming_endpoint``, ``v2_streaming_endpoint``) one per
    server in the same order (or a single one for all). Requests go to one
    server while it answers; a request that times out or is answered
    ``UNAVAILABLE`` is retried on the next one (round robin, logged as a
    warning on the ``rewind.client`` logger), which then stays current.
    Reads resume there where they stood, appends are retried there safely
    (same event ids), and subscriptions and :meth:`follow` move to that
    server's feed, reading from the store what they may have missed. Set
    ``retries`` to at least the number of servers - 1 so that every server
    is tried. The seed :meth:`publish` is still never retried; after a
    timeout the next call goes to the next server.
    """

    def __init__(
        self,
        query_endpoint: EndpointList = DEFAULT_QUERY_ENDPOINT,
        streaming_endpoint: EndpointList = DEFAULT_STREAMING_ENDPOINT,
        *,
        v2_streaming_endpoint: EndpointList = DEFAULT_V2_STREAMING_ENDPOINT,
        timeout: float | None = 5.0,
        retries: int = 2,
        context: zmq.Context[Any] | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self._endpoints = Endpoints(query_endpoint)
        self.query_endpoint = query_endpoint
        """The query endpoint(s) as given."""
        self.query_endpoints = self._endpoints.all
        """Every query endpoint, in failover order."""
        self.streaming_endpoint = streaming_endpoint
        self.v2_streaming_endpoint = v2_streaming_endpoint
        self._seed_feeds = self._endpoints.feeds(streaming_endpoint, "streaming endpoint")
        self._v2_feeds = self._endpoints.feeds(v2_streaming_endpoint, "v2 streaming endpoint")
        self.timeout = timeout
        self.retries = retries
        self.curve = curve
        self._context = context or zmq.Context.instance()
        self._req: zmq.Socket[bytes] | None = None
        self._req_endpoint = ""
        self._seed_feed = ""
        self._connection: Connection | None = None

    @property
    def current_endpoint(self) -> str:
        """The query endpoint requests go to now (changes when the client fails over)."""
        return self._endpoints.current

    # Rewind v2 ---------------------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Iterable[EventData | bytes],
        *,
        expected_version: int = ANY_VERSION,
    ) -> AppendResult:
        """Append ``events`` to ``stream`` in one transaction; return where they were stored.

        Each event is ``bytes`` (its data) or an :class:`EventData`. All or
        none are stored. ``expected_version`` is ``ANY_VERSION`` (no check),
        ``NO_STREAM`` (the stream must not exist), ``STREAM_EXISTS``, or the
        stream's exact last version (from :class:`AppendResult.last_version`
        or :meth:`stream_info`); a mismatch raises
        :class:`~rewind.client.WrongExpectedVersion` carrying the actual
        version. Returns only once the events are durably stored.
        """
        operation = AppendOperation.build(stream, events, expected_version)
        return operation.result(self._v2().call(operation.frames))

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        max_count: int | None = None,
        batch_size: int = v2.DEFAULT_BATCH_SIZE,
    ) -> EventReader:
        """Iterate over one stream's events by version.

        ``from_version`` is inclusive; by default the read starts at the
        first event (forward) or the last one (``backwards``). ``max_count``
        caps the number of events. Events arrive ``batch_size`` at a time,
        and only a few batches ahead of the consumer, so a stream of any
        length can be read. Raises :class:`~rewind.client.StreamNotFound` if
        the stream does not exist. Close the reader to stop early.
        """
        spec = read_stream_spec(
            stream,
            from_version=from_version,
            backwards=backwards,
            max_count=max_count,
            batch_size=batch_size,
        )
        return EventReader(self._v2(), spec)

    def read_all(
        self,
        *,
        from_position: int | None = None,
        since: datetime | int | None = None,
        backwards: bool = False,
        max_count: int | None = None,
        stream_prefix: str | None = None,
        event_types: Iterable[str] | None = None,
        batch_size: int = v2.DEFAULT_BATCH_SIZE,
    ) -> EventReader:
        """Iterate over every stream's events in the global order (by position).

        Start at ``from_position`` (inclusive), or at the first event
        committed at or after ``since`` (a datetime, naive meaning UTC, or
        microseconds since the epoch; backwards: the last event before it),
        or by default at the first (forward) or newest (``backwards``) event.
        ``stream_prefix`` keeps the streams whose names start with it;
        ``event_types`` keeps events of those types. Streamed in batches like
        :meth:`read_stream`.
        """
        spec = read_all_spec(
            from_position=from_position,
            since=since,
            backwards=backwards,
            max_count=max_count,
            stream_prefix=stream_prefix,
            event_types=event_types,
            batch_size=batch_size,
        )
        return EventReader(self._v2(), spec)

    def stream_info(self, stream: str) -> StreamInfo | None:
        """A stream's last version and positions; ``None`` if it does not exist."""
        operation = StreamInfoOperation(stream)
        operation.frames(1)  # checks the name before anything is sent
        return operation.result(self._v2().call(operation.frames))

    def list_streams(
        self, *, after: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[str]:
        """Iterate over the names of all streams (after ``after``), in code point order.

        Asks the server for ``page_size`` names at a time, as the iteration
        goes.
        """
        ListStreamsOperation(after or "", page_size).frames(1)  # check the arguments now
        return self._list_streams(after or "", page_size)

    def _list_streams(self, after: str, page_size: int) -> Iterator[str]:
        while True:
            operation = ListStreamsOperation(after, page_size)
            names, more = operation.result(self._v2().call(operation.frames))
            yield from names
            if not more:
                return
            after = names[-1]

    def ping(self) -> float:
        """Check that the server answers; return the round trip in seconds."""
        started = time.perf_counter()
        operation = PingOperation()
        operation.result(self._v2().call(operation.frames))
        return time.perf_counter() - started

    def server_info(self) -> ServerInfo:
        """The server's version, storage, protocols, head position and limits."""
        operation = InfoOperation()
        return operation.result(self._v2().call(operation.frames))

    def subscribe(
        self,
        *,
        from_position: int | None = None,
        stream: str | None = None,
        from_version: int | None = None,
        stream_prefix: str | None = None,
        idle_timeout: float | None = None,
        feed_options: Mapping[int, int] | None = None,
    ) -> Subscription:
        """Iterate over history and then live events, with no gap and no duplicate.

        Subscribe to the whole log from ``from_position`` (inclusive; by
        default from the first event), to the streams whose names start with
        ``stream_prefix`` (also from ``from_position``), or to one ``stream``
        from ``from_version`` (inclusive; by default 0). The history is read
        from the store, then live events follow from the v2 feed; events the
        feed drops because the consumer falls behind are read from the store,
        so none is missed. To resume after a restart, pass the last position
        (or version) handled + 1.

        The iteration ends only after ``idle_timeout`` seconds without an
        event, if given. ``feed_options`` are ZeroMQ socket options for the
        feed's SUB socket (e.g. ``{zmq.RCVHWM: 10000}``).
        """
        catch_up = CatchUp(
            from_position=from_position,
            stream=stream,
            from_version=from_version,
            stream_prefix=stream_prefix,
        )
        return Subscription(
            self._v2(),
            self._context,
            self._v2_feeds,
            catch_up,
            idle_timeout=idle_timeout,
            feed_options=feed_options,
        )

    def _v2(self) -> Connection:
        if self._connection is None:
            self._connection = Connection(
                self._context,
                self._endpoints,
                timeout=self.timeout,
                retries=self.retries,
                curve=self.curve,
            )
        return self._connection

    # Seed protocol -----------------------------------------------------------------

    def publish(self, data: bytes) -> None:
        """Append ``data`` as a new event; returns once the server has stored it durably.

        Never retried, also not on another server: the seed protocol cannot
        tell a repeat from a new event. After a :class:`RequestTimeout` the
        event may or may not be stored, and the next request goes to the
        next server if the client has several.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"event data must be bytes, not {type(data).__name__}")
        reply = self._request(seed.encode_publish(data), retry=False)
        try:
            seed.check_published(reply)
        except seed.SeedReplyError as exc:
            raise ServerError(exc.reason) from None
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None

    def query(self, from_id: str | None = None, to_id: str | None = None) -> Iterator[Event]:
        """Iterate over stored events after ``from_id`` up to and including ``to_id``.

        Either bound may be ``None`` (open). Pages through the server's replies
        lazily, so any number of events can be read.
        """
        cursor = from_id.encode("utf-8") if from_id else None
        upper = to_id.encode("utf-8") if to_id else None
        while True:
            reply = self._request(seed.encode_query(cursor, upper), retry=True)
            try:
                events, done = seed.decode_query_reply(reply)
            except seed.SeedReplyError as exc:
                raise ServerError(exc.reason) from None
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
            for raw_id, data in events:
                cursor = raw_id
                yield Event(raw_id.decode("ascii", errors="replace"), data)
            if done:
                return
            if not events:
                raise ProtocolError("server sent an empty page without END")

    def follow(
        self,
        after: str | None = None,
        *,
        live_only: bool = False,
        idle_timeout: float | None = None,
    ) -> Iterator[Event]:
        """Iterate over history after ``after`` and then over live events, without end.

        With ``live_only`` the history is skipped and only events published from
        now on are delivered. Events the streaming socket dropped (a slow
        consumer hits ZeroMQ's high-water mark) are detected through the
        previous-id chain and fetched with queries, so nothing is missed or
        repeated. With ``idle_timeout`` the iteration ends after that many
        seconds without a new event.
        """
        sub = self._open_seed_feed()
        try:
            # Subscribe before reading history: whatever commits meanwhile is
            # buffered on the socket instead of falling between the two.
            last: str | None = after
            # Live-only has no history to continue from: the first message
            # received becomes the starting point of the previous-id chain.
            synced = not live_only
            if not live_only:
                for event in self.query(from_id=after):
                    last = event.id
                    yield event
            waiting_since = time.monotonic()
            while True:
                if self._endpoints.feed(self._seed_feeds) != self._seed_feed:
                    # The client failed over: every server's feed carries the
                    # same chain, so move to the new server's and fetch what
                    # was published meanwhile.
                    previous_feed = self._seed_feed
                    sub.close()
                    sub = self._open_seed_feed()
                    log.warning("follow moves from feed %s to %s", previous_feed, self._seed_feed)
                    if synced:
                        for missed in self.query(from_id=last):
                            last = missed.id
                            yield missed
                            waiting_since = time.monotonic()
                wait = PROBE_INTERVAL if self._endpoints.several else None
                if idle_timeout is not None:
                    remaining = waiting_since + idle_timeout - time.monotonic()
                    if remaining <= 0:
                        return
                    wait = remaining if wait is None else min(wait, remaining)
                if not wait_readable(sub, None if wait is None else max(1, int(wait * 1000))):
                    if self._endpoints.several:
                        # A stopped server's feed is silent too: check it answers.
                        self.ping()
                    continue
                try:
                    raw_id, raw_previous, data = seed.decode_stream_message(sub.recv_multipart())
                except ValueError as exc:
                    raise ProtocolError(str(exc)) from None
                event_id = raw_id.decode("ascii", errors="replace")
                previous = raw_previous.decode("ascii", errors="replace") or None
                if not synced:
                    synced = True
                    last = event_id
                    yield Event(event_id, data)
                elif previous == last:
                    last = event_id
                    yield Event(event_id, data)
                else:
                    # Either a message already delivered from history, or the
                    # feed dropped some: ask for everything after the last
                    # delivered event up to this one.
                    for missed in self._catch_up(last, event_id):
                        last = missed.id
                        yield missed
                waiting_since = time.monotonic()
        finally:
            sub.close()

    def _open_seed_feed(self) -> zmq.Socket[bytes]:
        sub: zmq.Socket[bytes] = self._context.socket(zmq.SUB)
        prepare(sub, self.curve)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._seed_feed = self._endpoints.feed(self._seed_feeds)
        sub.connect(self._seed_feed)
        return sub

    def _catch_up(self, last: str | None, through: str) -> Iterator[Event]:
        try:
            yield from self.query(from_id=last, to_id=through)
        except ServerError as exc:
            if seed.FROM_AFTER_TO not in exc.reason:
                raise
            # "through" precedes "last": it was delivered from history already.
            log.debug("skipping streamed event %s, delivered already", through)

    # Plumbing ----------------------------------------------------------------------

    def _request(self, frames: list[bytes], *, retry: bool) -> list[bytes]:
        attempts = 1 + (self.retries if retry else 0)
        timeout_ms = None if self.timeout is None else int(self.timeout * 1000)
        for attempt in range(attempts):
            sock = self._socket()
            sock.send_multipart(frames)
            if wait_readable(sock, timeout_ms):
                reply: list[bytes] = sock.recv_multipart()
                return reply
            # A REQ socket that missed its reply is stuck; start afresh, and
            # (a publish too, though it is not retried) on the next server.
            self._discard_socket()
            self._endpoints.fail_over("no reply")
            if attempt + 1 < attempts:
                time.sleep(backoff(attempt))
        raise RequestTimeout(timeout_message(self._endpoints, attempts, self.timeout))

    def _socket(self) -> zmq.Socket[bytes]:
        if self._req is not None and self._req_endpoint != self._endpoints.current:
            self._discard_socket()  # the client failed over meanwhile
        if self._req is None:
            self._req = self._context.socket(zmq.REQ)
            prepare(self._req, self.curve)
            self._req_endpoint = self._endpoints.current
            self._req.connect(self._req_endpoint)
        return self._req

    def _discard_socket(self) -> None:
        if self._req is not None:
            self._req.close()
            self._req = None

    def close(self) -> None:
        """Close the client's sockets. The client can still be used afterwards."""
        self._discard_socket()
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
