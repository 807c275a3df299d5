"""The Rewind v2 methods of ``rewind.client.Client`` against real server processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zmq

from rewind.client import (
    ANY_VERSION,
    NO_STREAM,
    STREAM_EXISTS,
    Client,
    EventData,
    EventIdConflict,
    RequestTimeout,
    StreamNotFound,
    WrongExpectedVersion,
)
from rewind.model import RecordedEvent
from rewind.protocol import v2
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def memory_server() -> Iterator[ServerProcess]:
    """One memory server for the module; every test uses streams of its own."""
    with ServerProcess("memory:") as process:
        yield process


@pytest.fixture
def client(memory_server: ServerProcess) -> Iterator[Client]:
    with _client(memory_server) as connected:
        yield connected


def _client(server: ServerProcess, **options: float | int | None) -> Client:
    return Client(
        server.query_endpoint,
        server.streaming_endpoint,
        v2_streaming_endpoint=server.v2_streaming_endpoint,
        **options,  # type: ignore[arg-type]
    )


def _name(prefix: str = "s") -> str:
    """A stream name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _datas(events: Iterator[RecordedEvent] | list[RecordedEvent]) -> list[bytes]:
    return [event.data for event in events]


# append -------------------------------------------------------------------------------


def test_append_with_each_expected_version_kind(client: Client) -> None:
    """NO_STREAM, STREAM_EXISTS, exact versions and ANY_VERSION, accepted and refused."""
    stream = _name()
    with pytest.raises(WrongExpectedVersion) as missing:
        client.append(stream, [b"x"], expected_version=STREAM_EXISTS)
    assert missing.value.actual_version == -1
    with pytest.raises(WrongExpectedVersion) as wrong_exact:
        client.append(stream, [b"x"], expected_version=0)
    assert wrong_exact.value.actual_version == -1

    first = client.append(stream, [b"v0", b"v1"], expected_version=NO_STREAM)
    assert (first.first_version, first.last_version) == (0, 1)

    with pytest.raises(WrongExpectedVersion) as exists:
        client.append(stream, [b"x"], expected_version=NO_STREAM)
    assert exists.value.actual_version == 1
    assert exists.value.stream == stream
    assert exists.value.expected_version == NO_STREAM

    assert client.append(stream, [b"v2"], expected_version=STREAM_EXISTS).last_version == 2
    assert client.append(stream, [b"v3"], expected_version=2).last_version == 3
    for stale in (0, 2, 4, 100):
        with pytest.raises(WrongExpectedVersion) as refused:
            client.append(stream, [b"never"], expected_version=stale)
        assert refused.value.actual_version == 3, stale
        assert refused.value.expected_version == stale
    assert client.append(stream, [b"v4"], expected_version=ANY_VERSION).last_version == 4
    assert client.append(stream, [b"v5"]).last_version == 5
    assert _datas(client.read_stream(stream)) == [b"v0", b"v1", b"v2", b"v3", b"v4", b"v5"]


def test_invalid_expected_version_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(ValueError):
        client.append(_name(), [b"x"], expected_version=-3)
    with pytest.raises(ValueError):
        client.append("bad\x00name", [b"x"])
    with pytest.raises(ValueError):
        client.append(_name(), [])
    with pytest.raises(TypeError):
        client.append(_name(), b"not a list")  # type: ignore[arg-type]


def test_append_result_and_recorded_fields(client: Client) -> None:
    """The result names the ids sent; reads return type, metadata, data and commit time."""
    stream = _name()
    given = uuid.uuid4()
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = client.append(
        stream,
        [EventData(b"one", type="Opened", metadata=b'{"by": "ann"}', id=given), b"two"],
    )
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert result.stream == stream
    assert result.last_position == result.first_position + 1
    assert result.event_ids[0] == given
    assert result.event_ids[1] != given
    assert before <= result.recorded_at <= after
    one, two = client.read_stream(stream)
    assert (one.position, two.position) == (result.first_position, result.last_position)
    assert (one.event_id, two.event_id) == result.event_ids
    assert (one.event_type, one.metadata, one.data) == ("Opened", b'{"by": "ann"}', b"one")
    assert (two.event_type, two.metadata, two.data) == ("", b"", b"two")
    assert one.recorded_at_us == two.recorded_at_us == result.recorded_at_us


