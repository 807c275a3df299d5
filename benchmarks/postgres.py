"""Rows 11a-11c: one server on PostgreSQL, beside the same server on SQLite.

The same raw DEALER clients as rows 6-8 drive a ``postgresql://`` server and
an ``sqlite:`` server in turn, on identical requests: single-event appends
pipelined, appends of 100 events, and one streamed READ_ALL of everything the
batch appends stored. The PostgreSQL store lives in a schema of its own in
the database ``REWIND_BENCH_POSTGRES_URL`` names (default: the local
``test`` database), dropped afterwards. Without a reachable PostgreSQL the
rows are left out with a note.
"""

from __future__ import annotations

import os
import secrets
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import zmq

from benchmarks import clients
from benchmarks.processes import cpu_seconds, start_rewind, stop_rewind
from benchmarks.report import Figure, Row
from benchmarks.suites import Run, count_label
from benchmarks.v2 import append_requests, dealer, pipeline, stream_read
from rewind.protocol.v2 import wire

URL_ENV = "REWIND_BENCH_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
BATCH_RATE = 20_000.0
"""Durable appends of 100 events through one server on PostgreSQL, events/s."""


def _base_url() -> str:
    return os.environ.get(URL_ENV, DEFAULT_URL)


def _unreachable() -> str | None:
    """Why PostgreSQL cannot be used here, or ``None``."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(_base_url(), connect_timeout=3) as db:
            db.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {_base_url()}: {' '.join(str(exc).split())}"
    return None


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(_base_url(), autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _measure(run: Run, storage: str) -> dict[str, float]:
    """Rows 11a-11c's figures for one server on ``storage``."""
    s = run.settings
    payload = clients.payload(s.payload_size)
    figures: dict[str, float] = {}
    with ExitStack() as stack:
        server, _ = start_rewind(storage)
        stack.callback(stop_rewind, server)
        assert server.process is not None
        context: zmq.Context[Any] = zmq.Context()
        stack.callback(context.destroy, 0)
        socket = dealer(context, server.query_endpoint)
        warmup = append_requests("warmup", 200, 1, payload)
        pipeline(socket, warmup, s.pipeline_window, wire.APPENDED)
        rates = []
        for round_number in range(s.rounds):
            requests = append_requests(f"single-{round_number}", s.pipeline_events, 1, payload)
            seconds = pipeline(socket, requests, s.pipeline_window, wire.APPENDED)
            rates.append(len(requests) / seconds)
        figures["single"] = statistics.median(rates)
        stored = 200 + s.rounds * s.pipeline_events
        count = s.batch_events // s.append_batch
        requests = append_requests("batches", count, s.append_batch, payload)
        cpu_before = cpu_seconds(server.process.pid)
        seconds = pipeline(socket, requests, s.batch_window, wire.APPENDED)
        figures["batch"] = count * s.append_batch / seconds
        figures["batch_cpu_us"] = (
            (cpu_seconds(server.process.pid) - cpu_before) / (count * s.append_batch) * 1e6
        )
        stored += count * s.append_batch
        seconds, _ = stream_read(socket, 1, 1, stored, s.read_batch, s.read_credit)
        figures["read"] = stored / seconds
        figures["read_events"] = stored
    return figures


def postgres_rows(run: Run) -> list[Row]:
    """Rows 11a-11c, or none (with a note) when PostgreSQL cannot be reached."""
    reason = _unreachable()
    if reason is not None:
        run.notes.append(f"rows 11a-11c left out: {reason}")
        return []
    s = run.settings
    schema = f"rewind_bench_{secrets.token_hex(4)}"
    separator = "&" if "?" in _base_url() else "?"
    measured: dict[str, dict[str, float]] = {}
    steps: list[tuple[str, Callable[[], str]]] = [
        ("postgresql", lambda: f"{_base_url()}{separator}schema={schema}"),
        ("sqlite", lambda: f"sqlite:{run.scratch / 'postgres-row-baseline.db'}"),
    ]
    try:
        for kind, storage in steps:
            run.progress(f"appends and a read through one server on {kind}:")
            measured[kind] = _measure(run, storage())
    finally:
        _drop_schema(schema)
    pg, lite = measured["postgresql"], measured["sqlite"]
    run.notes.append(
        f"row 11b: the server on postgresql: spent {pg['batch_cpu_us']:.1f} µs of CPU per "
        f"event in batches of {s.append_batch} (on sqlite: {lite['batch_cpu_us']:.1f} µs)"
    )
    read = count_label(int(pg["read_events"]))
    return [
        Row(
            key="11a",
            name=f"APPEND 1 event, 1 DEALER, {s.pipeline_window} in flight, postgresql:",
            result=Figure(pg["single"], "/s"),
            baseline_name="the same against sqlite:",
            baseline=Figure(lite["single"], "/s"),
            target="(reported)",
            passed=None,
        ),
        Row(
            key="11b",
            name=f"APPEND {s.append_batch} events, {s.batch_window} in flight, postgresql:",
            result=Figure(pg["batch"], "/s"),
            baseline_name="the same against sqlite:",
            baseline=Figure(lite["batch"], "/s"),
            target=f"≥{BATCH_RATE / 1000:g}k/s",
            passed=pg["batch"] >= BATCH_RATE,
            details={"server_cpu_us_per_event": pg["batch_cpu_us"]},
        ),
        Row(
            key="11c",
            name=f"READ_ALL {read}, batch {s.read_batch}, credit {s.read_credit}, postgresql:",
            result=Figure(pg["read"], "/s"),
            baseline_name="the same against sqlite:",
            baseline=Figure(lite["read"], "/s"),
            target="(reported)",
            passed=None,
        ),
    ]
