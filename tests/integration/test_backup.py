"""``rewind backup`` of a store a real server keeps writing to, and its refusals."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rewind.client import AppendResult, Client, EventData
from rewind.model import RecordedEvent
from tests import store_damage as damage
from tests.integration.helpers import assert_one_line_failure
from tests.support import ServerProcess, run_rewind

WRITERS = 3


class Writers:
    """Threads appending to a server without pause, each with a client of its own.

    Every acknowledged append is kept with the moment its reply arrived.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.acks: list[tuple[float, AppendResult]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(number,)) for number in range(WRITERS)
        ]

    def _write(self, number: int) -> None:
        try:
            with Client(self.endpoint, timeout=10) as client:
                count = 0
                while not self._stop.is_set():
                    events = [EventData(f"w{number} e{count}.{i}".encode()) for i in range(3)]
                    result = client.append(f"writer-{number}-{count % 4}", events)
                    with self._lock:
                        self.acks.append((time.monotonic(), result))
                    count += 1
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acks)

    def wait_for(self, acks: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged() < acks:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"only {self.acknowledged()} appends acknowledged"
            time.sleep(0.01)

    def __enter__(self) -> Writers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def _everything(endpoint: str) -> list[RecordedEvent]:
    with Client(endpoint) as client:
        return list(client.read_all())


def test_backup_while_writers_append_is_a_verified_prefix_of_the_log(tmp_path: Path) -> None:
    original = tmp_path / "live" / "events.db"
    copy = tmp_path / "backups" / "events-copy.db"
    copy.parent.mkdir()
    with ServerProcess(f"sqlite:{original}") as server:
        with Client(server.query_endpoint) as client:
            # Some megabytes first, so that the copy takes many steps.
            for batch in range(10):
                client.append(f"bulk-{batch}", [EventData(b"x" * 2000)] * 500)
        with Writers(server.query_endpoint) as writers:
            writers.wait_for(50)
            started = time.monotonic()
            backup = run_rewind("backup", str(copy), "--storage", f"sqlite:{original}", "--json")
            finished = time.monotonic()
            writers.wait_for(writers.acknowledged() + 50)  # and on it goes after the copy
        assert not writers.errors, writers.errors
        originals = _everything(server.query_endpoint)

    assert backup.returncode == 0, backup.stderr.decode()
    summary = json.loads(backup.stdout)
    assert summary["dest"] == str(copy)

    verified = run_rewind("verify", str(copy))
    assert verified.returncode == 0, verified.stdout.decode()

    with ServerProcess(f"sqlite:{copy}") as second:
        copied = _everything(second.query_endpoint)
    assert len(copied) == summary["events"]
    assert copied[-1].position == summary["last_position"]
    # Exactly a prefix of the original's global log, event for event.
    assert copied == originals[: len(copied)]
    assert len(copied) < len(originals), "the writers went on after the snapshot"
    during = [result for moment, result in writers.acks if started < moment < finished]
    assert during, "the server kept acknowledging appends while the backup ran"
    # Whatever was acknowledged before the backup began is in the copy.
    acked_before = [result for moment, result in writers.acks if moment < started]
    assert acked_before
    for result in acked_before:
        assert result.last_position <= summary["last_position"]
        stored = copied[result.first_position - 1 : result.last_position]
        assert {event.stream for event in stored} == {result.stream}


def test_a_backup_is_refused_over_an_existing_file_unless_forced(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 12)
    dest.write_bytes(b"precious")
    refused = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}")
    assert refused.returncode == 1
    assert_one_line_failure(refused, f"{dest} exists; pass --force to replace it")
    assert dest.read_bytes() == b"precious"

    forced = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}", "--force")
    assert forced.returncode == 0, forced.stderr.decode()
    assert forced.stdout.decode().startswith(
        f"backed up {source} to {dest}: 12 events, last position 12; "
    )
    assert run_rewind("verify", str(dest)).returncode == 0


def test_a_backup_is_refused_beside_a_leftover_wal(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 3)
    Path(f"{dest}-wal").write_bytes(b"someone else's log")
    result = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}", "--force")
    assert result.returncode == 1
    assert_one_line_failure(result, f"{dest}-wal exists: is a server using {dest}?")
    assert not dest.exists()


def test_a_copy_that_fails_verification_never_reaches_dest(tmp_path: Path) -> None:
    source, dest = tmp_path / "other.db", tmp_path / "copy.db"
    damage.plain_sqlite_file(source)
    result = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}")
    assert result.returncode == 1
    assert_one_line_failure(result, "fails verification", "not a Rewind store", "is unchanged")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.db"]


def test_progress_goes_to_stderr(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 3)
    result = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}", "--progress")
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    assert lines and lines[-1].startswith("copied ") and lines[-1].endswith("pages (100%)")


@pytest.mark.parametrize(
    ("args", "status", "words"),
    [
        (["--storage", "memory:"], 2, "nothing on disk to back up"),
        (["--storage", "sqlite:{tmp}/missing.db"], 1, "missing.db does not exist"),
        (["--storage", "sqlite:{tmp}/events.db", "--no-such-flag"], 2, "--no-such-flag"),
    ],
)
def test_bad_requests_fail_in_one_line(
    tmp_path: Path, args: list[str], status: int, words: str
) -> None:
    result = run_rewind(
        "backup", str(tmp_path / "copy.db"), *(a.format(tmp=tmp_path) for a in args)
    )
    assert result.returncode == status
    assert_one_line_failure(result, words)


def test_a_missing_destination_directory_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "events.db"
    damage.build_store(source, 3)
    dest = tmp_path / "no" / "such" / "copy.db"
    result = run_rewind("backup", str(dest), "--storage", f"sqlite:{source}")
    assert result.returncode == 1
    assert_one_line_failure(result, f"the directory of {dest} does not exist")


def test_a_postgresql_store_is_sent_to_its_own_backup_tools(tmp_path: Path) -> None:
    dest = tmp_path / "copy.db"
    result = run_rewind("backup", str(dest), "--storage", "postgresql://nobody@127.0.0.1/none")
    assert result.returncode == 2
    assert_one_line_failure(result, "back a postgresql store up with its own tools")
    assert not dest.exists()
