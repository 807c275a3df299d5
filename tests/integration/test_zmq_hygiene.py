"""ZeroMQ hygiene: clients that vanish, subscribers that stall, clients that never read.

Each test runs a real server (SQLite) and checks that one misbehaving
party can neither stall the others nor make the server's memory grow
without bound. Latency is measured by a well-behaved client's v2 PING round
trips; memory is the server process's resident set (psutil).
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import zmq

from rewind.client import Client
from rewind.model import NewEvent
from rewind.protocol import gorewind, seed, v2
from tests.integration.helpers import Subscriber, wait_for
from tests.support import ServerProcess

pytestmark = pytest.mark.timeout(180)

MIB = 2**20
LATENCY_BOUND_S = 0.100
"""p99 of a well-behaved client's round trip while others misbehave."""
RSS_GROWTH_BOUND = 50 * MIB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(f"sqlite:{tmp_path / 'events.db'}") as process:
        yield process


def rss(server: ServerProcess) -> int:
    assert server.process is not None
    return int(psutil.Process(server.process.pid).memory_info().rss)


def client_for(server: ServerProcess, context: zmq.Context[zmq.Socket[bytes]]) -> Client:
    return Client(
        server.query_endpoint,
        server.streaming_endpoint,
        v2_streaming_endpoint=server.v2_streaming_endpoint,
        timeout=10.0,
        context=context,
    )


