"""``rewind verify`` and ``rewind backup``: checking and copying a store on disk.

Both work on the store file directly, not through a server, and both are
safe while a server is running on it: they read one consistent snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rewind.cli.common import USAGE_EXIT, Commands, fail
from rewind.errors import ConfigError, RewindError
from rewind.storage import StorageURL, parse_storage_url

_NOTHING_ON_DISK = "memory: keeps events only in a running server's memory"


def add_admin_tools(commands: Commands) -> None:
    """Register ``verify`` and ``backup``."""
    verify = commands.add_parser(
        "verify",
        help="check a store's integrity",
        description="Check an SQLite store: SQLite's quick_check (--full: "
        "integrity_check), the schema, and Rewind's invariants (positions 1, 2, 3, ... "
        "without gaps; each stream's versions 0, 1, 2, ... in order; unique event ids; "
        "commit times in position order). Prints one line per problem and a summary. "
        "Exit status: 0 sound, 1 problems found, 2 usage error. Safe while a server runs.",
    )
    verify.add_argument(
        "store",
        nargs="?",
        metavar="STORE",
        help="the store: a storage URL or the path of an SQLite file (or use --storage)",
    )
    _add_storage_option(verify)
    verify.add_argument(
        "--full",
        action="store_true",
        help="run SQLite's integrity_check (also compares every index with its table; slower)",
    )
    verify.add_argument("--json", action="store_true", help="print the report as one JSON object")
    verify.set_defaults(handler=run_verify)

    backup = commands.add_parser(
        "backup",
        help="copy a store consistently, even while a server writes to it",
        description="Copy an SQLite store to DEST with SQLite's backup API: a consistent "
        "snapshot of the committed events, taken while a server keeps accepting writes. "
        "The copy is verified, flushed to disk and renamed into place, so DEST never "
        "holds a partial copy.",
    )
    backup.add_argument("dest", metavar="DEST", type=Path, help="where to write the copy")
    _add_storage_option(backup)
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.add_argument(
        "--full", action="store_true", help="verify the copy with SQLite's integrity_check"
    )
    backup.add_argument(
        "--progress", action="store_true", help="report the pages copied on standard error"
    )
    backup.add_argument("--json", action="store_true", help="print the result as one JSON object")
    backup.set_defaults(handler=run_backup)


def _add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="sqlite:PATH, as for `rewind serve` (default $REWIND_STORAGE, "
        "else sqlite:rewind-data/events.db)",
    )


def _storage(args: argparse.Namespace) -> StorageURL:
    """The store named by STORE, --storage, $REWIND_STORAGE or the server's default."""
    from rewind.server.config import DEFAULT_STORAGE

    given = getattr(args, "store", None)
    if given is not None and args.storage is not None:
        raise ConfigError("give the store as STORE or with --storage, not both")
    if given is not None:
        if given.startswith(("sqlite:", "memory:")):
            return parse_storage_url(given)
        if not given:
            raise ConfigError("STORE is empty")
        return StorageURL("sqlite", Path(given).expanduser().absolute())
    if args.storage is not None:
        try:
            return parse_storage_url(args.storage)
        except ConfigError as exc:
            raise ConfigError(f"--storage: {exc}") from None
    return parse_storage_url(os.environ.get("REWIND_STORAGE") or DEFAULT_STORAGE)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{count / 1e3:.0f} kB"


def _usage(message: str) -> int:
    print(f"rewind: error: {message}", file=sys.stderr)
    return USAGE_EXIT


def run_verify(args: argparse.Namespace) -> int:
    """Verify the store and print the report; 0 when sound, 1 when not."""
    from rewind.storage.verify import verify_sqlite

    try:
        storage = _storage(args)
    except ConfigError as exc:
        return _usage(str(exc))
    if storage.kind == "memory":
        message = f"{_NOTHING_ON_DISK}; there is nothing on disk to verify"
        if args.json:
            print(json.dumps({"storage": str(storage), "ok": True, "note": message}))
        else:
            print(message)
        return 0
    if storage.path is None:
        return _usage(
            f"--storage: {storage.kind} stores are not checked by rewind verify (SQLite only); "
            "PostgreSQL keeps its own invariants by constraints (see docs/operations.md)"
        )
    report = verify_sqlite(storage.path, full=args.full)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
        return 0 if report.ok else 1
    for problem in report.problems:
        print(f"problem: {problem}")
    pragma = "integrity_check" if report.full else "quick_check"
    counts = (
        f"{_count(report.events, 'event')} in {_count(report.streams, 'stream')}, "
        f"last position {report.last_position}; "
        if report.events is not None and report.streams is not None
        else ""
    )
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(
        f"{report.path}: {verdict}; {len(report.checks)} checks ({pragma}); "
        f"{counts}{report.seconds:.2f} s"
    )
    return 0 if report.ok else 1


def run_backup(args: argparse.Namespace) -> int:
    """Back the store up to DEST and report what the copy holds."""
    from rewind.storage.sqlite_backup import backup_sqlite

    try:
        storage = _storage(args)
    except ConfigError as exc:
        return _usage(str(exc))
    if storage.kind == "memory":
        return _usage(f"--storage: {_NOTHING_ON_DISK}; there is nothing on disk to back up")
    if storage.path is None:
        return _usage(
            f"--storage: rewind backup copies SQLite stores; back a {storage.kind} store up "
            "with its own tools (pg_dump --schema=SCHEMA, or physical backups)"
        )

    def progress(copied: int, total: int) -> None:
        percent = 100 * copied // total if total else 100
        print(f"copied {copied} of {total} pages ({percent}%)", file=sys.stderr, flush=True)

    try:
        result = backup_sqlite(
            storage.path,
            args.dest,
            force=args.force,
            full_check=args.full,
            progress=progress if args.progress else None,
        )
    except RewindError as exc:
        return fail(str(exc))
    if args.json:
        record = {
            "source": str(result.source),
            "dest": str(result.dest),
            "events": result.events,
            "last_position": result.last_position,
            "bytes": result.bytes,
            "seconds": round(result.seconds, 3),
        }
        print(json.dumps(record, ensure_ascii=False))
    else:
        print(
            f"backed up {result.source} to {result.dest}: {result.events} events, "
            f"last position {result.last_position}; {_size(result.bytes)} "
            f"in {result.seconds:.2f} s; the copy passed verification"
        )
    return 0
