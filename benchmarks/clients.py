"""Synchronous REQ client loops: the work one seed-protocol client does.

The loops use raw pyzmq sockets and build their frames once, so what they
measure is the server and the transport, not a client library.
"""

from __future__ import annotations

import time
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import zmq

from rewind.model import new_event_id

REPLY_TIMEOUT_MS = 30_000
"""A server that stops answering fails the benchmark instead of hanging it."""

PUBLISHED = [b"PUBLISHED"]


def payload(size: int) -> bytes:
    """An event body of ``size`` bytes that looks like a small JSON document."""
    head = b'{"type":"benchmark","seq":1,"pad":"'
    tail = b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def event_id() -> bytes:
    """A fresh client-supplied event id, made as Rewind's clients make theirs.

    They are type 1 UUIDs, whose leading bytes follow the clock (wrapping
    round every seven minutes or so), so the store's id index grows in one
    place. Random (type 4) ids would land all over the index, and each
    commit would rewrite a page per event: about 40% fewer events/s for
    groups of 20 in ``SQLiteStore`` on this machine.
    """
    return new_event_id().bytes


def publish_frames(size: int) -> list[bytes]:
    """A seed-protocol PUBLISH request carrying a ``size``-byte event."""
    return [b"PUBLISH", payload(size)]


def req_socket(context: zmq.Context[Any], endpoint: str) -> zmq.Socket[bytes]:
    """A connected REQ socket that gives up after :data:`REPLY_TIMEOUT_MS`."""
    socket: zmq.Socket[bytes] = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVTIMEO, REPLY_TIMEOUT_MS)
    socket.connect(endpoint)
    return socket


def round_trips(
    socket: zmq.Socket[bytes], request: list[bytes], expect: list[bytes], seconds: float
) -> tuple[int, float]:
    """Send ``request`` and wait for ``expect`` back, over and over, for ``seconds``.

    Returns the number of completed round trips and the seconds they took.
    Every reply is checked, so an ``ERROR`` can never pass for a fast answer.
    """
    send = socket.send_multipart
    receive = socket.recv_multipart
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        send(request)
        reply = receive()
        if reply != expect:
            raise RuntimeError(f"unexpected reply {reply[:3]!r}")
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count, now - started


def read_pages(socket: zmq.Socket[bytes], after_id: bytes, events: int) -> tuple[int, float, bytes]:
    """Read ``events`` events with paged seed QUERYs, following each page's last id.

    ``after_id`` empty means from the very first event. Returns the number of
    events read, the seconds it took and the last id, to continue from.
    """
    send = socket.send_multipart
    receive = socket.recv_multipart
    count = 0
    last = after_id
    started = time.perf_counter()
    while count < events:
        send([b"QUERY", last, b""])
        frames = receive()
        if len(frames) == 1 and frames[0].startswith(b"ERROR"):
            raise RuntimeError(f"QUERY failed: {frames[0]!r}")
        pairs = len(frames) // 2
        if pairs == 0 or (len(frames) % 2 and count + pairs < events):
            raise RuntimeError(f"the store ran out after {count + pairs} of {events} events")
        last = frames[2 * pairs - 2]
        count += pairs
    return count, time.perf_counter() - started, last


def publish_worker(
    endpoint: str,
    sockets: int,
    payload_size: int,
    seconds: float,
    ready: Barrier,
    go: Event,
    start_at: Any,
    results: Any,
) -> None:
    """Run ``sockets`` of the concurrent publishers in this process.

    Each is a REQ socket of its own, so the server sees that many synchronous
    clients, each with one request at a time; one poll loop turns every
    reply into that socket's next request. Connects and publishes once on
    each (so connecting is not timed), waits at ``ready`` for its peers, then
    publishes from the shared ``start_at`` monotonic time for ``seconds``.
    Only replies that arrive inside that window count, so the aggregate over
    all workers is events per second of the window. Puts ``(count, error or
    "")`` on ``results``.
    """
    context: zmq.Context[Any] = zmq.Context()
    try:
        request = publish_frames(payload_size)
        clients = [req_socket(context, endpoint) for _ in range(sockets)]
        for client in clients:
            client.send_multipart(request)
        for client in clients:
            if client.recv_multipart() != PUBLISHED:
                raise RuntimeError("warm-up publish failed")
        ready.wait(timeout=120)
        if not go.wait(timeout=120):
            raise RuntimeError("never told to start")
        # CLOCK_MONOTONIC is system-wide on Linux, so every worker shares this window.
        start = float(start_at.value)
        end = start + seconds
        time.sleep(max(0.0, start - time.monotonic()))
        poller = zmq.Poller()
        for client in clients:
            poller.register(client, zmq.POLLIN)
            client.send_multipart(request)
        count = 0
        waiting = len(clients)
        while waiting:
            answered = poller.poll(REPLY_TIMEOUT_MS)
            if not answered:
                raise RuntimeError(f"no reply within {REPLY_TIMEOUT_MS / 1000:g} s")
            for client, _ in answered:
                reply = client.recv_multipart()
                if reply != PUBLISHED:
                    raise RuntimeError(f"unexpected reply {reply[:3]!r}")
                if time.monotonic() > end:
                    poller.unregister(client)
                    waiting -= 1
                    continue
                count += 1
                client.send_multipart(request)
        results.put((count, ""))
    except Exception as exc:  # Reported to the parent, which fails the row.
        results.put((0, f"{type(exc).__name__}: {exc}"))
        # Breaking the barrier frees the parent and the other workers at once.
        ready.abort()
    finally:
        context.destroy(linger=0)