def test_multi_event_append_is_atomic(client: Client, memory_server: ServerProcess) -> None:
    """All events of one append get consecutive positions, even beside a busy writer,
    and a refused append stores none of its events."""
    stream, other = _name("atomic"), _name("noise")
    stop = threading.Event()

    def noise() -> None:
        with _client(memory_server) as writer:
            while not stop.is_set():
                writer.append(other, [b"n"])

    thread = threading.Thread(target=noise, daemon=True)
    thread.start()
    try:
        results = [client.append(stream, [b"%d" % i for i in range(50)]) for _ in range(10)]
    finally:
        stop.set()
        thread.join(10)
    for result in results:
        assert result.last_position - result.first_position == 49
        assert result.last_version - result.first_version == 49
    events = list(client.read_stream(stream))
    for index, result in enumerate(results):
        chunk = events[index * 50 : (index + 1) * 50]
        assert [e.position for e in chunk] == list(
            range(result.first_position, result.last_position + 1)
        )

    info = client.stream_info(stream)
    assert info is not None
    with pytest.raises(WrongExpectedVersion):
        client.append(stream, [b"a", b"b", b"c"], expected_version=3)
    taken = client.append(_name(), [EventData(b"taken", id=uuid.uuid4())])
    with pytest.raises(EventIdConflict):
        client.append(stream, [b"fresh", EventData(b"other", id=taken.event_ids[0])])
    assert client.stream_info(stream) == info


def test_idempotent_retry_with_the_same_ids(client: Client) -> None:
    """Sending an append again with the same ids returns the original positions,
    whatever the expected version, and stores nothing new."""
    stream = _name()
    events = [EventData(b"a", type="T", id=uuid.uuid4()), EventData(b"b", id=uuid.uuid4())]
    first = client.append(stream, events, expected_version=NO_STREAM)
    client.append(stream, [b"later"])
    again = client.append(stream, events, expected_version=NO_STREAM)
    assert again == first
    assert _datas(client.read_stream(stream)) == [b"a", b"b", b"later"]


def test_id_reused_for_other_content_is_a_conflict(client: Client) -> None:
    stream = _name()
    event_id = uuid.uuid4()
    client.append(stream, [EventData(b"original", id=event_id)])
    for changed in (
        EventData(b"changed", id=event_id),
        EventData(b"original", type="Other", id=event_id),
        EventData(b"original", metadata=b"m", id=event_id),
    ):
        with pytest.raises(EventIdConflict):
            client.append(stream, [changed])
    with pytest.raises(EventIdConflict):
        client.append(_name(), [EventData(b"original", id=event_id)])
    assert _datas(client.read_stream(stream)) == [b"original"]


def test_retry_after_a_timeout_stores_the_events_once(tmp_path: Path) -> None:
    """A frozen server makes the first attempt time out; the client resends the same
    ids on a fresh socket, and once the server runs again both copies are answered
    with the same positions: the events are stored once."""
    with (
        ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as server,
        _client(server, timeout=0.4, retries=6) as client,
    ):
        client.append("frozen", [b"before"])
        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)
        thaw = threading.Timer(0.6, server.process.send_signal, (signal.SIGCONT,))
        thaw.start()
        try:
            result = client.append("frozen", [b"x", b"y"], expected_version=0)
        finally:
            thaw.cancel()
            server.process.send_signal(signal.SIGCONT)
        assert (result.first_version, result.last_version) == (1, 2)
        assert _datas(client.read_stream("frozen")) == [b"before", b"x", b"y"]
        assert client.server_info().head_position == 3


