"""The Rewind v2 commands of ``rewind``: append, read, read-all, streams, info, tail --stream."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from rewind.client import Client, EventData
from tests.integration.helpers import assert_one_line_failure, clean_environ
from tests.support import ServerProcess, run_rewind


@pytest.fixture(scope="module")
def memory_server() -> Iterator[ServerProcess]:
    with ServerProcess("memory:") as process:
        yield process


@pytest.fixture
def client(memory_server: ServerProcess) -> Iterator[Client]:
    with Client(
        memory_server.query_endpoint, v2_streaming_endpoint=memory_server.v2_streaming_endpoint
    ) as connected:
        yield connected


def _args(server: ServerProcess) -> list[str]:
    return ["--query-endpoint", server.query_endpoint, "--timeout", "5"]


def _name(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _ok(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode().splitlines()


def test_append_arguments_in_one_append(memory_server: ServerProcess, client: Client) -> None:
    stream = _name()
    lines = _ok(
        run_rewind(
            "append", stream, "one", "two", "thr\tee", "--type", "Noted", *_args(memory_server)
        )
    )
    assert lines == [
        f"appended 3 event(s) to {stream}: positions "
        + "{}-{}, versions 0-2".format(*_positions(client, stream))
    ]
    events = list(client.read_stream(stream))
    assert [e.data for e in events] == [b"one", b"two", b"thr\tee"]
    assert {e.event_type for e in events} == {"Noted"}
    assert len({e.recorded_at_us for e in events}) == 1


def _positions(client: Client, stream: str) -> tuple[int, int]:
    info = client.stream_info(stream)
    assert info is not None
    return info.first_position, info.last_position


def test_append_stdin_lines_and_json(memory_server: ServerProcess, client: Client) -> None:
    stream = _name()
    result = run_rewind("append", stream, "--json", *_args(memory_server), input=b"a\r\nb\nc")
    (line,) = _ok(result)
    record = json.loads(line)
    events = list(client.read_stream(stream))
    assert [e.data for e in events] == [b"a", b"b", b"c"]
    assert record["stream"] == stream
    assert record["ids"] == [str(e.event_id) for e in events]
    assert (record["first_position"], record["last_position"]) == (
        events[0].position,
        events[-1].position,
    )
    assert (record["first_version"], record["last_version"]) == (0, 2)
    assert datetime.fromisoformat(record["recorded_at"]).tzinfo is not None


def test_append_expected_versions(memory_server: ServerProcess, client: Client) -> None:
    stream = _name()
    args = _args(memory_server)
    failure = run_rewind("append", stream, "x", "--expected-version", "exists", *args)
    assert_one_line_failure(failure, "rewind: error:", "nothing stored", "-1")
    _ok(run_rewind("append", stream, "v0", "--expected-version", "no-stream", *args))
    failure = run_rewind("append", stream, "x", "--expected-version", "no-stream", *args)
    assert_one_line_failure(failure, "actual version 0")
    _ok(run_rewind("append", stream, "v1", "--expected-version", "exists", *args))
    _ok(run_rewind("append", stream, "v2", "v3", "--expected-version", "1", *args))
    failure = run_rewind("append", stream, "x", "--expected-version", "1", *args)
    assert_one_line_failure(failure, "actual version 3")
    _ok(run_rewind("append", stream, "v4", "--expected-version", "any", *args))
    assert [e.data for e in client.read_stream(stream)] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    usage = run_rewind("append", stream, "x", "--expected-version", "-3", *args)
    assert usage.returncode == 2
    assert_one_line_failure(usage, "--expected-version")


def test_append_nothing_and_no_server(memory_server: ServerProcess) -> None:
    assert_one_line_failure(
        run_rewind("append", _name(), *_args(memory_server), input=b""), "no events"
    )
    nobody = run_rewind(
        "append", "s", "x", "--query-endpoint", "tcp://127.0.0.1:1", "--timeout", "0.05"
    )
    assert_one_line_failure(nobody, "may or may not")
    too_long = run_rewind("append", "s" * 2000, "x", *_args(memory_server))
    assert_one_line_failure(too_long, "stream name")


def test_read_formats_one_event_per_line(memory_server: ServerProcess, client: Client) -> None:
    stream = _name()
    client.append(
        stream,
        [
            EventData(b"plain", type="T"),
            EventData(b"two\nlines\\", metadata=b"m"),
            EventData(b"\xff\x00"),
        ],
    )
    events = list(client.read_stream(stream))
    lines = _ok(run_rewind("read", stream, *_args(memory_server)))
    assert lines == [
        f"{e.position}\t{stream}\t{e.version}\t{e.event_type}\t{e.event_id}\t{data}"
        for e, data in zip(events, ["plain", "two\\nlines\\\\", "\\xff\x00"], strict=True)
    ]
    records = [
        json.loads(line)
        for line in _ok(run_rewind("read", stream, "--json", *_args(memory_server)))
    ]
    assert records[0]["data"] == "plain" and records[0]["type"] == "T"
    assert records[1]["data"] == "two\nlines\\" and records[1]["metadata"] == "m"
    assert records[2]["data_base64"] == "/wA="
    assert [r["id"] for r in records] == [str(e.event_id) for e in events]
    assert [r["position"] for r in records] == [e.position for e in events]


def test_read_options(memory_server: ServerProcess, client: Client) -> None:
    stream = _name()
    client.append(stream, [b"%d" % i for i in range(10)])
    args = _args(memory_server)

    def versions(*options: str) -> list[int]:
        return [
            int(line.split("\t")[2]) for line in _ok(run_rewind("read", stream, *options, *args))
        ]

    assert versions() == list(range(10))
    assert versions("--from-version", "7") == [7, 8, 9]
    assert versions("--backwards", "--max-count", "3") == [9, 8, 7]
    assert versions("--backwards", "--from-version", "2") == [2, 1, 0]
    assert_one_line_failure(run_rewind("read", _name("missing"), *args), "does not exist")


def test_read_all_options(memory_server: ServerProcess, client: Client) -> None:
    prefix = _name("all")
    client.append(f"{prefix}-a", [EventData(b"a0", type="Opened"), EventData(b"a1", type="Paid")])
    time.sleep(0.01)
    later = client.append(f"{prefix}-b", [EventData(b"b0", type="Opened"), EventData(b"b1")])
    args = _args(memory_server)

    def datas(*options: str) -> list[str]:
        lines = _ok(run_rewind("read-all", "--stream-prefix", prefix, *options, *args))
        return [line.split("\t")[5] for line in lines]

    assert datas() == ["a0", "a1", "b0", "b1"]
    assert datas("--backwards", "--max-count", "3") == ["b1", "b0", "a1"]
    assert datas("--from-position", str(later.first_position)) == ["b0", "b1"]
    assert datas("--type", "Opened") == ["a0", "b0"]
    assert datas("--type", "Paid", "--type", "") == ["a1", "b1"]
    assert datas("--since", later.recorded_at.isoformat()) == ["b0", "b1"]
    naive = later.recorded_at.replace(tzinfo=None).isoformat()
    assert datas("--since", naive) == ["b0", "b1"]
    assert datas("--since", naive, "--backwards") == ["a1", "a0"]
    future = (later.recorded_at + timedelta(days=1)).isoformat()
    assert datas("--since", future) == []
    whole = _ok(run_rewind("read-all", "--max-count", "1", *args))
    assert whole[0].split("\t")[0] == "1"
    usage = run_rewind("read-all", "--since", "soon", *args)
    assert usage.returncode == 2
    conflict = run_rewind("read-all", "--since", naive, "--from-position", "1", *args)
    assert conflict.returncode == 2


def test_streams_and_info() -> None:
    with ServerProcess("memory:") as server:
        args = _args(server)
        assert _ok(run_rewind("streams", *args)) == []
        with Client(server.query_endpoint) as client:
            for name in ("b", "a", "c\tx", "é"):
                client.append(name, [b"x"])
        assert _ok(run_rewind("streams", *args)) == ["a", "b", "c\\tx", "é"]
        assert _ok(run_rewind("streams", "--after", "b", *args)) == ["c\\tx", "é"]
        records = [json.loads(line) for line in _ok(run_rewind("streams", "--json", *args))]
        assert [r["stream"] for r in records] == ["a", "b", "c\tx", "é"]

        text = dict(line.split(": ", 1) for line in _ok(run_rewind("info", *args)))
        assert text["storage"] == "memory"
        assert text["head_position"] == "4"
        assert "RWD2" in text["protocols"].split()
        (line,) = _ok(run_rewind("info", "--json", *args))
        record = json.loads(line)
        assert record["head_position"] == 4 and record["durable"] is False
    assert_one_line_failure(
        run_rewind("info", "--query-endpoint", "tcp://127.0.0.1:1", "--timeout", "0.05")
    )


def test_tail_from_a_position_with_a_prefix(memory_server: ServerProcess, client: Client) -> None:
    """``tail --stream P --from-position N`` prints the history from N, then live events."""
    prefix = _name("tail")
    client.append(f"{prefix}-1", [b"skipped"])
    start = client.append(f"{prefix}-2", [b"h1", b"h2"]).first_position
    client.append(_name("other"), [b"not mine"])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rewind",
            "tail",
            "--stream",
            prefix,
            "--from-position",
            str(start),
            "--idle-timeout",
            "1.0",
            "--json",
            *_args(memory_server),
            "--v2-streaming-endpoint",
            memory_server.v2_streaming_endpoint,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        lines.extend(raw.decode().rstrip("\n") for raw in process.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 15
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    for index in range(5):
        client.append(f"{prefix}-{index}", [b"live-%d" % index])
    process.wait(20)
    reader.join(5)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    records = [json.loads(line) for line in lines]
    assert [r["data"] for r in records] == ["h1", "h2"] + [f"live-{i}" for i in range(5)]
    stored = list(client.read_all(from_position=start, stream_prefix=prefix))
    assert [r["position"] for r in records] == [e.position for e in stored]
