"""Online backup of an SQLite store: a consistent copy, taken while a server writes.

The copy is made with SQLite's backup API, a batch of pages at a time, inside
one read transaction on the source. In WAL mode that transaction blocks no
writer; it pins the snapshot, so the copy holds exactly the events committed
when it began, however many the server commits meanwhile. (Without the pinned
snapshot SQLite would restart the copy after every commit and, under steady
writes, might never finish.)

The copy goes to a hidden temporary file beside the destination, is verified
(:func:`rewind.storage.verify.verify_sqlite`), flushed to disk, and only then
renamed into place, so the destination never holds a partial or unchecked copy.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rewind.errors import StorageError
from rewind.storage.verify import VerifyReport, open_for_verify, verify_sqlite

__all__ = ["PAGES_PER_STEP", "BackupResult", "backup_sqlite"]

PAGES_PER_STEP = 1024
"""Pages copied per backup step (4 MiB with SQLite's default page size)."""

Progress = Callable[[int, int], None]
"""Called after each step with the pages copied so far and the pages in all."""

_SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup: where it went, what it holds, and its verification."""

    source: Path
    dest: Path
    events: int
    last_position: int
    bytes: int
    seconds: float
    report: VerifyReport


def backup_sqlite(
    source: Path,
    dest: Path,
    *,
    force: bool = False,
    full_check: bool = False,
    pages_per_step: int = PAGES_PER_STEP,
    progress: Progress | None = None,
) -> BackupResult:
    """Copy the store at ``source`` to ``dest``; see the module docstring.

    ``dest`` must not exist unless ``force``; its directory must. The copy is
    checked as ``rewind verify`` would (``full_check``: with SQLite's
    ``integrity_check``). Raises :class:`StorageError` naming what went wrong;
    then ``dest`` is as it was.
    """
    started = time.perf_counter()
    source, dest = source.absolute(), dest.absolute()
    _check_paths(source, dest, force)
    scratch = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    _remove(scratch)
    try:
        _copy(source, scratch, pages_per_step, progress)
        report = verify_sqlite(scratch, full=full_check)
        if not report.ok:
            raise StorageError(
                f"the copy of {source} fails verification ({len(report.problems)} problem(s)), "
                f"first: {report.problems[0]}; {dest} is unchanged"
            )
        size = scratch.stat().st_size
        _fsync(scratch)
        _place(scratch, dest, force)
        _fsync(dest.parent)
    except OSError as exc:
        raise StorageError(f"backup to {dest} failed: {exc}") from exc
    finally:
        _remove(scratch)
    return BackupResult(
        source=source,
        dest=dest,
        events=report.events or 0,
        last_position=report.last_position or 0,
        bytes=size,
        seconds=time.perf_counter() - started,
        report=report,
    )


def _check_paths(source: Path, dest: Path, force: bool) -> None:
    if not source.is_file():
        raise StorageError(f"{source} does not exist or is not a file")
    if not dest.parent.is_dir():
        raise StorageError(f"the directory of {dest} does not exist")
    if dest.exists():
        if not dest.is_file():
            raise StorageError(f"{dest} exists and is not a file")
        if dest.samefile(source):
            raise StorageError(f"{dest} is the store itself")
        if not force:
            raise StorageError(f"{dest} exists; pass --force to replace it")
    for suffix in _SIDE_FILES:
        side = Path(f"{dest}{suffix}")
        # Left beside the new copy, another database's journal or WAL would be
        # applied to it on the next open and corrupt it.
        if side.exists():
            raise StorageError(
                f"{side} exists: is a server using {dest}? Stop it (and remove {side}) first"
            )


def _place(scratch: Path, dest: Path, force: bool) -> None:
    """Give the finished copy its name; without ``force``, never over a file that appeared."""
    if force:
        os.replace(scratch, dest)
        return
    try:
        # Linking fails if the name is taken, in one step; the scratch name goes later.
        os.link(scratch, dest)
    except FileExistsError:
        raise StorageError(f"{dest} exists; pass --force to replace it") from None
    except OSError:
        # A file system without hard links: check, then rename.
        if dest.exists():
            raise StorageError(f"{dest} exists; pass --force to replace it") from None
        os.replace(scratch, dest)


def _copy(source: Path, scratch: Path, pages_per_step: int, progress: Progress | None) -> None:
    try:
        src = open_for_verify(source)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open {source}: {exc}") from exc
    try:
        # The first read starts the transaction that pins the snapshot; the
        # backup then runs inside it rather than opening one per step.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        dst = sqlite3.connect(scratch, isolation_level=None)
        try:
            src.backup(
                dst,
                pages=max(1, pages_per_step),
                progress=None if progress is None else _reporter(progress),
            )
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StorageError(f"copying {source} failed: {exc}") from exc
    finally:
        with contextlib.suppress(sqlite3.Error):
            src.execute("ROLLBACK")
        src.close()


def _reporter(progress: Progress) -> Callable[[int, int, int], object]:
    def report(_status: int, remaining: int, total: int) -> None:
        progress(total - remaining, total)

    return report


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(scratch: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        Path(f"{scratch}{suffix}").unlink(missing_ok=True)
