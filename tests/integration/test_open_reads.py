"""Streamed reads cannot pile up on the server: per-connection cap and idle expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from rewind.client import Client
from rewind.protocol import gorewind, v2
from rewind.server.open_reads import MAX_OPEN_READS_PER_CONNECTION
from tests.support import ServerProcess

Context = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess("memory:", extra_args=["--read-idle-timeout", "1"]) as process:
        with Client(process.query_endpoint) as client:
            client.append("letters", [b"a", b"b", b"c"])
        yield process


def _dealer(context: Context, endpoint: str) -> zmq.Socket[bytes]:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _reply(sock: zmq.Socket[bytes], timeout_ms: int = 3000) -> v2.Reply:
    assert sock.poll(timeout_ms), f"no reply within {timeout_ms} ms"
    frames = sock.recv_multipart()
    assert frames[0] == b""
    return v2.decode_reply(frames[1:])


def _open_slow_read(sock: zmq.Socket[bytes], request_id: int) -> None:
    """A read of one event per batch with one batch of credit: it sends one, then waits."""
    sock.send_multipart(
        [b"", *v2.encode_read_all_request(request_id, start=0, batch_size=1, credit=1)]
    )
    batch = _reply(sock)
    assert isinstance(batch, v2.EventBatch) and batch.request_id == request_id


def test_one_connection_may_hold_only_so_many_open_reads(
    server: ServerProcess, zmq_context: Context
) -> None:
    sock = _dealer(zmq_context, server.query_endpoint)
    for request_id in range(1, MAX_OPEN_READS_PER_CONNECTION + 1):
        _open_slow_read(sock, request_id)
    over = MAX_OPEN_READS_PER_CONNECTION + 1
    sock.send_multipart([b"", *v2.encode_read_all_request(over, start=0, credit=1)])
    refused = _reply(sock)
    assert isinstance(refused, v2.ErrorReply) and refused.request_id == over
    assert refused.code == v2.ErrorCode.LIMIT_EXCEEDED
    assert refused.detail == MAX_OPEN_READS_PER_CONNECTION
    assert "open reads per connection" in refused.message

    # Another connection is not affected, and ending a read frees its place.
    with Client(server.query_endpoint) as other:
        assert [e.data for e in other.read_all()] == [b"a", b"b", b"c"]
    sock.send_multipart([b"", *v2.encode_cancel_request(1)])
    ended = _reply(sock)
    assert isinstance(ended, v2.ReadEnd) and ended.reason == v2.EndReason.CANCELLED
    _open_slow_read(sock, over)
    sock.close()


def test_a_read_whose_client_goes_quiet_is_closed_with_an_error(
    server: ServerProcess, zmq_context: Context
) -> None:
    sock = _dealer(zmq_context, server.query_endpoint)
    _open_slow_read(sock, 7)
    started = time.monotonic()
    closed = _reply(sock, timeout_ms=5000)
    waited = time.monotonic() - started
    assert isinstance(closed, v2.ErrorReply) and closed.request_id == 7
    assert closed.code == v2.ErrorCode.LIMIT_EXCEEDED and closed.detail == 1
    assert "idle for over 1 s" in closed.message
    assert 0.9 < waited < 4
    # Credit for the closed read is ignored; the connection still works.
    sock.send_multipart([b"", *v2.encode_credit_request(7, 5)])
    sock.send_multipart([b"", *v2.encode_ping_request(8)])
    assert _reply(sock) == v2.Pong(8)
    assert "closed a streamed read idle" in server.log
    sock.close()


def test_a_read_kept_busy_is_not_closed(server: ServerProcess, zmq_context: Context) -> None:
    sock = _dealer(zmq_context, server.query_endpoint)
    _open_slow_read(sock, 1)
    for _ in range(2):  # one event per 0.6 s, past the 1 s idle timeout in all
        time.sleep(0.6)
        sock.send_multipart([b"", *v2.encode_credit_request(1, 1)])
        assert isinstance(_reply(sock), v2.EventBatch)
    sock.send_multipart([b"", *v2.encode_credit_request(1, 1)])
    end = _reply(sock)
    assert isinstance(end, v2.ReadEnd) and end.reason == v2.EndReason.DONE and end.count == 3
    sock.close()


def test_a_gorewind_query_whose_client_never_reads_is_closed(
    server: ServerProcess, zmq_context: Context
) -> None:
    with Client(server.query_endpoint) as client:
        client.append("many", [b"x" * 1000] * 5000)
    closed_before = server.log.count("closed a streamed read idle")
    sock = _dealer(zmq_context, server.query_endpoint)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.send_multipart([b"", *gorewind.encode_query_request("many")])
    deadline = time.monotonic() + 6
    while server.log.count("closed a streamed read idle") == closed_before:
        assert time.monotonic() < deadline, "the stuck query was not closed"
        time.sleep(0.2)
    with Client(server.query_endpoint) as client:
        assert client.ping() < 1
    sock.close()
