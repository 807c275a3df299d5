"""Rows 12a-12c: three servers on one PostgreSQL schema, against one server.

Three client processes drive each configuration with the same work: in the
*one server* configuration all three talk to a single server on a schema of
its own; in the *three servers* configuration each talks to its own server,
and the three servers share one schema (one global order, identical feeds).
Both configurations run side by side and take turns, phase by phase, so a
slow patch of the machine falls on both:

* single-event APPENDs, ``pipeline_window`` in flight per client (row 6's client);
* APPENDs of ``append_batch`` events, ``batch_window`` in flight per client (row 7's);
* one streamed READ_ALL of the whole global log per client (row 8's).

Each figure is the aggregate rate: all the clients' events over the time from
the first client's start to the last client's finish. The clients wait at a
barrier, so they start within a millisecond or so of each other.

The rows use the same raw DEALER clients as rows 6-8 and 11a-11c; CPU time of
the servers, of PostgreSQL's processes and of the whole machine is recorded
per phase and printed in the notes, because on a small machine three servers,
three clients and PostgreSQL share the same few cores.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import psutil
import zmq

from benchmarks import clients
from benchmarks.postgres import _base_url, _drop_schema, _unreachable
from benchmarks.processes import ServerProcess, cpu_seconds, start_rewind, stop_rewind
from benchmarks.report import Figure, Row
from benchmarks.suites import Run, count_label
from benchmarks.v2 import append_requests, dealer, pipeline, stream_read
from rewind.protocol.v2 import wire

SERVERS = 3
CLIENTS = 3
"""Client processes in both configurations: one per server, or all on the one server."""
APPEND_RATIO = 1.0
"""Three servers' aggregate batch appends against one server's: no collapse under contention."""
READ_RATIO = 1.5
"""Three servers' aggregate READ_ALL throughput against one server's."""
WARMUP_APPENDS = 50
BARRIER_TIMEOUT = 120.0
RESULT_TIMEOUT = 300.0
SETTLE_LIMIT = 10.0
SETTLE_SAMPLE = 0.1
IDLE_SHARE = 0.05
"""A server using less than this share of a core is idle."""


# The client processes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    """One phase's work for one client process."""

    kind: str
    """``single``, ``batch`` or ``read``."""
    endpoint: str
    tag: str
    """Names the phase's stream, so every phase appends fresh events."""
    requests: int
    """APPENDs to send; for a read, the events to read from position 1."""
    events_each: int
    window: int
    """Requests kept in flight (APPENDs only)."""
    read_batch: int = 0
    read_credit: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one client did in one phase, on ``CLOCK_MONOTONIC`` (shared by all processes)."""

    events: int
    started: float
    finished: float
    cpu: float = 0.0
    """CPU seconds the client itself used between start and finish."""
    busy_started: float = 0.0
    """:func:`machine_busy` at the start and at the finish."""
    busy_finished: float = 0.0
    error: str = ""


def client_worker(jobs: Any, outcomes: Any, barrier: Any, payload_size: int) -> None:
    """Run :class:`Job` after :class:`Job` until ``None``; put an :class:`Outcome` for each.

    A job's requests are built and its connection warmed before the barrier,
    so only the traffic itself is timed.
    """
    context: zmq.Context[Any] = zmq.Context()
    sockets: dict[str, zmq.Socket[bytes]] = {}
    payload = clients.payload(payload_size)
    try:
        while (job := jobs.get()) is not None:
            try:
                if job.endpoint not in sockets:
                    sockets[job.endpoint] = dealer(context, job.endpoint)
                    warmup = append_requests("scaleout-warmup", WARMUP_APPENDS, 1, payload)
                    pipeline(sockets[job.endpoint], warmup, job.window, wire.APPENDED)
                outcomes.put(_run_job(sockets[job.endpoint], job, payload, barrier))
            except Exception as exc:  # Reported to the parent, which fails the row.
                # Breaking the barrier frees the other clients at once.
                barrier.abort()
                outcomes.put(Outcome(0, 0.0, 0.0, error=f"{type(exc).__name__}: {exc}"))
    finally:
        context.destroy(linger=0)


def _run_job(socket: zmq.Socket[bytes], job: Job, payload: bytes, barrier: Any) -> Outcome:
    requests: list[list[bytes]] = []
    if job.kind != "read":
        requests = append_requests(job.tag, job.requests, job.events_each, payload)
    barrier.wait(BARRIER_TIMEOUT)
    busy_started, cpu_started = machine_busy(), time.process_time()
    started = time.monotonic()
    if job.kind == "read":
        stream_read(socket, 1, 1, job.requests, job.read_batch, job.read_credit)
        events = job.requests
    else:
        pipeline(socket, requests, job.window, wire.APPENDED)
        events = job.requests * job.events_each
    finished = time.monotonic()
    cpu = time.process_time() - cpu_started
    return Outcome(events, started, finished, cpu, busy_started, machine_busy())


class ClientPool:
    """:data:`CLIENTS` client processes that run a phase together when told."""

    def __init__(self, payload_size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._barrier = ctx.Barrier(CLIENTS)
        self._outcomes = ctx.Queue()
        self._jobs = [ctx.Queue() for _ in range(CLIENTS)]
        self._processes = [
            ctx.Process(
                target=client_worker,
                args=(jobs, self._outcomes, self._barrier, payload_size),
                daemon=True,
            )
            for jobs in self._jobs
        ]
        for process in self._processes:
            process.start()

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run one job per client at once; return what each did."""
        for queue_, job in zip(self._jobs, jobs, strict=True):
            queue_.put(job)
        outcomes = [self._outcomes.get(timeout=RESULT_TIMEOUT) for _ in jobs]
        errors = [outcome.error for outcome in outcomes if outcome.error]
        if errors:
            raise RuntimeError(f"{len(errors)} clients failed, first: {errors[0]}")
        return outcomes

    def close(self) -> None:
        """Let every client finish and exit; kill any that will not."""
        for queue_ in self._jobs:
            queue_.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