def test_retry_after_a_restart_is_idempotent(tmp_path: Path) -> None:
    """The same ids sent to the restarted server (SQLite) get the original positions."""
    with ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as server:
        events = [EventData(b"e%d" % i, id=uuid.uuid4()) for i in range(3)]
        with _client(server) as client:
            first = client.append("orders-1", events, expected_version=NO_STREAM)
        server.restart()
        with _client(server) as client:
            assert client.append("orders-1", events, expected_version=NO_STREAM) == first
            assert client.append("orders-1", events, expected_version=7) == first
            assert _datas(client.read_stream("orders-1")) == [b"e0", b"e1", b"e2"]


def test_no_server_times_out_after_the_retries() -> None:
    with Client("tcp://127.0.0.1:1", timeout=0.1, retries=1) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeout) as timed_out:
            client.append("s", [b"x"])
        assert "2 attempts" in str(timed_out.value)
        assert time.monotonic() - started < 3
        with pytest.raises(RequestTimeout):
            client.ping()
        with pytest.raises(RequestTimeout):
            list(client.read_all())


# reads ---------------------------------------------------------------------------------


def test_read_stream_both_directions(client: Client) -> None:
    stream = _name()
    client.append(stream, [b"%d" % i for i in range(30)])
    versions = list(range(30))
    assert [e.version for e in client.read_stream(stream, batch_size=7)] == versions
    assert [e.version for e in client.read_stream(stream, backwards=True)] == versions[::-1]
    assert [e.version for e in client.read_stream(stream, from_version=25)] == versions[25:]
    assert [e.version for e in client.read_stream(stream, from_version=4, backwards=True)] == [
        4,
        3,
        2,
        1,
        0,
    ]
    assert [e.version for e in client.read_stream(stream, max_count=3)] == [0, 1, 2]
    assert [e.version for e in client.read_stream(stream, backwards=True, max_count=2)] == [
        29,
        28,
    ]
    assert list(client.read_stream(stream, from_version=30)) == []
    assert list(client.read_stream(stream, max_count=0)) == []
    with pytest.raises(StreamNotFound):
        list(client.read_stream(_name("missing")))


def test_read_end_tells_where_to_continue(client: Client) -> None:
    stream = _name()
    client.append(stream, [b"%d" % i for i in range(10)])
    reader = client.read_stream(stream, max_count=4)
    assert [e.version for e in reader] == [0, 1, 2, 3]
    assert reader.end is not None
    assert (reader.end.cursor, reader.end.count) == (4, 4)
    rest = client.read_stream(stream, from_version=reader.end.cursor)
    assert [e.version for e in rest] == list(range(4, 10))


def test_read_all_both_directions_and_filters(client: Client) -> None:
    prefix = _name("cat")
    for index in range(12):
        client.append(
            f"{prefix}-{index % 3}",
            [EventData(b"%d" % index, type=("Even" if index % 2 == 0 else "Odd"))],
        )
    client.append(f"{prefix}x-other", [EventData(b"untyped")])
    everything = list(client.read_all(stream_prefix=prefix, batch_size=5))
    assert _datas(everything) == [b"%d" % i for i in range(12)] + [b"untyped"]
    positions = [e.position for e in everything]
    assert positions == sorted(positions)

    backwards = list(client.read_all(stream_prefix=prefix, backwards=True, batch_size=4))
    assert backwards == everything[::-1]

    start = everything[5].position
    assert list(client.read_all(from_position=start, stream_prefix=prefix)) == everything[5:]
    assert (
        list(client.read_all(from_position=start, backwards=True, stream_prefix=prefix))
        == everything[5::-1]
    )
    assert list(client.read_all(stream_prefix=f"{prefix}-1")) == everything[1:12:3]
    evens = list(client.read_all(stream_prefix=prefix, event_types=["Even"]))
    assert _datas(evens) == [b"%d" % i for i in range(0, 12, 2)]
    typed = client.read_all(stream_prefix=prefix, event_types={"Odd", ""})
    assert _datas(typed) == [b"%d" % i for i in range(1, 12, 2)] + [b"untyped"]
    assert list(client.read_all(stream_prefix=prefix, max_count=2)) == everything[:2]
    assert list(client.read_all(stream_prefix=prefix + "nothing")) == []


