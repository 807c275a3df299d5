"""``python -m benchmarks``: run the benchmarks and print a table of figures beside baselines."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from benchmarks.curve import curve_cost
from benchmarks.postgres import postgres_rows
from benchmarks.report import Row, render_table, write_json
from benchmarks.scaleout import scaleout_rows
from benchmarks.settings import FULL, QUICK
from benchmarks.store import DATA_DIR
from benchmarks.suites import Run, big_store, concurrent, single_client
from benchmarks.v2 import batches, latency, pipelined, read_all

ROW_NAMES = {
    "memory": "row 1: one client publishing to a memory: server",
    "sqlite": "row 2: one client publishing durably to an sqlite: server",
    "concurrent": "rows 3/3b: 16 REQ clients publishing durably",
    "read": "rows 4a/4b: paged QUERY reads from the start and the middle of a big store",
    "startup": "rows 5a-5c: start-up time and RSS on a big store",
    "pipelined": "row 6: one DEALER pipelining single-event v2 APPENDs durably",
    "batch": "row 7: v2 APPENDs of 100 events each, durably",
    "readall": "rows 8a/8b: streamed v2 READ_ALL from the start and the middle of a big store",
    "latency": "rows 9a/9b: append-to-subscriber latency on the v2 feed",
    "curve": "row 10: one client publishing with CURVE on, against CURVE off",
    "postgres": "rows 11a-11c: appends and a read through one server on postgresql:",
    "scaleout": "rows 12a-12c: appends and reads through three servers on one postgresql: schema",
}


def _parse_only(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - set(ROW_NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown row {', '.join(unknown) or '(none)'}; choose from {', '.join(ROW_NAMES)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Rewind against baselines taken in the same run.",
        epilog="Rows: " + "; ".join(f"{name} = {text}" for name, text in ROW_NAMES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller stores and shorter windows: a smoke run, not a measurement",
    )
    parser.add_argument(
        "--only",
        type=_parse_only,
        metavar="NAME[,NAME]",
        help=f"run only these rows ({', '.join(ROW_NAMES)})",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    return parser


def _progress(message: str) -> None:
    # Progress goes to stderr so that stdout carries nothing but the report.
    print(f"... {message}", file=sys.stderr, flush=True)


Group = tuple[Collection[str], Callable[[], list[Row]]]
"""Row names and the function that measures them (rows that share a setup)."""


def measure_groups(
    groups: Sequence[Group], wanted: Collection[str], progress: Callable[[str], None]
) -> tuple[list[Row], list[str]]:
    """Measure each group with a wanted row; return the rows and what failed.

    A group that raises is reported (its rows are missing) and the others
    still run, so one failure does not cost a long run's other figures.
    """
    rows: list[Row] = []
    failures: list[str] = []
    for names, measure in groups:
        chosen = sorted(set(wanted) & set(names))
        if not chosen:
            continue
        try:
            rows += measure()
        except Exception as exc:  # Reported in the notes and by the exit status.
            failures.append(f"{', '.join(chosen)} failed: {type(exc).__name__}: {exc}")
            progress(failures[-1])
    return rows, failures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen rows, print the table, optionally write JSON."""
    args = build_parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    wanted: set[str] = args.only or set(ROW_NAMES)
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.UTC)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Scratch stores live beside the cached ones, on the same disk, and vanish afterwards.
    with tempfile.TemporaryDirectory(dir=DATA_DIR, prefix="run-") as scratch:
        run = Run(settings, Path(scratch), progress=_progress)
        groups: list[Group] = [
            ({"memory", "sqlite"}, lambda: single_client(run, wanted)),
            ({"concurrent"}, lambda: concurrent(run)),
            ({"read", "startup"}, lambda: big_store(run, wanted)),
            ({"pipelined"}, lambda: pipelined(run)),
            ({"batch"}, lambda: batches(run)),
            ({"readall"}, lambda: read_all(run)),
            ({"latency"}, lambda: latency(run)),
            ({"curve"}, lambda: curve_cost(run)),
            ({"postgres"}, lambda: postgres_rows(run)),
            ({"scaleout"}, lambda: scaleout_rows(run)),
        ]
        rows, failures = measure_groups(groups, wanted, _progress)
    elapsed = time.perf_counter() - started

    cpus = os.cpu_count() or 0
    print(
        f"Rewind benchmarks ({settings.mode} run), {started_at:%Y-%m-%d %H:%M} UTC: "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{cpus} CPUs"
    )
    print()
    print(render_table(rows))
    print()
    for note in [*run.notes, *failures]:
        print(f"* {note}")
    judged = [row for row in rows if row.passed is not None]
    passed = sum(bool(row.passed) for row in judged)
    print(f"* {passed} of {len(judged)} rows with a target meet it; run took {elapsed:.1f} s")
    if args.json is not None:
        write_json(
            args.json,
            rows,
            run.notes,
            {
                "mode": settings.mode,
                "started_at": started_at.isoformat(),
                "seconds": elapsed,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": cpus,
                "settings": {
                    name: getattr(settings, name) for name in settings.__dataclass_fields__
                },
                "failures": failures,
            },
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
