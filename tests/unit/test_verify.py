"""Verifying SQLite stores: real files, damaged with sqlite3 the way Rewind never would."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from rewind.errors import StoreUnavailableError
from rewind.model import AppendRequest, NewEvent
from rewind.storage.sqlite import SQLiteStore
from rewind.storage.startup_check import startup_problems
from rewind.storage.verify import CHECKS, MAX_DETAILS, VerifyReport, verify_sqlite
from tests import store_damage as damage

EVENTS = 30  # alpha, beta and gamma take turns: alpha holds positions 1, 4, ..., 28


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "events.db"
    damage.build_store(path, EVENTS)
    return path


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the 30-event store, to damage."""
    path = tmp_path / "events.db"
    shutil.copy(pristine, path)
    return path


def _checks(report: VerifyReport) -> set[str]:
    return {problem.check for problem in report.problems}


def _messages(report: VerifyReport) -> str:
    return "\n".join(str(problem) for problem in report.problems)


def test_a_sound_store_passes_every_check(store: Path) -> None:
    report = verify_sqlite(store)
    assert report.ok, _messages(report)
    assert report.checks == CHECKS
    assert (report.events, report.streams, report.last_position) == (EVENTS, 3, EVENTS)
    assert not report.full


def test_a_sound_store_passes_the_full_check(store: Path) -> None:
    report = verify_sqlite(store, full=True)
    assert report.ok and report.full, _messages(report)


def test_an_empty_store_is_sound(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "events.db").close()
    report = verify_sqlite(tmp_path / "events.db")
    assert report.ok, _messages(report)
    assert (report.events, report.streams, report.last_position) == (0, 0, 0)


def test_verifying_changes_nothing_and_leaves_no_side_files(store: Path) -> None:
    before = store.read_bytes()
    verify_sqlite(store, full=True)
    assert store.read_bytes() == before
    assert sorted(path.name for path in store.parent.iterdir()) == [store.name]


def _head_position(path: Path, stream: str) -> int:
    return damage.position_of(path, stream, damage.head_of(path, stream))


def _all_at_one_time(path: Path) -> None:
    with damage.edit(path) as db:
        db.execute("UPDATE events SET recorded_at = 1000")


def _repeat_a_version(path: Path) -> None:
    damage.drop_unique_constraints(path)
    damage.set_column(path, damage.position_of(path, "gamma", 5), "version", 4)


def _repeat_an_id(path: Path) -> None:
    damage.drop_unique_constraints(path)
    with damage.edit(path) as db:
        event_id = db.execute("SELECT event_id FROM events WHERE position = 2").fetchone()[0]
    damage.set_column(path, 7, "event_id", event_id)


def _swap_two_versions(path: Path) -> None:
    _all_at_one_time(path)  # so that only the versions are out of order
    damage.swap_positions(
        path, damage.position_of(path, "alpha", 1), damage.position_of(path, "alpha", 2)
    )


def _drop_version_index(path: Path) -> None:
    damage.drop_unique_constraints(path, keep_unique_ids=True)


def _replace_with(write: Callable[[Path], None]) -> Callable[[Path], None]:
    def replace(path: Path) -> None:
        path.unlink()
        write(path)

    return replace


