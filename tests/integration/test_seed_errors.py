"""Seed protocol errors: one ``ERROR <reason>`` frame, and the server keeps serving."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import zmq

from tests.integration.helpers import (
    Context,
    Socket,
    assert_error,
    open_req,
    publish,
    publish_all,
    query_all,
    request,
    storage_url,
)
from tests.support import ServerProcess

# Requests that are wrong whatever the store holds.
MALFORMED: dict[str, list[bytes]] = {
    "unknown-command": [b"FROBNICATE", b"x"],
    "lower-case-command": [b"publish", b"x"],
    "command-with-trailing-space": [b"PUBLISH ", b"x"],
    "publish-without-data": [b"PUBLISH"],
    # Two frames after PUBLISH is a Gorewind PUBLISH (stream, data), served on the
    # same socket; three are wrong in every dialect.
    "publish-with-three-data-frames": [b"PUBLISH", b"a", b"b", b"c"],
    "query-without-ids": [b"QUERY"],
    "query-with-one-id": [b"QUERY", b""],
    # Gorewind's QUERY has three frames (stream, from, to); an empty stream is refused.
    "query-with-three-ids": [b"QUERY", b"", b"", b""],
    "empty-message": [b""],
    "empty-command-frame": [b"", b"PUBLISH", b"x"],
    "garbage-from-id": [b"QUERY", b"not-an-id", b""],
    "garbage-to-id": [b"QUERY", b"", b"not-an-id"],
    "binary-from-id": [b"QUERY", b"\xff\xfe\x00", b""],
    "unstored-uuid-from-id": [b"QUERY", str(uuid.uuid1()).encode(), b""],
    "unstored-uuid-to-id": [b"QUERY", b"", str(uuid.uuid1()).encode()],
}


def assert_still_serving(req: Socket, marker: bytes) -> None:
    """A PUBLISH then a QUERY still work on the same socket."""
    publish(req, marker)
    assert query_all(req)[-1][1] == marker


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for all malformed-request cases, which a healthy server
    survives anyway: sharing it also shows that errors leave nothing behind."""
    storage = storage_url(request.param, tmp_path_factory.mktemp("errors"))
    with ServerProcess(storage) as process:
        yield process


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_one_error_frame(
    shared_server: ServerProcess, zmq_context: Context, case: str
) -> None:
    """Each malformed request is answered by a single ``ERROR `` frame; serving goes on."""
    req = open_req(zmq_context, shared_server.query_endpoint)
    before = f"before {case}".encode()
    publish(req, before)
    assert_error(request(req, MALFORMED[case]))
    after = f"after {case}".encode()
    assert_still_serving(req, after)
    # The failed request stored nothing between the two events.
    assert [data for _, data in query_all(req)][-2:] == [before, after]


def test_errors_name_the_problem(server: ServerProcess, zmq_context: Context) -> None:
    """Error reasons are readable text that says what was wrong."""
    req = open_req(zmq_context, server.query_endpoint)
    assert b"FROBNICATE" in assert_error(request(req, [b"FROBNICATE"]))
    assert b"PUBLISH" in assert_error(request(req, [b"PUBLISH"]))
    assert b"QUERY" in assert_error(request(req, [b"QUERY", b""]))
    missing = str(uuid.uuid4()).encode()
    assert missing in assert_error(request(req, [b"QUERY", missing, b""]))


def test_from_after_to_is_an_error(server: ServerProcess, zmq_context: Context) -> None:
    """A range whose ``from`` comes after its ``to`` is refused, not answered empty."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_all(req, [b"one", b"two", b"three"])
    ids = [event_id for event_id, _ in query_all(req)]
    assert_error(request(req, [b"QUERY", ids[2], ids[0]]))
    assert_error(request(req, [b"QUERY", ids[1], ids[0]]))
    assert_still_serving(req, b"four")


def test_unknown_ids_with_stored_counterpart(server: ServerProcess, zmq_context: Context) -> None:
    """An unknown id is an error even when the other bound is a stored id."""
    req = open_req(zmq_context, server.query_endpoint)
    publish_all(req, [b"one", b"two"])
    ids = [event_id for event_id, _ in query_all(req)]
    unknown = str(uuid.uuid1()).encode()
    assert_error(request(req, [b"QUERY", unknown, ids[1]]))
    assert_error(request(req, [b"QUERY", ids[0], unknown]))
    assert_error(request(req, [b"QUERY", ids[0], b"garbage"]))
    assert_error(request(req, [b"QUERY", b"garbage", ids[1]]))
    assert_still_serving(req, b"three")


def test_many_errors_in_a_row_from_many_sockets(
    server: ServerProcess, zmq_context: Context
) -> None:
    """A burst of bad requests from several clients leaves the server healthy."""
    sockets = [open_req(zmq_context, server.query_endpoint) for _ in range(8)]
    for round_number in range(10):
        for sock in sockets:
            sock.send_multipart([b"NOPE", str(round_number).encode()])
        for sock in sockets:
            assert sock.poll(5000, zmq.POLLIN), "no reply to a bad request"
            assert_error(sock.recv_multipart())
    assert_still_serving(sockets[0], b"healthy")


def test_clients_vanishing_before_their_reply(server: ServerProcess, zmq_context: Context) -> None:
    """Clients that send a request and disconnect at once do not disturb the server."""
    for index in range(20):
        sock = open_req(zmq_context, server.query_endpoint)
        sock.send_multipart([b"PUBLISH", f"abandoned-{index}".encode()])
        sock.close(linger=0)
        sock = open_req(zmq_context, server.query_endpoint)
        sock.send_multipart([b"QUERY", b"", b""])
        sock.close(linger=0)
    req = open_req(zmq_context, server.query_endpoint)
    assert_still_serving(req, b"still here")
    assert server.process is not None and server.process.poll() is None
