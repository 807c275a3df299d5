"""The measurements behind each table row, grouped by the processes they share."""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq

from benchmarks import bare_sqlite, clients, store
from benchmarks.processes import (
    EchoProcess,
    ServerProcess,
    cpu_seconds,
    rss_bytes,
    start_rewind,
    stop_rewind,
    time_to_exit,
)
from benchmarks.report import MB, Figure, Row
from benchmarks.settings import Settings

ECHO_SHARE = 0.8
CONCURRENT_RATE = 10_000.0
CONCURRENT_RATIO = 2.5
READ_RATE = 50_000.0
MIDDLE_SHARE = 0.9
""""As fast from the middle as from the start", less the noise of one run."""
STARTUP_LIMIT_S = 1.0
RSS_LIMIT = 100 * MB


@dataclass(slots=True)
class Run:
    """What every measurement of one run shares."""

    settings: Settings
    scratch: Path
    """A temporary directory on the same disk as the cached stores."""
    notes: list[str] = field(default_factory=list)
    bare_commits: float | None = None
    """Bare SQLite commits per second, for row 2 (row 3 measures its own, round by round)."""
    progress: Callable[[str], None] = lambda message: None


def count_label(count: int) -> str:
    """``1000000`` → ``1M``, ``100000`` → ``100k``: short enough for a table cell."""
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1_000 == 0:
        return f"{count // 1_000}k"
    return f"{count:,}"


# Rows 1 and 2: one synchronous client ----------------------------------------------


def single_client(run: Run, wanted: Collection[str]) -> list[Row]:
    """Rows 1 (``memory:``) and 2 (``sqlite:``) against the REQ/REP echo baseline.

    All targets run at once and are measured in alternation, ``rounds`` times,
    keeping each one's median, so drift in the machine's speed during the run
    falls on figure and baseline alike. The CPU time each serving process spends
    per request is recorded too: it tells server cost apart from transport latency.
    """
    s = run.settings
    request = clients.publish_frames(s.payload_size)
    with ExitStack() as stack:
        echo = stack.enter_context(EchoProcess())
        targets = {"echo": (echo.endpoint, echo.pid)}
        storages = {"memory": "memory:", "sqlite": f"sqlite:{run.scratch / 'single.db'}"}
        for name in ("memory", "sqlite"):
            if name in wanted:
                server, _ = start_rewind(storages[name])
                stack.callback(stop_rewind, server)
                assert server.process is not None
                targets[name] = (server.query_endpoint, server.process.pid)
        context: zmq.Context[Any] = zmq.Context()
        stack.callback(context.destroy, 0)
        sockets = {name: clients.req_socket(context, ep) for name, (ep, _) in targets.items()}
        expected = {name: request if name == "echo" else clients.PUBLISHED for name in sockets}
        for name, socket in sockets.items():
            clients.round_trips(socket, request, expected[name], s.warmup_seconds)
        rates: dict[str, list[float]] = {name: [] for name in sockets}
        cpu_per_request: dict[str, list[float]] = {name: [] for name in sockets}
        for round_number in range(s.rounds):
            run.progress(f"single client, round {round_number + 1} of {s.rounds}")
            for name, socket in sockets.items():
                pid = targets[name][1]
                cpu_before = cpu_seconds(pid)
                count, seconds = clients.round_trips(
                    socket, request, expected[name], s.round_seconds
                )
                cpu_per_request[name].append((cpu_seconds(pid) - cpu_before) / count)
                rates[name].append(count / seconds)
    echo_rate = statistics.median(rates["echo"])
    cpu_us = {name: statistics.median(values) * 1e6 for name, values in cpu_per_request.items()}
    run.notes.append(
        "rows 1-2: CPU time of the serving process per request: "
        + ", ".join(f"{name} {micros:.0f} µs" for name, micros in cpu_us.items())
    )
    rows = []
    for key, name in (("1", "memory"), ("2", "sqlite")):
        if name not in rates:
            continue
        rate = statistics.median(rates[name])
        details: dict[str, Any] = {
            "rates": rates[name],
            "echo_rates": rates["echo"],
            "server_cpu_us_per_request": cpu_us[name],
            "echo_cpu_us_per_request": cpu_us["echo"],
        }
        if name == "sqlite":
            # A durable reply costs at least one echo round trip plus one fsync'd commit.
            commits = bare_commit_rate(run)
            ceiling = 1 / (1 / echo_rate + 1 / commits)
            details["ceiling"] = ceiling
            run.notes.append(
                f"row 2: one echo round trip plus one bare SQLite commit ({commits:,.0f}/s) "
                f"bounds one durable client at {ceiling:,.0f}/s = {ceiling / echo_rate:.0%} "
                f"of echo; the server reaches {rate / ceiling:.0%} of that bound"
            )
        rows.append(
            Row(
                key=key,
                name=f"PUBLISH, 1 REQ client, {name}:",
                result=Figure(rate, "/s"),
                baseline_name="pyzmq REQ→REP echo, 1 client",
                baseline=Figure(echo_rate, "/s"),
                # Only the memory store has a target; a durable reply also waits for fsync.
                target=f"≥{ECHO_SHARE:.0%} of echo" if name == "memory" else "(report only)",
                passed=rate >= ECHO_SHARE * echo_rate if name == "memory" else None,
                details=details,
            )
        )
    return rows


