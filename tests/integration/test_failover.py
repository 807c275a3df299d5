"""Failover: clients given several servers on one store carry on when one is killed.

Two ``rewind serve`` processes share one SQLite file. The client starts on
server A; A is SIGKILLed while the client is busy, and everything must go on
through server B: appends (each acknowledged one stored exactly once), a
read in progress, and catch-up subscriptions (every event once, in order),
for the synchronous and the asyncio client and for the command line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import cast

import pytest

from rewind.aio import AsyncClient
from rewind.client import AppendResult, Client, Event, RecordedEvent
from tests.postgres_support import fresh_schema, store_url
from tests.support import ServerProcess, run_rewind

TIMEOUT = 0.5  # seconds per attempt: a dead server costs about this much
RETRIES = 3


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B on one SQLite file."""
    url = f"sqlite:{tmp_path / 'shared.db'}"
    with ExitStack() as stack:
        first = stack.enter_context(ServerProcess(url))
        second = stack.enter_context(ServerProcess(url))
        yield first, second


def _client(a: ServerProcess, b: ServerProcess) -> Client:
    return Client(
        [a.query_endpoint, b.query_endpoint],
        [a.streaming_endpoint, b.streaming_endpoint],
        v2_streaming_endpoint=[a.v2_streaming_endpoint, b.v2_streaming_endpoint],
        timeout=TIMEOUT,
        retries=RETRIES,
    )


def _global_log(server: ServerProcess) -> list[RecordedEvent]:
    with Client(server.query_endpoint, timeout=10) as client:
        return list(client.read_all())


def _check_stored_once(log: list[RecordedEvent], acked: list[AppendResult]) -> None:
    """Positions 1..n without a gap, no id twice, every acknowledged event where it was acked."""
    assert [e.position for e in log] == list(range(1, len(log) + 1))
    by_id = {e.event_id: e for e in log}
    assert len(by_id) == len(log), "an event was stored twice"
    for result in acked:
        positions = range(result.first_position, result.last_position + 1)
        for event_id, position in zip(result.event_ids, positions, strict=True):
            assert by_id[event_id].position == position


