"""Request/reply plumbing for Rewind v2: one DEALER socket, many requests in flight.

Replies to different requests may arrive in any order, and a read answers
with many messages, so every reply is routed by the request id at the front
of its header (:class:`ReplyRouter`, which does no I/O and is shared with the
asyncio client). Whoever waits for a reply receives from the socket and
files whatever arrives under its request id, so a read that is being
iterated and a request made in the middle of it share one connection.

A request that gets no reply in time is sent again on a fresh socket (the
"lazy pirate" pattern), to the next server if the client was given several
(:mod:`rewind.client.endpoints`). A fresh socket drops every request still
waiting on the old one; their waiters notice (:class:`ConnectionReset`) and
start over, reads from where they stand.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from rewind.client.curve import CurveKeys, prepare
from rewind.client.endpoints import EndpointList, Endpoints
from rewind.client.errors import ProtocolError, RequestTimeout
from rewind.client.waiting import wait_readable
from rewind.protocol import v2

log = logging.getLogger("rewind.client")

FramesFor = Callable[[int], list[bytes]]
"""Builds a request's frames for a given request id."""


class ConnectionReset(Exception):
    """The socket a request was waiting on was replaced; the request must be sent again."""


class ReplyRouter:
    """Request ids and per-request reply queues, without any I/O.

    Ids are never reused for the life of the router, so a late reply to a
    request that was abandoned (cancelled, timed out) can never be taken for
    the reply to a newer one: it finds no queue and is dropped.
    """

    def __init__(self) -> None:
        self._next_id = 1
        self._pending: dict[int, deque[list[bytes]]] = {}

    def register(self) -> int:
        """A fresh request id, with an empty queue for its replies."""
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = deque()
        return request_id

    def discard(self, request_id: int) -> None:
        """Stop collecting replies for ``request_id``; later ones are dropped."""
        self._pending.pop(request_id, None)

    def is_pending(self, request_id: int) -> bool:
        """Whether replies for ``request_id`` are still collected."""
        return request_id in self._pending

    def take(self, request_id: int) -> list[bytes] | None:
        """The oldest reply body filed for ``request_id``, if any.

        Raises :class:`ConnectionReset` if the id is no longer pending.
        """
        queue = self._pending.get(request_id)
        if queue is None:
            raise ConnectionReset(request_id)
        return queue.popleft() if queue else None

    def route(self, message: Sequence[bytes]) -> int | None:
        """File a message received from the socket; return the request id it answers.

        ``None`` when it answers nobody who is waiting (the message is dropped).
        """
        # The DEALER receives the server's empty delimiter in front of the reply.
        if not message or message[0] != b"":
            log.warning("dropping a reply without the empty delimiter frame")
            return None
        body = list(message[1:])
        request_id = v2.peek_request_id(body)
        queue = self._pending.get(request_id)
        if queue is None:
            if request_id == 0:
                # The server could not read the id of something we sent.
                log.warning("server reply to an unreadable request: %r", body[:4])
            return None
        queue.append(body)
        return request_id

    def reset(self) -> list[int]:
        """Forget every pending request (their socket is gone); return their ids."""
        dropped = list(self._pending)
        self._pending.clear()
        return dropped