def bare_commit_rate(run: Run) -> float:
    """Events per second of bare SQLite at one commit per event, for row 2 (measured once)."""
    if run.bare_commits is None:
        run.bare_commits = _bare_commits(run)
    return run.bare_commits


def _bare_commits(run: Run) -> float:
    """One window of bare SQLite at one commit per event: events per second."""
    s = run.settings
    run.progress("bare SQLite, one commit per event")
    count, seconds = bare_sqlite.commit_per_event(
        run.scratch / "bare-commits.db",
        clients.payload(s.payload_size),
        s.bare_sqlite_seconds,
    )
    return count / seconds


# Row 3: many concurrent durable publishers ------------------------------------------


def concurrent(run: Run) -> list[Row]:
    """Row 3: ``clients`` REQ clients on one ``sqlite:`` server vs bare SQLite.

    Row 3 runs the clients in one process per CPU, alternating with its
    bare SQLite baseline over several rounds and keeping the medians, as
    rows 1 and 2 do with theirs: both wait on the same disk, whose flushes
    speed up and slow down over a run. Row 3b runs the clients in one
    process each (report only), one window against the same baseline. On a
    small machine the clients share the server's CPUs, and a process per
    client spends most of them on the clients' own interpreters and ZeroMQ
    threads: 3b measures them as much as the server. Each setup is also run
    against a bare server that only answers, which gives its ceiling on
    this machine.
    """
    s = run.settings
    grouped = min(s.clients, psutil.cpu_count() or 1)
    bare_rates: list[float] = []
    rows = []
    for key, processes, rounds in (("3", grouped, s.concurrent_rounds), ("3b", s.clients, 1)):
        label = f"{s.clients} REQ clients in {processes} processes"
        outcomes = []
        server, _ = start_rewind(f"sqlite:{run.scratch / f'concurrent-{key}.db'}")
        try:
            assert server.process is not None
            for round_number in range(1, rounds + 1):
                if key == "3":
                    bare_rates.append(_bare_commits(run))
                run.progress(f"{label} against an sqlite: server, round {round_number} of {rounds}")
                outcomes.append(
                    _run_publishers(run, server.query_endpoint, server.process.pid, processes)
                )
        finally:
            stop_rewind(server)
        run.progress(f"{label} against a bare server answering PUBLISHED")
        with EchoProcess("ack") as acknowledger:
            ceiling = _run_publishers(run, acknowledger.endpoint, acknowledger.pid, processes)
        bare_rate = statistics.median(bare_rates)
        rates = [outcome["events"] / s.concurrent_seconds for outcome in outcomes]
        rate = statistics.median(rates)
        ceiling_rate = ceiling["events"] / s.concurrent_seconds
        windows = f"{s.concurrent_seconds:g} s window" + (
            f"s (median of {rounds})" if rounds > 1 else ""
        )
        run.notes.append(
            f"row {key}: during the {windows} the server process used "
            f"{statistics.median(o['server_cpu'] for o in outcomes):.0%} of one core and the "
            f"whole machine was {statistics.median(o['machine_cpu'] for o in outcomes):.0f}% "
            f"busy ({psutil.cpu_count()} CPUs shared with the {processes} client processes); "
            f"the same clients against a bare pyzmq server that answers PUBLISHED and stores "
            f"nothing: {ceiling_rate:,.0f}/s (their ceiling on this machine), of which Rewind "
            f"reached {rate / ceiling_rate:.0%}"
        )
        if key == "3":
            if ceiling_rate < CONCURRENT_RATIO * bare_rate:
                run.notes.append(
                    f"row 3: {CONCURRENT_RATIO:g}x bare SQLite is "
                    f"{CONCURRENT_RATIO * bare_rate:,.0f}/s, above that ceiling, so no server "
                    "can meet the ratio on this machine"
                )
            if rounds > 1:
                run.notes.append(
                    "row 3 by round: "
                    + ", ".join(
                        f"{rewind:,.0f}/s against {bare:,.0f}/s ({rewind / bare:.2f}x)"
                        for rewind, bare in zip(rates, bare_rates, strict=True)
                    )
                )
            target = f"≥{CONCURRENT_RATE / 1000:g}k/s & ≥{CONCURRENT_RATIO:g}x"
            passed: bool | None = rate >= CONCURRENT_RATE and rate >= CONCURRENT_RATIO * bare_rate
        else:
            target, passed = "(report only)", None
        rows.append(
            Row(
                key=key,
                name=f"PUBLISH, {label}, sqlite:",
                result=Figure(rate, "/s"),
                baseline_name="bare SQLite, 1 commit per event",
                baseline=Figure(bare_rate, "/s"),
                target=target,
                passed=passed,
                details={
                    "rates": rates,
                    "bare_rates": list(bare_rates),
                    "windows": outcomes,
                    "ceiling": ceiling,
                },
            )
        )
    run.notes.append(
        f"rows 3/3b: bare SQLite managed {bare_rate:,.0f} commits/s"
        + (f" (median of {len(bare_rates)} windows)" if len(bare_rates) > 1 else "")
    )
    return rows


