"""Starting and measuring the subprocesses a benchmark talks to.

Rewind servers are started with the test suite's :class:`ServerProcess`, so the
benchmarks exercise exactly the ``python -m rewind serve`` command users run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from types import TracebackType

import psutil

from benchmarks.echo import READY_PREFIX
from tests.support import ServerProcess

__all__ = ["EchoProcess", "ServerProcess", "rss_bytes", "start_rewind", "time_to_exit"]

START_TIMEOUT = 120.0
"""Generous, because a slow start on a big store is a result to report, not a crash."""


class EchoProcess:
    """A bare pyzmq echo server (:mod:`benchmarks.echo`) in a subprocess.

    ``mode`` is one of :data:`benchmarks.echo.MODES`, ``args`` what it takes
    (a ``durable-relay``'s file); a relay also has a ``feed_endpoint`` that
    SUB sockets connect to.
    """

    def __init__(self, mode: str = "rep", *args: str) -> None:
        self.mode = mode
        self.args = args
        self.process: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.feed_endpoint = ""

    def start(self) -> EchoProcess:
        """Spawn the echo server and wait for the endpoint it reports."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.echo", self.mode, *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        # readline blocks, but the echo server prints its line before anything
        # else or dies (closing stdout), so this cannot hang past its start-up.
        line = self.process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            self.kill()
            raise RuntimeError(f"echo server did not start (said {line!r})")
        endpoints = line[len(READY_PREFIX) :].split()
        self.endpoint = endpoints[0]
        self.feed_endpoint = endpoints[1] if len(endpoints) > 1 else ""
        return self

    @property
    def pid(self) -> int:
        """The echo server's process id."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """Kill the echo server and reap it; safe to call more than once."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> EchoProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


def start_rewind(storage: str) -> tuple[ServerProcess, float]:
    """Start ``rewind serve`` on ``storage``; return it and seconds from spawn to ready.

    The time runs from just before the process is spawned until its "Rewind
    ready" log line has been read, which is what a supervisor waiting for the
    server would see.
    """
    server = ServerProcess(storage)
    started = time.perf_counter()
    try:
        server.start(timeout=START_TIMEOUT)
    except BaseException:
        server.kill()
        raise
    return server, time.perf_counter() - started


def stop_rewind(server: ServerProcess) -> None:
    """Stop a server gracefully, or kill it if it will not stop."""
    if server.process is None or server.process.poll() is not None:
        server.kill()
        return
    try:
        server.stop(timeout=30.0)
    finally:
        server.kill()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def time_to_exit(args: Sequence[str], repeats: int) -> float:
    """Median seconds from spawning ``args`` to its exit, over ``repeats`` runs."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(args, check=True, stdin=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)