# (damage, the checks that must complain and nothing else, words of the complaint)
DAMAGES: dict[str, tuple[Callable[[Path], object], set[str], str]] = {
    "position gap": (
        lambda path: damage.delete_position(path, _head_position(path, "alpha")),
        {"positions"},
        "positions: position 28 is missing",
    ),
    "position gap inside a stream": (
        lambda path: damage.delete_position(path, 5),
        {"positions", "streams"},
        "stream 'beta': version 1 is missing",
    ),
    "version gap": (
        lambda path: damage.set_column(path, _head_position(path, "beta"), "version", 12),
        {"streams"},
        "stream 'beta': versions 9-11 are missing",
    ),
    "first version missing": (
        lambda path: damage.set_column(path, 2, "version", 100),
        {"streams"},
        "stream 'beta': version 0 is missing",
    ),
    "repeated version": (
        _repeat_a_version,
        {"schema", "streams"},
        "stream 'gamma': version 4 is stored at positions 15, 18",
    ),
    "repeated event id": (_repeat_an_id, {"schema", "event-ids"}, "is stored at positions 2, 7"),
    "versions out of position order": (
        _swap_two_versions,
        {"streams"},
        "stream 'alpha': version 1 is at position 7, after version 2 at position 4",
    ),
    "time going backwards": (
        lambda path: damage.set_column(path, 10, "recorded_at", 5),
        {"times"},
        "position 10 was recorded earlier than position 9",
    ),
    "short event id": (
        lambda path: damage.set_column(path, 10, "event_id", b"xx"),
        {"columns"},
        "event at position 10: event_id is 2 bytes long, not 16",
    ),
    "negative version": (
        lambda path: damage.set_column(path, 30, "version", -3),
        {"columns", "streams"},
        "event at position 30: version is -3",
    ),
    "text in a number column": (
        lambda path: damage.set_column(path, 10, "recorded_at", "yesterday"),
        {"columns", "times"},
        "event at position 10: recorded_at is text",
    ),
    "missing index": (
        _drop_version_index,
        {"schema"},
        "unique index on events(stream, version) is missing",
    ),
    "foreign application id": (
        lambda path: damage.set_pragma(path, "application_id", 7),
        {"header"},
        "not a Rewind store (application_id 0x7",
    ),
    "newer schema version": (
        lambda path: damage.set_pragma(path, "user_version", 9),
        {"header"},
        "schema version 9 is newer",
    ),
    "another application's database": (
        _replace_with(damage.plain_sqlite_file),
        {"header", "schema"},
        "there is no events table",
    ),
    "garbage file": (
        lambda path: path.write_bytes(b"not a database\n" * 300),
        {"file"},
        "is not an SQLite database",
    ),
    "empty file": (lambda path: path.write_bytes(b""), {"file"}, "is empty"),
    "missing file": (lambda path: path.unlink(), {"file"}, "does not exist"),
    "directory": (_replace_with(lambda path: path.mkdir()), {"file"}, "is not a regular file"),
}


@pytest.mark.parametrize("name", DAMAGES)
def test_each_kind_of_damage_is_found_and_named(store: Path, name: str) -> None:
    harm, checks, words = DAMAGES[name]
    harm(store)
    report = verify_sqlite(store)
    assert not report.ok
    assert _checks(report) == checks, _messages(report)
    assert words in _messages(report)
    assert all("\n" not in problem.message for problem in report.problems)


def test_a_damaged_page_fails_sqlite_check(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    damage.build_store(path, 400)  # several pages of events
    damage.scribble_on_page(path, 8)
    report = verify_sqlite(path)
    assert "sqlite" in _checks(report), _messages(report)
    assert "quick_check: " in _messages(report)
    assert all("\n" not in problem.message for problem in report.problems)


def test_only_the_full_check_compares_indexes_with_their_table(store: Path) -> None:
    damage.change_behind_index(store, EVENTS)
    assert verify_sqlite(store).ok
    report = verify_sqlite(store, full=True)
    assert _checks(report) == {"sqlite"}
    expected = "integrity_check: row 30 missing from index sqlite_autoindex_events_1"
    assert expected in _messages(report)


def test_long_lists_of_problems_are_cut_short_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    damage.build_store(path, 90)
    with damage.edit(path) as db:
        db.execute("DELETE FROM events WHERE position % 3 = 2")  # 30 gaps, every beta event
    report = verify_sqlite(path)
    positions = [p.message for p in report.problems if p.check == "positions"]
    assert len(positions) == MAX_DETAILS + 1
    assert positions[MAX_DETAILS - 1] == "position 59 is missing"  # in order, the 21st cut
    assert positions[-1] == "30 positions are missing in all: 60 events from 1 to 90"


def test_many_broken_streams_are_cut_short_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    SQLiteStore(path).close()
    with damage.edit(path) as db:  # 25 streams, each at versions 0 and 2
        db.executemany(
            "INSERT INTO events (position, event_id, stream, version, recorded_at, data) "
            "VALUES (?, ?, ?, ?, 1, x'')",
            [(p, uuid.uuid4().bytes, f"s{p % 25:02}", 2 * (p > 25)) for p in range(1, 51)],
        )
    report = verify_sqlite(path)
    streams = [p.message for p in report.problems if p.check == "streams"]
    assert streams[0] == "stream 's00': version 1 is missing"
    assert len(streams) == MAX_DETAILS + 1
    assert streams[-1] == "25 streams in all have missing or repeated versions"


def test_the_report_as_json_values(store: Path) -> None:
    damage.delete_position(store, 5)
    record = verify_sqlite(store).as_dict()
    assert record["ok"] is False and record["events"] == EVENTS - 1
    assert {"check": "positions", "message": "position 5 is missing"} in record["problems"]


def test_a_store_being_written_verifies_as_one_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    stop = threading.Event()

    def write() -> None:
        number = 0
        while not stop.is_set():
            requests = [
                AppendRequest(f"s{(number + i) % 7}", (NewEvent(data=b"x"),)) for i in range(20)
            ]
            store.append(requests)
            number += 20

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = []
        for _ in range(5):
            time.sleep(0.05)
            reports.append(verify_sqlite(path))
    finally:
        stop.set()
        writer.join()
        store.close()
    assert all(report.ok for report in reports), [_messages(r) for r in reports]
    assert reports[-1].events is not None and reports[-1].events > 0


# The start-up check --------------------------------------------------------------------


def _startup(path: Path, tail: int = 1000) -> list[str]:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return [str(problem) for problem in startup_problems(db, tail=tail)]
    finally:
        db.close()


def test_the_startup_check_passes_a_sound_store(store: Path) -> None:
    assert _startup(store) == []


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("position gap", "29 events but positions run from 1 to 30"),
        ("version gap", "stream 'beta': version 12 at position 29 does not follow version 11"),
        ("repeated event id", "schema: the unique index on events(event_id) is missing"),
        ("versions out of position order", "does not follow version"),
        ("time going backwards", "times: position 10 was recorded earlier than position 9"),
        ("short event id", "columns: event at position 10"),
        ("text in a number column", "columns: event at position 10: recorded_at is text"),
        ("missing index", "unique index on events(stream, version) is missing"),
    ],
)
def test_the_startup_check_finds_damage_among_recent_events(
    store: Path, name: str, words: str
) -> None:
    DAMAGES[name][0](store)
    problems = _startup(store)
    assert any(words in problem for problem in problems), problems


