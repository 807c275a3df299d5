"""``make bench`` stays runnable: a quick row prints the table with its baseline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_row_prints_a_table_with_a_baseline() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "memory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "1 REQ client, memory:" in line)
    assert "pyzmq REQ→REP echo" in row
    assert "x " in row  # the ratio column
