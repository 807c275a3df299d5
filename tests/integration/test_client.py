"""The ``rewind.client.Client`` interface against a real server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from rewind.client import (
    Client,
    ClientError,
    Event,
    QueryException,
    RequestTimeout,
    ServerError,
)
from tests.integration.helpers import Context, Subscriber, numbered, open_req, query_all
from tests.support import ServerProcess

FLOOD = 3000
"""Events published at a follower that is not reading: more than its queues hold."""


def _client(server: ServerProcess, timeout: float = 5.0) -> Client:
    return Client(server.query_endpoint, server.streaming_endpoint, timeout=timeout)


def _close(follower: Iterator[Event]) -> None:
    """Close a follow() iterator now, releasing its SUB socket."""
    close = getattr(follower, "close", None)
    if close is not None:
        close()


def _unused_endpoint() -> str:
    """A loopback TCP endpoint nobody listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


class LivePublisher(threading.Thread):
    """Publishes ``live-N`` events until :attr:`seen` is set, then three ``last-N`` events.

    This keeps the stream busy until a follower has surely subscribed, so the
    followers' results do not depend on how quickly a subscription goes live.
    """

    def __init__(self, server: ServerProcess, interval: float = 0.01, prefix: str = "") -> None:
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.prefix = prefix
        self.seen = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _client(self.server) as client:
                for index in range(1000):
                    if self.seen.is_set():
                        break
                    client.publish(f"{self.prefix}live-{index}".encode())
                    time.sleep(self.interval)
                for index in range(3):
                    client.publish(f"{self.prefix}last-{index}".encode())
        except BaseException as exc:
            self.error = exc


def _follow_while_publishing(follower: Iterator[Event], live: LivePublisher) -> list[Event]:
    """Collect followed events while ``live`` runs, up to its final event."""
    got: list[Event] = []
    live.start()
    try:
        for event in follower:
            got.append(event)
            if event.data.startswith(f"{live.prefix}live-".encode()):
                live.seen.set()
            if event.data == f"{live.prefix}last-2".encode():
                break
    finally:
        live.seen.set()
        live.join(10)
    assert live.error is None, live.error
    assert got and got[-1].data == f"{live.prefix}last-2".encode(), "follow ended early"
    return got


def test_context_manager_publish_and_query(server: ServerProcess) -> None:
    """publish stores bytes; query yields Event(id, data) in order, honouring both bounds."""
    with _client(server) as client:
        data = [b"alpha", b"", b"\xff\x00", *numbered("more", 5)]
        for item in data:
            client.publish(item)
        events = list(client.query())
        assert [event.data for event in events] == data
        assert all(isinstance(event, Event) and isinstance(event.id, str) for event in events)
        assert len(events[0].id) == 36 and str(uuid.UUID(events[0].id)) == events[0].id
        ids = [event.id for event in events]
        assert list(client.query(from_id=ids[1])) == events[2:]
        assert list(client.query(to_id=ids[3])) == events[:4]
        assert list(client.query(ids[1], ids[5])) == events[2:6]
        assert list(client.query(ids[4], ids[4])) == []


def test_query_pages_lazily_through_many_events(server: ServerProcess) -> None:
    """query returns all 250 events across capped pages, matching the raw protocol."""
    with _client(server) as client:
        data = numbered("paged", 250)
        for item in data:
            client.publish(item)
        events = list(client.query())
    assert [event.data for event in events] == data
    assert len({event.id for event in events}) == 250


def test_server_error_for_unknown_ids(server: ServerProcess) -> None:
    """An unknown or malformed id raises ServerError (also a QueryException); the client
    keeps working afterwards."""
    with _client(server) as client:
        client.publish(b"stored")
        for bounds in [
            {"from_id": str(uuid.uuid1())},
            {"to_id": str(uuid.uuid1())},
            {"from_id": "garbage"},
        ]:
            with pytest.raises(ServerError) as caught:
                list(client.query(**bounds))
            assert isinstance(caught.value, QueryException)
            assert isinstance(caught.value, ClientError)
            assert caught.value.reason
        assert [event.data for event in client.query()] == [b"stored"]


def test_client_can_be_used_after_close(server: ServerProcess) -> None:
    """close releases the sockets, but the client works again when used."""
    client = _client(server)
    client.publish(b"one")
    client.close()
    client.publish(b"two")
    assert [event.data for event in client.query()] == [b"one", b"two"]
    client.close()


def test_publish_rejects_non_bytes(server: ServerProcess) -> None:
    """Publishing text instead of bytes is refused before anything is sent."""
    with _client(server) as client:
        with pytest.raises(TypeError):
            client.publish("text")  # type: ignore[arg-type]
        assert list(client.query()) == []


def test_request_timeout_without_a_server() -> None:
    """With nothing listening, publish and query raise RequestTimeout promptly."""
    endpoint = _unused_endpoint()
    with Client(endpoint, endpoint, timeout=0.2, retries=1) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.publish(b"lost")
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as caught:
            list(client.query())
        assert time.monotonic() - started < 3.0
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, ClientError)


