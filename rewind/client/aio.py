"""The asyncio client: :class:`AsyncClient`, the twin of :class:`~rewind.client.Client`.

Same methods, same arguments, same results and errors, awaited; reads and
subscriptions are async iterators. Requests, replies, reads and catch-up
decisions come from the same I/O-free modules as the synchronous client's;
only the waiting differs. One background task per client receives replies
and files them by request id, so any number of tasks can have requests in
flight on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType

import zmq
import zmq.asyncio

from rewind.client.connection import (
    ConnectionReset,
    FramesFor,
    ReplyRouter,
    as_endpoints,
    backoff,
    decode,
    timeout_message,
    unavailable,
)
from rewind.client.curve import CurveKeys, prepare
from rewind.client.endpoints import EndpointList, Endpoints
from rewind.client.errors import RequestTimeout, StreamNotFound
from rewind.client.models import AppendResult, EventData, ServerInfo
from rewind.client.operations import (
    DEFAULT_PAGE_SIZE,
    AppendOperation,
    InfoOperation,
    ListStreamsOperation,
    PingOperation,
    StreamInfoOperation,
)
from rewind.client.reads import ReadEnd, ReadSpec, ReadState, read_all_spec, read_stream_spec
from rewind.client.subscription import PROBE_INTERVAL, QUIET_INTERVAL, CatchUp
from rewind.client.sync import DEFAULT_QUERY_ENDPOINT, DEFAULT_V2_STREAMING_ENDPOINT
from rewind.model import ANY_VERSION, RecordedEvent, StreamInfo
from rewind.protocol import v2

__all__ = ["AsyncClient", "AsyncEventReader", "AsyncSubscription"]

log = logging.getLogger("rewind.client")


class AsyncConnection:
    """A DEALER connection for the asyncio client; see :mod:`rewind.client.connection`."""

    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoints: EndpointList | Endpoints,
        *,
        timeout: float | None,
        retries: int,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoints = as_endpoints(endpoints)
        self.timeout = timeout
        self.retries = retries
        self.curve = curve
        self._context = context
        self._router = ReplyRouter()
        self._arrived: dict[int, asyncio.Event] = {}
        self._socket: zmq.asyncio.Socket | None = None
        self._socket_endpoint = ""
        self._receiver: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self.endpoints.current

    async def open(self, frames_for: FramesFor) -> int:
        """Send a request under a fresh id and start collecting its replies."""
        if self._socket is not None and self._socket_endpoint != self.endpoint:
            await self.reset()  # another task failed over: follow it
        request_id = self._router.register()
        self._arrived[request_id] = asyncio.Event()
        frames = frames_for(request_id)
        await self._send(self._sock(), frames)
        return request_id

    async def notify(self, frames: list[bytes]) -> None:
        """Send a request that has no reply (CREDIT, CANCEL); best effort."""
        if self._socket is not None:
            await self._send(self._socket, frames)

    @staticmethod
    async def _send(sock: zmq.asyncio.Socket, frames: list[bytes]) -> None:
        try:
            await sock.send_multipart([b"", *frames], zmq.NOBLOCK)
        except zmq.Again:
            # The waiter times out and retries on a fresh socket.
            log.debug("could not send %r: socket queue full", frames[1])

    async def wait(self, request_id: int, timeout: float | None) -> list[bytes] | None:
        """The next reply body for ``request_id``; ``None`` after ``timeout`` seconds.

        Raises :class:`~rewind.client.connection.ConnectionReset` if the
        request was dropped by a reset.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            body = self._router.take(request_id)
            if body is not None:
                return body
            arrived = self._arrived[request_id]
            arrived.clear()
            if deadline is None:
                await arrived.wait()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(arrived.wait(), remaining)
            except TimeoutError:
                return None

    def discard(self, request_id: int) -> None:
        """Stop collecting replies for ``request_id``."""
        self._router.discard(request_id)
        self._arrived.pop(request_id, None)

    async def call(self, frames_for: FramesFor) -> v2.Reply:
        """Send a request with one reply and return the reply, retrying on silence
        (see :meth:`rewind.client.connection.Connection.call`)."""
        attempts = 1 + max(0, self.retries)
        reply: v2.Reply | None = None
        for attempt in range(attempts):
            request_id = await self.open(frames_for)
            sent_to = self.endpoint
            try:
                body = await self.wait(request_id, self.timeout)
            except ConnectionReset:
                body = None
            finally:
                self.discard(request_id)
            if body is not None:
                reply = decode(body)
                if not unavailable(reply):
                    return reply
            await self.fail_over("UNAVAILABLE" if body is not None else "no reply", sent_to)
            if attempt + 1 < attempts:
                await asyncio.sleep(backoff(attempt))
        if reply is not None:
            return reply
        raise RequestTimeout(timeout_message(self.endpoints, attempts, self.timeout))

    async def fail_over(self, reason: str, failed: str) -> None:
        """Drop the socket and make the endpoint after ``failed`` current; log which.

        Nothing happens if the client has moved on from ``failed`` already:
        several tasks may notice the same dead server.
        """
        if self.endpoint == failed:
            await self.reset()
            self.endpoints.fail_over(reason)

    def _sock(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            prepare(sock, self.curve)
            self._socket_endpoint = self.endpoint
            sock.connect(self._socket_endpoint)
            self._socket = sock
            self._receiver = asyncio.get_running_loop().create_task(self._receive(sock))
        return self._socket

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        # Files every reply under its request id and wakes whoever waits for it.
        while True:
            try:
                message = await sock.recv_multipart()
            except zmq.ZMQError:
                return  # the socket was closed by a reset
            request_id = self._router.route(message)
            if request_id is not None:
                self._arrived[request_id].set()

    async def reset(self) -> None:
        """Replace the socket; requests waiting on the old one get ``ConnectionReset``."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._router.reset()
        arrived, self._arrived = self._arrived, {}
        for event in arrived.values():
            event.set()  # its waiter finds the request gone

    async def close(self) -> None:
        """Close the socket. The connection opens a new one when used again."""
        await self.reset()


class _ClosingAsyncIterator(AsyncIterator[RecordedEvent]):
    """An async iterator over an async generator that can be closed early."""

    _events: AsyncGenerator[RecordedEvent, None]

    def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        return self

    async def __anext__(self) -> RecordedEvent:
        return await self._events.__anext__()

    async def close(self) -> None:
        """Stop early and release what the iteration holds on the server and locally."""
        await self._events.aclose()

    aclose = close

    async def __aenter__(self) -> _ClosingAsyncIterator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncEventReader(_ClosingAsyncIterator):
    """The events of one read, as an async iterator; see :class:`~rewind.client.EventReader`."""

    def __init__(self, connection: AsyncConnection, spec: ReadSpec) -> None:
        self._connection = connection
        self._state = ReadState(spec)
        self._events = self._run()

    @property
    def end(self) -> ReadEnd | None:
        """How the read ended; ``None`` while it is still going."""
        return self._state.end

    async def _run(self) -> AsyncGenerator[RecordedEvent, None]:
        connection, state = self._connection, self._state
        retries_left = connection.retries
        while state.can_continue():
            request_id = await connection.open(state.request)
            sent_to = connection.endpoint
            answered = False  # END or ERROR received: nothing more comes for this id
            try:
                while True:
                    body = await connection.wait(request_id, connection.timeout)
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
                    for event in events:
                        yield event
                    # The batch is consumed: let the server send one more.
                    await connection.notify(v2.encode_credit_request(request_id, 1))
            except ConnectionReset:
                # Another request replaced the socket: ask again on the new one.
                answered = True
                continue
            finally:
                if not answered:
                    await connection.notify(v2.encode_cancel_request(request_id))
                connection.discard(request_id)
            await connection.fail_over("read stalled, no reply", sent_to)
            if retries_left <= 0:
                attempts = connection.retries + 1
                raise RequestTimeout(
                    timeout_message(connection.endpoints, attempts, connection.timeout)
                )
            await asyncio.sleep(backoff(connection.retries - retries_left))
            retries_left -= 1


class AsyncSubscription(_ClosingAsyncIterator):
    """A catch-up subscription as an async iterator; see :class:`~rewind.client.Subscription`
    (also for how it follows the client from server to server)."""

    def __init__(
        self,
        connection: AsyncConnection,
        context: zmq.asyncio.Context,
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

    async def _history(self) -> AsyncGenerator[RecordedEvent, None]:
        catch_up = self._catch_up
        reader = AsyncEventReader(self._connection, catch_up.history())
        try:
            async for event in reader:
                if catch_up.on_history_event(event):
                    yield event
        except StreamNotFound:
            catch_up.on_history_end(None)
            return
        finally:
            await reader.close()
        catch_up.on_history_end(reader.end)

    def _open_feed(self) -> zmq.asyncio.Socket:
        sub = self._context.socket(zmq.SUB)
        prepare(sub, self._connection.curve)
        for option, value in self._feed_options.items():
            sub.setsockopt(option, value)
        sub.setsockopt(zmq.SUBSCRIBE, self._catch_up.topic)
        self._feed_endpoint = self._connection.endpoints.feed(self._feeds)
        sub.connect(self._feed_endpoint)
        return sub

    def _follow_server(self, sub: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
        if self._connection.endpoints.feed(self._feeds) == self._feed_endpoint:
            return sub
        previous = self._feed_endpoint
        sub.close()
        sub = self._open_feed()  # subscribe first, then refill from the store
        self._catch_up.on_feed_switched()
        self.switches += 1
        log.warning("subscription moves from feed %s to %s", previous, self._feed_endpoint)
        return sub

    async def _run(self) -> AsyncGenerator[RecordedEvent, None]:
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
                    history = self._history()
                    try:
                        async for past in history:
                            yield past
                            waiting_since = time.monotonic()
                    finally:
                        await history.aclose()
                    quiet_since = time.monotonic()
                    continue
                now = time.monotonic()
                deadline = quiet_since + QUIET_INTERVAL
                if self._idle_timeout is not None:
                    deadline = min(deadline, waiting_since + self._idle_timeout)
                if await sub.poll(max(0, int((deadline - now) * 1000))):
                    event = catch_up.on_feed_message(await sub.recv_multipart())
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
                        # A stopped server's feed is silent too: check it still answers.
                        operation = PingOperation()
                        operation.result(await self._connection.call(operation.frames))
                        probed_at = time.monotonic()
                    quiet_since = now
        finally:
            sub.close()


class AsyncClient:
    """The asyncio twin of :class:`~rewind.client.Client` for Rewind v2.

    ::

        async with AsyncClient("tcp://127.0.0.1:9090") as client:
            await client.append("account-1", [b"opened"], expected_version=NO_STREAM)
            async for event in client.read_stream("account-1"):
                print(event.version, event.data)

    Every method takes the arguments of its :class:`~rewind.client.Client`
    namesake and returns the same values, awaited; ``read_stream``,
    ``read_all``, ``list_streams`` and ``subscribe`` return async iterators
    (close them with ``await it.close()`` or ``async with`` to stop early).
    Errors are those of :mod:`rewind.client.errors`. Use a client from one
    event loop; several tasks may use it at once.

    Like :class:`~rewind.client.Client` it takes several query endpoints
    (a list, or one comma-separated string) and as many v2 feed endpoints,
    in the same order, for servers sharing one store, and fails over from
    one to the next when a request times out or is answered ``UNAVAILABLE``.
    """

    def __init__(
        self,
        query_endpoint: EndpointList = DEFAULT_QUERY_ENDPOINT,
        *,
        v2_streaming_endpoint: EndpointList = DEFAULT_V2_STREAMING_ENDPOINT,
        timeout: float | None = 5.0,
        retries: int = 2,
        context: zmq.asyncio.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self._endpoints = Endpoints(query_endpoint)
        self.query_endpoint = query_endpoint
        """The query endpoint(s) as given."""
        self.query_endpoints = self._endpoints.all
        """Every query endpoint, in failover order."""
        self.v2_streaming_endpoint = v2_streaming_endpoint
        self._v2_feeds = self._endpoints.feeds(v2_streaming_endpoint, "v2 streaming endpoint")
        self.timeout = timeout
        self.retries = retries
        self._context = context or zmq.asyncio.Context.instance()
        self._connection = AsyncConnection(
            self._context, self._endpoints, timeout=timeout, retries=retries, curve=curve
        )

    @property
    def current_endpoint(self) -> str:
        """The query endpoint requests go to now (changes when the client fails over)."""
        return self._endpoints.current

    async def append(
        self,
        stream: str,
        events: Iterable[EventData | bytes],
        *,
        expected_version: int = ANY_VERSION,
    ) -> AppendResult:
        """Append ``events`` to ``stream`` atomically; see :meth:`Client.append`."""
        operation = AppendOperation.build(stream, events, expected_version)
        return operation.result(await self._connection.call(operation.frames))

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        max_count: int | None = None,
        batch_size: int = v2.DEFAULT_BATCH_SIZE,
    ) -> AsyncEventReader:
        """Iterate over one stream's events by version; see :meth:`Client.read_stream`."""
        spec = read_stream_spec(
            stream,
            from_version=from_version,
            backwards=backwards,
            max_count=max_count,
            batch_size=batch_size,
        )
        return AsyncEventReader(self._connection, spec)

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
    ) -> AsyncEventReader:
        """Iterate over the global order; see :meth:`Client.read_all`."""
        spec = read_all_spec(
            from_position=from_position,
            since=since,
            backwards=backwards,
            max_count=max_count,
            stream_prefix=stream_prefix,
            event_types=event_types,
            batch_size=batch_size,
        )
        return AsyncEventReader(self._connection, spec)

    async def stream_info(self, stream: str) -> StreamInfo | None:
        """A stream's last version and positions; ``None`` if it does not exist."""
        operation = StreamInfoOperation(stream)
        operation.frames(1)  # checks the name before anything is sent
        return operation.result(await self._connection.call(operation.frames))

    def list_streams(
        self, *, after: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[str]:
        """Iterate over all stream names, page by page; see :meth:`Client.list_streams`."""
        ListStreamsOperation(after or "", page_size).frames(1)  # check the arguments now
        return self._list_streams(after or "", page_size)

    async def _list_streams(self, after: str, page_size: int) -> AsyncIterator[str]:
        while True:
            operation = ListStreamsOperation(after, page_size)
            names, more = operation.result(await self._connection.call(operation.frames))
            for name in names:
                yield name
            if not more:
                return
            after = names[-1]

    async def ping(self) -> float:
        """Check that the server answers; return the round trip in seconds."""
        started = time.perf_counter()
        operation = PingOperation()
        operation.result(await self._connection.call(operation.frames))
        return time.perf_counter() - started

    async def server_info(self) -> ServerInfo:
        """The server's version, storage, protocols, head position and limits."""
        operation = InfoOperation()
        return operation.result(await self._connection.call(operation.frames))

    def subscribe(
        self,
        *,
        from_position: int | None = None,
        stream: str | None = None,
        from_version: int | None = None,
        stream_prefix: str | None = None,
        idle_timeout: float | None = None,
        feed_options: Mapping[int, int] | None = None,
    ) -> AsyncSubscription:
        """History, then live events, no gap, no duplicate; see :meth:`Client.subscribe`."""
        catch_up = CatchUp(
            from_position=from_position,
            stream=stream,
            from_version=from_version,
            stream_prefix=stream_prefix,
        )
        return AsyncSubscription(
            self._connection,
            self._context,
            self._v2_feeds,
            catch_up,
            idle_timeout=idle_timeout,
            feed_options=feed_options,
        )

    async def close(self) -> None:
        """Close the client's socket. The client can still be used afterwards."""
        await self._connection.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