def test_read_all_whole_log_and_from_the_end(client: Client) -> None:
    client.append(_name(), [b"a", b"b"])
    head = client.server_info().head_position
    forward = list(client.read_all())
    assert [e.position for e in forward] == list(range(1, head + 1))
    assert list(client.read_all(backwards=True, max_count=3)) == forward[::-1][:3]
    assert list(client.read_all(from_position=head + 1)) == []


def test_read_all_since_a_time(client: Client) -> None:
    prefix = _name("since")
    client.append(f"{prefix}-early", [b"early-1", b"early-2"])
    time.sleep(0.05)
    late = client.append(f"{prefix}-late", [b"late-1", b"late-2"])
    boundary = late.recorded_at
    assert _datas(client.read_all(since=boundary, stream_prefix=prefix)) == [b"late-1", b"late-2"]
    assert _datas(client.read_all(since=late.recorded_at_us, stream_prefix=prefix)) == [
        b"late-1",
        b"late-2",
    ]
    assert _datas(client.read_all(since=boundary, backwards=True, stream_prefix=prefix)) == [
        b"early-2",
        b"early-1",
    ]
    naive = boundary.astimezone(UTC).replace(tzinfo=None)
    assert _datas(client.read_all(since=naive, stream_prefix=prefix)) == [b"late-1", b"late-2"]
    future = datetime.now(UTC) + timedelta(days=1)
    assert list(client.read_all(since=future, stream_prefix=prefix)) == []
    with pytest.raises(ValueError):
        client.read_all(since=boundary, from_position=1)


def test_large_read_is_streamed_in_small_batches(client: Client) -> None:
    """Thousands of events through many batches under credit, in order, none twice."""
    stream = _name("large")
    for chunk in range(10):
        client.append(stream, [b"%d" % (chunk * 500 + i) for i in range(500)])
    versions = [e.version for e in client.read_stream(stream, batch_size=37)]
    assert versions == list(range(5000))


def test_closing_a_read_early_cancels_it(client: Client, memory_server: ServerProcess) -> None:
    """A read abandoned after a few events is cancelled; the server keeps serving
    this client and others, also after many abandoned reads."""
    stream = _name("cancel")
    client.append(stream, [b"%d" % i for i in range(3000)])
    for _ in range(50):
        with client.read_stream(stream, batch_size=10) as reader:
            taken = [next(reader).version for _ in range(15)]
        assert taken == list(range(15))
    reader = client.read_all(batch_size=5)
    next(reader)
    reader.close()
    with pytest.raises(StopIteration):
        next(reader)
    client.ping()
    assert len(list(client.read_stream(stream))) == 3000
    with _client(memory_server) as other:
        other.ping()
        assert other.stream_info(stream) is not None


def test_other_requests_while_a_read_is_open(client: Client) -> None:
    """Replies are matched by request id: appends and info calls in the middle of a
    read get their own answers and the read goes on undisturbed."""
    stream, side = _name(), _name()
    client.append(stream, [b"%d" % i for i in range(200)])
    seen = []
    for event in client.read_stream(stream, batch_size=10):
        seen.append(event.version)
        if event.version % 25 == 0:
            client.append(side, [b"side"])
            assert client.stream_info(stream) is not None
    assert seen == list(range(200))
    info = client.stream_info(side)
    assert info is not None and info.last_version == 7


# stream info, listing, ping, info -----------------------------------------------------------


def test_stream_info(client: Client) -> None:
    stream = _name()
    assert client.stream_info(stream) is None
    first = client.append(stream, [b"a", b"b"])
    client.append(_name(), [b"between"])
    last = client.append(stream, [b"c"])
    info = client.stream_info(stream)
    assert info is not None
    assert info.stream == stream
    assert (info.last_version, info.event_count) == (2, 3)
    assert (info.first_position, info.last_position) == (
        first.first_position,
        last.last_position,
    )


