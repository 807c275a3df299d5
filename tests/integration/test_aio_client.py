"""``rewind.aio.AsyncClient`` against a real server process."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import zmq

from rewind.aio import (
    NO_STREAM,
    AsyncClient,
    EventData,
    EventIdConflict,
    RecordedEvent,
    RequestTimeout,
    StreamNotFound,
    WrongExpectedVersion,
)
from tests.support import ServerProcess

T = TypeVar("T")


@pytest.fixture(scope="module")
def memory_server() -> Iterator[ServerProcess]:
    with ServerProcess("memory:") as process:
        yield process


def _run(server: ServerProcess, body: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Run ``body`` with a connected client in a fresh event loop, with a deadline."""

    async def main() -> T:
        async with AsyncClient(
            server.query_endpoint, v2_streaming_endpoint=server.v2_streaming_endpoint
        ) as client:
            return await asyncio.wait_for(body(client), 30)

    return asyncio.run(main())


def _name(prefix: str = "aio") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_append_expected_versions_and_conflicts(memory_server: ServerProcess) -> None:
    stream = _name()

    async def body(client: AsyncClient) -> None:
        result = await client.append(stream, [b"a", b"b"], expected_version=NO_STREAM)
        assert (result.first_version, result.last_version) == (0, 1)
        with pytest.raises(WrongExpectedVersion) as refused:
            await client.append(stream, [b"c"], expected_version=0)
        assert refused.value.actual_version == 1
        assert (await client.append(stream, [b"c"], expected_version=1)).last_version == 2
        event = EventData(b"d", type="T", id=uuid.uuid4())
        first = await client.append(stream, [event])
        assert await client.append(stream, [event], expected_version=0) == first
        with pytest.raises(EventIdConflict):
            await client.append(stream, [EventData(b"other", id=event.id)])
        info = await client.stream_info(stream)
        assert info is not None and info.last_version == 3
        assert await client.stream_info(_name("missing")) is None

    _run(memory_server, body)


def test_reads_in_both_directions_and_filters(memory_server: ServerProcess) -> None:
    prefix = _name("cat")

    async def body(client: AsyncClient) -> None:
        for index in range(40):
            await client.append(
                f"{prefix}-{index % 2}", [EventData(b"%d" % index, type=f"T{index % 4}")]
            )
        forward = [e async for e in client.read_all(stream_prefix=prefix, batch_size=3)]
        assert [e.data for e in forward] == [b"%d" % i for i in range(40)]
        backward = [e async for e in client.read_all(stream_prefix=prefix, backwards=True)]
        assert backward == forward[::-1]
        typed = client.read_all(stream_prefix=prefix, event_types=["T1", "T2"], max_count=4)
        assert [e.data async for e in typed] == [b"1", b"2", b"5", b"6"]
        one = [e.version async for e in client.read_stream(f"{prefix}-1", from_version=15)]
        assert one == list(range(15, 20))
        back = client.read_stream(f"{prefix}-0", backwards=True, max_count=3)
        assert [e.version async for e in back] == [19, 18, 17]
        assert back.end is not None and back.end.cursor == 16
        moment = forward[30].recorded_at_us
        since = [e async for e in client.read_all(since=moment, stream_prefix=prefix)]
        assert since == [e for e in forward if e.recorded_at_us >= moment]
        assert since[0].position <= forward[30].position
        with pytest.raises(StreamNotFound):
            [e async for e in client.read_stream(_name("missing"))]

    _run(memory_server, body)


def test_early_close_and_other_requests_during_a_read(memory_server: ServerProcess) -> None:
    stream = _name("big")

    async def body(client: AsyncClient) -> None:
        await client.append(stream, [b"%d" % i for i in range(2000)])
        for _ in range(20):
            async with client.read_stream(stream, batch_size=10) as reader:
                async for event in reader:
                    if event.version == 12:
                        break
        await client.ping()
        seen = []
        async for event in client.read_stream(stream, batch_size=50):
            seen.append(event.version)
            if event.version % 500 == 0:
                await client.server_info()
        assert seen == list(range(2000))

    _run(memory_server, body)


def test_many_tasks_share_one_client(memory_server: ServerProcess) -> None:
    """Requests from concurrent tasks are matched to their own replies."""
    prefix = _name("tasks")

    async def body(client: AsyncClient) -> None:
        appending = asyncio.gather(
            *(client.append(f"{prefix}-{i}", [b"x"] * (i + 1)) for i in range(30))
        )
        pinging = asyncio.gather(*(client.ping() for _ in range(10)))
        appended, _ = await asyncio.gather(appending, pinging)
        assert [r.last_version for r in appended] == list(range(30))
        spans = sorted((r.first_position, r.last_position) for r in appended)
        for (_, last), (first, _) in itertools.pairwise(spans):
            assert first > last
        names = [name async for name in client.list_streams(after=prefix, page_size=7)]
        assert sorted(n for n in names if n.startswith(prefix)) == sorted(
            f"{prefix}-{i}" for i in range(30)
        )
        info = await client.server_info()
        assert info.head_position >= max(last for _, last in spans)

    _run(memory_server, body)


def test_subscription_history_then_live(memory_server: ServerProcess) -> None:
    prefix = _name("sub")

    async def body(client: AsyncClient) -> list[RecordedEvent]:
        for index in range(20):
            await client.append(f"{prefix}-{index % 3}", [b"old-%d" % index])
        seen: list[RecordedEvent] = []

        async def consume() -> None:
            async for event in client.subscribe(stream_prefix=prefix, idle_timeout=1.0):
                seen.append(event)

        task = asyncio.create_task(consume())
        while len(seen) < 20:
            await asyncio.sleep(0.01)
        for index in range(20):
            await client.append(f"{prefix}-{index % 3}", [b"new-%d" % index])
        await task
        stored = [e async for e in client.read_all(stream_prefix=prefix)]
        assert [e.event_id for e in seen] == [e.event_id for e in stored]
        return seen

    seen = _run(memory_server, body)
    assert [e.data for e in seen] == [b"old-%d" % i for i in range(20)] + [
        b"new-%d" % i for i in range(20)
    ]


def test_slow_async_subscriber_misses_nothing(tmp_path: Path) -> None:
    with ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as server:

        async def body(client: AsyncClient) -> None:
            await client.append("slow-0", [b"start"])
            subscription = client.subscribe(
                stream="slow-0",
                idle_timeout=1.0,
                feed_options={zmq.RCVHWM: 10, zmq.RCVBUF: 4096},
            )
            first = await subscription.__anext__()
            for _ in range(20):
                await client.append("slow-0", [b"y" * 1024] * 250)
            rest = [event async for event in subscription]
            assert [e.version for e in [first, *rest]] == list(range(5001))
            assert subscription.gaps >= 1

        _run(server, body)


def test_timeout_without_a_server() -> None:
    async def main() -> None:
        async with AsyncClient("tcp://127.0.0.1:1", timeout=0.1, retries=1) as client:
            with pytest.raises(RequestTimeout):
                await client.append("s", [b"x"])
            with pytest.raises(RequestTimeout):
                [e async for e in client.read_all()]

    asyncio.run(main())
