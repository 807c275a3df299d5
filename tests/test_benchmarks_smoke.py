"""``make bench`` stays runnable: a quick row prints its table; the bare ceilings answer."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import zmq

from benchmarks.__main__ import measure_groups
from benchmarks.clients import PUBLISHED, publish_frames, publish_worker, req_socket
from benchmarks.processes import EchoProcess
from benchmarks.report import Figure, Row
from benchmarks.v2 import dealer, stream_read

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_row_prints_a_table_with_a_baseline() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "memory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "1 REQ client, memory:" in line)
    assert "pyzmq REQ→REP echo" in row
    assert "x " in row  # the ratio column


def test_a_failing_group_of_rows_is_reported_and_the_others_still_run() -> None:
    def row(key: str) -> Row:
        return Row(key, "name", Figure(1.0, "/s"), "baseline", Figure(1.0, "/s"), "", None)

    def broken() -> list[Row]:
        raise RuntimeError("the server did not start")

    said: list[str] = []
    rows, failures = measure_groups(
        [
            ({"first"}, lambda: [row("1")]),
            ({"second", "also"}, broken),
            ({"unwanted"}, broken),
            ({"third"}, lambda: [row("3")]),
        ],
        {"first", "second", "also", "third"},
        said.append,
    )
    assert [r.key for r in rows] == ["1", "3"]
    assert failures == ["also, second failed: RuntimeError: the server did not start"]
    assert said == failures


def test_streaming_ceiling_serves_a_read_as_rewind_would() -> None:
    """The bare streaming server ends a read with every event, batch by batch, in order."""
    context: zmq.Context[bytes] = zmq.Context()
    try:
        with EchoProcess("stream") as streamer:
            socket = dealer(context, streamer.endpoint)
            # stream_read checks each batch's first position and the END's count.
            _, cursor = stream_read(socket, 5, 11, 2_500, 1_000, 1)
            assert cursor == 11 + 2_500
    finally:
        context.destroy(0)


def test_durable_relay_stores_a_request_before_publishing_and_answering_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "relay.log"
    request = [b"", b"header", b"stream", b"id", b"type", b"metadata", b"the data"]
    context: zmq.Context[bytes] = zmq.Context()
    try:
        with EchoProcess("durable-relay", str(log)) as relay:
            subscriber = context.socket(zmq.SUB)
            subscriber.setsockopt(zmq.SUBSCRIBE, b"")
            subscriber.connect(relay.feed_endpoint)
            socket = dealer(context, relay.endpoint)
            # A subscription travels asynchronously: publish until one arrives.
            while not subscriber.poll(100):
                socket.send_multipart(request)
                assert socket.recv_multipart() == request
            assert subscriber.recv_multipart() == request[-6:]
            assert log.read_bytes().startswith(b"the data")
    finally:
        context.destroy(0)


def test_acknowledging_ceiling_answers_published() -> None:
    context: zmq.Context[bytes] = zmq.Context()
    try:
        with EchoProcess("ack") as acknowledger:
            socket = req_socket(context, acknowledger.endpoint)
            socket.send_multipart(publish_frames(100))
            assert socket.recv_multipart() == PUBLISHED
    finally:
        context.destroy(0)


def test_one_publisher_process_keeps_each_of_its_req_sockets_publishing() -> None:
    """Row 3's worker: several REQ sockets, one request each at a time, every reply checked."""
    ready = threading.Barrier(2)
    go = threading.Event()
    start_at = SimpleNamespace(value=0.0)
    results: queue.Queue[tuple[int, str]] = queue.Queue()
    with EchoProcess("ack") as acknowledger:
        worker = threading.Thread(
            target=publish_worker,
            args=(acknowledger.endpoint, 3, 100, 0.3, ready, go, start_at, results),
        )
        worker.start()
        ready.wait(timeout=30)
        start_at.value = time.monotonic() + 0.05
        go.set()
        count, error = results.get(timeout=30)
        worker.join(timeout=30)
    assert error == ""
    assert count > 3