def _run_publishers(run: Run, endpoint: str, pid: int, processes: int) -> dict[str, Any]:
    """Start ``processes`` publisher processes on ``endpoint``, run one window, collect counts.

    The run's ``clients`` REQ sockets are shared out evenly among the
    processes. ``pid`` is the serving process, whose CPU time is taken over
    the window.
    """
    s = run.settings
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(processes + 1)
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    results = ctx.Queue()
    shares = [len(range(index, s.clients, processes)) for index in range(processes)]
    workers = [
        ctx.Process(
            target=clients.publish_worker,
            args=(
                endpoint,
                share,
                s.payload_size,
                s.concurrent_seconds,
                ready,
                go,
                start_at,
                results,
            ),
            daemon=True,
        )
        for share in shares
    ]
    try:
        for worker in workers:
            worker.start()
        try:
            ready.wait(timeout=120)
        except threading.BrokenBarrierError:
            try:
                reason = results.get(timeout=5)[1]
            except queue.Empty:
                reason = "publishers did not all connect within 120 s"
            raise RuntimeError(f"a publisher failed before the start: {reason}") from None
        # Time for every worker to wake up and sleep until the common start.
        start = time.monotonic() + 0.25
        start_at.value = start
        go.set()
        time.sleep(max(0.0, start - time.monotonic()))
        cpu_before = cpu_seconds(pid)
        psutil.cpu_percent(interval=None)
        time.sleep(s.concurrent_seconds)
        server_cpu = (cpu_seconds(pid) - cpu_before) / s.concurrent_seconds
        machine_cpu = psutil.cpu_percent(interval=None)
        outcomes = [results.get(timeout=60 + s.concurrent_seconds) for _ in workers]
        for worker in workers:
            worker.join(timeout=30)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    errors = [error for _, error in outcomes if error]
    if errors:
        raise RuntimeError(f"{len(errors)} publishers failed, first: {errors[0]}")
    counts = [count for count, _ in outcomes]
    return {
        "events": sum(counts),
        "per_process_min": min(counts),
        "per_process_max": max(counts),
        "server_cpu": server_cpu,
        "machine_cpu": machine_cpu,
    }


# Rows 4 and 5: a big store -----------------------------------------------------------


