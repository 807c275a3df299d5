"""The ``rewind publish``, ``query`` and ``tail`` commands against a real server."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.helpers import (
    Context,
    EventPair,
    Socket,
    assert_one_line_failure,
    clean_environ,
    numbered,
    open_req,
    publish,
    publish_all,
    query_all,
    wait_for,
)
from tests.support import ServerProcess, run_rewind


@pytest.fixture
def memory_server() -> Iterator[ServerProcess]:
    """A memory-backed server: the commands behave the same whatever the storage."""
    with ServerProcess("memory:") as process:
        yield process


def _query_args(server: ServerProcess) -> list[str]:
    return ["--query-endpoint", server.query_endpoint, "--timeout", "5"]


def _tail_args(server: ServerProcess) -> list[str]:
    return [*_query_args(server), "--streaming-endpoint", server.streaming_endpoint]


def _lines(events: list[EventPair]) -> list[str]:
    """The text ``rewind query`` prints for plain UTF-8 events without tabs or newlines."""
    return [f"{event_id.decode()}\t{data.decode()}" for event_id, data in events]


def _interruptible() -> None:
    """Give the child the default SIGINT, whatever the test run inherited.

    A shell without job control starts background commands with SIGINT
    ignored, and an ignored signal stays ignored across exec, so a test run
    started that way would otherwise hand ``tail`` a Ctrl-C it cannot receive.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tail:
    """A running ``rewind tail`` whose stdout lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rewind", "tail", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # On a hang, SIGABRT makes it print where every thread stands.
            env=clean_environ({"PYTHONFAULTHANDLER": "1"}),
            preexec_fn=_interruptible,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def wait(self, timeout: float = 15.0) -> tuple[int, str]:
        """Wait for exit; return the status and stderr."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            assert self.process.stderr is not None
            where = self.process.stderr.read().decode(errors="replace")
            message = f"rewind tail did not exit in time; it stood at:\n{where}"
            raise AssertionError(message) from None
        self._reader.join(5)
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read().decode()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _publish_until(req: Socket, seen: Callable[[], bool], prefix: str) -> None:
    """Publish ``prefix-N`` events every 20 ms until ``seen()``, then three ``last-N``."""
    for index in range(500):
        if seen():
            break
        publish(req, f"{prefix}-{index}".encode())
        time.sleep(0.02)
    else:
        raise AssertionError("the follower never saw a live event")
    publish_all(req, [b"last-0", b"last-1", b"last-2"])


# publish ------------------------------------------------------------------------------


