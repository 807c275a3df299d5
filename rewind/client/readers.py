"""The synchronous client's iterators: streamed reads and catch-up subscriptions."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import zmq

from rewind.client.connection import Connection, ConnectionReset, backoff, decode, timeout_message
from rewind.client.curve import prepare
from rewind.client.errors import RequestTimeout, StreamNotFound
from rewind.client.operations import PingOperation
from rewind.client.reads import ReadEnd, ReadSpec, ReadState
from rewind.client.subscription import PROBE_INTERVAL, QUIET_INTERVAL, CatchUp
from rewind.client.waiting import wait_readable
from rewind.model import RecordedEvent
from rewind.protocol import v2

__all__ = ["EventReader", "Subscription"]

log = logging.getLogger("rewind.client")


class _ClosingIterator(Iterator[RecordedEvent]):
    """An iterator over a generator that can be closed early, also with ``with``."""

    _events: Generator[RecordedEvent, None, None]

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop early and release what the iteration holds on the server and locally."""
        self._events.close()

    def __enter__(self) -> _ClosingIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class EventReader(_ClosingIterator):
    """The events of one ``read_stream`` or ``read_all``, fetched batch by batch.

    The server sends a few batches ahead and waits for the reader to ask for
    more, so the memory used stays that of a few batches however long the
    read. Closing the reader before the end (``close()``, leaving a ``with``
    block, or dropping it) tells the server to stop. If the connection is
    lost, the read continues on a fresh one (to the next server, if the
    client has several) from just after the last event delivered. After the
    last event :attr:`end` tells why the read ended and where to continue.
    """

    def __init__(self, connection: Connection, spec: ReadSpec) -> None:
        self._connection = connection
        self._state = ReadState(spec)
        self._events = self._run()

    @property
    def end(self) -> ReadEnd | None:
        """How the read ended; ``None`` while it is still going."""
        return self._state.end

    def _run(self) -> Generator[RecordedEvent, None, None]:
        connection, state = self._connection, self._state
        retries_left = connection.retries
        while state.can_continue():
            request_id = connection.open(state.request)
            sent_to = connection.endpoint
            answered = False  # END or ERROR received: nothing more comes for this id
            try:
                while True:
                    body = connection.wait(request_id, connection.timeout)
                    if body is None:
                        break
                    try:
                        events = state.on_reply(decode(body))
                    except BaseException:
                        answered = True
                        raise
                    retries_left = connection.retries
                    if state.finished:
                        answered = True
                        return
                    yield from events
                    # The batch is consumed: let the server send one more.
                    connection.notify(v2.encode_credit_request(request_id, 1))
            except ConnectionReset:
                # Another request replaced the socket: ask again on the new one.
                answered = True
                continue
            finally:
                if not answered:
                    connection.notify(v2.encode_cancel_request(request_id))
                connection.discard(request_id)
            # Resume (or let the next request start) on the next server, if there are several.
            connection.fail_over("read stalled, no reply", sent_to)
            if retries_left <= 0:
                attempts = connection.retries + 1
                raise RequestTimeout(
                    timeout_message(connection.endpoints, attempts, connection.timeout)
                )
            time.sleep(backoff(connection.retries - retries_left))
            retries_left -= 1


