"""Catch-up subscriptions (``Client.subscribe``) against real server processes.

Each test checks the one promise: the subscriber sees exactly the store's
events for its selection, in the store's order, none missing and none twice,
whether they come from the history, the live feed, or a refill after the feed
dropped messages.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from rewind.client import Client, RecordedEvent, Subscription
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def memory_server() -> Iterator[ServerProcess]:
    with ServerProcess("memory:") as process:
        yield process


def _client(server: ServerProcess, **options: float) -> Client:
    return Client(
        server.query_endpoint,
        v2_streaming_endpoint=server.v2_streaming_endpoint,
        **options,  # type: ignore[arg-type]
    )


def _name(prefix: str = "sub") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _keys(events: list[RecordedEvent]) -> list[tuple[int, uuid.UUID]]:
    return [(event.position, event.event_id) for event in events]


class Collector(threading.Thread):
    """Iterates over a subscription in the background, collecting what it delivers."""

    def __init__(self, subscription: Subscription, delay: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.subscription = subscription
        self.delay = delay
        self.events: list[RecordedEvent] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for event in self.subscription:
                self.events.append(event)
                if self.delay:
                    time.sleep(self.delay)
        except BaseException as exc:
            self.error = exc

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.01)
        assert self.error is None, self.error
        assert len(self.events) >= count, f"{len(self.events)} of {count} events arrived"

    def finish(self, timeout: float = 20.0) -> list[RecordedEvent]:
        self.join(timeout)
        assert not self.is_alive(), "the subscription did not end on its idle timeout"
        assert self.error is None, self.error
        return self.events


def test_history_then_live_without_gap_or_duplicate(memory_server: ServerProcess) -> None:
    """Events stored before, while and after the subscription starts all arrive once."""
    prefix = _name("hist")
    with _client(memory_server) as writer, _client(memory_server) as reader:
        for index in range(40):
            writer.append(f"{prefix}-{index % 4}", [b"history-%d" % index])
        start = writer.server_info().head_position - 39
        collector = Collector(reader.subscribe(from_position=start, idle_timeout=1.0))
        collector.start()
        for index in range(40):
            writer.append(f"{prefix}-{index % 4}", [b"racing-%d" % index])
        collector.wait_for(80)
        for index in range(40):
            writer.append(f"{prefix}-{index % 4}", [b"live-%d" % index])
            if index % 10 == 0:
                time.sleep(0.01)
        events = collector.finish()
        stored = list(writer.read_all(from_position=start))
    assert _keys(events) == _keys(stored)
    assert len(events) >= 120
    assert [e.data for e in events[:40]] == [b"history-%d" % i for i in range(40)]


def test_subscription_from_a_checkpoint(memory_server: ServerProcess) -> None:
    """``from_position`` is inclusive: a consumer resumes with its last position + 1."""
    stream = _name()
    with _client(memory_server) as client:
        result = client.append(stream, [b"%d" % i for i in range(10)])
        start = result.first_position + 6
        events = list(client.subscribe(from_position=start, idle_timeout=0.8))
    assert [e.position for e in events] == list(range(start, result.last_position + 1))


def test_stream_subscription(memory_server: ServerProcess) -> None:
    """One stream, by version: not the streams whose names merely start with its name."""
    stream = _name("one")
    with _client(memory_server) as writer, _client(memory_server) as reader:
        writer.append(stream, [b"v0", b"v1", b"v2"])
        writer.append(stream + "0", [b"longer name"])
        collector = Collector(reader.subscribe(stream=stream, from_version=1, idle_timeout=1.0))
        collector.start()
        collector.wait_for(2)
        for index in range(3, 30):
            writer.append(stream, [b"v%d" % index])
            writer.append(stream + "0", [b"noise"])
        events = collector.finish()
    assert [e.version for e in events] == list(range(1, 30))
    assert {e.stream for e in events} == {stream}
    assert [e.data for e in events] == [b"v%d" % v for v in range(1, 30)]


def test_stream_subscription_before_the_stream_exists(memory_server: ServerProcess) -> None:
    stream = _name("later")
    with _client(memory_server) as writer, _client(memory_server) as reader:
        collector = Collector(reader.subscribe(stream=stream, idle_timeout=1.0))
        collector.start()
        time.sleep(0.2)
        writer.append(stream, [b"first", b"second"])
        writer.append(stream, [b"third"])
        events = collector.finish()
    assert [e.data for e in events] == [b"first", b"second", b"third"]


def test_category_subscription(memory_server: ServerProcess) -> None:
    """A prefix selects every stream whose name starts with it, in global order."""
    prefix = _name("cat")
    with _client(memory_server) as writer, _client(memory_server) as reader:
        writer.append(f"{prefix}-a", [b"a0"])
        writer.append(_name("elsewhere"), [b"other"])
        collector = Collector(reader.subscribe(stream_prefix=prefix, idle_timeout=1.0))
        collector.start()
        for index in range(30):
            writer.append(f"{prefix}-{'ab'[index % 2]}", [b"%d" % index])
            writer.append(_name("elsewhere"), [b"other"])
        events = collector.finish()
        stored = list(writer.read_all(stream_prefix=prefix))
    assert _keys(events) == _keys(stored)
    assert len(events) == 31


def test_idle_timeout_ends_the_iteration(memory_server: ServerProcess) -> None:
    with _client(memory_server) as client:
        started = time.monotonic()
        head = client.server_info().head_position
        assert list(client.subscribe(from_position=head + 1, idle_timeout=0.3)) == []
        assert time.monotonic() - started < 5


def test_closing_a_subscription(memory_server: ServerProcess) -> None:
    stream = _name()
    with _client(memory_server) as client:
        client.append(stream, [b"%d" % i for i in range(100)])
        with client.subscribe(stream=stream) as subscription:
            assert next(subscription).version == 0
            assert next(subscription).version == 1
        with pytest.raises(StopIteration):
            next(subscription)
        client.ping()


def test_slow_subscriber_misses_nothing(tmp_path: Path) -> None:
    """A subscriber with tiny queues sleeps while 75,000 events are appended, then
    25,000 more arrive while it catches up: the feed drops many of them, and the
    subscription refills every gap from the store."""
    payload = b"p" * 100
    with (
        ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as server,
        _client(server) as writer,
        _client(server) as reader,
    ):
        writer.append("burst-start", [b"start"])
        # The writer may pause (a slow disk flush), so the subscription ends
        # once every event has come, not when it has been idle a short while.
        subscription = reader.subscribe(
            idle_timeout=10.0, feed_options={zmq.RCVHWM: 20, zmq.RCVBUF: 4096}
        )
        events = [next(subscription)]
        assert events[0].data == b"start"
        resumed = threading.Event()
        first_burst_done = threading.Event()

        def burst() -> None:
            for chunk in range(300):
                writer.append(f"burst-{chunk % 7}", [payload] * 250)
            first_burst_done.set()
            resumed.wait(10)
            for chunk in range(100):
                writer.append(f"burst-{chunk % 5}", [payload] * 250)

        thread = threading.Thread(target=burst, daemon=True)
        thread.start()
        # Far behind: 75,000 events overflow every queue between feed and reader.
        assert first_burst_done.wait(60)
        for event in subscription:
            events.append(event)
            if len(events) == 100:
                resumed.set()
            if len(events) == 100_001:
                break
        thread.join(60)
        assert not thread.is_alive()
        stored = list(reader.read_all())
    assert len(stored) == 100_001
    assert _keys(events) == _keys(stored)
    assert subscription.gaps >= 1


def test_slow_stream_subscriber_misses_nothing(memory_server: ServerProcess) -> None:
    """The same for one stream, whose gaps show as jumps in versions."""
    stream = _name("slowstream")
    with _client(memory_server) as writer, _client(memory_server) as reader:
        writer.append(stream, [b"start"])
        subscription = reader.subscribe(
            stream=stream, idle_timeout=1.0, feed_options={zmq.RCVHWM: 10, zmq.RCVBUF: 4096}
        )
        assert next(subscription).version == 0
        for _ in range(20):
            writer.append(stream, [b"x" * 1024] * 250)
            writer.append(stream + "-noise", [b"n" * 1024] * 100)
        time.sleep(0.3)
        rest = list(subscription)
    assert [e.version for e in rest] == list(range(1, 5001))
    assert subscription.gaps >= 1
