"""Several servers on one store: every server's feeds carry the one global log, in order.

Two ``rewind serve`` processes share one SQLite file, or three share one
PostgreSQL schema. Writers append through all of them at once; a subscriber
on each server's seed feed and v2 feed must see every event exactly once, in
position order, equal to the final read of the global log, whichever server
accepted the event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import zmq

from rewind.client import Client
from rewind.protocol import seed, v2
from tests.postgres_support import fresh_schema, store_url
from tests.support import ServerProcess

Context = zmq.Context[zmq.Socket[bytes]]

WRITERS_PER_SERVER = 2
APPENDS_PER_WRITER = 150


def _subscribe(context: Context, endpoint: str) -> zmq.Socket[bytes]:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)  # keep everything: this test counts, it does not drop
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    return sub


def _drain(sub: zmq.Socket[bytes], quiet_ms: int = 1500) -> list[list[bytes]]:
    messages = []
    while sub.poll(quiet_ms):
        messages.append(sub.recv_multipart())
    return messages


def _write(server: ServerProcess, writer: int, errors: list[BaseException]) -> None:
    try:
        with Client(server.query_endpoint, timeout=10) as client:
            for index in range(APPENDS_PER_WRITER):
                events = [b"%s/%d/%d" % (server.query_endpoint.encode(), writer, index)]
                if index % 10 == 0:
                    events.append(events[0] + b"+")  # some two-event appends
                client.append(f"writer-{writer}-{index % 3}", events)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


@contextmanager
def _shared_store(backend: str, directory: Path) -> Iterator[tuple[str, int]]:
    """A store URL several servers can share, and how many servers to start on it."""
    if backend == "sqlite":
        yield f"sqlite:{directory / 'shared.db'}", 2
    else:
        with fresh_schema("shared") as schema:
            yield store_url(schema), 3


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_each_servers_feeds_carry_every_event_once_in_global_order(
    backend: str, tmp_path: Path, zmq_context: Context
) -> None:
    with _shared_store(backend, tmp_path) as (url, count), ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess(url)) for _ in range(count)]
        first = servers[0]
        seed_subs = [_subscribe(zmq_context, s.streaming_endpoint) for s in servers]
        v2_subs = [_subscribe(zmq_context, s.v2_streaming_endpoint) for s in servers]
        time.sleep(0.5)  # let the subscriptions reach the publishers

        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_write, args=(server, n * 10 + w, errors))
            for n, server in enumerate(servers)
            for w in range(WRITERS_PER_SERVER)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors

        with Client(first.query_endpoint) as client:
            log = list(client.read_all())
        expected_count = len(servers) * WRITERS_PER_SERVER * (APPENDS_PER_WRITER + 15)
        assert [e.position for e in log] == list(range(1, expected_count + 1))

        for sub in v2_subs:
            received = [v2.decode_feed_message(frames) for frames in _drain(sub)]
            assert received == log
        for sub in seed_subs:
            messages = [seed.decode_stream_message(frames) for frames in _drain(sub)]
            assert [data for _, _, data in messages] == [e.data for e in log]
            ids = [event_id for event_id, _, _ in messages]
            assert [previous for _, previous, _ in messages] == [b"", *ids[:-1]]
