"""Servers on one PostgreSQL schema hear of each other's commits at once.

Each append transaction sends one NOTIFY; every server listens on a
connection of its own and catches its feeds up when one arrives. These tests
set the polling fallback to 10 s, far beyond their own length, so only the
notifications can deliver events promptly; and they end the listening
session, or refuse it a connection, to show what happens without it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest
import zmq

from rewind.client import Client
from rewind.model import RecordedEvent
from rewind.protocol import v2
from tests import postgres_support
from tests.postgres_support import fresh_schema, sql, store_url
from tests.support import ServerProcess

Context = zmq.Context[zmq.Socket[bytes]]

SLOW_POLL = ["--feed-poll-interval-ms", "10000"]
"""A fallback poll no test here lasts long enough to see twice."""

PROMPT_S = 0.3
"""Median time from sending an append to one server to its event on another's feed."""


def _subscribe(context: Context, server: ServerProcess) -> zmq.Socket[bytes]:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(server.v2_streaming_endpoint)
    time.sleep(0.3)  # let the subscription reach the publisher
    return sub


def _receive(sub: zmq.Socket[bytes], timeout_s: float) -> RecordedEvent | None:
    if not sub.poll(int(timeout_s * 1000)):
        return None
    return v2.decode_feed_message(sub.recv_multipart())


def _append_and_time(
    client: Client, sub: zmq.Socket[bytes], data: bytes, timeout_s: float = 5.0
) -> tuple[float, RecordedEvent | None]:
    """Append one event; how long until the other server's feed carried it, and what it carried."""
    started = time.monotonic()
    client.append("notified", [data])
    event = _receive(sub, timeout_s)
    return time.monotonic() - started, event


def _listener_sessions(application_name: str) -> list[int]:
    rows = sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
        (f"{application_name} listener",),
    )
    return [int(pid) for (pid,) in rows]


def _wait_for(condition: object, timeout_s: float = 5.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema("notify") as name:
        yield name


def test_another_servers_commits_reach_the_feed_without_polling(
    schema: str, zmq_context: Context
) -> None:
    with (
        ServerProcess(store_url(schema), extra_args=SLOW_POLL) as a,
        ServerProcess(store_url(schema), extra_args=SLOW_POLL) as b,
        Client(a.query_endpoint, timeout=10) as client,
    ):
        sub = _subscribe(zmq_context, b)
        delays = []
        received = []
        for index in range(12):
            delay, event = _append_and_time(client, sub, b"event %d" % index)
            assert event is not None, f"event {index} never reached the other server's feed"
            delays.append(delay)
            received.append(event)
        assert statistics.median(delays) < PROMPT_S, delays
        assert max(delays) < 2.0, delays
        # Every event once, in order: nothing more is waiting either.
        assert _receive(sub, 0.5) is None
        assert received == list(client.read_all())
        assert [e.data for e in received] == [b"event %d" % i for i in range(12)]


def test_a_servers_own_commits_are_not_read_again(schema: str, zmq_context: Context) -> None:
    """Its own announcements name positions its feeds sent already: no duplicates, no gaps."""
    with (
        ServerProcess(store_url(schema), extra_args=SLOW_POLL) as a,
        Client(a.query_endpoint, timeout=10) as client,
    ):
        sub = _subscribe(zmq_context, a)
        for index in range(20):
            client.append("own", [b"own %d" % index])
        received = []
        while (event := _receive(sub, 0.5)) is not None:
            received.append(event)
        assert received == list(client.read_all())


def test_the_listener_reconnects_after_its_session_is_ended(
    schema: str, zmq_context: Context
) -> None:
    name_b = f"{schema}_b"
    with (
        ServerProcess(store_url(schema), extra_args=SLOW_POLL) as a,
        ServerProcess(store_url(schema, application_name=name_b), extra_args=SLOW_POLL) as b,
        Client(a.query_endpoint, timeout=10) as client,
    ):
        sub = _subscribe(zmq_context, b)
        _, first = _append_and_time(client, sub, b"before")
        assert first is not None and first.data == b"before"

        old = _listener_sessions(name_b)
        assert len(old) == 1, old
        sql("SELECT pg_terminate_backend(%s)", (old[0],))
        assert _wait_for(lambda: "lost the connection listening" in b.log), b.log
        # Committed while nothing listens: delivered when the listener is back.
        delay, during = _append_and_time(client, sub, b"during")
        assert during is not None and during.data == b"during"
        assert delay < 3.0, delay  # the reconnect, not the 10 s poll

        assert _wait_for(lambda: "listening for other servers' commits again" in b.log), b.log
        new = _listener_sessions(name_b)
        assert len(new) == 1 and new != old, (old, new)
        delays = []
        for index in range(5):
            delay, event = _append_and_time(client, sub, b"after %d" % index)
            assert event is not None and event.data == b"after %d" % index
            delays.append(delay)
        assert statistics.median(delays) < PROMPT_S, delays
        assert _receive(sub, 0.3) is None


@pytest.fixture
def two_connection_role() -> Iterator[str]:
    """A login role allowed two sessions: a store's writer and reader, but no listener."""
    with postgres_support.login_role(connection_limit=2) as name:
        yield name


def test_polling_delivers_when_the_store_cannot_listen(
    two_connection_role: str, zmq_context: Context
) -> None:
    role = two_connection_role
    poll = ["--feed-poll-interval-ms", "300"]
    with ServerProcess(store_url(role, user=role), extra_args=poll) as b:
        assert "cannot listen for other servers' commits" in b.log, b.log
        with (
            ServerProcess(store_url(role), extra_args=SLOW_POLL) as a,
            Client(a.query_endpoint, timeout=10) as client,
        ):
            sub = _subscribe(zmq_context, b)
            received = []
            for index in range(5):
                delay, event = _append_and_time(client, sub, b"polled %d" % index)
                assert event is not None and event.data == b"polled %d" % index
                assert delay < 2.0, delay
                received.append(event)
            assert received == list(client.read_all())