# CPU accounting ------------------------------------------------------------------------


def _postgres_cpu() -> float:
    """CPU seconds used so far by the local PostgreSQL processes still running."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy, over all cores."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass(slots=True)
class Phase:
    """One configuration's figures for one phase."""

    rate: float
    server_cpu_us: float
    """Server CPU per event, summed over the configuration's servers."""
    postgres_cpu_us: float
    client_cpu_us: float
    """The three client processes' CPU per event."""
    busy: float
    """Share of the machine's CPU capacity in use during the phase (0-1)."""
    per_commit: float = 0.0
    """Events per group commit (appends only)."""


def _settle(pids: Sequence[int]) -> None:
    """Wait until the servers are idle: they may still be broadcasting the last phase's events.

    Each server of a shared schema sends on its feeds the events the others
    committed, a little after they did; that work belongs to the phase before.
    """
    deadline = time.monotonic() + SETTLE_LIMIT
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(SETTLE_SAMPLE)
        used = max(cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True))
        if used < IDLE_SHARE * SETTLE_SAMPLE:
            return


def _measure_phase(
    pool: ClientPool, jobs: Sequence[Job], servers: Sequence[ServerProcess]
) -> Phase:
    pids = [server.process.pid for server in servers if server.process is not None]
    _settle(pids)
    server_before = sum(cpu_seconds(pid) for pid in pids)
    postgres_before = _postgres_cpu()
    outcomes = pool.run(jobs)
    events = sum(o.events for o in outcomes)
    seconds = max(o.finished for o in outcomes) - min(o.started for o in outcomes)
    busy_seconds = max(o.busy_finished for o in outcomes) - min(o.busy_started for o in outcomes)
    server_cpu = sum(cpu_seconds(pid) for pid in pids) - server_before
    client_cpu = sum(o.cpu for o in outcomes)
    postgres_cpu = _postgres_cpu() - postgres_before
    busy = busy_seconds / (seconds * (os.cpu_count() or 1))
    return Phase(
        events / seconds,
        server_cpu / events * 1e6,
        postgres_cpu / events * 1e6,
        client_cpu / events * 1e6,
        busy,
    )


# The rows ------------------------------------------------------------------------------


def _storage(schema: str) -> str:
    separator = "&" if "?" in _base_url() else "?"
    return f"{_base_url()}{separator}schema={schema}"


def _endpoints(servers: Sequence[ServerProcess]) -> list[str]:
    """The endpoint each client uses: client ``i`` talks to server ``i`` modulo their number."""
    return [servers[index % len(servers)].query_endpoint for index in range(CLIENTS)]