def test_follow_delivers_history_then_live(server: ServerProcess) -> None:
    """follow(after=X) yields the history after X, then live events: no gap, no repeat."""
    with _client(server) as client:
        history = numbered("history", 10)
        for item in history:
            client.publish(item)
        after = list(client.query())[1].id
        follower = client.follow(after, idle_timeout=5)
        got = [next(follower) for _ in range(8)]
        assert [event.data for event in got] == history[2:]
        try:
            got += _follow_while_publishing(follower, LivePublisher(server))
        finally:
            _close(follower)
        assert got == list(client.query(from_id=after))


def test_follow_from_the_beginning(server: ServerProcess) -> None:
    """follow() without ``after`` starts with the very first stored event."""
    with _client(server) as client:
        for item in numbered("start", 3):
            client.publish(item)
        got = list(client.follow(idle_timeout=0.3))
        assert got == list(client.query())


def test_follow_live_only_skips_history(server: ServerProcess) -> None:
    """follow(live_only=True) yields only new events, contiguously, from where it joined."""
    with _client(server) as client:
        for item in numbered("old", 5):
            client.publish(item)
        follower = client.follow(live_only=True, idle_timeout=5)
        try:
            got = _follow_while_publishing(follower, LivePublisher(server))
        finally:
            _close(follower)
        stored = list(client.query())
        assert got, "nothing was followed"
        assert not any(event.data.startswith(b"old-") for event in got)
        start = stored.index(got[0])
        assert got == stored[start:]


def test_follow_idle_timeout_ends_iteration(server: ServerProcess) -> None:
    """With nothing published, follow(idle_timeout=t) ends after about t seconds."""
    with _client(server) as client:
        started = time.monotonic()
        assert list(client.follow(live_only=True, idle_timeout=0.3)) == []
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3.0


def test_follow_survives_a_slow_consumer(zmq_context: Context) -> None:
    """A follower that falls behind the stream's queue still gets every event once, in
    order: dropped messages are fetched through QUERY."""
    with ServerProcess("memory:") as server, _client(server) as client:
        client.publish(b"start")
        follower = client.follow(idle_timeout=5)
        assert next(follower).data == b"start"
        # A second subscriber with default settings that does not read either shows
        # that the flood really overflows the queues.
        witness = Subscriber(zmq_context, server.streaming_endpoint)
        req = open_req(zmq_context, server.query_endpoint)
        witness.warm_up(req, strict=False)
        # Flood while the follower is not reading, then keep the stream moving so the
        # follower notices anything dropped at the end.
        with Client(server.query_endpoint, timeout=5) as writer:
            for index in range(FLOOD):
                writer.publish(b"%06d" % index + b"x" * 16_000)
        witnessed = 0
        while not witness.quiet_for(300) and witnessed <= FLOOD:
            witness.receive()
            witnessed += 1
        assert witnessed < FLOOD, "the flood did not overflow the stream's queues"
        try:
            got = _follow_while_publishing(follower, LivePublisher(server, interval=0.05))
        finally:
            _close(follower)
        expected = query_all(req)[1:]
        assert [(event.id.encode(), event.data) for event in got] == expected
        assert len([event for event in got if len(event.data) > 16_000]) == FLOOD


def test_follow_continues_across_server_restart(sqlite_server: ServerProcess) -> None:
    """A follower keeps going when the server restarts on the same endpoints: events from
    both lifetimes arrive once each, in order."""
    with _client(sqlite_server) as client:
        for item in numbered("history", 3):
            client.publish(item)
        follower = client.follow(idle_timeout=5)
        try:
            got = [next(follower) for _ in range(3)]
            got += _follow_while_publishing(follower, LivePublisher(sqlite_server, prefix="a-"))
            sqlite_server.restart()
            got += _follow_while_publishing(follower, LivePublisher(sqlite_server, prefix="b-"))
        finally:
            _close(follower)
        assert got == list(client.query())


def test_follow_does_not_silently_drop_events_after_log_reset() -> None:
    """If the server no longer holds the follower's last event, follow raises or delivers
    the new events; it does not swallow all of them without a word."""
    with ServerProcess("memory:") as server, _client(server) as client:
        client.publish(b"old")
        follower = client.follow(idle_timeout=1.0)
        try:
            assert next(follower).data == b"old"
            server.restart()

            def publish_new() -> None:
                with _client(server) as writer:
                    for index in range(30):
                        writer.publish(f"new-{index}".encode())
                        time.sleep(0.02)

            writer = threading.Thread(target=publish_new, daemon=True)
            writer.start()
            try:
                got = [event.data for event in follower]
            except ClientError:
                return
            finally:
                writer.join(10)
        finally:
            _close(follower)
        assert got, "follow went silent after the server's log was reset"
