"""Starting real ``rewind serve`` processes for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

STRICT_ENV = "REWIND_TEST_STRICT"
"""Set (as ``.ci/run`` does) to make every test that would skip fail instead."""


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose environment is missing, or fail in strict mode (CI).

    Tests needing root (to mount a small filesystem) or a PostgreSQL server
    skip on a developer's machine that lacks them, but never silently in CI.
    """
    import pytest

    if os.environ.get(STRICT_ENV):
        pytest.fail(f"{reason} (and {STRICT_ENV} is set, so this cannot be skipped)")
    pytest.skip(reason)


READY = re.compile(
    r"Rewind ready: query endpoint (?P<query>[^;]+); streaming endpoint (?P<stream>[^;]+);"
    r"(?: v2 streaming endpoint (?P<v2>[^;]+);)?"
)


class ServerProcess:
    """A ``rewind serve`` subprocess on loopback ports it picks itself.

    Endpoints default to ``tcp://127.0.0.1:*`` (ZeroMQ chooses a free port) and
    are read back from the server's "ready" log line, so tests never race for
    ports. Pass the same ``query``/``streaming`` endpoints again to restart on
    the previous ports.
    """

    def __init__(
        self,
        storage: str,
        *,
        query: str = "tcp://127.0.0.1:*",
        streaming: str = "tcp://127.0.0.1:*",
        v2_streaming: str = "tcp://127.0.0.1:*",
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.storage = storage
        self.args = [
            sys.executable,
            "-m",
            "rewind",
            "serve",
            "--storage",
            storage,
            "--query-bind-endpoint",
            query,
            "--streaming-bind-endpoint",
            streaming,
            "--v2-streaming-bind-endpoint",
            v2_streaming,
            *extra_args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self.query_endpoint = ""
        self.streaming_endpoint = ""
        self.v2_streaming_endpoint = ""
        self.log_lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 15.0) -> ServerProcess:
        """Start the process and wait for its ready line."""
        self._ready.clear()
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None:
                self._reader.join(2)
                raise RuntimeError(
                    f"rewind serve exited with {self.process.returncode}:\n" + self.log
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("rewind serve did not become ready:\n" + self.log)
        return self

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log_lines.append(line)
            match = READY.search(line)
            if match:
                # The first endpoint of each kind is the one tests connect to.
                self.query_endpoint = match["query"].split(", ")[0]
                self.streaming_endpoint = match["stream"].split(", ")[0]
                if match["v2"]:
                    self.v2_streaming_endpoint = match["v2"].split(", ")[0]
                self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        """SIGKILL and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._reader is not None:
            self._reader.join(5)

    def restart(self) -> ServerProcess:
        """Stop gracefully and start again on the same endpoints and storage."""
        self.stop()
        self._use_resolved_endpoints()
        return self.start()

    def _use_resolved_endpoints(self) -> None:
        for flag, endpoint in (
            ("--query-bind-endpoint", self.query_endpoint),
            ("--streaming-bind-endpoint", self.streaming_endpoint),
            ("--v2-streaming-bind-endpoint", self.v2_streaming_endpoint),
        ):
            index = self.args.index(flag)
            self.args[index + 1] = endpoint

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()


def run_rewind(
    *args: str,
    input: str | bytes | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m rewind ARGS`` to completion, capturing output as bytes."""
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(
        [sys.executable, "-m", "rewind", *args],
        input=data,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
