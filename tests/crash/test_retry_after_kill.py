"""An append committed just before a SIGKILL, its reply lost, is retried into the
restarted server and answered with its original positions, stored once.

The relay (:mod:`tests.crash.relay`) loses the reply for certain, so the
case is proven every run rather than hit by chance: the first attempt is
seen committed (in the store, and in the lost reply), the server is killed
before the client hears anything, and the client's own retry, after the
restart, gets the answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq.asyncio

from rewind.aio import AsyncClient
from rewind.client import AppendResult, Client, EventData
from rewind.protocol import v2
from tests.crash.harness import CrashServer
from tests.crash.relay import LossyRelay

Append = Callable[[str, list[EventData]], AppendResult]
"""Appends through a client with a short timeout and retries, via the relay."""

TIMEOUT = 0.5
RETRIES = 20


def sync_append(endpoint: str) -> Append:
    def append(stream: str, events: list[EventData]) -> AppendResult:
        with Client(endpoint, timeout=TIMEOUT, retries=RETRIES) as client:
            return client.append(stream, events)

    return append


def async_append(endpoint: str) -> Append:
    async def go(stream: str, events: list[EventData]) -> AppendResult:
        context = zmq.asyncio.Context()
        try:
            async with AsyncClient(
                endpoint, timeout=TIMEOUT, retries=RETRIES, context=context
            ) as client:
                return await client.append(stream, events)
        finally:
            context.destroy(linger=0)

    def append(stream: str, events: list[EventData]) -> AppendResult:
        return asyncio.run(go(stream, events))

    return append


CLIENTS: dict[str, Callable[[str], Append]] = {"Client": sync_append, "AsyncClient": async_append}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CrashServer]:
    process = CrashServer(f"sqlite:{tmp_path / 'events.db'}")
    with process:
        yield process


@pytest.fixture
def relay(server: CrashServer) -> Iterator[LossyRelay]:
    relay = LossyRelay(server.query_endpoint).started()
    yield relay
    relay.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
@pytest.mark.parametrize("own_ids", [False, True], ids=["client-ids", "own-ids"])
def test_a_reply_lost_in_a_kill_is_retried_after_the_restart(
    server: CrashServer, relay: LossyRelay, kind: str, own_ids: bool
) -> None:
    direct = Client(server.query_endpoint, timeout=5.0, retries=3)
    # Something stored already, so the append's positions are not trivially 1.
    direct.append("before", [b"one", b"two"])
    events = [EventData(b"first", type="t"), EventData(b"second", metadata=b"m")]
    if own_ids:
        events = [
            EventData(e.data, type=e.type, metadata=e.metadata, id=uuid.uuid4()) for e in events
        ]
    append = CLIENTS[kind](relay.endpoint)
    outcome: list[AppendResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(append("retried", events))
        except BaseException as exc:
            outcome.append(exc)

    relay.losing.set()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_for(lambda: len(relay.lost) >= 1)
    # The first attempt committed: the store holds it, and the lost reply says where.
    lost = v2.decode_reply(relay.lost[0][relay.lost[0].index(b"") + 1 :])
    assert isinstance(lost, v2.Appended)
    stored = list(direct.read_stream("retried"))
    assert [event.data for event in stored] == [b"first", b"second"]
    assert (lost.first_position, lost.last_position) == (3, 4)
    assert not outcome, "the client must not have an answer before the kill"

    assert relay.passed == 0
    server.crash_restart()
    relay.losing.clear()
    thread.join(30)

    assert outcome, "the append never returned"
    result = outcome[0]
    assert isinstance(result, AppendResult), result
    # Answered by the restarted server (replies pass only from now on), with
    # the positions of the first commit.
    assert relay.passed >= 1
    assert (result.first_position, result.last_position, result.last_version) == (3, 4, 1)
    assert result.event_ids == lost.event_ids == tuple(event.event_id for event in stored)
    assert result.recorded_at_us == lost.recorded_at_us
    # Stored once: nothing after it, the stream unchanged.
    assert list(direct.read_all(from_position=3)) == stored
    assert list(direct.read_stream("retried")) == stored
    direct.close()
