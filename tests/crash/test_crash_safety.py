"""Kill a loaded server with SIGKILL again and again; nothing acknowledged may be lost.

``REWIND_SOAK_CYCLES`` sets the number of kill cycles (20 by default, 200 in
``make soak``); ``REWIND_CRASH_SEED`` repeats a run's random choices.
"""

from __future__ import annotations

from pathlib import Path

from tests.crash.harness import CrashConfig, run_crash_harness

DEFAULT_CYCLES = 20


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    config = CrashConfig.from_environment(DEFAULT_CYCLES)
    print(f"crash harness seed {config.seed}, {config.cycles} cycles")
    report = run_crash_harness(config, tmp_path)
    print(report.summary())
    assert report.cycles == config.cycles
    assert report.lost == 0
    assert report.duplicates == 0
    # The load must have been real, or the kills proved nothing.
    assert report.events_acked >= 10 * config.cycles
    assert report.spanned_kill > 0
