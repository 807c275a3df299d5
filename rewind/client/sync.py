"""A friendlier synchronous client for the seed protocol."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import zmq

from rewind.client.errors import ProtocolError, RequestTimeout, ServerError
from rewind.protocol import seed

log = logging.getLogger("rewind.client")

DEFAULT_QUERY_ENDPOINT = "tcp://127.0.0.1:9090"
DEFAULT_STREAMING_ENDPOINT = "tcp://127.0.0.1:9091"


@dataclass(frozen=True, slots=True)
class Event:
    """An event as the seed protocol delivers it: its id and its data."""

    id: str
    data: bytes


class Client:
    """Publish, query and follow events on a Rewind server.

    Use it as a context manager (or call :meth:`close`)::

        with Client("tcp://127.0.0.1:9090", "tcp://127.0.0.1:9091") as client:
            client.publish(b"hello")
            for event in client.query():
                print(event.id, event.data)

    ``timeout`` (seconds, ``None`` for no limit) bounds every wait for a reply.
    A read that times out is retried ``retries`` times on a fresh socket; a
    publish is never retried automatically, because the seed protocol cannot
    tell a retried publish from a new one: a :class:`RequestTimeout` from
    :meth:`publish` means the event may or may not have been stored.
    """

    def __init__(
        self,
        query_endpoint: str = DEFAULT_QUERY_ENDPOINT,
        streaming_endpoint: str = DEFAULT_STREAMING_ENDPOINT,
        *,
        timeout: float | None = 5.0,
        retries: int = 2,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.query_endpoint = query_endpoint
        self.streaming_endpoint = streaming_endpoint
        self.timeout = timeout
        self.retries = retries
        self._context = context or zmq.Context.instance()
        self._req: zmq.Socket[bytes] | None = None

    # Requests ----------------------------------------------------------------------

    def publish(self, data: bytes) -> None:
        """Append ``data`` as a new event; returns once the server has stored it durably."""
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
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.streaming_endpoint)
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
            idle_ms = None if idle_timeout is None else int(idle_timeout * 1000)
            while True:
                if not sub.poll(idle_ms, zmq.POLLIN):
                    return
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
        finally:
            sub.close()

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
            if sock.poll(timeout_ms, zmq.POLLIN):
                reply: list[bytes] = sock.recv_multipart()
                return reply
            # A REQ socket that missed its reply is stuck; start afresh.
            self._discard_socket()
            if attempt + 1 < attempts:
                log.info("no reply from %s, retrying", self.query_endpoint)
                time.sleep(min(0.1 * 2**attempt, 1.0))
        raise RequestTimeout(
            f"no reply from {self.query_endpoint} "
            + (
                f"to {attempts} attempts of {self.timeout} s each"
                if attempts > 1
                else f"within {self.timeout} s"
            )
        )

    def _socket(self) -> zmq.Socket[bytes]:
        if self._req is None:
            self._req = self._context.socket(zmq.REQ)
            self._req.setsockopt(zmq.LINGER, 0)
            self._req.connect(self.query_endpoint)
        return self._req

    def _discard_socket(self) -> None:
        if self._req is not None:
            self._req.close()
            self._req = None

    def close(self) -> None:
        """Close the client's sockets. The client can still be used afterwards."""
        self._discard_socket()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
