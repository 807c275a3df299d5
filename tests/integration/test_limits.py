"""Configured limits, enforced by a real server in every dialect, with nothing stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from rewind.client import Client, EventData, LimitExceeded
from rewind.protocol import gorewind, seed
from tests.integration.helpers import open_req, receive
from tests.support import ServerProcess, run_rewind

LIMIT_FLAGS = [
    "--max-message-bytes",
    "4096",
    "--max-event-bytes",
    "1000",
    "--max-append-events",
    "5",
    "--max-stream-name-bytes",
    "20",
    "--pub-high-water-mark",
    "100",
]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    path = tmp_path_factory.mktemp("limits") / "events.db"
    with ServerProcess(f"sqlite:{path}", extra_args=LIMIT_FLAGS) as process:
        yield process


@pytest.fixture
def client(limited_server: ServerProcess) -> Iterator[Client]:
    with Client(limited_server.query_endpoint, timeout=5, retries=0) as connected:
        yield connected


def test_info_reports_the_configured_limits(client: Client) -> None:
    info = client.server_info()
    assert info.max_message_bytes == 4096
    assert info.max_event_bytes == 1000
    assert info.max_append_events == 5
    assert info.max_stream_name_bytes == 20
    assert info.accepts_writes and info.write_failure is None


def test_v2_appends_over_a_limit_are_refused_whole(client: Client) -> None:
    head = client.server_info().head_position
    with pytest.raises(LimitExceeded, match="6 events in one append; at most 5") as too_many:
        client.append("limits-count", [b"e"] * 6)
    assert too_many.value.limit == 5
    with pytest.raises(LimitExceeded, match="event 1 is 1001 bytes") as too_big:
        client.append("limits-size", [b"ok", EventData(b"x" * 900, "t", b"m" * 100)])
    assert too_big.value.limit == 1000
    # Multi-byte characters count as their UTF-8 bytes: 11 "é" are 22 bytes.
    with pytest.raises(LimitExceeded, match="stream name is 22 bytes; at most 20"):
        client.append("é" * 11, [b"e"])
    assert client.server_info().head_position == head

    # Exactly at each limit is fine.
    stored = client.append("é" * 10, [EventData(b"x" * 899, "t", b"m" * 100)] + [b"e"] * 4)
    assert stored.last_position == head + 5


def test_seed_and_gorewind_publishes_over_a_limit_get_error(
    limited_server: ServerProcess, zmq_context: zmq.Context[zmq.Socket[bytes]], client: Client
) -> None:
    head = client.server_info().head_position
    sock = open_req(zmq_context, limited_server.query_endpoint)
    sock.send_multipart(seed.encode_publish(b"x" * 1001))
    [reply] = receive(sock)
    assert reply.startswith(b"ERROR ") and b"is 1001 bytes" in reply and b"at most 1000" in reply
    sock.send_multipart(gorewind.encode_publish_request("n" * 21, b"data"))
    [reply] = receive(sock)
    assert reply == b"ERROR stream name is 21 bytes; at most 20"
    sock.send_multipart(seed.encode_publish(b"x" * 1000))
    assert receive(sock) == [b"PUBLISHED"]
    assert client.server_info().head_position == head + 1


def test_a_memory_store_refuses_a_seed_publish_over_the_size_limit_too(
    zmq_context: zmq.Context[zmq.Socket[bytes]],
) -> None:
    # A store that commits at once answers a lone PUBLISH by a shorter path
    # than a durable one; the limit holds on it all the same.
    with ServerProcess("memory:", extra_args=["--max-event-bytes", "1000"]) as process:
        sock = open_req(zmq_context, process.query_endpoint)
        sock.send_multipart(seed.encode_publish(b"x" * 1001))
        [reply] = receive(sock)
        assert reply == b"ERROR event 0 is 1001 bytes (data, metadata and type); at most 1000"
        sock.send_multipart(seed.encode_publish(b"x" * 1000))
        assert receive(sock) == [b"PUBLISHED"]
        sock.send_multipart(seed.encode_query(None, None))
        frames = receive(sock)
        assert frames[1::2] == [b"x" * 1000] and frames[-1] == b"END"


def test_a_frame_over_the_message_limit_disconnects_its_sender_only(
    limited_server: ServerProcess, zmq_context: zmq.Context[zmq.Socket[bytes]], client: Client
) -> None:
    head = client.server_info().head_position
    big = open_req(zmq_context, limited_server.query_endpoint)
    big.send_multipart(seed.encode_publish(b"x" * 5000))
    assert not big.poll(500), "an oversized frame must not be answered"
    # The limit is per frame: two frames of 3000 bytes each (8 KB together) get through,
    # and are refused by the event size limit with an ERROR.
    sock = open_req(zmq_context, limited_server.query_endpoint)
    sock.send_multipart([b"x" * 3000, b"y" * 3000])
    [reply] = receive(sock)
    assert reply.startswith(b"ERROR ")
    assert client.ping() < 1.0
    assert client.server_info().head_position == head


def test_bad_limit_flags_exit_with_one_line() -> None:
    result = run_rewind("serve", "--storage", "memory:", "--max-event-bytes", "zero")
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert lines == ["rewind: error: --max-event-bytes: 'zero' is not a whole number"]
    result = run_rewind("serve", "--storage", "memory:", env={"REWIND_MAX_MESSAGE_BYTES": "10"})
    assert result.returncode != 0
    assert "REWIND_MAX_MESSAGE_BYTES: 10 is outside 1024.." in result.stderr.decode()
