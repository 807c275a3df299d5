"""``rewind verify`` on stores a real server wrote, and the server refusing damaged stores."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rewind.client import Client, EventData
from tests import store_damage as damage
from tests.integration.helpers import assert_one_line_failure
from tests.support import ServerProcess, run_rewind

STREAMS = ("order-1", "order-2", "invoice-1")


@pytest.fixture(scope="module")
def served_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store written by a real server: 3 streams, 24 events, stopped cleanly."""
    path = tmp_path_factory.mktemp("served") / "events.db"
    with ServerProcess(f"sqlite:{path}") as server, Client(server.query_endpoint) as client:
        for round_ in range(4):
            for stream in STREAMS:
                events = [EventData(f"{stream} #{round_}.{i}".encode(), type="T") for i in (0, 1)]
                client.append(stream, events)
    return path


@pytest.fixture
def store(served_store: Path, tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    shutil.copy(served_store, path)
    return path


def _verify(*args: str) -> tuple[int, list[str], str]:
    result = run_rewind("verify", *args)
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


# Passing ------------------------------------------------------------------------------


def test_a_store_written_by_the_server_passes(store: Path) -> None:
    code, lines, stderr = _verify("--storage", f"sqlite:{store}")
    assert code == 0, lines
    assert stderr == ""
    assert len(lines) == 1
    assert lines[0].startswith(f"{store}: ok; 9 checks (quick_check); ")
    assert "24 events in 3 streams, last position 24;" in lines[0]


@pytest.mark.parametrize("form", ["path", "url", "triple-slash url"])
def test_the_store_may_be_named_as_a_path_or_a_url(store: Path, form: str) -> None:
    named = {"path": str(store), "url": f"sqlite:{store}", "triple-slash url": f"sqlite://{store}"}
    code, lines, _ = _verify(named[form])
    assert code == 0 and lines[0].startswith(f"{store}: ok;"), lines


def test_the_full_check_runs_integrity_check(store: Path) -> None:
    code, lines, _ = _verify(str(store), "--full")
    assert code == 0 and "(integrity_check)" in lines[0], lines


def test_a_running_server_does_not_stop_verification(store: Path) -> None:
    with ServerProcess(f"sqlite:{store}") as server, Client(server.query_endpoint) as client:
        client.append("order-3", [b"while verifying"])
        code, lines, _ = _verify(str(store))
    assert code == 0, lines
    assert "25 events in 4 streams" in lines[0]


def test_a_store_left_by_a_killed_server_passes(tmp_path: Path) -> None:
    """Committed events still in the WAL count; verifying needs no server start first."""
    path = tmp_path / "events.db"
    server = ServerProcess(f"sqlite:{path}").start()
    try:
        with Client(server.query_endpoint) as client:
            for number in range(5):
                client.append("killed", [f"event {number}".encode()])
    finally:
        server.kill()
    assert Path(f"{path}-wal").stat().st_size > 0
    code, lines, _ = _verify(str(path))
    assert code == 0, lines
    assert "5 events in 1 stream, last position 5" in lines[0]


def test_json_output(store: Path) -> None:
    code, lines, _ = _verify(str(store), "--json")
    assert code == 0 and len(lines) == 1
    record = json.loads(lines[0])
    assert record["ok"] is True and record["problems"] == []
    assert (record["events"], record["streams"], record["last_position"]) == (24, 3, 24)


def test_the_memory_store_has_nothing_to_verify() -> None:
    code, lines, _ = _verify("--storage", "memory:")
    assert code == 0
    assert lines == ["memory: keeps events only in a running server's memory; "
                     "there is nothing on disk to verify"]  # fmt: skip


# Problems -----------------------------------------------------------------------------


def _repeat_an_id(path: Path) -> None:
    damage.drop_unique_constraints(path)
    with damage.edit(path) as db:
        event_id = db.execute("SELECT event_id FROM events WHERE position = 3").fetchone()[0]
    damage.set_column(path, 9, "event_id", event_id)


def _repeat_a_version(path: Path) -> None:
    damage.drop_unique_constraints(path)
    damage.set_column(path, damage.position_of(path, "order-2", 3), "version", 2)


def _replace_with_another_database(path: Path) -> None:
    path.unlink()
    damage.plain_sqlite_file(path)


CORRUPTIONS: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "position gap": (
        lambda path: damage.delete_position(path, damage.position_of(path, "order-1", 7)),
        ["problem: positions: position 20 is missing"],
    ),
    "version gap": (
        lambda path: damage.set_column(path, damage.position_of(path, "order-2", 7), "version", 9),
        ["problem: streams: stream 'order-2': versions 7-8 are missing"],
    ),
    "repeated version": (
        _repeat_a_version,
        [
            "problem: schema: the unique index on events(event_id) is missing",
            "problem: schema: the unique index on events(stream, version) is missing",
            "problem: streams: stream 'order-2': version 2 is stored at positions 9, 10",
            "problem: streams: stream 'order-2': version 3 is missing",
        ],
    ),
    "repeated id": (
        _repeat_an_id,
        [
            "problem: schema: the unique index on events(event_id) is missing",
            "problem: schema: the unique index on events(stream, version) is missing",
            "problem: event-ids: event id ",
        ],
    ),
    "not a Rewind store": (
        _replace_with_another_database,
        [
            "problem: header: an SQLite database but not a Rewind store (application_id 0x0, "
            "expected 0x52574e44)",
            "problem: schema: there is no events table",
        ],
    ),
    "garbage": (
        lambda path: path.write_bytes(b"\x00garbage\xff" * 1000),
        ["problem: file: {path} is not an SQLite database (its header is not SQLite's)"],
    ),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_named_and_fails(store: Path, name: str) -> None:
    corrupt, expected = CORRUPTIONS[name]
    corrupt(store)
    code, lines, stderr = _verify(str(store))
    assert code == 1, lines
    assert stderr == ""
    problems, summary = lines[:-1], lines[-1]
    assert len(problems) == len(expected), lines
    for line, start in zip(problems, expected, strict=True):
        assert line.startswith(start.format(path=store)), (line, start)
    assert summary.startswith(f"{store}: {len(expected)} problem(s); ")


def test_damage_only_the_full_check_sees(store: Path) -> None:
    damage.change_behind_index(store, 24)
    assert _verify(str(store))[0] == 0
    code, lines, _ = _verify(str(store), "--full")
    assert code == 1
    assert lines[0] == (
        "problem: sqlite: integrity_check: row 24 missing from index sqlite_autoindex_events_1"
    )


def test_json_output_of_problems(store: Path) -> None:
    damage.delete_position(store, 20)
    code, lines, _ = _verify(str(store), "--json")
    assert code == 1
    record = json.loads(lines[0])
    assert record["ok"] is False
    assert record["problems"] == [{"check": "positions", "message": "position 20 is missing"}]


def test_a_missing_store_is_a_problem_not_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "events.db"
    code, lines, _ = _verify(str(path))
    assert code == 1
    assert lines[0] == f"problem: file: {path} does not exist"
    assert not path.parent.exists()


# Usage errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["x.db", "--storage", "sqlite:y.db"], "not both"),
        (["--storage", "mysql://db"], "unknown scheme 'mysql'"),
        (["--storage", "postgres://db"], "postgresql stores are not checked by rewind verify"),
        (["--storage", "sqlite:"], "needs a file path"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_usage_errors_exit_2_in_one_line(args: list[str], words: str) -> None:
    result = run_rewind("verify", *args)
    assert result.returncode == 2
    assert words in assert_one_line_failure(result)


# The server's start-up check ----------------------------------------------------------


@pytest.fixture
def serve_args() -> Iterator[list[str]]:
    any_port = "tcp://127.0.0.1:*"
    yield [
        "--query-bind-endpoint",
        any_port,
        "--streaming-bind-endpoint",
        any_port,
        "--v2-streaming-bind-endpoint",
        any_port,
    ]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("position gap", "fails Rewind's start-up check: positions: 23 events but positions"),
        ("version gap", "fails Rewind's start-up check: streams: stream 'order-2': version 9"),
        ("repeated id", "the unique index on events(event_id) is missing"),
        ("not a Rewind store", "is an SQLite database but not a Rewind store"),
        ("garbage", "is not a usable Rewind store: file is not a database"),
    ],
)
def test_the_server_refuses_a_damaged_store_in_one_line(
    store: Path, serve_args: list[str], name: str, words: str
) -> None:
    CORRUPTIONS[name][0](store)
    result = run_rewind("serve", "--storage", f"sqlite:{store}", *serve_args, timeout=20)
    assert result.returncode == 1
    line = assert_one_line_failure(result, words)
    assert line.startswith(f"rewind: error: storage sqlite:{store}: ")
    if "start-up check" in words:
        assert line.endswith(f"`rewind verify --storage sqlite:{store}` checks it in full")


def test_a_damaged_page_is_refused_in_one_line_and_named_by_verify(
    tmp_path: Path, serve_args: list[str]
) -> None:
    path = tmp_path / "events.db"
    damage.build_store(path, 400)
    damage.scribble_on_page(path, 8)
    result = run_rewind("serve", "--storage", f"sqlite:{path}", *serve_args, timeout=20)
    assert result.returncode == 1
    assert_one_line_failure(result, f"{path} fails SQLite's quick check: On tree page 8 ")
    code, lines, _ = _verify(str(path))
    assert code == 1
    assert lines[0].startswith("problem: sqlite: quick_check: On tree page 8 ")


def test_the_server_still_starts_on_a_sound_store(store: Path) -> None:
    with ServerProcess(f"sqlite:{store}") as server, Client(server.query_endpoint) as client:
        assert client.server_info() is not None
        assert [event.position for event in client.read_all(backwards=True, max_count=1)] == [24]