def test_appends_continue_through_b_after_a_is_killed(
    pair: tuple[ServerProcess, ServerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    _appends_survive_a_kill(*pair, caplog)


def test_appends_fail_over_between_servers_on_one_postgresql_schema(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with fresh_schema("failover") as schema, ExitStack() as stack:
        a = stack.enter_context(ServerProcess(store_url(schema)))
        b = stack.enter_context(ServerProcess(store_url(schema)))
        _appends_survive_a_kill(a, b, caplog)


def _appends_survive_a_kill(
    a: ServerProcess, b: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer appends through A then B; A is SIGKILLed under load; nothing is lost or doubled."""
    total = 200
    acked: list[AppendResult] = []
    errors: list[BaseException] = []
    halfway = threading.Event()

    def write() -> None:
        try:
            with _client(a, b) as client:
                for index in range(total):
                    acked.append(client.append(f"load-{index % 5}", [b"%d" % index]))
                    if index == total // 4:
                        halfway.set()
                assert client.current_endpoint == b.query_endpoint
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
            halfway.set()

    caplog.set_level(logging.WARNING, "rewind.client")
    writer = threading.Thread(target=write)
    writer.start()
    assert halfway.wait(20)
    a.kill()
    writer.join(30)
    assert not writer.is_alive()
    assert not errors, errors
    assert len(acked) == total

    log = _global_log(b)
    assert len(log) == total, "an acknowledged append is missing or one was stored twice"
    _check_stored_once(log, acked)
    assert f"failing over to {b.query_endpoint}" in caplog.text


def test_a_read_in_progress_on_a_finishes_through_b(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    with Client(b.query_endpoint, timeout=10) as writer:
        for start in range(0, 300, 50):
            writer.append("history", [b"%d" % n for n in range(start, start + 50)])
    with _client(a, b) as client:
        reader = client.read_all(batch_size=10)
        seen = [next(reader) for _ in range(40)]
        assert client.current_endpoint == a.query_endpoint
        a.kill()
        seen.extend(reader)
        assert client.current_endpoint == b.query_endpoint
    assert [e.position for e in seen] == list(range(1, 301))
    assert [e.data for e in seen] == [b"%d" % n for n in range(300)]


def test_a_subscription_on_a_continues_on_bs_feed(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    total = 150
    with Client(b.query_endpoint, timeout=10) as setup:
        setup.append("before", [b"early-1", b"early-2"])
    received: list[RecordedEvent] = []
    with _client(a, b) as client:
        subscription = client.subscribe(idle_timeout=8)
        received.extend(next(subscription) for _ in range(2))

        def write() -> None:
            with Client(b.query_endpoint, timeout=10) as writer:
                for index in range(total):
                    writer.append(f"live-{index % 3}", [b"%d" % index])
                    if index == total // 3:
                        a.kill()
                    time.sleep(0.002)

        writer_thread = threading.Thread(target=write)
        writer_thread.start()
        for event in subscription:
            received.append(event)
            if len(received) == total + 2:
                break
        writer_thread.join(30)
        with Client(b.query_endpoint, timeout=10) as writer_b:
            writer_b.append("after", [b"last"])
        received.append(next(subscription))
        assert subscription.switches >= 1, "the subscription never moved to B's feed"
        subscription.close()
    assert [e.position for e in received] == list(range(1, total + 4))
    assert received == _global_log(b)


def test_idle_subscription_and_follow_notice_a_stopped_server(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    with Client(b.query_endpoint, timeout=10) as writer:
        writer.append("quiet", [b"first"])
    with _client(a, b) as subscribing, _client(a, b) as following:
        subscription = subscribing.subscribe(idle_timeout=8)
        followed = cast(Generator[Event, None, None], following.follow(idle_timeout=8))
        assert next(subscription).data == b"first"
        assert next(followed).data == b"first"
        # Nothing happens while A goes away; the feeds of A are simply silent.
        a.kill()
        with Client(b.query_endpoint, timeout=10) as writer:
            for index in range(20):
                writer.append("quiet", [b"%d" % index])
        later = [next(subscription) for _ in range(20)]
        assert [e.position for e in later] == list(range(2, 22))
        assert [next(followed).data for _ in range(20)] == [b"%d" % n for n in range(20)]
        assert following.current_endpoint == b.query_endpoint
        with Client(b.query_endpoint, timeout=10) as writer:
            writer.append("quiet", [b"live"])
        assert next(subscription).data == b"live"
        assert next(followed).data == b"live"
        assert subscription.switches == 1
        subscription.close()
        followed.close()


def test_the_async_client_fails_over_for_appends_and_subscriptions(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    total = 120

    async def scenario() -> tuple[list[AppendResult], list[RecordedEvent], str]:
        client = AsyncClient(
            [a.query_endpoint, b.query_endpoint],
            v2_streaming_endpoint=[a.v2_streaming_endpoint, b.v2_streaming_endpoint],
            timeout=TIMEOUT,
            retries=RETRIES,
        )
        async with client:
            subscription = client.subscribe(idle_timeout=8)
            received: list[RecordedEvent] = []

            async def consume() -> None:
                async for event in subscription:
                    received.append(event)
                    if len(received) == total:
                        return

            consumer = asyncio.create_task(consume())
            acked = []
            for index in range(total):
                acked.append(await client.append(f"async-{index % 4}", [b"%d" % index]))
                if index == total // 3:
                    a.kill()
            await asyncio.wait_for(consumer, 20)
            await subscription.close()
            return acked, received, client.current_endpoint

    acked, received, current = asyncio.run(scenario())
    log = _global_log(b)
    assert len(log) == total
    _check_stored_once(log, acked)
    assert received == log
    assert current == b.query_endpoint


def test_the_cli_takes_several_endpoints(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    a.kill()
    both = ["--query-endpoint", a.query_endpoint, "--query-endpoint", b.query_endpoint]
    appended = run_rewind("append", "cli", "one", "two", *both, "--timeout", str(TIMEOUT))
    assert appended.returncode == 0, appended.stderr
    assert f"failing over to {b.query_endpoint}" in appended.stderr.decode()
    listed = run_rewind(
        "read-all",
        "--query-endpoint",
        f"{a.query_endpoint},{b.query_endpoint}",
        "--timeout",
        str(TIMEOUT),
    )
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[-1] for line in listed.stdout.decode().splitlines()] == ["one", "two"]
    tailed = run_rewind(
        "tail",
        "--from-position",
        "1",
        "--idle-timeout",
        "1",
        *both,
        "--v2-streaming-endpoint",
        f"{a.v2_streaming_endpoint},{b.v2_streaming_endpoint}",
        "--timeout",
        str(TIMEOUT),
    )
    assert tailed.returncode == 0, tailed.stderr
    assert [line.split("\t")[-1] for line in tailed.stdout.decode().splitlines()] == ["one", "two"]


def test_the_cli_refuses_feeds_that_do_not_match_the_servers() -> None:
    mismatched = run_rewind(
        "tail",
        "--from-position",
        "1",
        "--query-endpoint",
        "tcp://127.0.0.1:1,tcp://127.0.0.1:2",
        "--v2-streaming-endpoint",
        "tcp://127.0.0.1:3,tcp://127.0.0.1:4,tcp://127.0.0.1:5",
    )
    assert mismatched.returncode == 2
    assert b"3 v2 streaming endpoints for 2 query endpoints" in mismatched.stderr
    empty = run_rewind("read-all", "--query-endpoint", "tcp://127.0.0.1:1,")
    assert empty.returncode == 2
    assert b"--query-endpoint: empty endpoint" in empty.stderr