def big_store(run: Run, wanted: Collection[str]) -> list[Row]:
    """Rows 4a/4b (paged reads) and 5a-5c (start-up, memory) on the big cached store.

    One server serves both groups: start-up is timed over ``startup_repeats``
    fresh starts, the last of which stays up for the reads, so "RSS after
    reads" is the RSS of the very process whose start-up was timed.
    """
    s = run.settings
    size = count_label(s.store_events)
    run.progress(f"preparing the {size}-event store")
    path, build_seconds = store.cached_store(s.store_events)
    if build_seconds:
        run.notes.append(
            f"built the {size}-event store in {build_seconds:.1f} s "
            f"(cached as benchmarks/.data/{path.name})"
        )
    # The same warm OS cache for every start and read; a cold cache measures the disk.
    store.warm_file_cache(path)

    run.progress("start-up baselines")
    zmq_import = time_to_exit([sys.executable, "-c", "import zmq"], s.startup_repeats)
    bare_python = time_to_exit([sys.executable, "-c", "pass"], s.startup_repeats)
    with EchoProcess() as echo:
        context: zmq.Context[Any] = zmq.Context()
        try:
            socket = clients.req_socket(context, echo.endpoint)
            socket.send_multipart([b"ping"])
            socket.recv_multipart()
            echo_rss = rss_bytes(echo.pid)
        finally:
            context.destroy(0)

    run.progress(f"starting rewind on the {size}-event store x{s.startup_repeats}")
    startups: list[float] = []
    server: ServerProcess | None = None
    try:
        for _ in range(s.startup_repeats):
            if server is not None:
                stop_rewind(server)
            server, seconds = start_rewind(f"sqlite:{path}")
            startups.append(seconds)
        assert server is not None and server.process is not None
        rss_started = rss_bytes(server.process.pid)
        run.progress(f"reading {count_label(s.read_events)} events from the start and middle")
        reads = _read_by_query(run, path, server.query_endpoint)
        rss_read = rss_bytes(server.process.pid)
    finally:
        if server is not None:
            stop_rewind(server)
    run.progress("bare SQLite paged SELECT baseline")
    selects = _read_by_select(run, path)
    run.notes.append(
        f'start-up baselines: `python -c "import zmq"` {zmq_import:.3f} s, '
        f"`python -c pass` {bare_python:.3f} s"
    )

    rows: list[Row] = []
    if "read" in wanted:
        start_rate, middle_rate = reads["start"], reads["middle"]
        rows.append(
            Row(
                key="4a",
                name=f"read {count_label(s.read_events)} by QUERY from start, {size} store",
                result=Figure(start_rate, "/s"),
                baseline_name="bare SQLite paged SELECT, in-process",
                baseline=Figure(selects["start"], "/s"),
                target=f"≥{READ_RATE / 1000:g}k/s",
                passed=start_rate >= READ_RATE,
            )
        )
        rows.append(
            Row(
                key="4b",
                name=f"read {count_label(s.read_events)} by QUERY from middle, {size} store",
                result=Figure(middle_rate, "/s"),
                baseline_name="bare SQLite paged SELECT, in-process",
                baseline=Figure(selects["middle"], "/s"),
                target=f"≥{READ_RATE / 1000:g}k/s & ≥{MIDDLE_SHARE:g}x 4a",
                passed=middle_rate >= READ_RATE and middle_rate >= MIDDLE_SHARE * start_rate,
            )
        )
    if "startup" in wanted:
        startup = statistics.median(startups)
        rows.append(
            Row(
                key="5a",
                name=f"start-up to ready line, {size} store",
                result=Figure(startup, "s"),
                baseline_name='python -c "import zmq" to exit',
                baseline=Figure(zmq_import, "s"),
                target=f"<{STARTUP_LIMIT_S:g} s",
                passed=startup < STARTUP_LIMIT_S,
                details={"samples": startups, "bare_python_s": bare_python},
            )
        )
        for key, label, rss in (
            ("5b", "after start-up", rss_started),
            ("5c", f"after reading {count_label(2 * s.read_events)}", rss_read),
        ):
            rows.append(
                Row(
                    key=key,
                    name=f"server RSS {label}, {size} store",
                    result=Figure(rss, "MB"),
                    baseline_name="idle pyzmq REP echo process",
                    baseline=Figure(echo_rss, "MB"),
                    target=f"<{RSS_LIMIT // MB} MB",
                    passed=rss < RSS_LIMIT,
                )
            )
    return rows


def _segments(settings: Settings) -> tuple[int, int]:
    """How to split each read into alternating segments: (segments, events each).

    Alternating start and middle segments exposes both to the same moments of
    machine noise, so their comparison is fair.
    """
    segments = max(1, min(settings.rounds + 1, settings.read_events // settings.page_size))
    per_segment = settings.read_events // segments
    return segments, per_segment - per_segment % settings.page_size


def _read_by_query(run: Run, path: Path, endpoint: str) -> dict[str, float]:
    """Events per second read through paged seed QUERYs, from the start and the middle."""
    s = run.settings
    segments, per_segment = _segments(s)
    cursors = {"start": b"", "middle": store.event_id_at(path, s.store_events // 2)}
    totals = {name: [0, 0.0] for name in cursors}
    context: zmq.Context[Any] = zmq.Context()
    try:
        socket = clients.req_socket(context, endpoint)
        for cursor in cursors.values():
            clients.read_pages(socket, cursor, s.page_size)  # Warm-up, not counted.
        for _ in range(segments):
            for name, cursor in cursors.items():
                count, seconds, cursors[name] = clients.read_pages(socket, cursor, per_segment)
                totals[name][0] += count
                totals[name][1] += seconds
    finally:
        context.destroy(0)
    return {name: count / seconds for name, (count, seconds) in totals.items()}


def _read_by_select(run: Run, path: Path) -> dict[str, float]:
    """The same rows, pages and alternation as :func:`_read_by_query`, in bare SQLite."""
    s = run.settings
    segments, per_segment = _segments(s)
    cursors = {"start": 0, "middle": s.store_events // 2}
    totals = {name: [0, 0.0] for name in cursors}
    for _ in range(segments):
        for name, cursor in cursors.items():
            count, seconds, cursors[name] = bare_sqlite.paged_select(
                path, cursor, per_segment, s.page_size
            )
            totals[name][0] += count
            totals[name][1] += seconds
    return {name: count / seconds for name, (count, seconds) in totals.items()}
