"""Kill a loaded server with SIGKILL again and again; nothing acknowledged may be lost.

The run goes once against an SQLite file and once against a fresh PostgreSQL
schema (skipped without PostgreSQL, failed under ``REWIND_TEST_STRICT``).
``REWIND_SOAK_CYCLES`` sets the number of kill cycles (by default 20 on SQLite
and 10 on PostgreSQL; 200 in ``make soak``), ``REWIND_SOAK_BACKEND``
(``sqlite`` or ``postgres``) runs one backend only, and ``REWIND_CRASH_SEED``
repeats a run's random choices.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tests import postgres_support
from tests.crash.backends import (
    BACKEND_VARIABLE,
    BACKENDS,
    Backend,
    PostgresSchema,
    SQLiteFile,
    selected_backends,
)
from tests.crash.harness import (
    CYCLES_VARIABLE,
    CrashConfig,
    CrashSafetyError,
    run_crash_harness,
)

DEFAULT_CYCLES = {"sqlite": 20, "postgres": 10}
CONFIG = CrashConfig.from_environment(max(DEFAULT_CYCLES.values()))


def _cycles(backend: str) -> int:
    """``REWIND_SOAK_CYCLES`` when set, else the backend's default."""
    if os.environ.get(CYCLES_VARIABLE):
        return CONFIG.cycles
    return DEFAULT_CYCLES[backend]


@contextmanager
def _backend(name: str, directory: Path) -> Iterator[Backend]:
    if name == "sqlite":
        yield SQLiteFile(directory / "events.db")
        return
    with postgres_support.fresh_schema("crash") as schema:
        yield PostgresSchema(schema)


# A cycle takes about a second; a run that takes ten times as long is stuck.
@pytest.mark.timeout(60 + 10 * max(_cycles(name) for name in BACKENDS))
@pytest.mark.parametrize("backend_name", BACKENDS)
def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path, backend_name: str) -> None:
    if backend_name not in selected_backends():
        pytest.skip(f"{BACKEND_VARIABLE} chooses {', '.join(selected_backends())}")
    config = replace(CONFIG, cycles=_cycles(backend_name))
    print(f"crash harness on {backend_name}, seed {config.seed}, {config.cycles} cycles")
    with _backend(backend_name, tmp_path) as backend:
        report = run_crash_harness(config, tmp_path, backend=backend)
    print(report.summary())
    assert report.cycles == config.cycles
    assert report.lost == 0
    assert report.duplicates == 0
    # The load must have been real, or the kills proved nothing.
    assert report.events_acked >= 10 * config.cycles
    assert report.spanned_kill > 0
    # About one append per kill commits just before it and is answered only
    # after the restart, through the client's retry; at least one must have.
    assert report.committed_before_kill > 0


def test_the_harness_notices_a_store_that_forgets(tmp_path: Path) -> None:
    # The memory store acknowledges events and loses them all in a kill:
    # the first cycle's check must say so.
    config = CrashConfig(cycles=2, seed=1)
    with pytest.raises(CrashSafetyError, match=r"cycle 1 (?s:.*)acknowledged, not stored"):
        run_crash_harness(config, tmp_path, storage="memory:")
