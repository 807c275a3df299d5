"""Graceful shutdown on SIGTERM and SIGINT: exit status 0 and nothing acknowledged lost."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.integration.helpers import (
    Context,
    Publisher,
    assert_writers_consistent,
    join_all,
    open_req,
    publish,
    query_all,
    reopen,
    wait_for,
)
from tests.support import ServerProcess

SIGNALS = [signal.SIGTERM, signal.SIGINT]


def _signal_and_wait(server: ServerProcess, signum: signal.Signals) -> int:
    assert server.process is not None
    server.process.send_signal(signum)
    try:
        return server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"the server ignored {signum.name} for 10 s") from None


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_signal_under_load_exits_cleanly_and_keeps_acknowledged_events(
    signum: signal.Signals, sqlite_url: str, zmq_context: Context
) -> None:
    """A stop signal amid publishing: exit status 0, a stop line in the log, and after a
    restart every acknowledged event is stored, each client's in its own order."""
    server = ServerProcess(sqlite_url).start()
    writers = [
        Publisher(
            zmq_context,
            server.query_endpoint,
            f"sig-{index}",
            100_000,
            until_silence=True,
            reply_timeout=2.0,
        )
        for index in range(4)
    ]
    for writer in writers:
        writer.start()
    try:
        assert wait_for(lambda: sum(len(w.acked) for w in writers) >= 300, 20), "no progress"
        status = _signal_and_wait(server, signum)
    finally:
        for writer in writers:
            writer.stop.set()
        join_all(writers)
        server.kill()
    for writer in writers:
        assert writer.error is None, writer.error
    assert status == 0, server.log
    assert signum.name in server.log
    last_line = server.log_lines[-1].lower()
    assert "stop" in last_line, server.log
    assert "Traceback" not in server.log

    reopen(server)
    try:
        stored = query_all(open_req(zmq_context, server.query_endpoint))
        assert_writers_consistent(writers, [data for _, data in stored])
    finally:
        server.stop()


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_idle_server_stops_promptly(
    signum: signal.Signals, server: ServerProcess, zmq_context: Context
) -> None:
    """An idle server exits with status 0 within a second of a stop signal."""
    publish(open_req(zmq_context, server.query_endpoint), b"something")
    started = time.monotonic()
    assert _signal_and_wait(server, signum) == 0, server.log
    assert time.monotonic() - started < 1.0
    assert signum.name in server.log