class Subscription(_ClosingIterator):
    """A catch-up subscription: the history from a checkpoint, then live events.

    Every event is delivered once and in order, even when the live feed
    drops messages because the consumer is slow: the gap is noticed and
    filled from the store. The iteration never ends by itself, unless an
    ``idle_timeout`` was given. :attr:`checkpoint` is the position (or, for
    a stream subscription, the version) up to which everything has been
    delivered; :attr:`gaps` counts the times events missing from the feed
    were read from the store.

    With several servers (``feed_endpoints`` one per query endpoint, in the
    same order) it follows the feed of the server the client currently
    talks to. When the client fails over, the subscription moves to the
    next server's feed and reads from the store whatever it may have
    missed; while the feed is silent it checks every
    :data:`~rewind.client.subscription.PROBE_INTERVAL` seconds that the
    server still answers, so a server that stops while nothing happens is
    noticed too. :attr:`switches` counts the moves.
    """

    def __init__(
        self,
        connection: Connection,
        context: zmq.Context[Any],
        feed_endpoints: Sequence[str] | str,
        catch_up: CatchUp,
        *,
        idle_timeout: float | None = None,
        feed_options: Mapping[int, int] | None = None,
    ) -> None:
        self._connection = connection
        self._context = context
        self._feeds = connection.endpoints.feeds(feed_endpoints, "feed endpoint")
        self._feed_endpoint = ""
        self.switches = 0
        """How many times the subscription moved to another server's feed."""
        self._catch_up = catch_up
        self._idle_timeout = idle_timeout
        self._feed_options = dict(feed_options or {})
        self._events = self._run()

    @property
    def checkpoint(self) -> int:
        """Last position examined (last version delivered, for a stream subscription)."""
        return self._catch_up.checkpoint

    @property
    def gaps(self) -> int:
        """How many times events missing from the live feed were read from the store."""
        return self._catch_up.gaps

    def _open_feed(self) -> zmq.Socket[bytes]:
        sub: zmq.Socket[bytes] = self._context.socket(zmq.SUB)
        prepare(sub, self._connection.curve)
        for option, value in self._feed_options.items():
            sub.setsockopt(option, value)
        sub.setsockopt(zmq.SUBSCRIBE, self._catch_up.topic)
        self._feed_endpoint = self._connection.endpoints.feed(self._feeds)
        sub.connect(self._feed_endpoint)
        return sub

    def _follow_server(self, sub: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        """``sub``, or a SUB socket on the current server's feed if the client failed over."""
        if self._connection.endpoints.feed(self._feeds) == self._feed_endpoint:
            return sub
        previous = self._feed_endpoint
        sub.close()
        # Subscribe first, then refill from the store, like at the start.
        sub = self._open_feed()
        self._catch_up.on_feed_switched()
        self.switches += 1
        log.warning("subscription moves from feed %s to %s", previous, self._feed_endpoint)
        return sub

    def _probe(self) -> None:
        """Check that the current server answers; failing over if it does not."""
        operation = PingOperation()
        operation.result(self._connection.call(operation.frames))

    def _history(self) -> Generator[RecordedEvent, None, None]:
        catch_up = self._catch_up
        reader = EventReader(self._connection, catch_up.history())
        try:
            for event in reader:
                if catch_up.on_history_event(event):
                    yield event
        except StreamNotFound:
            catch_up.on_history_end(None)
            return
        finally:
            reader.close()
        catch_up.on_history_end(reader.end)

    def _run(self) -> Generator[RecordedEvent, None, None]:
        catch_up = self._catch_up
        # Subscribe before reading history, so nothing falls between the two.
        sub = self._open_feed()
        try:
            waiting_since = time.monotonic()
            quiet_since = waiting_since
            probed_at = waiting_since
            while True:
                sub = self._follow_server(sub)
                if catch_up.reading:
                    for past in self._history():
                        yield past
                        waiting_since = time.monotonic()
                    quiet_since = time.monotonic()
                    continue
                now = time.monotonic()
                deadline = quiet_since + QUIET_INTERVAL
                if self._idle_timeout is not None:
                    deadline = min(deadline, waiting_since + self._idle_timeout)
                if wait_readable(sub, max(0, int((deadline - now) * 1000))):
                    event = catch_up.on_feed_message(sub.recv_multipart())
                    quiet_since = probed_at = time.monotonic()
                    if event is not None:
                        yield event
                        waiting_since = time.monotonic()
                    continue
                now = time.monotonic()
                if self._idle_timeout is not None and now - waiting_since >= self._idle_timeout:
                    return
                if now - quiet_since >= QUIET_INTERVAL:
                    several = self._connection.endpoints.several
                    if not catch_up.on_quiet() and several and now - probed_at >= PROBE_INTERVAL:
                        self._probe()
                        probed_at = time.monotonic()
                    quiet_since = now
        finally:
            sub.close()