def decode(body: Sequence[bytes]) -> v2.Reply:
    """Decode a reply body, turning codec errors into the client's :class:`ProtocolError`."""
    try:
        return v2.decode_reply(body)
    except v2.ProtocolError as exc:
        raise ProtocolError(str(exc)) from None


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): 0.1, 0.2, 0.4 ... at most 1."""
    return float(min(0.1 * 2**attempt, 1.0))


def timeout_message(endpoints: Endpoints | str, attempts: int, timeout: float | None) -> str:
    """The text of a :class:`RequestTimeout` after ``attempts`` unanswered tries."""
    if isinstance(endpoints, str):
        where = endpoints
    elif endpoints.several:
        where = "any of " + ", ".join(endpoints.all)
    else:
        where = endpoints.current
    if attempts > 1:
        return f"no reply from {where} to {attempts} attempts of {timeout} s each"
    return f"no reply from {where} within {timeout} s"


def as_endpoints(endpoints: EndpointList | Endpoints) -> Endpoints:
    """``endpoints`` as an :class:`Endpoints` (shared as it is, if it is one already)."""
    return endpoints if isinstance(endpoints, Endpoints) else Endpoints(endpoints)


def unavailable(reply: v2.Reply) -> bool:
    """Whether ``reply`` says the server cannot serve now: ask another one."""
    return isinstance(reply, v2.ErrorReply) and reply.code == v2.ErrorCode.UNAVAILABLE


class Connection:
    """A DEALER connection to a server's request socket, for the synchronous client.

    ``endpoints`` may name several servers on one store; requests go to the
    current one, and a retry to the next (see :meth:`fail_over`).
    Not thread-safe, like the ZeroMQ socket under it: use one per thread.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
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
        """CURVE keys for this connection and every socket opened beside it (feeds)."""
        self._context = context
        self._router = ReplyRouter()
        self._socket: zmq.Socket[bytes] | None = None
        self._socket_endpoint = ""

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to now."""
        return self.endpoints.current

    # Sending ----------------------------------------------------------------------

    def open(self, frames_for: FramesFor) -> int:
        """Send a request under a fresh id and start collecting its replies."""
        request_id = self._router.register()
        frames = frames_for(request_id)
        self._send(frames)
        return request_id

    def notify(self, frames: list[bytes]) -> None:
        """Send a request that has no reply (CREDIT, CANCEL); best effort."""
        if self._socket is None:
            return
        try:
            self._socket.send_multipart([b"", *frames], zmq.NOBLOCK)
        except zmq.Again:
            # The read it concerns will time out and start over.
            log.debug("could not send %r: socket queue full", frames[1])

    def _send(self, frames: list[bytes]) -> None:
        try:
            self._sock().send_multipart([b"", *frames], zmq.NOBLOCK)
        except zmq.Again:
            # The connection's outgoing queue is full: the server is not taking
            # anything. The waiter times out and retries on a fresh socket.
            log.debug("could not send %r: socket queue full", frames[1])

    # Receiving --------------------------------------------------------------------

    def wait(self, request_id: int, timeout: float | None) -> list[bytes] | None:
        """The next reply body for ``request_id``; ``None`` after ``timeout`` seconds.

        Raises :class:`ConnectionReset` if the request was dropped by a reset.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            body = self._router.take(request_id)
            if body is not None:
                return body
            sock = self._socket
            if sock is None:
                raise ConnectionReset(request_id)
            if deadline is None:
                wait_ms = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                wait_ms = max(1, int(remaining * 1000))
            if wait_readable(sock, wait_ms):
                # Drain what is there: one poll, many messages.
                while True:
                    try:
                        message = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._router.route(message)

    def discard(self, request_id: int) -> None:
        """Stop collecting replies for ``request_id``."""
        self._router.discard(request_id)

    # Whole requests ---------------------------------------------------------------

    def call(self, frames_for: FramesFor) -> v2.Reply:
        """Send a request with one reply and return the reply, retrying on silence.

        Each attempt waits ``timeout`` seconds; a retry goes on a fresh
        socket to the next endpoint (:meth:`fail_over`), with a fresh request
        id and the same content. A server that answers ``UNAVAILABLE`` (it is
        stopping, or cannot write) is left the same way. Raises
        :class:`RequestTimeout` when every attempt went unanswered.
        """
        attempts = 1 + max(0, self.retries)
        reply: v2.Reply | None = None
        for attempt in range(attempts):
            request_id = self.open(frames_for)
            sent_to = self.endpoint
            try:
                body = self.wait(request_id, self.timeout)
            except ConnectionReset:
                body = None
            finally:
                self.discard(request_id)
            if body is not None:
                reply = decode(body)
                if not unavailable(reply):
                    return reply
            # Whatever happens next, the next request goes to the next server.
            self.fail_over("UNAVAILABLE" if body is not None else "no reply", sent_to)
            if attempt + 1 < attempts:
                time.sleep(backoff(attempt))
        if reply is not None:
            return reply  # the last UNAVAILABLE: let the caller raise it
        raise RequestTimeout(timeout_message(self.endpoints, attempts, self.timeout))

    # Lifecycle --------------------------------------------------------------------

    def _sock(self) -> zmq.Socket[bytes]:
        if self._socket is not None and self._socket_endpoint != self.endpoint:
            # Another part of the client failed over: follow it.
            self.reset()
        if self._socket is None:
            sock: zmq.Socket[bytes] = self._context.socket(zmq.DEALER)
            prepare(sock, self.curve)
            self._socket_endpoint = self.endpoint
            sock.connect(self._socket_endpoint)
            self._socket = sock
        return self._socket

    def fail_over(self, reason: str, failed: str) -> None:
        """Drop the socket and make the endpoint after ``failed`` current; log which.

        Nothing happens if the client has moved on from ``failed`` already
        (another request noticed first).
        """
        if self.endpoint == failed:
            self.reset()
            self.endpoints.fail_over(reason)

    def reset(self) -> None:
        """Replace the socket; requests waiting on the old one get :class:`ConnectionReset`."""
        self._router.reset()
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def close(self) -> None:
        """Close the socket. The connection opens a new one when used again."""
        self.reset()