def test_the_startup_check_stops_at_a_schema_problem(tmp_path: Path) -> None:
    """Without its indexes every lookup of the start-up check would read the whole table."""
    path = tmp_path / "events.db"
    damage.build_store(path, 3000)
    damage.drop_unique_constraints(path)
    damage.set_column(path, 3000, "version", 5000)
    started = time.perf_counter()
    problems = _startup(path)
    assert time.perf_counter() - started < 2
    assert problems == [
        "schema: the unique index on events(event_id) is missing",
        "schema: the unique index on events(stream, version) is missing",
    ]


def test_the_startup_check_looks_only_at_recent_events(store: Path) -> None:
    damage.set_column(store, 3, "recorded_at", 5)  # early, out of a 10-event tail
    assert _startup(store, tail=10) == []
    assert _startup(store, tail=EVENTS) != []
    assert not verify_sqlite(store).ok


def test_opening_a_store_that_fails_the_startup_check_is_refused(store: Path) -> None:
    damage.delete_position(store, 5)
    with pytest.raises(StoreUnavailableError) as caught:
        SQLiteStore(store)
    message = str(caught.value)
    assert "\n" not in message
    assert "fails Rewind's start-up check: positions: 29 events" in message
    assert f"rewind verify --storage sqlite:{store}" in message


def test_opening_a_store_with_text_in_a_recent_version_is_refused(store: Path) -> None:
    damage.set_column(store, EVENTS, "version", "three")
    with pytest.raises(StoreUnavailableError, match="version is text"):
        SQLiteStore(store)


def test_a_large_store_verifies_quickly(tmp_path: Path) -> None:
    """100,000 events in 1,000 streams: the checks stay set-based (no per-row round trips)."""
    path = tmp_path / "events.db"
    SQLiteStore(path).close()
    count, streams = 100_000, 1_000
    with damage.edit(path) as db:
        db.executemany(
            "INSERT INTO events (position, event_id, stream, version, recorded_at, data) "
            "VALUES (?, ?, ?, ?, ?, x'00')",
            (
                (p, uuid.uuid4().bytes, f"s{(p - 1) % streams}", (p - 1) // streams, p)
                for p in range(1, count + 1)
            ),
        )
    started = time.perf_counter()
    report = verify_sqlite(path)
    seconds = time.perf_counter() - started
    assert report.ok, _messages(report)
    assert (report.events, report.streams) == (count, streams)
    # About 0.2 s on a laptop core; the bound leaves room for a busy shared machine.
    assert seconds < 5