def slow_reader(context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> zmq.Socket[bytes]:
    """A DEALER whose queues and socket buffer hold almost nothing of the replies.

    Sends give up after 5 s and receives after 20 s, so a test fails
    instead of hanging.
    """
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.setsockopt(zmq.RCVTIMEO, 20_000)
    sock.connect(endpoint)
    return sock


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class PingMeter(threading.Thread):
    """Times v2 PINGs on its own DEALER until stopped (or ``count`` are done)."""

    def __init__(self, endpoint: str, count: int | None = None) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.count = count
        self.stop = threading.Event()
        self.samples: list[float] = []
        self.failure: str | None = None

    def run(self) -> None:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        request_id = 0
        try:
            while not self.stop.is_set() and (self.count is None or request_id < self.count):
                request_id += 1
                started = time.perf_counter()
                sock.send_multipart([b"", *v2.encode_ping_request(request_id)])
                if not sock.poll(5000, zmq.POLLIN):
                    self.failure = f"no PONG for PING {request_id} within 5 s"
                    return
                reply = sock.recv_multipart()
                self.samples.append(time.perf_counter() - started)
                if reply != [b"", *v2.encode_pong(request_id)]:
                    self.failure = f"PING {request_id} answered {reply!r}"
                    return
                time.sleep(0.0005)
        finally:
            context.destroy(linger=0)

    def result(self) -> list[float]:
        if self.count is None:
            self.stop.set()
        self.join(30)
        assert not self.is_alive()
        assert self.failure is None, self.failure
        assert self.samples
        return self.samples


def summary(samples: list[float]) -> str:
    return (
        f"p50 {statistics.median(samples) * 1000:.2f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms "
        f"over {len(samples)} PINGs"
    )


# (a) Clients that vanish before their replies ----------------------------------------


def _abandoning_requests(index: int, query_to: bytes) -> list[list[bytes]]:
    """A request of every kind that gets a reply: appends, reads, streamed reads.

    Reads stay small however much the churn appends: seed QUERYs stop at
    ``query_to``, and the appends go to a stream nobody reads.
    """
    kind = index % 6
    if kind == 0:
        return [seed.encode_publish(b"churn-%d" % index)]
    if kind == 1:
        return [seed.encode_query(None, query_to)]
    if kind == 2:
        return [gorewind.encode_query_request("churn")]
    if kind == 3:
        appended = [NewEvent(b"v2-churn-%d" % index)]
        return [v2.encode_append_request(index + 1, "churn-appends", appended)]
    if kind == 4:
        return [v2.encode_read_all_request(index + 1, max_count=40, batch_size=10, credit=8)]
    # Several pipelined requests, so replies are in flight when the peer goes.
    return [seed.encode_query(None, query_to) for _ in range(5)]


def churn(endpoint: str, clients: int, rounds: int, query_to: bytes) -> None:
    """Run in another process: ``clients`` sockets per round send and close at once."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    rng = random.Random(7)
    for round_index in range(rounds):
        sockets: list[tuple[zmq.Socket[bytes], list[list[bytes]]]] = []
        for index in range(clients):
            kind = zmq.REQ if index % 3 == 0 else zmq.DEALER
            sock = context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            # Send only once connected, so every request reaches the server
            # however slowly connections come up on a busy machine.
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDTIMEO, 5000)
            sock.connect(endpoint)
            requests = _abandoning_requests(round_index * clients + index, query_to)
            if kind == zmq.REQ:
                requests = requests[:1] if requests[0][0] in (b"PUBLISH", b"QUERY") else []
                if not requests:
                    requests = [seed.encode_query(None, query_to)]
            else:
                requests = [[b"", *frames] for frames in requests]
            sockets.append((sock, requests))
        # The sockets connect together, then every request goes out in one
        # burst: the server is still working through them when the peers
        # vanish, at once or after a moment, however quickly it answers each.
        for sock, requests in sockets:
            for frames in requests:
                sock.send_multipart(frames)
        time.sleep(rng.uniform(0.0, 0.01))
        for sock, _ in sockets:
            sock.close(linger=0)
    context.destroy(linger=0)


def test_clients_vanishing_before_their_replies_do_not_slow_others(
    server: ServerProcess,
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with client_for(server, context) as client:
            # Small reads: the point is replies to vanished peers, not CPU load.
            client.append("churn", [b"seed-%d" % i for i in range(20)])
            for index in range(30):
                client.publish(b"default-%d" % index)
            tenth = list(itertools.islice(client.read_all(), 10))[-1]
        baseline = PingMeter(server.query_endpoint, count=400)
        baseline.start()
        quiet = baseline.result()
        rss_before = rss(server)

        meter = PingMeter(server.query_endpoint)
        meter.start()
        spawn = multiprocessing.get_context("spawn")
        query_to = str(tenth.event_id).encode()
        churner = spawn.Process(target=churn, args=(server.query_endpoint, 100, 10, query_to))
        churner.start()
        churner.join(120)
        assert churner.exitcode == 0
        busy = meter.result()
        rss_after = rss(server)
        print(f"\nPING without churn: {summary(quiet)}")
        print(f"PING with 10 x 100 vanishing clients: {summary(busy)}")
        print(f"server RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB")

        assert percentile(busy, 0.99) < LATENCY_BOUND_S, summary(busy)
        # The typical round trip stays what it was (generously, for a shared machine).
        assert statistics.median(busy) < max(10 * statistics.median(quiet), 0.005)
        assert rss_after - rss_before < RSS_GROWTH_BOUND
        # The scenario happened: replies went to peers that had gone.
        assert wait_for(lambda: "the peer has gone" in server.log, 5), server.log[-2000:]
        # And everyone else is served as before.
        with client_for(server, context) as client:
            result = client.append("after-churn", [b"still here"])
            assert [e.data for e in client.read_stream("after-churn")] == [b"still here"]
            assert result.first_position > 50
            assert client.ping() < 1.0
    finally:
        context.destroy(linger=0)


# (b) Subscribers that never read ------------------------------------------------------


def test_stalled_subscribers_do_not_hold_back_publishing_or_grow_memory(
    server: ServerProcess,
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    event = bytes(range(256)) * 8  # 2 KiB
    per_append, appends = 250, 200  # 50,000 events: 100 MiB per feed if PUB kept them
    try:
        with client_for(server, context) as client:
            warm = time.perf_counter()
            for _ in range(20):
                client.append("feed-load", [event] * per_append)
            baseline_rate = 20 * per_append / (time.perf_counter() - warm)
            rss_before = rss(server)

            stalled = []
            for endpoint in (server.streaming_endpoint, server.v2_streaming_endpoint):
                sub = Subscriber(context, endpoint, rcvhwm=10)
                sub.sock.setsockopt(zmq.RCVBUF, 4096)
                stalled.append(sub)
            peak = rss_before
            started = time.perf_counter()
            for index in range(appends):
                client.append("feed-load", [event] * per_append)
                if index % 20 == 0:
                    peak = max(peak, rss(server))
            elapsed = time.perf_counter() - started
            rate = appends * per_append / elapsed
            rss_after = rss(server)
            peak = max(peak, rss_after)
            print(
                f"\npublished {appends * per_append} events of 2 KiB with two stalled "
                f"subscribers: {rate:,.0f} events/s (without: {baseline_rate:,.0f}/s); "
                f"server RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB "
                f"(peak {peak / MIB:.1f})"
            )
            assert peak - rss_before < RSS_GROWTH_BOUND
            assert rate > baseline_rate / 4

            # The stalled subscribers got at most a bounded prefix, and the feeds still work.
            received = 0
            while stalled[1].sock.poll(0, zmq.POLLIN):
                stalled[1].sock.recv_multipart()
                received += 1
            assert received < appends * per_append // 10
            live = Subscriber(context, server.v2_streaming_endpoint)
            appended = client.append("feed-after", [b"after the flood"])
            # The server answers an append before it broadcasts the events, so
            # the last flood events may still be on their way when the new
            # subscriber joins: it may see some of them first.
            message: list[bytes] = []
            deadline = time.monotonic() + 5
            while not message or message[0] != b"feed-after":
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                assert remaining_ms > 0 and live.sock.poll(remaining_ms, zmq.POLLIN), message[:1]
                message = live.sock.recv_multipart()
            position = struct.unpack("!Q", message[1][:8])[0]
            assert position == appended.first_position
    finally:
        context.destroy(linger=0)


# (c) A client that pipelines requests and never reads ----------------------------------


def test_client_that_never_reads_its_replies_cannot_stall_others(server: ServerProcess) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with client_for(server, context) as client:
            for index in range(100):
                client.publish(b"%04d" % index + b"x" * 100)
        rss_before = rss(server)
        hog = slow_reader(context, server.query_endpoint)

        meter = PingMeter(server.query_endpoint)
        meter.start()
        # Each reply is a full page of 100 events (about 15 KiB): far more than
        # the hog's queues and socket buffers hold. Once the server's ROUTER
        # high-water mark (1000 messages) is reached, the next reply waits and
        # the hog's later requests wait unread behind it.
        sent = 0
        for _ in range(6000):
            hog.send_multipart([b"", *seed.encode_query(None, None)])
            sent += 1
        assert wait_for(lambda: "the peer's queue is full" in server.log, 20), server.log[-2000:]
        time.sleep(0.5)
        busy = meter.result()
        rss_after = rss(server)
        print(
            f"\nPING while a client leaves {sent} replies unread: {summary(busy)}; "
            f"server RSS {rss_before / MIB:.1f} -> {rss_after / MIB:.1f} MiB"
        )
        assert percentile(busy, 0.99) < LATENCY_BOUND_S, summary(busy)
        assert rss_after - rss_before < RSS_GROWTH_BOUND
        with client_for(server, context) as client:
            assert len(list(client.query())) == 100
            client.publish(b"after the hog")
            assert client.ping() < 1.0
        hog.close(linger=0)
    finally:
        context.destroy(linger=0)


@pytest.fixture(params=["memory", "sqlite"])
def either_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """Both backends: a memory server answers a lone append at once, outside the reply queue."""
    storage = "memory:" if request.param == "memory" else f"sqlite:{tmp_path / 'events.db'}"
    with ServerProcess(storage) as process:
        yield process


def _late_reader_after_a_page(
    server: ServerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> zmq.Socket[bytes]:
    """A :func:`slow_reader`, once a full page of events is stored (a QUERY gets 15 KiB)."""
    with client_for(server, context) as client:
        for index in range(seed.QUERY_PAGE_SIZE):
            client.publish(b"%04d" % index + b"x" * 100)
    return slow_reader(context, server.query_endpoint)


def _stored_after_the_page(
    server: ServerProcess, context: zmq.Context[zmq.Socket[bytes]]
) -> list[bytes]:
    with client_for(server, context) as client:
        return [event.data for event in client.query()][seed.QUERY_PAGE_SIZE :]


def test_a_client_that_reads_late_still_gets_every_acknowledgement(
    either_server: ServerProcess,
) -> None:
    """Replies beyond the peer's queue wait for room: no acknowledgement is dropped."""
    server = either_server
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        late = _late_reader_after_a_page(server, context)
        # Each QUERY is answered with a full page (about 15 KiB), so the
        # replies soon overflow the server's queue for this peer; each
        # PUBLISH behind one must still be acknowledged once there is room.
        pairs = 2_000
        for index in range(pairs):
            late.send_multipart([b"", *seed.encode_query(None, None)])
            late.send_multipart([b"", *seed.encode_publish(b"late-%05d" % index)])
        assert wait_for(lambda: "the peer's queue is full" in server.log, 20), server.log[-2000:]
        time.sleep(0.5)  # the server now holds replies it could not send yet
        for _ in range(pairs):
            page = late.recv_multipart()
            assert len(page) == 1 + 2 * seed.QUERY_PAGE_SIZE, page[:3]
            assert late.recv_multipart() == [b"", b"PUBLISHED"]
        assert "dropped a reply" not in server.log
        late.close(linger=0)
        assert _stored_after_the_page(server, context) == [
            b"late-%05d" % index for index in range(pairs)
        ]
    finally:
        context.destroy(linger=0)


def test_a_publisher_that_reads_late_still_gets_every_acknowledgement(
    either_server: ServerProcess,
) -> None:
    """Acknowledgements of lone appends wait for room too, once the peer's queue is full.

    A few QUERY pages first fill the connection's socket buffers; then only
    PUBLISH, whose small replies fill ZeroMQ's queue for the peer. On a
    memory server each is committed and answered at once, so the first
    reply that finds no room is one without a place in the reply queue.
    """
    server = either_server
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        late = _late_reader_after_a_page(server, context)
        late.setsockopt(zmq.SNDHWM, 0)
        pages = 400  # about 6 MiB: beyond what the socket buffers take in
        for _ in range(pages):
            late.send_multipart([b"", *seed.encode_query(None, None)])
        publishes = 0
        while "the peer's queue is full" not in server.log:
            assert publishes < 20_000, "the replies never filled the peer's queue"
            for _ in range(200):
                late.send_multipart([b"", *seed.encode_publish(b"late-%05d" % publishes)])
                publishes += 1
            time.sleep(0.05)
        for _ in range(pages):
            assert len(late.recv_multipart()) == 1 + 2 * seed.QUERY_PAGE_SIZE
        for _ in range(publishes):
            assert late.recv_multipart() == [b"", b"PUBLISHED"]
        assert not late.poll(200), "a reply came twice"
        late.close(linger=0)
        assert _stored_after_the_page(server, context) == [
            b"late-%05d" % index for index in range(publishes)
        ]
    finally:
        context.destroy(linger=0)


def test_requests_piled_behind_an_unread_gorewind_query_are_bounded(
    server: ServerProcess,
) -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with client_for(server, context) as client:
            for _ in range(20):
                client.append("long", [b"x" * 1000] * 250)
        rss_before = rss(server)
        hog = slow_reader(context, server.query_endpoint)
        # 5,000 EVENT messages of 1 KB: more than the hog's buffers take, so the
        # QUERY blocks its connection, and everything sent after it waits.
        hog.send_multipart([b"", *gorewind.encode_query_request("long")])
        for request_id in range(1, 200_001):
            hog.send_multipart([b"", *v2.encode_ping_request(request_id)])
        # 1 QUERY and 9,999 PINGs wait on the connection; the other 190,001 are
        # dropped, logged at the first and every 10,000th.
        assert wait_for(lambda: "(180001 dropped so far)" in server.log, 30), server.log[-2000:]
        with client_for(server, context) as client:
            assert wait_for(lambda: client.ping() < 1.0 and rss(server) > 0, 10)
        growth = rss(server) - rss_before
        print(f"\n200,000 requests behind an unread Gorewind QUERY: RSS +{growth / MIB:.1f} MiB")
        assert growth < 10 * MIB
    finally:
        context.destroy(linger=0)


def test_appends_piled_behind_an_unread_query_are_stored_up_to_the_bound_the_rest_never(
    either_server: ServerProcess,
) -> None:
    server = either_server
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with client_for(server, context) as client:
            for _ in range(20):
                client.append("long", [b"x" * 1000] * 250)
            head = client.server_info().head_position
        hog = slow_reader(context, server.query_endpoint)
        # The QUERY's 5,000 EVENT messages block the connection, so every
        # PUBLISH after it waits for its turn to be answered: the first 9,999
        # take the rest of the connection's 10,000 places and are committed;
        # the other 10,001 are dropped unread (logged at the first and the
        # 10,001st) and must store nothing.
        hog.send_multipart([b"", *gorewind.encode_query_request("long")])
        for index in range(20_000):
            hog.send_multipart([b"", *seed.encode_publish(b"piled %d" % index)])
        assert wait_for(lambda: "(10001 dropped so far)" in server.log, 30), server.log[-2000:]
        with client_for(server, context) as client:
            assert wait_for(lambda: client.server_info().head_position == head + 9_999, 30)
            tail = list(client.read_all(from_position=head + 1))
        assert [event.data for event in tail] == [b"piled %d" % index for index in range(9_999)]
        # Each stored one is acknowledged, in order, once the QUERY's messages are read.
        replies = []
        while hog.poll(2000):
            replies.append(hog.recv_multipart())
        assert replies.count([b"", b"PUBLISHED"]) == 9_999
        assert replies[-1] == [b"", b"PUBLISHED"]
        hog.close(linger=0)
    finally:
        context.destroy(linger=0)
