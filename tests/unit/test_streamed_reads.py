"""Streamed reads that the store fails, driven as the server loop drives them.

A real SQLite store, closed at the moment under test, and a real ROUTER with a
DEALER peer: the peer must be told why its read ended, in its own protocol.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from rewind.errors import StorageError
from rewind.model import AppendRequest, NewEvent
from rewind.protocol import dispatch, gorewind, v2
from rewind.protocol.v2.wire import EVENTS
from rewind.server import gorewind_handler, transport, v2_handler
from rewind.server.actions import GrantCredit, StartRead
from rewind.server.config import ServerConfig
from rewind.server.limits import Limits
from rewind.server.open_reads import OpenReads, Routing
from rewind.server.streamed_reads import StreamedReads
from rewind.storage.sqlite import SQLiteStore

CLOSED = StorageError("store is closed")
"""What a closed store raises on every read."""


class Loop:
    """The parts of the server loop that streamed reads call back into."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = SQLiteStore(tmp_path / "events.db")
        self.store.append([AppendRequest("s", tuple(NewEvent(b"%d" % n) for n in range(200)))])
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind("inproc://streamed-reads")
        self.peer = self.context.socket(zmq.DEALER)
        self.peer.setsockopt(zmq.LINGER, 0)
        self.peer.setsockopt(zmq.RCVTIMEO, 2000)
        self.peer.connect("inproc://streamed-reads")
        self.peer.send_multipart([b"", b"hello"])
        self.routing: Routing = tuple(self.router.recv_multipart()[:-1])
        self.reads = OpenReads(idle_timeout_s=60)
        self.streamed = StreamedReads(
            self.reads,
            self.store,
            self.router,
            send=lambda routing, frames: transport.send_routed(self.router, routing, frames),
            release=lambda routing: None,
            forget=lambda routing: None,
        )

    def received(self) -> list[bytes]:
        """The next message the peer got, without its empty delimiter."""
        delimiter, *frames = self.peer.recv_multipart()
        assert delimiter == b""
        return frames

    def close(self) -> None:
        self.store.close()
        self.context.destroy(linger=0)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    opened = Loop(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _v2_read(request_id: int, start: int | v2.AtTime = 0) -> StartRead:
    body = v2.encode_read_all_request(
        request_id, start=start, max_count=200, batch_size=10, credit=2
    )
    facts = v2_handler.ServerFacts("sqlite", True, Limits.from_config(ServerConfig()))
    request = dispatch.parse_request(body)
    assert isinstance(request, v2.ReadAll)
    action = v2_handler.handle(request, facts)
    assert isinstance(action, StartRead)
    return action


def _gorewind_query(from_id: uuid.UUID) -> StartRead:
    request = dispatch.parse_request(gorewind.encode_query_request("s", from_id))
    assert isinstance(request, gorewind.GorewindRequest)
    action = gorewind_handler.handle(request)
    assert isinstance(action, StartRead)
    return action


def test_a_v2_read_the_store_fails_to_open_gets_a_v2_error(loop: Loop) -> None:
    loop.store.close()  # a read from a time finds its start in the store as it opens
    opened = loop.streamed.open(loop.routing, _v2_read(7, v2.AtTime(0)))
    assert opened == v2_handler.encode_storage_failure(7, CLOSED)
    assert not loop.reads


def test_a_gorewind_query_the_store_fails_to_open_gets_a_gorewind_error(loop: Loop) -> None:
    first = loop.store.read_all(limit=1)[0]
    loop.store.close()  # a query from an id finds that id in the store as it opens
    opened = loop.streamed.open(loop.routing, _gorewind_query(first.event_id))
    assert opened == gorewind.encode_error(f"storage failure: {CLOSED}")
    assert not loop.reads


def test_a_v2_read_the_store_fails_midway_ends_with_a_v2_error(loop: Loop) -> None:
    session = loop.streamed.open(loop.routing, _v2_read(9))
    assert not isinstance(session, list)
    loop.streamed.pump()
    assert [loop.received()[1] for _ in range(2)] == [EVENTS] * 2  # its credit
    loop.store.close()
    loop.streamed.grant(loop.routing, GrantCredit(9, 2))
    loop.streamed.pump()
    assert loop.received() == v2_handler.encode_storage_failure(9, CLOSED)
    assert session.finished
    assert not loop.reads
