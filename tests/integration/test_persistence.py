"""Durability across restarts: graceful stops, SIGKILL, and event ids never reused."""

from __future__ import annotations

import os

from tests.integration.helpers import (
    Context,
    Publisher,
    assert_event_id,
    assert_writers_consistent,
    join_all,
    numbered,
    open_req,
    publish_all,
    query_all,
    reopen,
    request,
    wait_for,
)
from tests.support import ServerProcess


def test_events_survive_graceful_restart(
    sqlite_server: ServerProcess, zmq_context: Context
) -> None:
    """After a SIGTERM restart every event is there, with the same ids, in the same order."""
    req = open_req(zmq_context, sqlite_server.query_endpoint)
    data = [*numbered("kept", 150), b"", bytes(range(256)), os.urandom(64 * 1024)]
    publish_all(req, data)
    before = query_all(req)
    assert [payload for _, payload in before] == data

    assert sqlite_server.stop() == 0
    reopen(sqlite_server)
    req = open_req(zmq_context, sqlite_server.query_endpoint)
    assert query_all(req) == before


def test_event_ids_are_never_reused_across_restarts(
    sqlite_server: ServerProcess, zmq_context: Context
) -> None:
    """Ids stay unique over several server lifetimes, and order continues across them."""
    published: list[bytes] = []
    for lifetime in range(4):
        if lifetime:
            sqlite_server.restart()
        req = open_req(zmq_context, sqlite_server.query_endpoint)
        batch = numbered(f"lifetime-{lifetime}", 25)
        publish_all(req, batch)
        published.extend(batch)
    events = query_all(open_req(zmq_context, sqlite_server.query_endpoint))
    assert [data for _, data in events] == published
    ids = [event_id for event_id, _ in events]
    for event_id in ids:
        assert_event_id(event_id)
    assert len(set(ids)) == len(ids)


def test_acknowledged_events_survive_sigkill(
    sqlite_server: ServerProcess, zmq_context: Context
) -> None:
    """Every event acknowledged before a SIGKILL is stored after the next start."""
    req = open_req(zmq_context, sqlite_server.query_endpoint)
    data = numbered("before-kill", 80)
    publish_all(req, data)
    before = query_all(req)
    sqlite_server.kill()
    assert sqlite_server.process is not None
    assert sqlite_server.process.returncode != 0

    # A brand-new process on the same file, as an operator would start it.
    with ServerProcess(sqlite_server.storage) as again:
        req = open_req(zmq_context, again.query_endpoint)
        assert query_all(req) == before


def test_sigkill_under_load_loses_no_acknowledged_event(
    sqlite_server: ServerProcess, zmq_context: Context
) -> None:
    """SIGKILL amid concurrent publishing: each client's stored events are exactly what it
    was told were stored, plus at most the one request still in flight."""
    writers = [
        Publisher(
            zmq_context,
            sqlite_server.query_endpoint,
            f"w{index}",
            100_000,
            until_silence=True,
            reply_timeout=2.0,
        )
        for index in range(4)
    ]
    for writer in writers:
        writer.start()
    try:
        enough = wait_for(lambda: sum(len(w.acked) for w in writers) >= 400, 20)
        assert enough, "writers made no progress"
        sqlite_server.kill()
    finally:
        for writer in writers:
            writer.stop.set()
        join_all(writers)
    for writer in writers:
        assert writer.error is None, writer.error

    reopen(sqlite_server)
    stored = query_all(open_req(zmq_context, sqlite_server.query_endpoint))
    assert_writers_consistent(writers, [data for _, data in stored])


def test_memory_store_starts_empty_after_restart(zmq_context: Context) -> None:
    """``memory:`` keeps nothing: a restarted memory server answers a lone END."""
    with ServerProcess("memory:") as server:
        req = open_req(zmq_context, server.query_endpoint)
        publish_all(req, [b"gone"])
        server.restart()
        req = open_req(zmq_context, server.query_endpoint)
        assert request(req, [b"QUERY", b"", b""]) == [b"END"]
