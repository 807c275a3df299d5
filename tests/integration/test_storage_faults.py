"""Storage faults against a real server: a full disk, and an I/O error during a commit.

A full disk comes from a small tmpfs the test mounts (root needed; the test
skips without it, except in CI). An I/O error comes from lowering the
server process's file-size limit (``RLIMIT_FSIZE``) from outside, so the
kernel fails SQLite's next write with ``EFBIG`` exactly as a failing disk
would fail it with ``EIO``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import zmq

from rewind.client import Client, EventData, ServerUnavailable, StorageFull
from rewind.protocol import seed
from tests.integration.helpers import open_req, receive
from tests.support import ServerProcess, skip_or_fail

DISK_BYTES = 4 * 1024 * 1024
BIG_EVENT = 256 * 1024


@contextlib.contextmanager
def small_disk(directory: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK_BYTES` mounted at ``directory``, unmounted afterwards."""
    directory.mkdir()
    if os.geteuid() != 0:
        skip_or_fail("mounting a small filesystem needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 1):
            chunk = b"\0" * size
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _client(server: ServerProcess) -> Client:
    return Client(server.query_endpoint, timeout=5, retries=0)


def test_a_full_disk_refuses_appends_keeps_reads_and_recovers(
    tmp_path: Path, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        server = ServerProcess(f"sqlite:{disk / 'events.db'}").start()
        try:
            with _client(server) as client:
                first = client.append("orders", [b"one", b"two"])
                ballast = disk / "ballast"
                fill(ballast)

                for _attempt in range(3):
                    with pytest.raises(StorageFull, match="storage full: database or disk is full"):
                        client.append("orders", [EventData(os.urandom(BIG_EVENT))])
                seed_req = open_req(zmq_context, server.query_endpoint)
                seed_req.send_multipart(seed.encode_publish(os.urandom(BIG_EVENT)))
                [reply] = receive(seed_req)
                assert reply.startswith(b"ERROR not stored: storage full")

                # Reads go on, and the store is still writable once space returns.
                info = client.server_info()
                assert info.accepts_writes and info.head_position == first.last_position
                assert [e.data for e in client.read_stream("orders")] == [b"one", b"two"]

                ballast.unlink()
                again = client.append("orders", [EventData(os.urandom(BIG_EVENT)), b"three"])
                assert again.first_position == first.last_position + 1
                assert [e.version for e in client.read_stream("orders")] == [0, 1, 2, 3]
            assert server.stop() == 0
        finally:
            server.kill()
        assert "storage full" in server.log
        with sqlite3.connect(disk / "events.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            positions = [row[0] for row in db.execute("SELECT position FROM events")]
        assert positions == [1, 2, 3, 4]


def test_an_io_error_during_a_commit_stops_writes_but_not_reads(
    tmp_path: Path, zmq_context: zmq.Context[zmq.Socket[bytes]]
) -> None:
    path = tmp_path / "events.db"
    with ServerProcess(f"sqlite:{path}") as server, _client(server) as client:
        acknowledged = client.append("ledger", [b"a", b"b", b"c"])
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        unlimited = process.rlimit(psutil.RLIMIT_FSIZE)
        # Every write past the first byte of any file now fails in the kernel.
        process.rlimit(psutil.RLIMIT_FSIZE, (1, unlimited[1]))
        try:
            with pytest.raises(ServerUnavailable, match="writes stopped: SQLITE_IOERR"):
                client.append("ledger", [EventData(os.urandom(64 * 1024))])
        finally:
            process.rlimit(psutil.RLIMIT_FSIZE, unlimited)

        # The disk "works" again, but what the failed write left is unknown: no guessing.
        with pytest.raises(ServerUnavailable, match="writes stopped"):
            client.append("ledger", [b"d"], expected_version=2)
        seed_req = open_req(zmq_context, server.query_endpoint)
        seed_req.send_multipart(seed.encode_publish(b"e"))
        [reply] = receive(seed_req)
        assert reply.startswith(b"ERROR not stored: writes stopped")

        info = client.server_info()
        assert not info.accepts_writes
        assert info.write_failure is not None and "SQLITE_IOERR" in info.write_failure
        assert info.head_position == acknowledged.last_position
        assert [e.data for e in client.read_stream("ledger")] == [b"a", b"b", b"c"]
        assert "writes stopped" in server.log and "CRITICAL" in server.log

        # A restart (after fixing the cause) writes again, with nothing lost.
        server.restart()
        with _client(server) as restarted:
            assert restarted.server_info().accepts_writes
            more = restarted.append("ledger", [b"d"], expected_version=2)
            assert more.first_position == acknowledged.last_position + 1
            events = list(restarted.read_stream("ledger"))
        assert [e.data for e in events] == [b"a", b"b", b"c", b"d"]
        assert len({e.event_id for e in events}) == 4
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_the_cli_reports_why_writes_stopped(tmp_path: Path) -> None:
    from tests.support import run_rewind

    path = tmp_path / "events.db"
    with ServerProcess(f"sqlite:{path}") as server, _client(server) as client:
        client.append("s", [b"x"])
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        limit = process.rlimit(psutil.RLIMIT_FSIZE)
        process.rlimit(psutil.RLIMIT_FSIZE, (1, limit[1]))
        try:
            with pytest.raises(ServerUnavailable):
                client.append("s", [EventData(uuid.uuid4().bytes * 4096)])
        finally:
            process.rlimit(psutil.RLIMIT_FSIZE, limit)
        shown = run_rewind("info", "--query-endpoint", server.query_endpoint)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "accepts_writes: no" in text
    assert "write_failure: SQLITE_IOERR" in text
