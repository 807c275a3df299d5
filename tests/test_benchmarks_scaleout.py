"""Rows 12a-12c run: three servers on one PostgreSQL schema beside one server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import postgres_support

ROOT = Path(__file__).resolve().parent.parent


def test_quick_scaleout_rows_compare_three_servers_with_one(tmp_path: Path) -> None:
    postgres_support.require_postgres()
    results = tmp_path / "results.json"
    before = _bench_schemas()
    env = {**os.environ, "REWIND_BENCH_POSTGRES_URL": postgres_support.base_url()}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "scaleout", "--json", results],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(results.read_text())["rows"]}
    assert sorted(rows) == ["12a", "12b", "12c"]
    for row in rows.values():
        assert row["result"]["value"] > 0 and row["baseline"]["value"] > 0
        for config in ("one", "three"):
            assert row["details"][config]["server_cpu_us_per_event"] > 0
    # The appends really went through group commits on both configurations.
    assert rows["12b"]["details"]["three"]["events_per_commit"] >= 100
    assert "row 12c: CPU per event through 3 servers" in result.stdout
    # Every schema the rows made is gone again.
    assert _bench_schemas() <= before


def _bench_schemas() -> set[str]:
    rows = postgres_support.sql(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", ("rewind\\_bench\\_%",)
    )
    return {row[0] for row in rows}
