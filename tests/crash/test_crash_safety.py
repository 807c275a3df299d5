"""Kill a loaded server with SIGKILL again and again; nothing acknowledged may be lost.

``REWIND_SOAK_CYCLES`` sets the number of kill cycles (20 by default, 200 in
``make soak``); ``REWIND_CRASH_SEED`` repeats a run's random choices.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash.harness import CrashConfig, CrashSafetyError, run_crash_harness

DEFAULT_CYCLES = 20
CONFIG = CrashConfig.from_environment(DEFAULT_CYCLES)


# A cycle takes about a second; a run that takes ten times as long is stuck.
@pytest.mark.timeout(60 + 10 * CONFIG.cycles)
def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    config = CONFIG
    print(f"crash harness seed {config.seed}, {config.cycles} cycles")
    report = run_crash_harness(config, tmp_path)
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