def test_list_streams_pages_through_every_name(tmp_path: Path) -> None:
    with ServerProcess("memory:") as server, _client(server) as client:
        assert list(client.list_streams()) == []
        names = [*(f"list-{index:03d}" for index in range(37)), "zz-last", "ünïcode"]
        for name in names:
            client.append(name, [b"x"])
        names.sort()
        assert list(client.list_streams(page_size=4)) == names
        assert list(client.list_streams(page_size=1000)) == names
        assert list(client.list_streams(after="list-030", page_size=3)) == names[31:]
        assert list(client.list_streams(after=names[-1])) == []


def test_ping_and_server_info(client: Client) -> None:
    assert client.ping() >= 0
    result = client.append(_name(), [b"x"])
    info = client.server_info()
    assert info.head_position >= result.last_position
    assert "RWD2" in info.protocols
    assert info.storage_kind == "memory"
    assert info.durable is False
    assert info.max_batch_size >= 1 and info.max_credit >= 1 and info.max_append_events >= 1
    assert abs(info.server_time - datetime.now(UTC)) < timedelta(minutes=1)


# concurrent writers with exact expected versions --------------------------------------------

_WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from rewind.client import Client, WrongExpectedVersion

    endpoint, stream, tag, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    log = {"ok": [], "rejected": []}
    with Client(endpoint, timeout=10) as client:
        client.ping()
        deadline = time.monotonic() + 30
        while not os.path.exists(sys.argv[5]) and time.monotonic() < deadline:
            time.sleep(0.005)  # both writers start together, so that they race
        info = client.stream_info(stream)
        expected = -1 if info is None else info.last_version
        for index in range(count):
            while True:
                try:
                    result = client.append(
                        stream, [f"{tag}-{index}".encode()], expected_version=expected
                    )
                except WrongExpectedVersion as exc:
                    log["rejected"].append([expected, exc.actual_version])
                    expected = exc.actual_version
                    continue
                log["ok"].append(result.last_version)
                expected = result.last_version
                break
    print(json.dumps(log))
    """
)


def test_two_processes_with_exact_expected_versions(tmp_path: Path) -> None:
    """Two writer processes race on one stream with exact expected versions, retrying
    after each conflict with the actual version the server reported: every version is
    used exactly once, and every rejection named the stream's real last version."""
    count = 1000
    go = tmp_path / "go"
    with ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as server:
        command = [sys.executable, "-c", _WRITER, server.query_endpoint, "race"]
        writers = [
            subprocess.Popen(
                [*command, tag, str(count), str(go)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for tag in ("a", "b")
        ]
        time.sleep(0.3)
        go.touch()
        logs = {}
        for tag, writer in zip(("a", "b"), writers, strict=True):
            out, err = writer.communicate(timeout=60)
            assert writer.returncode == 0, err.decode()
            logs[tag] = json.loads(out)
        with _client(server) as client:
            events = list(client.read_stream("race"))
    assert [e.version for e in events] == list(range(2 * count))
    assert sum(len(log["rejected"]) for log in logs.values()) > 0, "the writers never raced"
    owner = {e.version: e.data.decode().split("-")[0] for e in events}
    for tag, log in logs.items():
        other = "b" if tag == "a" else "a"
        assert len(log["ok"]) == count
        mine = [e.data for e in events if owner[e.version] == tag]
        assert mine == [f"{tag}-{i}".encode() for i in range(count)]
        assert sorted(log["ok"]) == log["ok"]
        assert {v for v in log["ok"]} == {v for v, o in owner.items() if o == tag}
        for expected, actual in log["rejected"]:
            # The stream really stood at `actual`: past what this writer expected, and
            # everything in between was written by the other writer.
            assert actual > expected
            assert all(owner[v] == other for v in range(expected + 1, actual + 1))


# Cancelled reads and credit limits, checked on the wire ---------------------------------------


def _raw_replies(sock: zmq.Socket[bytes], quiet_ms: int = 300) -> list[v2.Reply]:
    """Every v2 reply that arrives until the socket has been quiet for ``quiet_ms``."""
    replies = []
    while sock.poll(quiet_ms, zmq.POLLIN):
        replies.append(v2.decode_reply(sock.recv_multipart()[1:]))
    return replies


@pytest.fixture
def dealer(memory_server: ServerProcess) -> Iterator[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(memory_server.query_endpoint)
    yield sock
    context.destroy(linger=0)


def test_cancel_right_behind_the_read_ends_it(client: Client, dealer: zmq.Socket[bytes]) -> None:
    stream = _name("cancelled")
    client.append(stream, [b"x"] * 20)
    read = v2.encode_read_all_request(1, stream_prefix=stream, batch_size=1, credit=1)
    dealer.send_multipart([b"", *read])
    dealer.send_multipart([b"", *v2.encode_cancel_request(1)])
    replies = _raw_replies(dealer)
    ends = [i for i, r in enumerate(replies) if isinstance(r, v2.ReadEnd)]
    assert ends == [len(replies) - 1], replies  # the END comes last, once
    end = replies[-1]
    assert isinstance(end, v2.ReadEnd) and end.reason == v2.EndReason.CANCELLED
    dealer.send_multipart([b"", *v2.encode_credit_request(1, 2)])
    assert _raw_replies(dealer) == []  # the read is over: the credit is ignored
    dealer.send_multipart([b"", *v2.encode_ping_request(1)])
    assert _raw_replies(dealer) == [v2.Pong(1)]  # and its id is free again


def test_credit_above_the_maximum_ends_the_read(client: Client, dealer: zmq.Socket[bytes]) -> None:
    stream = _name("credit")
    client.append(stream, [b"x"] * 20)
    max_credit = client.server_info().max_credit
    read = v2.encode_read_all_request(1, stream_prefix=stream, batch_size=1, credit=1)
    dealer.send_multipart([b"", *read])
    assert isinstance(_raw_replies(dealer)[0], v2.EventBatch)
    dealer.send_multipart([b"", *v2.encode_credit_request(1, max_credit + 1)])
    last = _raw_replies(dealer)[-1]
    assert isinstance(last, v2.ErrorReply), last
    assert last.code == v2.ErrorCode.LIMIT_EXCEEDED


def test_packed_and_framed_reads_return_the_same_batches(
    client: Client, dealer: zmq.Socket[bytes]
) -> None:
    stream = _name("packed")
    client.append(stream, [EventData(b"first", type="Kind"), EventData(b"second", type="Kind")])
    client.append(stream, [EventData(b"third", metadata=b"{}")])
    batches: dict[bool, list[v2.Reply]] = {}
    for request_id, packed in ((1, False), (2, True)):
        reads = (
            v2.encode_read_all_request(
                request_id, stream_prefix=stream, batch_size=2, credit=5, packed=packed
            ),
            v2.encode_read_stream_request(
                request_id + 10, stream, batch_size=2, credit=5, packed=packed
            ),
        )
        for read in reads:
            dealer.send_multipart([b"", *read])
            batches.setdefault(packed, []).extend(_raw_replies(dealer))
    framed, packed_replies = batches[False], batches[True]
    assert [type(r) for r in framed] == [v2.EventBatch, v2.EventBatch, v2.ReadEnd] * 2
    for plain, packed_reply in zip(framed, packed_replies, strict=True):
        if isinstance(plain, v2.EventBatch):
            assert isinstance(packed_reply, v2.EventBatch) and packed_reply.packed
            assert not plain.packed and packed_reply.events == plain.events
    events = [e for r in packed_replies[:2] if isinstance(r, v2.EventBatch) for e in r.events]
    assert [(e.data, e.event_type, e.metadata) for e in events] == [
        (b"first", "Kind", b""),
        (b"second", "Kind", b""),
        (b"third", "", b"{}"),
    ]
