"""The SQLite backup: one pinned snapshot, verified, renamed into place, nothing left behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rewind.errors import StorageError
from rewind.model import AppendRequest, NewEvent
from rewind.storage.sqlite import SQLiteStore
from rewind.storage.sqlite_backup import backup_sqlite
from tests import store_damage as damage


def _positions(path: Path) -> list[int]:
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT position FROM events ORDER BY position")]
    finally:
        db.close()


def test_commits_between_steps_neither_restart_nor_enter_the_copy(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    store = SQLiteStore(source)
    try:
        for _ in range(40):  # enough pages for many one-page steps
            store.append([AppendRequest("big", (NewEvent(data=bytes(3000)),))])
        steps: list[tuple[int, int]] = []

        def commit_between_steps(copied: int, total: int) -> None:
            steps.append((copied, total))
            # A restarted copy would step through the pages again and again.
            assert len(steps) < 1000, "the copy keeps restarting"
            store.append([AppendRequest("during", (NewEvent(data=b"late"),))])

        result = backup_sqlite(source, dest, pages_per_step=1, progress=commit_between_steps)
    finally:
        store.close()
    assert len(steps) > 10
    assert steps[-1][0] == steps[-1][1]
    assert (result.events, result.last_position) == (40, 40)
    assert _positions(dest) == list(range(1, 41))
    assert len(_positions(source)) == 40 + len(steps)
    assert result.report.ok and result.bytes == dest.stat().st_size


def test_the_copy_is_a_store_the_server_can_open(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 9)
    backup_sqlite(source, dest)
    with SQLiteStore(dest) as copy:
        last = copy.last_event()
        assert last is not None and last.position == 9
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.db", "events.db"]


def test_a_failed_backup_leaves_dest_as_it_was(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 9)
    damage.delete_position(source, 4)
    dest.write_bytes(b"the previous backup")
    with pytest.raises(StorageError, match=r"fails verification.*position 4 is missing"):
        backup_sqlite(source, dest, force=True)
    assert dest.read_bytes() == b"the previous backup"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.db", "events.db"]


def test_a_store_cannot_be_backed_up_onto_itself(tmp_path: Path) -> None:
    source = tmp_path / "events.db"
    damage.build_store(source, 3)
    with pytest.raises(StorageError, match="is the store itself"):
        backup_sqlite(source, tmp_path / "." / "events.db", force=True)


def test_a_dest_that_appears_during_the_copy_is_not_overwritten(tmp_path: Path) -> None:
    source, dest = tmp_path / "events.db", tmp_path / "copy.db"
    damage.build_store(source, 9)

    def someone_else_writes_dest(copied: int, total: int) -> None:
        dest.write_bytes(b"written meanwhile")

    with pytest.raises(StorageError, match="exists; pass --force to replace it"):
        backup_sqlite(source, dest, progress=someone_else_writes_dest)
    assert dest.read_bytes() == b"written meanwhile"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy.db", "events.db"]