def scaleout_rows(run: Run) -> list[Row]:
    """Rows 12a-12c, or none (with a note) when PostgreSQL cannot be reached."""
    reason = _unreachable()
    if reason is not None:
        run.notes.append(f"rows 12a-12c left out: {reason}")
        return []
    s = run.settings
    token = secrets.token_hex(4)
    schemas = {"one": f"rewind_bench_one_{token}", "three": f"rewind_bench_three_{token}"}
    singles = s.pipeline_events // CLIENTS
    batches = s.batch_events // 3 // CLIENTS // s.append_batch
    phases: dict[str, dict[str, Phase]] = {}
    with ExitStack() as stack:
        for schema in schemas.values():
            stack.callback(_drop_schema, schema)
        run.progress(f"starting 1 + {SERVERS} servers on postgresql: and {CLIENTS} clients")
        groups: dict[str, list[ServerProcess]] = {"one": [], "three": []}
        for name, count in (("one", 1), ("three", SERVERS)):
            for _ in range(count):
                server, _ = start_rewind(_storage(schemas[name]))
                stack.callback(stop_rewind, server)
                groups[name].append(server)
        pool = ClientPool(s.payload_size)
        stack.callback(pool.close)

        def each(job: Job) -> dict[str, Phase]:
            # The same job for every client, on its own stream and its configuration's server.
            measured = {}
            for name, servers in groups.items():
                jobs = [
                    replace(job, endpoint=endpoint, tag=f"{job.kind}-{name}-{i}")
                    for i, endpoint in enumerate(_endpoints(servers))
                ]
                measured[name] = _measure_phase(pool, jobs, servers)
            return measured

        run.progress(f"single-event appends through 1 and {SERVERS} servers")
        phases["single"] = each(Job("single", "", "", singles, 1, s.pipeline_window))
        run.progress(f"appends of {s.append_batch} through 1 and {SERVERS} servers")
        phases["batch"] = each(Job("batch", "", "", batches, s.append_batch, s.batch_window))
        # Both schemas now hold the same number of events; each client reads them all.
        stored = CLIENTS * (WARMUP_APPENDS + singles + batches * s.append_batch)
        run.progress(f"{CLIENTS} READ_ALLs of {count_label(stored)} through 1 and {SERVERS}")
        phases["read"] = each(Job("read", "", "", stored, 1, 1, s.read_batch, s.read_credit))
        for kind in ("single", "batch"):
            for name, schema in schemas.items():
                phases[kind][name].per_commit = _events_per_commit(schema, kind)
    return _rows(run, phases, singles * CLIENTS, batches * CLIENTS, stored)


def _events_per_commit(schema: str, kind: str) -> float:
    """Mean events per group commit in a phase's streams.

    Every event of one commit carries the commit's time, and commit times
    never repeat (rarely, two commits in one microsecond count as one).
    """
    import psycopg

    with psycopg.connect(_base_url()) as db:
        row = db.execute(
            f'SELECT count(*), count(DISTINCT recorded_at) FROM "{schema}".events '
            "WHERE stream LIKE %s",
            (f"{kind}-%",),
        ).fetchone()
    return row[0] / row[1] if row and row[1] else 0.0


def _rows(
    run: Run, phases: dict[str, dict[str, Phase]], singles: int, batches: int, stored: int
) -> list[Row]:
    s = run.settings
    cpus = os.cpu_count() or 0
    for key, phase in (("12a", "single"), ("12b", "batch"), ("12c", "read")):
        one, three = phases[phase]["one"], phases[phase]["three"]
        run.notes.append(
            f"row {key}: CPU per event through {SERVERS} servers (through 1): servers "
            f"{three.server_cpu_us:.1f} µs ({one.server_cpu_us:.1f}), PostgreSQL "
            f"{three.postgres_cpu_us:.1f} µs ({one.postgres_cpu_us:.1f}), clients "
            f"{three.client_cpu_us:.1f} µs ({one.client_cpu_us:.1f}); the {cpus} CPUs were "
            f"{three.busy:.0%} ({one.busy:.0%}) busy"
            + (
                f"; {three.per_commit:.0f} ({one.per_commit:.0f}) events per commit"
                if phase != "read"
                else ""
            )
        )
    baseline = f"1 server, same {CLIENTS} clients"
    clients_on = f"{CLIENTS} clients on {SERVERS} servers, 1 postgresql: schema"
    single, batch, read = phases["single"], phases["batch"], phases["read"]
    return [
        Row(
            key="12a",
            name=f"APPEND 1 event, {s.pipeline_window} in flight each, {clients_on}",
            result=Figure(single["three"].rate, "/s"),
            baseline_name=baseline,
            baseline=Figure(single["one"].rate, "/s"),
            target="(reported)",
            passed=None,
            details={"events": singles, **_details(single)},
        ),
        Row(
            key="12b",
            name=f"APPEND {s.append_batch} events, {s.batch_window} in flight each, {clients_on}",
            result=Figure(batch["three"].rate, "/s"),
            baseline_name=baseline,
            baseline=Figure(batch["one"].rate, "/s"),
            target=f"≥{APPEND_RATIO:g}x",
            passed=batch["three"].rate >= APPEND_RATIO * batch["one"].rate,
            details={"events": batches, **_details(batch)},
        ),
        Row(
            key="12c",
            name=f"READ_ALL {count_label(stored)} each, batch {s.read_batch}, {clients_on}",
            result=Figure(read["three"].rate, "/s"),
            baseline_name=baseline,
            baseline=Figure(read["one"].rate, "/s"),
            target=f"≥{READ_RATIO:g}x",
            passed=read["three"].rate >= READ_RATIO * read["one"].rate,
            details={"events": stored * CLIENTS, **_details(read)},
        ),
    ]


def _details(phase: dict[str, Phase]) -> dict[str, Any]:
    return {
        name: {
            "rate": measured.rate,
            "server_cpu_us_per_event": measured.server_cpu_us,
            "postgres_cpu_us_per_event": measured.postgres_cpu_us,
            "client_cpu_us_per_event": measured.client_cpu_us,
            "machine_busy": measured.busy,
            "events_per_commit": measured.per_commit,
        }
        for name, measured in phase.items()
    }