def test_publish_arguments(memory_server: ServerProcess, zmq_context: Context) -> None:
    """Each DATA argument becomes one event, in order; nothing is printed."""
    result = run_rewind("publish", "first", "with space", "ünïcödé", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    events = query_all(open_req(zmq_context, memory_server.query_endpoint))
    assert [data for _, data in events] == [b"first", b"with space", "ünïcödé".encode()]


def test_publish_stdin_lines(memory_server: ServerProcess, zmq_context: Context) -> None:
    """Without arguments each stdin line is one event, line endings stripped."""
    result = run_rewind("publish", *_query_args(memory_server), input=b"one\ntwo\r\nthree")
    assert result.returncode == 0, result.stderr
    events = query_all(open_req(zmq_context, memory_server.query_endpoint))
    assert [data for _, data in events] == [b"one", b"two", b"three"]


def test_publish_json_reports_count(memory_server: ServerProcess) -> None:
    """``--json`` prints how many events were published."""
    result = run_rewind("publish", "a", "b", "c", "--json", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"published": 3}


def test_publish_without_server_fails_in_one_line() -> None:
    """With nobody answering, publish gives up after its timeout with a one-line error."""
    result = run_rewind(
        "publish", "x", "--query-endpoint", "tcp://127.0.0.1:1", "--timeout", "0.05", timeout=15
    )
    assert_one_line_failure(result)


# query --------------------------------------------------------------------------------


def test_query_prints_id_tab_data(memory_server: ServerProcess, zmq_context: Context) -> None:
    """One ``id<TAB>data`` line per stored event, in order."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("cli", 5))
    result = run_rewind("query", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == _lines(query_all(req))


def test_query_bounds(memory_server: ServerProcess, zmq_context: Context) -> None:
    """``--from`` is exclusive, ``--to`` inclusive."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("bounded", 8))
    events = query_all(req)
    ids = [event_id.decode() for event_id, _ in events]
    cases = [
        (["--from", ids[2]], events[3:]),
        (["--to", ids[4]], events[:5]),
        (["--from", ids[1], "--to", ids[6]], events[2:7]),
        (["--from", ids[3], "--to", ids[3]], []),
    ]
    for bounds, expected in cases:
        result = run_rewind("query", *bounds, *_query_args(memory_server))
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().splitlines() == _lines(expected), bounds


def test_query_pages_through_everything(memory_server: ServerProcess, zmq_context: Context) -> None:
    """``rewind query`` prints all 250 events, not just the first page."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("many", 250))
    result = run_rewind("query", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == _lines(query_all(req))


def test_query_keeps_one_line_per_event(memory_server: ServerProcess, zmq_context: Context) -> None:
    """Tabs, newlines and invalid UTF-8 in data never break the one-line-per-event format."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, [b"tab\there", b"two\nlines", b"cr\rlf", b"\xff\xfe", b""])
    result = run_rewind("query", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    ids = [event_id for event_id, _ in query_all(req)]
    assert len(lines) == len(ids)
    for line, event_id in zip(lines, ids, strict=True):
        printed_id, _, _ = line.partition(b"\t")
        assert printed_id == event_id


def test_query_json(memory_server: ServerProcess, zmq_context: Context) -> None:
    """``--json`` prints one object per event: "id" and "data", or "data_base64"."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    stored = [b"plain", "ünïcödé\ttab\nnl".encode(), b"\xff\x00\x80binary", b""]
    publish_all(req, stored)
    result = run_rewind("query", "--json", *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    events = query_all(req)
    assert [record["id"] for record in records] == [event_id.decode() for event_id, _ in events]
    decoded = []
    for record in records:
        assert set(record) in ({"id", "data"}, {"id", "data_base64"}), record
        if "data" in record:
            decoded.append(record["data"].encode())
        else:
            decoded.append(base64.b64decode(record["data_base64"]))
    assert decoded == stored
    assert "data_base64" in records[2]


def test_query_endpoint_from_environment(
    memory_server: ServerProcess, zmq_context: Context
) -> None:
    """``REWIND_QUERY_ENDPOINT`` names the server when no flag does."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, [b"via-env"])
    result = run_rewind("query", env={"REWIND_QUERY_ENDPOINT": memory_server.query_endpoint})
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == _lines(query_all(req))


@pytest.mark.parametrize(
    "bounds",
    [["--from", "garbage"], ["--to", "garbage"], ["--from", str(uuid.uuid1())]],
    ids=["garbage-from", "garbage-to", "unknown-from"],
)
def test_query_bad_id_fails_in_one_line(memory_server: ServerProcess, bounds: list[str]) -> None:
    """A bad or unknown id makes ``rewind query`` exit non-zero with a one-line error."""
    result = run_rewind("query", *bounds, *_query_args(memory_server))
    assert_one_line_failure(result, bounds[1])


def test_query_non_ascii_id_fails_in_one_line(memory_server: ServerProcess) -> None:
    """A non-ASCII ``--from`` gets the same one-line error as any other bad id."""
    result = run_rewind("query", "--from", "café", *_query_args(memory_server))
    assert_one_line_failure(result)


def test_query_without_server_fails_in_one_line() -> None:
    """With nobody answering, query gives up after its timeout with a one-line error."""
    result = run_rewind(
        "query", "--query-endpoint", "tcp://127.0.0.1:1", "--timeout", "0.05", timeout=15
    )
    assert_one_line_failure(result)


# tail ---------------------------------------------------------------------------------


def test_tail_from_start_prints_history_then_live(
    memory_server: ServerProcess, zmq_context: Context
) -> None:
    """``tail --from-start`` prints all history, then events published meanwhile, then
    exits 0 on its idle timeout; the output equals ``rewind query``'s."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("history", 5))
    tail = Tail("--from-start", "--idle-timeout", "0.5", *_tail_args(memory_server))
    try:
        assert wait_for(lambda: len(tail.lines) >= 5, 15), "history was not printed"
        _publish_until(req, lambda: any("live-" in line for line in tail.lines), "live")
        status, stderr = tail.wait()
    finally:
        tail.kill()
    assert status == 0, stderr
    assert tail.lines == _lines(query_all(req))


def test_tail_live_only(memory_server: ServerProcess, zmq_context: Context) -> None:
    """Plain ``tail`` prints no history, only a gap-free run of new events."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("old", 5))
    tail = Tail("--idle-timeout", "0.5", *_tail_args(memory_server))
    try:
        _publish_until(req, lambda: bool(tail.lines), "live")
        status, stderr = tail.wait()
    finally:
        tail.kill()
    assert status == 0, stderr
    expected = _lines(query_all(req))
    assert tail.lines, "nothing was printed"
    assert not any("\told-" in line for line in tail.lines)
    start = expected.index(tail.lines[0])
    assert tail.lines == expected[start:]


def test_tail_after_id_json(memory_server: ServerProcess, zmq_context: Context) -> None:
    """``tail --after ID --json`` prints history after ID, then live, as JSON objects."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, numbered("history", 4))
    after = query_all(req)[1][0]
    tail = Tail(
        "--after", after.decode(), "--json", "--idle-timeout", "0.5", *_tail_args(memory_server)
    )
    try:
        assert wait_for(lambda: len(tail.lines) >= 2, 15), "history was not printed"
        _publish_until(req, lambda: any("live-" in line for line in tail.lines), "live")
        status, stderr = tail.wait()
    finally:
        tail.kill()
    assert status == 0, stderr
    records = [json.loads(line) for line in tail.lines]
    expected = query_all(req, after)
    assert records == [{"id": i.decode(), "data": d.decode()} for i, d in expected]


def test_tail_unknown_after_fails_in_one_line(memory_server: ServerProcess) -> None:
    """``tail --after`` an unknown id exits non-zero with a one-line error."""
    result = run_rewind(
        "tail", "--after", str(uuid.uuid1()), "--idle-timeout", "0.5", *_tail_args(memory_server)
    )
    assert_one_line_failure(result)


def test_tail_non_ascii_after_fails_in_one_line(memory_server: ServerProcess) -> None:
    """A non-ASCII ``--after`` gets a one-line error like any unknown id."""
    result = run_rewind(
        "tail", "--after", "café", "--idle-timeout", "0.5", *_tail_args(memory_server)
    )
    assert_one_line_failure(result)


def test_publish_non_utf8_argument(memory_server: ServerProcess, zmq_context: Context) -> None:
    """An argument that is not valid UTF-8 is published as its original bytes."""
    raw = b"caf\xe9 \xff"
    result = run_rewind("publish", os.fsdecode(raw), *_query_args(memory_server))
    assert result.returncode == 0, result.stderr
    assert [data for _, data in query_all(open_req(zmq_context, memory_server.query_endpoint))] == [
        raw
    ]


def test_query_into_closed_pipe_exits_quietly(
    memory_server: ServerProcess, zmq_context: Context
) -> None:
    """``rewind query | head -1``: a reader that goes away is not an error, no traceback."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    publish_all(req, [b"y" * 2000] * 300)
    process = subprocess.Popen(
        [sys.executable, "-m", "rewind", "query", *_query_args(memory_server)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_environ(),
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert first.endswith(b"\t" + b"y" * 2000 + b"\n")
    assert process.returncode == 0, stderr
    assert stderr == ""


def test_tail_stops_quietly_on_interrupt(
    memory_server: ServerProcess, zmq_context: Context
) -> None:
    """Ctrl-C (SIGINT) ends a running ``tail`` with status 0 and no traceback."""
    req = open_req(zmq_context, memory_server.query_endpoint)
    tail = Tail(*_tail_args(memory_server))
    try:
        _publish_until(req, lambda: bool(tail.lines), "live")
        assert wait_for(lambda: any("last-2" in line for line in tail.lines), 10)
        tail.process.send_signal(signal.SIGINT)
        status, stderr = tail.wait()
    finally:
        tail.kill()
    assert status == 0, stderr
    assert "Traceback" not in stderr
