"""Module functions with the names, arguments and behaviour of ``rewind-client`` 0.3.

Code written against that package keeps working by importing from
``rewind.client`` instead. Sockets are plain pyzmq sockets the caller owns: a
REQ socket connected to the query endpoint, and a SUB socket (subscribed to
everything) connected to the streaming endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import zmq

from rewind.protocol import seed

log = logging.getLogger("rewind.client")


class QueryException(Exception):
    """Raised when the Rewind server answers a request with an error.

    Usually it means a query named an event id the server does not have.
    """


def _request(socket: zmq.Socket[Any], frames: list[bytes]) -> list[bytes]:
    socket.send_multipart(frames)
    reply: list[bytes] = socket.recv_multipart()
    return reply


def publish_event(socket: zmq.Socket[Any], event: bytes) -> None:
    """Publish ``event`` (bytes) through a REQ socket and wait until it is stored.

    Raises :class:`QueryException` if the server answers with an error.
    """
    assert isinstance(event, bytes), type(event)
    reply = _request(socket, seed.encode_publish(event))
    try:
        seed.check_published(reply)
    except seed.SeedReplyError as exc:
        raise QueryException(f"Could not publish: {exc.frame!r}") from None


def query_events(
    socket: zmq.Socket[Any], from_: bytes | None = None, to: bytes | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(event id, event data)`` for every event after ``from_`` up to ``to``.

    ``from_`` is exclusive, ``to`` inclusive; ``None`` leaves that end open.
    Pages through the server's capped replies until it says ``END``. Raises
    :class:`QueryException` if the server answers with an error, usually
    because ``from_`` or ``to`` is not a stored event id.
    """
    assert from_ is None or isinstance(from_, bytes)
    assert to is None or isinstance(to, bytes)
    done = False
    while not done:
        reply = _request(socket, seed.encode_query(from_, to))
        try:
            events, done = seed.decode_query_reply(reply)
        except seed.SeedReplyError as exc:
            raise QueryException(f"Could not query: {exc.frame!r}") from None
        for event_id, data in events:
            from_ = event_id
            yield event_id, data
        if not events and not done:
            raise QueryException("Could not query: server sent an empty capped page")


def yield_events_after(
    streamsock: zmq.Socket[Any], reqsock: zmq.Socket[Any], lasteventid: bytes | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """Receive one streamed event and yield it, preceded by any events missed.

    ``lasteventid`` is the id of the last event the caller has seen. If the
    streamed event's previous id differs from it, messages were dropped (for
    instance at the high-water mark), so the missing events are queried through
    ``reqsock`` and yielded first. Call it again for the next event.
    """
    assert lasteventid is None or isinstance(lasteventid, bytes)
    event_id, previous_id, data = seed.decode_stream_message(streamsock.recv_multipart())
    if previous_id != lasteventid and previous_id != b"":
        log.info("streamed events were missed; querying to catch up")
        # The query's upper end is inclusive, so it ends with previous_id.
        yield from query_events(reqsock, lasteventid, previous_id)
    yield event_id, data
